#!/usr/bin/env bash
# End-to-end checks of `llm-chat --api X` over loopback, for every API (issue 10):
#   1. every recorded stream of tests/data/streams (manifest.json says what each decodes to), served by
#      llm_test_server in each HTTP framing (chunked, Content-Length, close-delimited): text mode prints
#      exactly the content and one newline, --events the expected events and the assembled message, a
#      mid-stream error exits 1 with the provider's message after the text that came before it;
#   2. one conversation of every shape per API, captured by llm_test_server --save-requests: the
#      request line, the auth headers and the body (canonical JSON) as tests/data/requests/<api>.json
#      says, written from each provider's documented request format;
#   3. --stats on a live stream and --replay of a captured response, once per API.
# The manifest and the captured bodies are compared with jq (a Debian package; scripts/test.sh installs
# it): JSON against JSON, with no parser of our own that could share a mistake with the library's.
#
#   bash tests/e2e_apis.sh path/to/llm-chat path/to/llm_test_server     (exit 77 without jq)

source "$(dirname "${BASH_SOURCE[0]}")/support/e2e_common.sh"
e2e_arguments "path/to/llm-chat path/to/llm_test_server" "$@"
if [ -z "$TEST_SERVER_BIN" ]; then
    echo "usage: $0 path/to/llm-chat path/to/llm_test_server" >&2
    exit 2
fi
if ! command -v jq >/dev/null 2>&1; then
    echo "skipped: jq is not installed (Debian: apt-get install jq)"
    exit 77
fi
DATA=$(absolute "$(dirname "${BASH_SOURCE[0]}")/data")
MANIFEST=$DATA/streams/manifest.json
KEY=sk-e2e-apis-secret-key
e2e_start llm-chat-e2e-apis SERVER_PID

# chat API ARGS...: llm-chat --api API against the server on $PORT under the base path $BASE_PATH.
chat() {
    local api=$1
    shift
    LLM_BASE_URL=http://127.0.0.1:$PORT$BASE_PATH LLM_API_KEY=$KEY LLM_MODEL=e2e-model \
        run --api "$api" --retries 0 --timeout 10 "$@"
}

# ---------------------------------------------------------------------------------------------------
# 1. Every recorded stream, in every framing
# ---------------------------------------------------------------------------------------------------

# The manifest's expectation in the shape outcome_of_events gives: openai entries have no raw reason
# (the finish reason is the provider's own), and the error is checked on its own.
EXPECTED_OUTCOME='.expected | .raw_finish_reason = (if has("raw_finish_reason") then .raw_finish_reason
                  else .finish_reason end) | del(.error)'

# --events lines (slurped) gathered as the manifest describes a stream: text concatenated, a tool
# call's id and name from the first fragment that has them and its arguments concatenated, the last
# finish reason and usage.
# shellcheck disable=SC2016  # (a jq program: its $ are jq's)
OUTCOME_OF_EVENTS='map(select(.type != "message")) as $events | {
    content: ($events | map(select(.type == "content").text) | join("")),
    reasoning: ($events | map(select(.type == "reasoning").text) | join("")),
    tool_calls: (reduce ($events[] | select(.type == "tool_call")) as $e ({};
                   ($e.index | tostring) as $k
                   | .[$k] = ((.[$k] // {index: $e.index, id: "", name: "", arguments: ""})
                              | .id = (if .id == "" then $e.id // "" else .id end)
                              | .name = (if .name == "" then $e.name // "" else .name end)
                              | .arguments += ($e.arguments // "")))
                 | [.[]] | sort_by(.index)),
    finish_reason: ([$events[] | select(.type == "finish").reason] | last),
    raw_finish_reason: ([$events[] | select(.type == "finish") | .raw // .reason] | last),
    usage: ([$events[] | select(.type == "usage") | del(.type)] | last)}'

# The last --events line against the manifest: the assembled message in OpenAI format. A call the API
# sent without an id (Gemini, Ollama) gets one made up, "call_...".
# shellcheck disable=SC2016
MESSAGE_MATCHES='$entry.expected as $x | .type == "message"
    and .message.role == "assistant"
    and (.message.content // "") == $x.content
    and (.message.reasoning_content // "") == $x.reasoning
    and ((.message.tool_calls // []) | length) == ($x.tool_calls | length)
    and ([.message.tool_calls // [] | to_entries[] | .key as $i | $x.tool_calls[$i] as $call
          | .value.type == "function" and .value.function.name == $call.name
            and .value.function.arguments == $call.arguments
            and (if $call.id == "" then (.value.id | startswith("call_")) else .value.id == $call.id end)]
         | all)
    and .finish_reason == $x.finish_reason
    and .usage == $x.usage'

# expect_text NAME: text mode printed exactly the content and one newline ($WORK/expected); exit 0, or 1
# with the provider's message on one stderr line after an error.
expect_text() {
    if ! cmp -s "$WORK/out" "$WORK/expected"; then
        fail "$1" "stdout is not the expected content and one newline: $(head -c 300 "$WORK/expected")"
    elif [ -z "$ERROR" ] && [ "$RC" -eq 0 ] && [ ! -s "$WORK/err" ]; then
        pass "$1"
    elif [ -n "$ERROR" ] && [ "$RC" -eq 1 ] && [ "$(wc -l <"$WORK/err")" -eq 1 ] &&
        grep -qF "llm-chat: error: " "$WORK/err" && grep -qF -- "$ERROR" "$WORK/err"; then
        pass "$1"
    else
        fail "$1" "expected exit ${ERROR:+1 with the error: }${ERROR:-0 and nothing on stderr}"
    fi
}

# expect_events NAME: --events gives the manifest's outcome, then (after a normal end) the message line.
expect_events() {
    local got last
    got=$(jq -cS -s "$OUTCOME_OF_EVENTS" "$WORK/out" 2>&1)
    last=$(tail -n 1 "$WORK/out")
    if [ "$got" != "$WANT" ]; then
        fail "$1" "events: $got, expected: $WANT"
    elif [ -n "$ERROR" ]; then
        if [ "$RC" -eq 1 ] && grep -qF -- "$ERROR" "$WORK/err" && ! grep -q '"type":"message"' "$WORK/out"; then
            pass "$1"
        else
            fail "$1" "expected exit 1 with the error: $ERROR, and no message line"
        fi
    elif [ "$RC" -eq 0 ] && jq -e --argjson entry "$ENTRY" "$MESSAGE_MATCHES" <<<"$last" >/dev/null; then
        pass "$1"
    else
        fail "$1" "the last line is not the expected message: $last"
    fi
}

check_recorded_stream() {
    local file api framing
    { read -r file && read -r api && read -r ERROR; } < <(jq -r '.file, .api // "openai", .expected.error.message // ""' <<<"$ENTRY")
    WANT=$(jq -cS "$EXPECTED_OUTCOME" <<<"$ENTRY")
    jq -j '.expected.content' <<<"$ENTRY" >"$WORK/expected"
    echo >>"$WORK/expected"
    if ! start_test_server SERVER_PID PORT server --stream "$DATA/streams/$file" --framing path; then
        RC=-
        fail "$file: llm_test_server did not start" "$(cat "$WORK/server.err")"
        e2e_stop SERVER_PID
        return
    fi
    for framing in chunked length close; do
        BASE_PATH=/$framing/v1
        chat "$api" hello
        expect_text "$file ($api, $framing): text"
        chat "$api" --events hello
        expect_events "$file ($api, $framing): --events"
    done
    e2e_stop SERVER_PID
}

while IFS= read -r ENTRY; do
    check_recorded_stream
done < <(jq -c '.[]' "$MANIFEST")

# ---------------------------------------------------------------------------------------------------
# 2. Each API's request on the wire; 3. --stats and --replay
# ---------------------------------------------------------------------------------------------------

REQUESTS=$DATA/requests
printf '\x89PNG\r\n\x1a\n' >"$WORK/pixel.png"  # an image by bytes: iVBORw0KGgo= in base64

# header NAME: the value of request 1's header NAME (case-insensitive), CR removed.
header() {
    tr -d '\r' <"$WORK/requests/request-1.head" | sed -n "s/^$1: *//Ip"
}

# expect_request API TARGET HEADER...: request 1 is POST TARGET with these "Name: value" headers, its
# body is tests/data/requests/API.json as canonical JSON, and the key is in its header and nowhere else.
expect_request() {
    local api=$1 target=$2 name=$3 line got want
    shift 3
    line=$(head -n 1 "$WORK/requests/request-1.head" | tr -d '\r')
    if [ "$line" != "POST $target HTTP/1.1" ]; then
        fail "$name" "request line: $line, expected: POST $target HTTP/1.1"
        return
    fi
    for line in "Content-Type: application/json" "$@"; do
        if [ "$(header "${line%%: *}")" != "${line#*: }" ]; then
            fail "$name" "header ${line%%: *}: $(header "${line%%: *}"), expected: ${line#*: }"
            return
        fi
    done
    if [ "$(grep -c -- "$KEY" "$WORK/requests/request-1.head")" -ne 1 ] || grep -q -- "$KEY" "$WORK/requests/request-1.body"; then
        fail "$name" "the API key is somewhere else than its one header"
        return
    fi
    got=$(jq -cS . "$WORK/requests/request-1.body" 2>&1)
    want=$(jq -cS . "$REQUESTS/$api.json")
    if [ "$got" = "$want" ]; then
        pass "$name"
    else
        fail "$name" "body: $got"
    fi
}

# capture_response PATH: the server's raw response to a POST of PATH (status line, headers, framed
# body, as sent on the wire) into $WORK/captured, read through bash's /dev/tcp.
capture_response() {
    exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
    printf 'POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}' \
        "$1" >&3
    $LIMIT cat <&3 >"$WORK/captured"
    exec 3<&-
}

# check_api API STREAM TOOL_CHOICE TARGET HEADER...: one conversation of every shape sent as API to a
# server answering with the recorded STREAM; then --stats and --replay of that stream.
check_api() {
    local api=$1 stream=$2 tool_choice=$3 target=$4 usage
    shift 4
    ENTRY=$(jq -c --arg file "$stream" '.[] | select(.file == $file)' "$MANIFEST")
    ERROR=
    WANT=$(jq -cS "$EXPECTED_OUTCOME" <<<"$ENTRY")
    jq -j '.expected.content' <<<"$ENTRY" >"$WORK/expected"
    echo >>"$WORK/expected"
    rm -rf "$WORK/requests"
    mkdir "$WORK/requests"
    if ! start_test_server SERVER_PID PORT server --stream "$DATA/streams/$stream" --save-requests "$WORK/requests"; then
        RC=-
        fail "$api: llm_test_server did not start" "$(cat "$WORK/server.err")"
        e2e_stop SERVER_PID
        return
    fi
    BASE_PATH=/gateway/v1
    chat "$api" --messages "$REQUESTS/conversation.json" --tools "$REQUESTS/tools.json" --tool-choice "$tool_choice" \
        --max-tokens 300 --temperature 0.5 --image "$WORK/pixel.png" $'Thanks!\nAnd tomorrow?'
    if saved_request 1; then
        expect_request "$api" "$BASE_PATH$target" "$api: the request on the wire" "$@"
    else
        fail "$api: the request on the wire" "llm_test_server saved no request"
    fi

    chat "$api" --stats hello
    usage=$(jq -r '.expected.usage | "\(.prompt_tokens) prompt + \(.completion_tokens) completion = \(.total_tokens) tokens"' <<<"$ENTRY")
    if cmp -s "$WORK/out" "$WORK/expected" && [ "$RC" -eq 0 ] && grep -q '^First chunk received: ' "$WORK/err" &&
        grep -q '^LLM stream completed: [1-9][0-9]* chunks, [1-9][0-9]* chars, ' "$WORK/err" &&
        grep -qF "finish reason $(jq -r '.expected.finish_reason' <<<"$ENTRY"), usage: $usage" "$WORK/err"; then
        pass "$api: --stats"
    else
        fail "$api: --stats" "expected the content, and the metric lines with usage: $usage"
    fi

    if capture_response "$BASE_PATH$target" && grep -q '^HTTP/1.1 200 ' "$WORK/captured"; then
        run --api "$api" --events --replay "$WORK/captured"
        expect_events "$api: --replay of a captured response"
    else
        RC=-
        fail "$api: --replay of a captured response" "no response captured"
    fi
    e2e_stop SERVER_PID
}

check_api openai deepseek-chat.sse get_weather /chat/completions "Authorization: Bearer $KEY"
check_api responses responses-text-unicode.sse get_weather /responses "Authorization: Bearer $KEY"
check_api anthropic anthropic-text-unicode.sse get_weather /messages "x-api-key: $KEY" "anthropic-version: 2023-06-01"
check_api gemini gemini-text-unicode.sse get_weather "/models/e2e-model:streamGenerateContent?alt=sse" "x-goog-api-key: $KEY"
check_api ollama ollama-text-unicode.ndjson auto /api/chat "Authorization: Bearer $KEY" "Accept: application/x-ndjson"

e2e_summary
