#!/usr/bin/env bash
# End-to-end checks of examples/llm-relay (SPEC 6) with `curl -N`: the exact SSE output of a recorded
# stream (upstream: llm_test_server on loopback), the done and error events, HTTP errors before the head,
# the bearer token, 404/405/413/408/503, 100 concurrent clients, a client that leaves midway (its
# upstream connection closes: counted with ss), a graceful stop, and headless Chromium streaming a
# prompt into the page (tests/support/browser_page.py, through the DevTools protocol).
#
#   bash tests/e2e_relay.sh path/to/llm-relay path/to/llm_test_server   (exit 77 without curl, jq or ss)
#
# LLM_RELAY_RUN=/usr/lib/wine/wine64 runs a Windows build (llm-relay.exe) under wine: its lines end in
# CRLF, and the stop is SIGINT, which wine delivers as the console's CTRL_C_EVENT (SIGTERM ends a wine
# process outright, as TerminateProcess would).
#
# Every process is started in the background with its PID kept, and stopped by it; every wait is bounded.

source "$(dirname "${BASH_SOURCE[0]}")/support/e2e_common.sh"
e2e_arguments "path/to/llm-relay path/to/llm_test_server" "$@"
[ -n "$TEST_SERVER_BIN" ] || { echo "usage: $0 path/to/llm-relay path/to/llm_test_server" >&2; exit 2; }
for tool in curl jq ss; do
    command -v "$tool" >/dev/null || { echo "skipped: $tool is not installed"; exit 77; }
done
TESTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MANIFEST=$TESTS/data/streams/manifest.json
RELAY_RUN=${LLM_RELAY_RUN:-}
STOP_SIGNAL=TERM
[ -z "$RELAY_RUN" ] || STOP_SIGNAL=INT
e2e_start llm-relay-e2e RELAY_PID UPSTREAM_PID CLIENT_PID

# start_relay ARGS...: llm-relay on a free loopback port with ARGS (environment as the caller set it);
# sets RELAY_PID and URL, or fails when it does not say where it listens within 10 s.
start_relay() {
    rm -f "$WORK/relay.out"
    $RELAY_RUN "$BIN" --host 127.0.0.1 --port 0 "$@" >"$WORK/relay.out" 2>"$WORK/relay.err" &
    RELAY_PID=$!
    URL=
    for _ in $(seq 100); do
        URL=$(tr -d '\r' 2>/dev/null <"$WORK/relay.out" | sed -n 's|^listening on \(http://127\.0\.0\.1:[0-9][0-9]*\)$|\1|p')
        [ -n "$URL" ] && return 0
        kill -0 "$RELAY_PID" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}

# upstream ARGS...: llm_test_server with ARGS; exports LLM_BASE_URL to it.
upstream() {
    start_test_server UPSTREAM_PID UPSTREAM_PORT upstream "$@" || return 1
    export LLM_BASE_URL="http://127.0.0.1:$UPSTREAM_PORT/v1"
}

stop_all() {
    e2e_stop RELAY_PID UPSTREAM_PID CLIENT_PID
    unset LLM_BASE_URL LLM_API
}

# post [CURL ARGS...] QUERY: POST /ai/stream?QUERY; RC, $WORK/out (body) and $WORK/err (head) as run's.
post() {
    local query=${*: -1}
    $LIMIT curl -sS -N --max-time 25 -D "$WORK/err" -o "$WORK/out" -X POST "${@:1:$#-1}" "$URL/ai/stream?$query"
    RC=$?
}

status_is() { head -n 1 "$WORK/err" | grep -q "^HTTP/1.1 $1 "; }
header_is() { grep -qi "^$1: $2"$'\r'"\$" "$WORK/err"; }

# The text the data-only events of an SSE body carry, data lines joined by LF within an event (as a
# browser's EventSource and the page do), events concatenated; to stdout without a final newline.
sse_text() {
    awk 'BEGIN { RS = "\n\n"; ORS = "" }
         $0 !~ /^event:/ { n = split($0, lines, "\n"); first = 1
                           for (i = 1; i <= n; i++) if (sub(/^data: /, "", lines[i])) { if (!first) print "\n"; print lines[i]; first = 0 } }' "$1"
}

# The data of the named event ("done", "error") in $WORK/out.
event_data() { awk -v name="event: $1" 'found { sub(/^data: /, ""); print; exit } $0 == name { found = 1 }' "$WORK/out"; }

# expected_content FILE: the manifest's content for that recorded stream, without a final newline.
expected_content() { jq -j --arg f "$1" '.[] | select(.file == $f) | .expected.content' "$MANIFEST"; }

# ---- a recorded stream, exactly ----
upstream --stream "$TESTS/data/streams/deepseek-chat.sse" && start_relay
post 'prompt=hi'
printf 'data: Hello\n\ndata: !\n\ndata:  How\n\ndata:  can\n\ndata:  I\n\ndata:  assist\n\ndata:  you\n\ndata:  today\n\ndata: ?\n\ndata:  😊\n\nevent: done\n' >"$WORK/expected"
head -c "$(stat -c %s "$WORK/expected")" "$WORK/out" >"$WORK/start"
if [ "$RC" -eq 0 ] && status_is 200 && header_is Content-Type 'text/event-stream; charset=utf-8' &&
    header_is Cache-Control no-cache && cmp -s "$WORK/start" "$WORK/expected"; then
    pass "a recorded stream (deepseek-chat.sse): 200 text/event-stream, no-cache, one data: event per chunk, exactly"
else
    fail "a recorded stream (deepseek-chat.sse): 200 text/event-stream, no-cache, one data: event per chunk, exactly"
fi
done_line=$(event_data "done")
if echo "$done_line" | jq -e '.chunks == 10 and .chars == 36 and .attempts == 1 and .finish_reason == "stop" and
        .usage == {"prompt_tokens":12,"completion_tokens":11,"total_tokens":23} and .total_ms >= 0 and
        .first_byte_ms >= 0 and .first_chunk_ms >= .first_byte_ms' >/dev/null &&
    [ "$(tail -c 2 "$WORK/out" | od -An -c | tr -d ' ')" = '\n\n' ]; then
    pass "event: done carries the stats as JSON and ends the body"
else
    fail "event: done carries the stats as JSON and ends the body" "done: $done_line"
fi
stop_all

# ---- recorded streams whose text has line breaks, in other APIs: text reassembled from data: lines ----
for case in "openai deepseek-r1-reasoning.sse" "gemini gemini-max-tokens.sse" "ollama ollama-text-unicode.ndjson"; do
    read -r api file <<<"$case"
    upstream --stream "$TESTS/data/streams/$file" && LLM_API=$api start_relay
    post 'prompt=hi'
    if [ "$RC" -eq 0 ] && status_is 200 && [ "$(sse_text "$WORK/out" | od -An -tx1)" = "$(expected_content "$file" | od -An -tx1)" ] &&
        event_data "done" | jq -e . >/dev/null; then
        pass "$file ($api): the text from the data: lines is the manifest's content, then done"
    else
        fail "$file ($api): the text from the data: lines is the manifest's content, then done" "text: $(sse_text "$WORK/out")"
    fi
    stop_all
done

# ---- an upstream failure after the head: event: error ----
upstream --stream "$TESTS/data/streams/anthropic-overloaded-error.sse" && LLM_API=anthropic start_relay
post 'prompt=hi'
error_line=$(event_data "error")
if [ "$RC" -eq 0 ] && status_is 200 && [ "$(sse_text "$WORK/out")" = "$(expected_content anthropic-overloaded-error.sse)" ] &&
    echo "$error_line" | jq -e '.code == "server_error" and (.message | contains("Overloaded"))' >/dev/null &&
    ! grep -q '^event: done' "$WORK/out"; then
    pass "a mid-stream upstream error: the text so far, then event: error with the message (no done)"
else
    fail "a mid-stream upstream error: the text so far, then event: error with the message (no done)" "error: $error_line"
fi
stop_all

# ---- an upstream failure before the head: an HTTP error with a JSON body ----
upstream --status 401 --body '{"error":{"message":"Incorrect API key provided"}}' && start_relay
post 'prompt=hi'
if status_is 502 && header_is Content-Type application/json &&
    jq -e '.error.code == "http_status" and (.error.message | contains("Incorrect API key provided"))' "$WORK/out" >/dev/null; then
    pass "an upstream failure before any text: 502 with the upstream's message as JSON"
else
    fail "an upstream failure before any text: 502 with the upstream's message as JSON"
fi
stop_all

# ---- stub mode: the request's forms, the token, the errors ----
start_relay --token 's3cret token'
post 'prompt=%E4%BD%A0%E5%A5%BD+relay'
status_is 401 && header_is WWW-Authenticate Bearer && pass "--token: no Authorization is 401" || fail "--token: no Authorization is 401"
post -H 'Authorization: Bearer wrong' 'prompt=x'
status_is 401 && pass "--token: a wrong token is 401" || fail "--token: a wrong token is 401"
post -H 'Authorization: Bearer s3cret token' 'prompt=%E4%BD%A0%E5%A5%BD+relay'
if status_is 200 && sse_text "$WORK/out" | grep -q '“你好 relay”' &&
    [ "$(grep -c '^data: ' "$WORK/out")" -eq "$(($(event_data "done" | jq .chunks) + 1))" ]; then
    pass "--token: the right token streams; the URL-decoded prompt reaches the stub; one event per chunk"
else
    fail "--token: the right token streams; the URL-decoded prompt reaches the stub; one event per chunk"
fi
post -H 'Authorization: Bearer s3cret token' -H 'Content-Type: application/json' \
    --data '{"prompt":"from the body","system":"Be brief."}' ''
status_is 200 && sse_text "$WORK/out" | grep -q '“from the body”' && pass "a JSON body's prompt" || fail "a JSON body's prompt"
post -H 'Authorization: Bearer s3cret token' --data '{"prompt":' ''
status_is 400 && jq -e '.error.message | contains("the request body is not valid JSON")' "$WORK/out" >/dev/null &&
    pass "a body that is not JSON: 400 saying so" || fail "a body that is not JSON: 400 saying so"
post -H 'Authorization: Bearer s3cret token' ''
status_is 400 && jq -e '.error.message | contains("missing prompt")' "$WORK/out" >/dev/null &&
    pass "no prompt: 400 saying so" || fail "no prompt: 400 saying so"
head -c 70000 /dev/zero | tr '\0' a >"$WORK/big"
post -H 'Authorization: Bearer s3cret token' --data-binary @"$WORK/big" ''
status_is 413 && pass "a body over 64 KiB: 413" || fail "a body over 64 KiB: 413"
$LIMIT curl -sS -D "$WORK/err" -o "$WORK/out" "$URL/no/such/page"
status_is 404 && pass "another path: 404" || fail "another path: 404"
$LIMIT curl -sS -D "$WORK/err" -o "$WORK/out" "$URL/ai/stream"
status_is 405 && header_is Allow POST && pass "GET /ai/stream: 405, Allow: POST" || fail "GET /ai/stream: 405, Allow: POST"
$LIMIT curl -sS -D "$WORK/err" -o "$WORK/out" -X DELETE "$URL/"
status_is 405 && pass "DELETE /: 405" || fail "DELETE /: 405"
$LIMIT curl -sS -D "$WORK/err" -o "$WORK/out" "$URL/"
if status_is 200 && grep -q 'getReader()' "$WORK/out" && ! grep -qE '(src|href)="?(https?:)?//' "$WORK/out"; then
    pass "GET /: the page, self-contained (no external resource)"
else
    fail "GET /: the page, self-contained (no external resource)"
fi
stop_all

# ---- a slow client: 408, and it does not keep its slot; beyond --max-clients: 503 ----
start_relay --max-clients 1 --request-timeout 1
exec 3<>"/dev/tcp/127.0.0.1/${URL##*:}"
printf 'POST /ai/stream?prompt=slow HTTP/1.1\r\nHost: x\r\n' >&3  # and never the rest
post 'prompt=second'
status_is 503 && header_is Retry-After 1 && pass "--max-clients 1: a second client gets 503" ||
    fail "--max-clients 1: a second client gets 503"
slow_answer=$($LIMIT cat <&3 | head -n 1)
exec 3<&-
[[ "$slow_answer" == "HTTP/1.1 408 "* ]] && pass "a request that does not arrive within --request-timeout: 408" ||
    fail "a request that does not arrive within --request-timeout: 408" "answer: $slow_answer"
post 'prompt=third'
status_is 200 && pass "after the 408 the slot is free again" || fail "after the 408 the slot is free again"
stop_all

# ---- 100 concurrent clients, each its own complete stream ----
LLM_STUB_DELAY_MS=5 start_relay --max-clients 200
pids=()
for i in $(seq 100); do
    curl -sS -N --max-time 60 -o "$WORK/client.$i" -X POST "$URL/ai/stream?prompt=client+$i" 2>/dev/null &
    pids+=($!)
done
complete=0
# shellcheck disable=SC1111  # the stub quotes the prompt in typographic quotes
for i in $(seq 100); do
    wait "${pids[$((i - 1))]}" && grep -q '^event: done$' "$WORK/client.$i" &&
        sse_text "$WORK/client.$i" | grep -q "“client $i”" && complete=$((complete + 1))
done
[ "$complete" -eq 100 ] && pass "100 concurrent clients: each got its own complete stream and done" ||
    fail "100 concurrent clients: each got its own complete stream and done" "$complete complete"
stop_all

# ---- a client that leaves midway: its upstream connection is closed ----
upstream_connections() { ss -Htn state established "( dport = :$UPSTREAM_PORT )" | grep -c .; }
upstream --generate-events 3000 --delay-ms 10 && start_relay
curl -sS -N --max-time 60 -o "$WORK/partial" -X POST "$URL/ai/stream?prompt=leave" 2>/dev/null &
CLIENT_PID=$!
for _ in $(seq 100); do grep -q '^data: ' "$WORK/partial" 2>/dev/null && break; sleep 0.1; done
before=$(upstream_connections)
e2e_stop CLIENT_PID
after=1
for _ in $(seq 100); do after=$(upstream_connections); [ "$after" -eq 0 ] && break; sleep 0.1; done
if grep -q '^data: ' "$WORK/partial" && [ "$before" -eq 1 ] && [ "$after" -eq 0 ] &&
    grep -q 'the client went away: upstream stream cancelled' "$WORK/relay.err"; then
    pass "a client that leaves midway: the relay closes its upstream connection (1 before, 0 after)"
else
    fail "a client that leaves midway: the relay closes its upstream connection" "before $before, after $after"
fi

# ---- SIGTERM (SIGINT under wine): the open stream ends with event: error, the relay exits 0 ----
curl -sS -N --max-time 60 -o "$WORK/out" -X POST "$URL/ai/stream?prompt=stop" 2>/dev/null &
CLIENT_PID=$!
for _ in $(seq 100); do grep -q '^data: ' "$WORK/out" 2>/dev/null && break; sleep 0.1; done
kill -"$STOP_SIGNAL" "$RELAY_PID"
wait "$RELAY_PID"
RC=$?
RELAY_PID=
wait "$CLIENT_PID"
CLIENT_PID=
event_data "error" | jq -e '.message | contains("shutting down")' >/dev/null && [ "$RC" -eq 0 ] &&
    pass "SIG$STOP_SIGNAL: the open stream ends with event: error, exit 0" || fail "SIG$STOP_SIGNAL: the open stream ends with event: error, exit 0"
stop_all

# ---- a real browser: headless Chromium streams a prompt into the page ----
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ] || [ -z "$PYTHON" ]; then
    echo "skipped: the browser check needs chromium and python3"
else
    LLM_STUB_DELAY_MS=20 start_relay
    $PYTHON "$TESTS/support/browser_page.py" "$CHROMIUM" "$URL/?prompt=%E8%BF%90%E5%8A%A8%E9%9E%8B" "$WORK/chromium" 60 \
        >"$WORK/page.json" &
    CLIENT_PID=$!
    wait "$CLIENT_PID"
    RC=$?
    CLIENT_PID=
    post 'prompt=%E8%BF%90%E5%8A%A8%E9%9E%8B'
    if [ "$RC" -eq 0 ] && jq -e --arg text "$(sse_text "$WORK/out")" '.state == "done" and .output == $text' \
        "$WORK/page.json" >/dev/null; then
        pass "headless Chromium: /?prompt=运动鞋 streams the reply into the page ($(jq -c .seen "$WORK/page.json") characters seen)"
    else
        fail "headless Chromium: /?prompt=运动鞋 streams the reply into the page" "page: $(head -c 400 "$WORK/page.json")"
    fi
    stop_all
fi

e2e_summary
