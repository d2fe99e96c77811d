#!/usr/bin/env bash
# Many concurrent streams from one thread (issue 8): llm_stream (bench/bench_many.cpp, one StreamSet)
# next to the OpenAI Node SDK (bench/bench_many.mjs, one Node process), each opening N streams at once
# to the same loopback server (bench_many serve: one epoll thread, 20 content chunks per stream, one
# every 50 ms, sent once all N requests are in). Prints each figure with the load average at the time,
# after the heap allocations of one request on a new connection and on a pooled one (bench_many requests).
#
#   bash bench/bench_many.sh [N...]          default: 1000 10000
#   OPENAI_SDK_DIR=DIR                       where `npm install openai` was run (else it is run in a
#                                            temporary directory; SKIP_NODE=1 leaves Node out)
#   BENCH_MANY=FILE                          a prebuilt bench_many (else built in a temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1000 10000)
work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

bench_many=${BENCH_MANY:-$work/bench_many}
[ -n "${BENCH_MANY:-}" ] || g++ -std=c++17 -O2 -DNDEBUG -I. bench/bench_many.cpp -o "$bench_many" -pthread
sdk_dir=${OPENAI_SDK_DIR:-}
if [ -z "${SKIP_NODE:-}" ] && [ -z "$sdk_dir" ]; then
    sdk_dir="$work/node"
    mkdir -p "$sdk_dir"
    (cd "$sdk_dir" && npm install --silent --no-audit --no-fund openai >/dev/null 2>&1)
fi
# Each stream takes a socket on both sides.
ulimit -n "$(ulimit -Hn)"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; ulimit -n $(ulimit -n)"

# serve N INTERVAL_MS: starts the server for rounds of N streams of 20 chunks; sets url.
serve() {
    rm -f "$work/port"  # not the previous server's
    "$bench_many" serve "$1" 20 "$2" > "$work/port" &
    server_pid=$!
    for _ in $(seq 50); do grep -q '^PORT ' "$work/port" 2>/dev/null && break; sleep 0.1; done
    url="http://127.0.0.1:$(awk '{print $2}' "$work/port")/v1"
}
stop_server() {
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

# The allocations of a request, new and pooled, and of its events.
serve 1 1
"$bench_many" requests "$url"
stop_server

for n in "${counts[@]}"; do
    serve "$n" 50
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$bench_many" "$url" "$n"
    if [ -z "${SKIP_NODE:-}" ]; then
        echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
        OPENAI_SDK_DIR="$sdk_dir" node bench/bench_many.mjs "$url" "$n"
    fi
    stop_server
done
