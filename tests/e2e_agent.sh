#!/usr/bin/env bash
# End-to-end checks of examples/agent.cpp: the tool-using loop in stub mode, and over loopback against
# llm_test_server playing a scripted two-turn conversation (a call of the calculator, then text), with
# the second request's body checked for the assistant's tool call and the tool's result.
#
#   tests/e2e_agent.sh path/to/agent [path/to/llm_test_server]
#
# Runs in a fresh temporary directory (no .env) with LLM_BASE_URL / LLM_API_KEY / LLM_MODEL unset and
# LLM_STUB_DELAY_MS=0. Prints "N passed, M failed" and exits nonzero when anything failed.

set -u

# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/support/e2e_common.sh"
e2e_arguments "path/to/agent [path/to/llm_test_server]" "$@"
e2e_start agent-e2e SERVER_PID

# ------------------------------------------------------------------------------------------------
# Stub mode: the stub calls the first tool (the calculator, given the prompt as its expression), then
# answers with text that quotes the result
# ------------------------------------------------------------------------------------------------

run "6*7"
if [ "$RC" -eq 0 ] && grep -qxF '[calculator {"expression":"6*7"} -> 42]' "$WORK/out" &&
    grep -qF 'Stub reply from the tool results: calculator returned “42”.' "$WORK/out" &&
    [ "$(grep -c 'stub mode' "$WORK/err")" -eq 1 ]; then
    pass "stub mode: a call of the calculator, its result 42 sent back and quoted, exit 0"
else
    fail "stub mode: a call of the calculator, its result 42 sent back and quoted, exit 0"
fi

run
if [ "$RC" -eq 0 ] && grep -q '^\[calculator {"expression":".*"} -> 42\]$' "$WORK/out" &&
    grep -q 'Stub reply from the tool results: calculator returned' "$WORK/out"; then
    pass "stub mode without a PROMPT: the default question, answered through the calculator"
else
    fail "stub mode without a PROMPT: the default question, answered through the calculator"
fi

run "What is six times seven?"
if [ "$RC" -eq 0 ] && grep -q '^\[calculator {"expression":"What is six times seven?"} -> error: expected a number' "$WORK/out" &&
    grep -q 'calculator returned “error: expected a number' "$WORK/out"; then
    pass "stub mode: a call the calculator cannot evaluate gets an error result, and the loop ends"
else
    fail "stub mode: a call the calculator cannot evaluate gets an error result, and the loop ends"
fi

LLM_BASE_URL='' run "6*7"
if [ "$RC" -eq 1 ] && [ "$(wc -l <"$WORK/err")" -eq 1 ] && grep -q '^agent: error: LLM_BASE_URL is set but empty' "$WORK/err"; then
    pass "a broken configuration: one 'agent: error:' line, exit 1"
else
    fail "a broken configuration: one 'agent: error:' line, exit 1"
fi

# ------------------------------------------------------------------------------------------------
# Over loopback: a scripted two-turn conversation
# ------------------------------------------------------------------------------------------------

# chunk JSON_DELTA [FINISH]: one SSE event of a chat.completion.chunk.
chunk() {
    printf 'data: {"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":%s,"finish_reason":%s}]}\n\n' \
        "$1" "${2:-null}"
}
{
    chunk '{"role":"assistant","content":null}'
    chunk '{"tool_calls":[{"index":0,"id":"call_e2e_1","type":"function","function":{"name":"calculator","arguments":""}}]}'
    chunk '{"tool_calls":[{"index":0,"function":{"arguments":"{\"expre"}}]}'
    chunk '{"tool_calls":[{"index":0,"function":{"arguments":"ssion\":\"6*7\"}"}}]}'
    chunk '{}' '"tool_calls"'
    printf 'data: [DONE]\n\n'
} >"$WORK/call.sse"
{
    chunk '{"role":"assistant","content":""}'
    chunk '{"content":"6*7 is "}'
    chunk '{"content":"42."}'
    chunk '{}' '"stop"'
    printf 'data: [DONE]\n\n'
} >"$WORK/answer.sse"

# start_server STREAM...: llm_test_server serving the streams in order, saving each request under
# $WORK/requests; sets SERVER_PID and PORT.
start_server() {
    rm -rf "$WORK/requests" && mkdir "$WORK/requests"
    local args=()
    for stream in "$@"; do args+=(--stream "$stream"); done
    start_test_server SERVER_PID PORT server "${args[@]}" --save-requests "$WORK/requests"
}
# shellcheck disable=SC2153  # PORT is set by start_server
if [ -z "$TEST_SERVER_BIN" ]; then
    echo "skip - the loopback checks (no llm_test_server given)"
elif ! start_server "$WORK/call.sse" "$WORK/answer.sse"; then
    RC=none
    fail "llm_test_server starts"
else
    LLM_BASE_URL=http://127.0.0.1:$PORT/v1 LLM_MODEL=m run "What is 6*7?"
    if [ "$RC" -eq 0 ] && grep -qxF '[calculator {"expression":"6*7"} -> 42]' "$WORK/out" &&
        [ "$(tail -n 1 "$WORK/out")" = "6*7 is 42." ] && ! grep -q 'stub mode' "$WORK/err"; then
        pass "loopback: the call run, the server's answer streamed, exit 0"
    else
        fail "loopback: the call run, the server's answer streamed, exit 0"
    fi
    if saved_request 2 && [ ! -f "$WORK/requests/request-3.body" ]; then
        pass "loopback: two requests, one per turn"
    else
        fail "loopback: two requests, one per turn"
    fi
    if [ -n "$PYTHON" ]; then
        if $PYTHON - "$WORK/requests/request-2.body" <<'EOF'; then
import json, sys
body = json.load(open(sys.argv[1], encoding="utf-8"))
assert body["stream"] is True and body["model"] == "m", body
assert [t["function"]["name"] for t in body["tools"]] == ["calculator", "local_time"], body["tools"]
roles = [m["role"] for m in body["messages"]]
assert roles == ["system", "user", "assistant", "tool"], roles
assistant, tool = body["messages"][2], body["messages"][3]
assert assistant["tool_calls"] == [{"id": "call_e2e_1", "type": "function",
                                    "function": {"name": "calculator", "arguments": "{\"expression\":\"6*7\"}"}}], assistant
assert tool == {"role": "tool", "tool_call_id": "call_e2e_1", "content": "42"}, tool
EOF
            pass "loopback: the second request carries the assistant's tool call and the tool message with 42"
        else
            fail "loopback: the second request carries the assistant's tool call and the tool message with 42"
        fi
    elif grep -qF '"tool_call_id":"call_e2e_1"' "$WORK/requests/request-2.body" &&
        grep -qF '"arguments":"{\"expression\":\"6*7\"}"' "$WORK/requests/request-2.body"; then
        pass "loopback: the second request carries the assistant's tool call and the tool's result"
    else
        fail "loopback: the second request carries the assistant's tool call and the tool's result"
    fi
    e2e_stop SERVER_PID

    # A model that never stops calling: the loop gives up after its 8 rounds.
    if start_server "$WORK/call.sse"; then
        LLM_BASE_URL=http://127.0.0.1:$PORT/v1 run "What is 6*7?"
        if [ "$RC" -eq 1 ] && [ "$(cat "$WORK/err")" = "agent: error: no final answer after 8 rounds" ] &&
            saved_request 8 && [ ! -f "$WORK/requests/request-9.body" ]; then
            pass "a model that never stops calling: 8 rounds, then one error line, exit 1"
        else
            fail "a model that never stops calling: 8 rounds, then one error line, exit 1"
        fi
        e2e_stop SERVER_PID
    else
        RC=none
        fail "llm_test_server starts"
    fi
fi

e2e_summary
