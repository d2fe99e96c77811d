#!/usr/bin/env bash
# llm-curl (the sans-I/O core over libcurl) against our loopback server: a recorded stream, then an
# HTTP error with the server's message.   usage: e2e_llm_curl.sh LLM_CURL LLM_TEST_SERVER
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/support/e2e_common.sh"
curl_example="$1"
server="$2"
work="$(mktemp -d)"
data="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/data/streams"
pids=()
cleanup() {
    for pid in "${pids[@]+"${pids[@]}"}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# start_server NAME ARGS...: the server's port in $port, its PID remembered for the cleanup.
start_server() {
    local name="$1"
    shift
    "$server" --max-requests 5 "$@" >"$work/$name.out" 2>&1 &
    pids+=($!)
    port="$(port_of "$!" "$work/$name.out")" || { echo "the test server did not start"; exit 1; }
}

start_server stream --stream "$data/deepseek-chat.sse"
output="$(LLM_BASE_URL="http://127.0.0.1:$port/v1" "$curl_example" hi)"
echo "$output"
[[ "$output" == *"Hello! How can I assist you today?"* ]] || { echo "FAIL: wrong reply"; exit 1; }

start_server error --status 401 --body '{"error":{"message":"Incorrect API key provided"}}'
status=0
errors="$(LLM_BASE_URL="http://127.0.0.1:$port/v1" "$curl_example" hi 2>&1 >/dev/null)" || status=$?
echo "$errors"
[[ $status == 1 && "$errors" == *"HTTP 401: Incorrect API key provided"* ]] || { echo "FAIL: exit $status"; exit 1; }
echo "llm-curl: 2 passed, 0 failed"
