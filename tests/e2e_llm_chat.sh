#!/usr/bin/env bash
# End-to-end checks of the llm-chat command (SPEC section 3), mostly in stub mode.
#
#   tests/e2e_llm_chat.sh path/to/llm-chat [path/to/llm_test_server]
#
# Runs in a fresh temporary directory (no .env) with LLM_BASE_URL / LLM_API_KEY / LLM_MODEL unset and
# LLM_STUB_DELAY_MS=0. When python3 is available, each --events line is parsed as JSON and a small local
# HTTP server covers the network path (a real SSE stream and an HTTP error). With llm_test_server, a
# flooding server checks that --deadline and Ctrl-C hold while bytes keep coming. Prints "N passed,
# M failed" and exits nonzero when anything failed.

set -u

# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/support/e2e_common.sh"
e2e_arguments "path/to/llm-chat [path/to/llm_test_server]" "$@"
STREAMS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/data/streams
# SERVER_PID is the python3 server's.
e2e_start llm-chat-e2e CHAT_PID FLOOD_PID SERVER_PID RECORDER_PID

# run_stdin TEXT ARGS... : the same with TEXT on stdin.
run_stdin() {
    local input=$1
    shift
    printf '%s' "$input" | $LIMIT "$BIN" "$@" >"$WORK/out" 2>"$WORK/err"
    RC=$?
}

out_has() { grep -q -- "$1" "$WORK/out"; }
err_has() { grep -q -- "$1" "$WORK/err"; }
err_count() { grep -c -- "$1" "$WORK/err"; }

# expect_usage_error NAME ARGS... : exit 2, "llm-chat: ..." and the usage text on stderr, nothing on stdout.
expect_usage_error() {
    local name=$1
    shift
    run "$@"
    if [ "$RC" -eq 2 ] && err_has '^llm-chat: ' && grep -qi 'usage' "$WORK/err" && [ ! -s "$WORK/out" ]; then
        pass "$name"
    else
        fail "$name" "expected exit 2, 'llm-chat: ...' and usage on stderr, empty stdout"
    fi
}

hex_of() { od -An -tx1 | tr -d ' \n'; }

# ------------------------------------------------------------------------------------------------
# Information and usage
# ------------------------------------------------------------------------------------------------
# --replay: a captured raw HTTP response decoded offline by the same code as a live stream
# ------------------------------------------------------------------------------------------------

# capture FILE FRAMING: a raw response around a recorded SSE body, as a server would have sent it.
capture() {
    local body="$STREAMS/$1" size
    size=$(wc -c <"$body")
    if [ "$2" = length ]; then
        printf 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n' "$size"
        cat "$body"
    else
        printf 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n' "$size"
        cat "$body"
        printf '\r\n0\r\n\r\n'
    fi
}

capture deepseek-chat.sse chunked >"$WORK/captured.http"
run --replay "$WORK/captured.http"
if [ "$RC" -eq 0 ] && [ "$(cat "$WORK/out")" = "Hello! How can I assist you today? 😊" ] && [ ! -s "$WORK/err" ]; then
    pass "--replay FILE prints the recorded reply, no network, no stub notice"
else
    fail "--replay FILE prints the recorded reply, no network, no stub notice"
fi

capture deepseek-r1-reasoning.sse length >"$WORK/reasoning.http"
$LIMIT "$BIN" --replay - --events <"$WORK/reasoning.http" >"$WORK/out" 2>"$WORK/err"
RC=$?
if [ "$RC" -eq 0 ] && grep -q '^{"type":"reasoning","text":' "$WORK/out" && grep -q '^{"type":"finish","reason":"stop"}$' "$WORK/out" &&
    grep -q '^{"type":"usage","prompt_tokens":' "$WORK/out"; then
    pass "--replay - --events: reasoning, finish and usage events from standard input"
else
    fail "--replay - --events: reasoning, finish and usage events from standard input"
fi

run --replay "$WORK/captured.http" --stats
if [ "$RC" -eq 0 ] && err_has '^LLM stream completed: ' && err_has '^Stream details: 1 attempt'; then
    pass "--replay --stats: the metric lines of a live stream"
else
    fail "--replay --stats: the metric lines of a live stream"
fi

printf 'HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: 61\r\n\r\n{"error":{"message":"Rate limit reached","type":"requests"}}  ' >"$WORK/limited.http"
run --replay "$WORK/limited.http"
if [ "$RC" -eq 1 ] && [ "$(cat "$WORK/err")" = "llm-chat: error: HTTP 429: Rate limit reached (type: requests)" ] &&
    [ ! -s "$WORK/out" ]; then
    pass "--replay of an HTTP error: exit 1 with the server's message, no retry"
else
    fail "--replay of an HTTP error: exit 1 with the server's message, no retry"
fi

run --replay "$WORK/no-such-file.http"
if [ "$RC" -eq 2 ] && err_has '^llm-chat: --replay: cannot open' && [ ! -s "$WORK/out" ]; then
    pass "--replay of a missing file is bad usage"
else
    fail "--replay of a missing file is bad usage"
fi

# ------------------------------------------------------------------------------------------------

check_version

run --help
HELP_LISTS_ALL=yes
for flag in --temperature --header --messages --tools --tool-choice --image --json --schema --events; do
    out_has "^  $flag " || HELP_LISTS_ALL=no
done
if [ "$RC" -eq 0 ] && grep -qi 'usage' "$WORK/out" && [ "$HELP_LISTS_ALL" = yes ] && [ ! -s "$WORK/err" ]; then
    pass "--help prints the usage to stdout and exits 0"
else
    fail "--help prints the usage to stdout and exits 0"
fi

expect_usage_error "unknown option" --bogus hello
expect_usage_error "unknown short option" -x hello
expect_usage_error "missing PROMPT" --stats
expect_usage_error "no arguments at all"
expect_usage_error "two PROMPTs" hello world
expect_usage_error "missing value at the end" hello --model
expect_usage_error "boolean option given a value" --stats=yes hello
expect_usage_error "non-numeric temperature" --temperature warm hello
expect_usage_error "temperature with trailing junk" --temperature 0.7x hello
expect_usage_error "temperature above 2" --temperature 2.5 hello
expect_usage_error "negative temperature" --temperature=-0.1 hello
expect_usage_error "temperature nan" --temperature nan hello
expect_usage_error "max-tokens 0" --max-tokens 0 hello
expect_usage_error "negative max-tokens" --max-tokens -5 hello
expect_usage_error "fractional max-tokens" --max-tokens 1.5 hello
expect_usage_error "empty max-tokens" --max-tokens= hello
expect_usage_error "negative timeout" --timeout -1 hello
expect_usage_error "non-numeric timeout" --timeout soon hello
expect_usage_error "zero timeout" --timeout 0 hello
expect_usage_error "negative deadline" --deadline=-3 hello
expect_usage_error "negative retries" --retries -1 hello
expect_usage_error "non-numeric retries" --retries many hello

run --stats=yes hello
if [ "$RC" -eq 2 ] && err_has 'llm-chat: --stats does not take a value'; then
    pass "the message names the offending option"
else
    fail "the message names the offending option"
fi

# ------------------------------------------------------------------------------------------------
# Stub mode, plain text
# ------------------------------------------------------------------------------------------------

run "请介绍运动鞋的特点"
if [ "$RC" -eq 0 ] && [ -s "$WORK/out" ] && [ "$(tail -c 1 "$WORK/out" | od -An -c | tr -d ' ')" = '\n' ]; then
    pass "stub reply printed, ending with a newline"
else
    fail "stub reply printed, ending with a newline"
fi
PLAIN_REPLY=$(hex_of <"$WORK/out")
if [ "$(err_count 'stub mode')" -eq 1 ] && ! err_has 'error'; then
    pass "stub mode announced once on stderr"
else
    fail "stub mode announced once on stderr"
fi
if [ -n "$PYTHON" ]; then
    if $PYTHON -c 'import sys; sys.stdin.buffer.read().decode("utf-8", "strict")' <"$WORK/out"; then
        pass "the reply is valid UTF-8"
    else
        fail "the reply is valid UTF-8"
    fi
fi

run --system "你是一个专业的鞋类销售顾问。" --model=my-model --temperature 0.7 --max-tokens=200 \
    --timeout 0.5 --deadline=10 --retries 0 --extra '{"top_p":0.9}' --verbose "请介绍运动鞋的特点"
if [ "$RC" -eq 0 ] && [ -s "$WORK/out" ]; then
    pass "every option accepted in both forms"
else
    fail "every option accepted in both forms"
fi

run hello --stats --temperature 1
if [ "$RC" -eq 0 ] && err_has '^LLM stream completed: '; then
    pass "options after PROMPT"
else
    fail "options after PROMPT"
fi

run -- --not-an-option
if [ "$RC" -eq 0 ] && [ -s "$WORK/out" ]; then
    pass "'--' ends the options"
else
    fail "'--' ends the options"
fi

run_stdin $'hi\n' -
if [ "$RC" -eq 0 ] && [ -s "$WORK/out" ]; then
    pass "PROMPT '-' reads standard input"
else
    fail "PROMPT '-' reads standard input"
fi

run --insecure hello
if [ "$RC" -eq 0 ] && err_has '^llm-chat: warning: TLS certificate verification is OFF'; then
    pass "--insecure warns loudly"
else
    fail "--insecure warns loudly"
fi

# expect_extra_refused JSON WORDS: bad usage whose first stderr line says what is wrong with --extra
# (matching WORDS), followed by the usage and nothing else (no stub-mode note: nothing was started).
expect_extra_refused() {
    run --extra "$1" hello
    if [ "$RC" -eq 2 ] && [ ! -s "$WORK/out" ] && head -n 1 "$WORK/err" | grep -q -- "^llm-chat: --extra $2" &&
        sed -n 2p "$WORK/err" | grep -q '^usage: llm-chat' && [ "$(grep -c '^llm-chat: ' "$WORK/err")" -eq 1 ]; then
        pass "--extra '$1' is bad usage: $(head -n 1 "$WORK/err")"
    else
        fail "--extra '$1' is bad usage" "expected exit 2, 'llm-chat: --extra $2' then the usage"
    fi
}
expect_extra_refused '[1, 2' 'is not valid JSON'
expect_extra_refused 'nope' 'is not valid JSON'
expect_extra_refused '{"a":1} x' 'is not valid JSON'
expect_extra_refused '[1]' 'must be an object'
expect_extra_refused '"text"' 'must be an object'
expect_extra_refused '{"stream":false}' 'may not set "stream"'
expect_extra_refused '' 'needs a JSON object'
expect_extra_refused '  ' 'needs a JSON object'
LLM_BASE_URL=http://127.0.0.1:9/v1 run --extra '[1]' hello
if [ "$RC" -eq 2 ] && head -n 1 "$WORK/err" | grep -q -- '^llm-chat: --extra must be an object' && ! err_has 'connect'; then
    pass "--extra is checked before any connection is tried"
else
    fail "--extra is checked before any connection is tried"
fi

# ------------------------------------------------------------------------------------------------
# .env and LLM_BASE_URL mistakes: one error line naming the file and line, exit 1, never stub mode
# ------------------------------------------------------------------------------------------------

# expect_config_error NAME EXPECTED_LINE: exit 1, nothing on stdout, stderr exactly that one line.
expect_config_error() {
    if [ "$RC" -eq 1 ] && [ ! -s "$WORK/out" ] && [ "$(cat "$WORK/err")" = "$2" ]; then
        pass "$1"
    else
        fail "$1" "expected exit 1 and only: $2"
    fi
}
printf 'LLM_API_KEY=sk-e2e\nLLM_MODEL=m\nLLM_BASE_URL="http://127.0.0.1:9/v1\n' >.env
run hello
expect_config_error ".env with an unterminated quote" "llm-chat: error: .env line 3: unterminated double quote"
printf '# settings\nLLM_BASE_URL='"'"'http://127.0.0.1:9/v1'"'"'/x\n' >.env
run hello
expect_config_error ".env with characters after a closing quote" \
    "llm-chat: error: .env line 2: unexpected characters after the closing single quote"
printf 'LLM_BASE_URL="http://127.0.0.1:9/v1"  # a comment\n' >.env
LLM_BASE_URL=http://127.0.0.1:9/v1 run --retries 0 --timeout 2 hello
if [ "$RC" -eq 1 ] && err_has '^llm-chat: error: cannot connect' && ! err_has 'stub mode'; then
    pass ".env with a comment after the closing quote is fine"
else
    fail ".env with a comment after the closing quote is fine"
fi
printf 'LLM_API_KEY=sk-e2e\nLLM_BASE_URL=\n' >.env
run hello
expect_config_error "LLM_BASE_URL= in .env" "llm-chat: error: LLM_BASE_URL is set but empty in .env (leave it out for stub mode)"
rm -f .env
LLM_BASE_URL='' run hello
expect_config_error "LLM_BASE_URL set but empty in the environment" \
    "llm-chat: error: LLM_BASE_URL is set but empty in the environment (unset it for stub mode)"

# ------------------------------------------------------------------------------------------------
# --verbose: each log line on a line of its own, even when stdout and stderr are one file
# ------------------------------------------------------------------------------------------------

# Paced, so that the reply reaches the file chunk by chunk and the final log line comes after it.
LLM_STUB_DELAY_MS=2 $LIMIT "$BIN" --verbose hello </dev/null >"$WORK/out" 2>&1
RC=$?
if [ "$RC" -eq 0 ] && [ "$(grep -c 'llm_stream: ' "$WORK/out")" -ge 2 ] &&
    [ "$(grep -c 'llm_stream: ' "$WORK/out")" -eq "$(grep -c '^llm_stream: ' "$WORK/out")" ] &&
    ! grep -q '^$' "$WORK/out" && tail -n 2 "$WORK/out" | head -n 1 | grep -q 'from a real server\.$' &&
    tail -n 1 "$WORK/out" | grep -q '^llm_stream: info: LLM stream completed'; then
    pass "--verbose 2>&1: every log line starts a line, the reply keeps its own line, no blank line"
else
    fail "--verbose 2>&1: every log line starts a line, the reply keeps its own line, no blank line"
fi
run --verbose hello
VERBOSE_REPLY=$(hex_of <"$WORK/out")
VERBOSE_LOGS=$(grep -c '^llm_stream: info: ' "$WORK/err")
VERBOSE_BLANKS=$(grep -c '^$' "$WORK/err")
run hello
if [ "$VERBOSE_REPLY" = "$(hex_of <"$WORK/out")" ] && [ "$VERBOSE_LOGS" -ge 2 ] && [ "$VERBOSE_BLANKS" -eq 0 ]; then
    pass "--verbose with stdout and stderr apart: the reply is byte for byte the same, the log lines whole"
else
    fail "--verbose with stdout and stderr apart: the reply is byte for byte the same, the log lines whole"
fi

# ------------------------------------------------------------------------------------------------
# --stats
# ------------------------------------------------------------------------------------------------

run --stats "请介绍运动鞋的特点"
FIRST=$(grep '^First chunk received: ' "$WORK/err")
DONE=$(grep '^LLM stream completed: ' "$WORK/err")
if [ "$RC" -eq 0 ] && printf '%s\n' "$FIRST" | grep -Eq '^First chunk received: .+\.\.\. \([0-9]+\.[0-9]{2}ms\)$' &&
    printf '%s\n' "$DONE" | grep -Eq '^LLM stream completed: [0-9]+ chunks, [0-9]+ chars, [0-9]+\.[0-9]{2} ms$'; then
    pass "--stats prints the seed's two metric lines"
else
    fail "--stats prints the seed's two metric lines"
fi
if [ -n "$PYTHON" ]; then
    if $PYTHON - "$WORK/out" "$WORK/err" <<'EOF'; then
import re, sys
reply = open(sys.argv[1], "rb").read().decode("utf-8")[:-1]
err = open(sys.argv[2], "rb").read().decode("utf-8")
first = re.search(r"^First chunk received: (.*)\.\.\. \(", err, re.M).group(1)
chars = int(re.search(r"^LLM stream completed: (\d+) chunks, (\d+) chars", err, re.M).group(2))
assert 0 < len(first) <= 20, first
assert reply.replace("\n", " ").replace("\r", " ").replace("\t", " ").startswith(first), (first, reply)
assert chars == len(reply), (chars, len(reply))
EOF
        pass "--stats preview is the reply's start and chars counts its characters"
    else
        fail "--stats preview is the reply's start and chars counts its characters"
    fi
fi

# ------------------------------------------------------------------------------------------------
# --events
# ------------------------------------------------------------------------------------------------

# check_events : every stdout line is one JSON object of a known shape; prints the content joined.
check_events() {
    if [ -n "$PYTHON" ]; then
        $PYTHON - "$WORK/out" <<'EOF'
import json, sys
shapes = {
    "content": {"type", "text"}, "reasoning": {"type", "text"}, "finish": {"type", "reason"},
    "usage": {"type", "prompt_tokens", "completion_tokens", "total_tokens"},
    "message": {"type", "message", "finish_reason", "usage"},
}
content = []
data = open(sys.argv[1], "rb").read().decode("utf-8")
assert data.endswith("\n"), "the last line has no newline"
lines = data[:-1].split("\n")
for number, line in enumerate(lines):
    event = json.loads(line)
    kind = event["type"]
    # The assembled message comes once, last, and its content is the content events joined.
    assert (kind == "message") == (number == len(lines) - 1), line
    if kind == "message":
        assert event["message"]["role"] == "assistant" and (event["message"].get("content") or "") == "".join(content), line
    if kind == "tool_call":
        assert isinstance(event["index"], int)
        assert set(event) <= {"type", "index", "id", "name", "arguments"}, line
    else:
        assert set(event) == shapes[kind], line
    if kind == "content":
        content.append(event["text"])
sys.stdout.buffer.write("".join(content).encode("utf-8"))
EOF
    else
        ! grep -Ev '^\{"type":"(content|reasoning|tool_call|finish|usage|message)".*\}$' "$WORK/out" >/dev/null &&
            sed -n 's/^{"type":"content","text":"\(.*\)"}$/\1/p' "$WORK/out" | tr -d '\n'
    fi
}

run --events "请介绍运动鞋的特点"
EVENT_CONTENT=
if [ "$RC" -eq 0 ] && check_events >"$WORK/content" && out_has '"type":"content"' &&
    out_has '^{"type":"finish","reason":"'; then
    pass "--events prints one JSON object per line, content and finish included"
    EVENT_CONTENT=$({ cat "$WORK/content"; printf '\n'; } | hex_of)
else
    fail "--events prints one JSON object per line, content and finish included"
fi
if [ -n "$PYTHON" ]; then
    if [ -n "$EVENT_CONTENT" ] && [ "$EVENT_CONTENT" = "$PLAIN_REPLY" ]; then
        pass "--events content joins to the plain-text reply"
    else
        fail "--events content joins to the plain-text reply"
    fi
fi

# ------------------------------------------------------------------------------------------------
# Conversations, tools, images, structured output and headers: bad files and flags (stub mode)
# ------------------------------------------------------------------------------------------------

printf '[{"role":"system","content":"Be brief."},{"role":"user","content":"Tell me about running shoes"}]' >conversation.json
printf '[{"role":"user","content":"hi"},{"role":"wizard","content":"x"}]' >bad-role.json
printf '[{"role":"user","content":"hi"' >truncated.json
printf '[]' >empty.json
printf '[{"type":"function","function":{"name":"calculator","description":"Evaluates arithmetic",
  "parameters":{"type":"object","properties":{"expression":{"type":"string"}},"required":["expression"]}}},
 {"type":"function","function":{"name":"local_time","parameters":{"type":"object","properties":{}}}}]' >tools.json
printf '[{"type":"function","function":{"description":"no name"}}]' >nameless-tools.json
printf '{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"],"additionalProperties":false}' >reply.schema.json
printf '{"type":' >broken-schema.json
printf '\x89PNG\r\n\x1a\n' >pixel.png
printf 'BM' >picture.bmp

# expect_named_usage_error NAME WORDS ARGS...: exit 2, a first stderr line 'llm-chat: ' containing WORDS,
# then the usage; nothing on stdout and no stub-mode note (nothing was started).
expect_named_usage_error() {
    local name=$1 words=$2
    shift 2
    run "$@"
    if [ "$RC" -eq 2 ] && [ ! -s "$WORK/out" ] && head -n 1 "$WORK/err" | grep -q '^llm-chat: ' &&
        head -n 1 "$WORK/err" | grep -qF -- "$words" && sed -n 2p "$WORK/err" | grep -q '^usage: llm-chat' &&
        ! err_has 'stub mode'; then
        pass "$name: $(head -n 1 "$WORK/err")"
    else
        fail "$name" "expected exit 2, a first line naming '$words', then the usage"
    fi
}
expect_named_usage_error "--messages of a missing file" "--messages: cannot open no-such.json" --messages no-such.json
expect_named_usage_error "--messages with an unknown role" "--messages bad-role.json: " --messages bad-role.json
expect_named_usage_error "--messages that is not JSON" "--messages truncated.json: " --messages truncated.json
expect_named_usage_error "--messages of an empty conversation and no PROMPT" "--messages empty.json: " --messages empty.json
expect_named_usage_error "--messages - with PROMPT -" "--messages - and PROMPT - cannot both read standard input" --messages - -
expect_named_usage_error "--messages with an empty FILE" "--messages needs a FILE" --messages= hello
expect_named_usage_error "--tools of a missing file" "--tools: cannot open no-such.json" --tools no-such.json hello
expect_named_usage_error "--tools with a nameless tool" "--tools nameless-tools.json: " --tools nameless-tools.json hello
expect_named_usage_error "--tools that is not JSON" "--tools truncated.json: " --tools truncated.json hello
expect_named_usage_error "--tool-choice without --tools" "--tool-choice needs --tools" --tool-choice auto hello
expect_named_usage_error "--tool-choice naming no tool" "--tool-choice weather: tools.json has no tool of that name" \
    --tools tools.json --tool-choice weather hello
expect_named_usage_error "--tool-choice empty" "--tool-choice needs auto, none, required or the NAME of a tool" \
    --tools tools.json --tool-choice= hello
expect_named_usage_error "--image of an unknown type" "--image picture.bmp: not an http(s):// or data: URL" --image picture.bmp hello
expect_named_usage_error "--image of a missing file" "--image: cannot open no-such.png" --image no-such.png hello
expect_named_usage_error "--image without PROMPT" "--image needs a PROMPT" --messages conversation.json --image pixel.png
expect_named_usage_error "--json with --schema" "--json and --schema cannot be used together" --json --schema reply.schema.json hello
expect_named_usage_error "--schema of a missing file" "--schema: cannot open no-such.json" --schema no-such.json hello
expect_named_usage_error "--schema that is not JSON" "--schema broken-schema.json: " --schema broken-schema.json hello
expect_named_usage_error "--header without a colon" "--header needs 'NAME: VALUE', not 'X-Route'" --header X-Route hello
expect_named_usage_error "--header without a name" "--header needs 'NAME: VALUE', not ': v'" --header ': v' hello
expect_named_usage_error "--header with a space in its name" "--header 'X Route: v': " --header 'X Route: v' hello
expect_named_usage_error "--json given a value" "--json does not take a value" --json=yes hello

# ------------------------------------------------------------------------------------------------
# Conversations and tools in stub mode, and the final {"type":"message",...} line of --events
# ------------------------------------------------------------------------------------------------

run --messages conversation.json
if [ "$RC" -eq 0 ] && out_has 'You asked: “Tell me about running shoes”'; then
    pass "--messages without PROMPT: the file's conversation is sent (the stub echoes its user message)"
else
    fail "--messages without PROMPT: the file's conversation is sent (the stub echoes its user message)"
fi
$LIMIT "$BIN" --messages - "and about sandals?" <conversation.json >"$WORK/out" 2>"$WORK/err"
RC=$?
if [ "$RC" -eq 0 ] && out_has 'You asked: “and about sandals?”'; then
    pass "--messages - with PROMPT: the conversation from standard input, PROMPT appended as the last user message"
else
    fail "--messages - with PROMPT: the conversation from standard input, PROMPT appended as the last user message"
fi
run --image pixel.png --image https://example.com/cat.jpg --image 'data:image/gif;base64,R0lGOD' "What is this?"
if [ "$RC" -eq 0 ] && out_has 'You asked: “What is this?”'; then
    pass "--image (a file, an https:// URL, a data: URL) with PROMPT is accepted"
else
    fail "--image (a file, an https:// URL, a data: URL) with PROMPT is accepted"
fi
run --json --header 'X-Route: blue' --tools tools.json --tool-choice none "Reply in JSON"
if [ "$RC" -eq 0 ] && out_has 'You asked: “Reply in JSON”'; then
    pass "--json, --header and --tool-choice none: a text reply"
else
    fail "--json, --header and --tool-choice none: a text reply"
fi

run --events --tools tools.json "What is 6*7?"
STUB_CALL_MESSAGE='{"type":"message","message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_stub_1","type":"function","function":{"name":"calculator","arguments":"{\"expression\":\"What is 6*7?\"}"}}]},"finish_reason":"tool_calls","usage":{"prompt_tokens":46,"completion_tokens":7,"total_tokens":53}}'
if [ "$RC" -eq 0 ] && check_events >/dev/null && [ "$(tail -n 1 "$WORK/out")" = "$STUB_CALL_MESSAGE" ] &&
    grep -q '^{"type":"tool_call","index":0,"id":"call_stub_1","name":"calculator","arguments":""}$' "$WORK/out" &&
    [ "$(grep -c '^{"type":"tool_call","index":0,"arguments":' "$WORK/out")" -ge 3 ] &&
    grep -q '^{"type":"finish","reason":"tool_calls"}$' "$WORK/out"; then
    pass "--events --tools in stub mode: the call in fragments, then the message line, exact JSON"
else
    fail "--events --tools in stub mode: the call in fragments, then the message line, exact JSON" "expected last: $STUB_CALL_MESSAGE"
fi

# The message line appended to the conversation, with the tool's result: the next turn's input.
if [ -n "$PYTHON" ]; then
    $PYTHON - "$WORK/out" conversation.json >turn2.json <<'EOF'
import json, sys
message = json.loads(open(sys.argv[1], encoding="utf-8").read().splitlines()[-1])["message"]
conversation = json.load(open(sys.argv[2], encoding="utf-8"))
conversation += [message, {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": "42"}]
print(json.dumps(conversation))
EOF
    run --events --tools tools.json --messages turn2.json
    if [ "$RC" -eq 0 ] && check_events >"$WORK/content" &&
        [ "$(cat "$WORK/content")" = 'Stub reply from the tool results: calculator returned “42”.' ] &&
        tail -n 1 "$WORK/out" | grep -q '^{"type":"message","message":{"role":"assistant","content":"Stub reply from the tool results: calculator returned “42”."},"finish_reason":"stop","usage":{'; then
        pass "--messages with the message line and a tool result: the next turn answers from the result"
    else
        fail "--messages with the message line and a tool result: the next turn answers from the result"
    fi
fi

run --events hello
if [ "$RC" -eq 0 ] && tail -n 1 "$WORK/out" | grep -q '^{"type":"message","message":{"role":"assistant","content":"你好！.*"},"finish_reason":"stop","usage":{"prompt_tokens":[0-9]*,"completion_tokens":[0-9]*,"total_tokens":[0-9]*}}$'; then
    pass "--events without tools: the message line carries the content, finish reason and usage"
else
    fail "--events without tools: the message line carries the content, finish reason and usage"
fi
run --events --replay "$WORK/captured.http"
if [ "$RC" -eq 0 ] && [ "$(tail -n 1 "$WORK/out")" = '{"type":"message","message":{"role":"assistant","content":"Hello! How can I assist you today? 😊"},"finish_reason":"stop","usage":{"prompt_tokens":12,"completion_tokens":11,"total_tokens":23}}' ]; then
    pass "--events --replay: the message line as for a live stream"
else
    fail "--events --replay: the message line as for a live stream"
fi
# Two choices (n = 2): text mode prints choice 0 only; --events lines of choice 1 say so.
STREAMS="$STREAMS/../replies" capture two-choices.sse chunked >"$WORK/two-choices.http"
run --replay "$WORK/two-choices.http"
if [ "$RC" -eq 0 ] && [ "$(cat "$WORK/out")" = "Running shoes are light." ]; then
    pass "--replay of two choices: the text of choice 0 only"
else
    fail "--replay of two choices: the text of choice 0 only"
fi
run --events --replay "$WORK/two-choices.http"
if [ "$RC" -eq 0 ] && grep -q '^{"type":"tool_call","choice":1,"index":0,"id":"call_n2","name":"search",' "$WORK/out" &&
    grep -q '^{"type":"content","text":"Running shoes "}$' "$WORK/out" &&
    tail -n 1 "$WORK/out" | grep -q '^{"type":"message","message":{"role":"assistant","content":"Running shoes are light."}'; then
    pass "--events of two choices: choice 1's lines name it; the message is choice 0's"
else
    fail "--events of two choices: choice 1's lines name it; the message is choice 0's"
fi
run --events --replay "$WORK/limited.http"
if [ "$RC" -eq 1 ] && ! out_has '"type":"message"'; then
    pass "--events of a failed stream: no message line"
else
    fail "--events of a failed stream: no message line"
fi

# ------------------------------------------------------------------------------------------------
# Ctrl-C
# ------------------------------------------------------------------------------------------------

# A slow stub keeps the stream open; the handler llm-chat installs overrides the SIG_IGN that a
# non-interactive shell gives background jobs.
LLM_STUB_DELAY_MS=300 "$BIN" "请介绍运动鞋的特点" </dev/null >"$WORK/out" 2>"$WORK/err" &
CHAT_PID=$!
sleep 1
kill -INT "$CHAT_PID" 2>/dev/null
wait "$CHAT_PID"
RC=$?
CHAT_PID=
if [ "$RC" -eq 130 ] && err_has 'interrupted'; then
    pass "SIGINT cancels the stream, exit 130"
else
    fail "SIGINT cancels the stream, exit 130"
fi

# ------------------------------------------------------------------------------------------------
# Network errors and a local server
# ------------------------------------------------------------------------------------------------

# Port 1 on the loopback interface refuses at once on any ordinary machine.
LLM_BASE_URL=http://127.0.0.1:1/v1 run --retries 0 --timeout 2 hello
if [ "$RC" -eq 1 ] && [ "$(wc -l <"$WORK/err")" -eq 1 ] && err_has '^llm-chat: error: ' && [ ! -s "$WORK/out" ]; then
    pass "a refused connection is one 'llm-chat: error:' line, exit 1"
else
    fail "a refused connection is one 'llm-chat: error:' line, exit 1"
fi

if [ -n "$PYTHON" ]; then
    cat >"$WORK/server.py" <<'EOF'
import http.server, json, sys

def sse(obj):
    return ("data: " + json.dumps(obj, ensure_ascii=False) + "\n\n").encode("utf-8")

def delta(d, finish=None):
    return {"id": "c1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}

served = set()

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_error_json(self, status, message, headers=(), chunked=False):
        payload = json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            payload = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
        else:
            self.send_header("Content-Length", str(len(payload)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.startswith("/denied/"):
            return self.send_error_json(401, "Incorrect API key provided")
        # Busy on the first request of each client (told apart by the prompt), fine afterwards.
        if self.path.startswith("/flaky") and (self.path, body["messages"][-1]["content"]) not in served:
            served.add((self.path, body["messages"][-1]["content"]))
            return self.send_error_json(503, "overloaded", [("Retry-After", "0")],
                                        chunked=self.path.startswith("/flaky-chunked/"))
        assert body["stream"] is True and body["messages"][-1]["content"] in ("hello", "again"), body
        assert body.get("top_p") == 0.5, body
        events = [
            sse(delta({"role": "assistant", "reasoning_content": "想一想"})),
            sse(delta({"content": "运动鞋"})),
            sse(delta({"content": "\"quoted\"\n\ttab\\"})),
            sse(delta({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                       "function": {"name": "lookup", "arguments": ""}}]})),
            sse(delta({"tool_calls": [{"index": 0, "function": {"arguments": "{\"q\":1}"}}]})),
            sse(delta({}, "stop")),
            sse({"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7,
                                                     "total_tokens": 12}}),
            b"data: [DONE]\n\n",
        ]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in events:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
EOF
    $PYTHON "$WORK/server.py" >"$WORK/port" 2>"$WORK/server.log" &
    # shellcheck disable=SC2034  # stopped on exit, by its name given to e2e_start
    SERVER_PID=$!
    for _ in $(seq 50); do [ -s "$WORK/port" ] && break; sleep 0.1; done
    PORT=$(head -n 1 "$WORK/port")

    LLM_BASE_URL=http://127.0.0.1:$PORT/v1 run --events --extra '{"top_p":0.5}' hello
    EXPECTED='{"type":"reasoning","text":"想一想"}
{"type":"content","text":"运动鞋"}
{"type":"content","text":"\"quoted\"\n\ttab\\"}
{"type":"tool_call","index":0,"id":"call_1","name":"lookup","arguments":""}
{"type":"tool_call","index":0,"arguments":"{\"q\":1}"}
{"type":"finish","reason":"stop"}
{"type":"usage","prompt_tokens":5,"completion_tokens":7,"total_tokens":12}
{"type":"message","message":{"role":"assistant","content":"运动鞋\"quoted\"\n\ttab\\","reasoning_content":"想一想","tool_calls":[{"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{\"q\":1}"}}]},"finish_reason":"stop","usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}'
    if [ "$RC" -eq 0 ] && [ "$(cat "$WORK/out")" = "$EXPECTED" ] && ! err_has 'stub mode'; then
        pass "--events against a local server: every event type, exact JSON"
    else
        fail "--events against a local server: every event type, exact JSON" "expected: $EXPECTED"
    fi

    LLM_BASE_URL=http://127.0.0.1:$PORT/v1/chat/completions run --stats --extra '{"top_p":0.5}' hello
    if [ "$RC" -eq 0 ] && [ "$(cat "$WORK/out")" = $'运动鞋"quoted"\n\ttab\\' ] &&
        err_has '^LLM stream completed: 2 chunks, 17 chars, '; then
        pass "plain text against a local server, full URL form"
    else
        fail "plain text against a local server, full URL form"
    fi

    LLM_BASE_URL=http://127.0.0.1:$PORT/denied LLM_API_KEY=sk-e2e-secret-key run --timeout 5 --retries 1 hello
    if [ "$RC" -eq 1 ] && [ "$(wc -l <"$WORK/err")" -eq 1 ] && err_has '^llm-chat: error: .*Incorrect API key provided' &&
        err_has '401' && ! err_has 'sk-e2e-secret-key' && [ ! -s "$WORK/out" ]; then
        pass "HTTP 401: one error line with the server's message and the status, no key"
    else
        fail "HTTP 401: one error line with the server's message and the status, no key"
    fi

    # Retry-After: 0 fits well inside the deadline; both framings of the error body.
    for framing in flaky flaky-chunked; do
        LLM_BASE_URL=http://127.0.0.1:$PORT/$framing run --stats --timeout 5 --deadline 3 --extra '{"top_p":0.5}' again
        if [ "$RC" -eq 0 ] && [ "$(cat "$WORK/out")" = $'运动鞋"quoted"\n\ttab\\' ] &&
            err_has '^Stream details: 2 attempts'; then
            pass "HTTP 503 then 200 ($framing): retried once, the reply printed once"
        else
            fail "HTTP 503 then 200 ($framing): retried once, the reply printed once"
        fi
    done
fi

# ------------------------------------------------------------------------------------------------
# A flooding server: --deadline and Ctrl-C hold while bytes keep coming
# ------------------------------------------------------------------------------------------------

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# start_flood KIND : llm_test_server flooding KIND (for 15 s at most per request); sets FLOOD_PID, FLOOD_PORT.
start_flood() {
    start_test_server FLOOD_PID FLOOD_PORT flood --flood "$1" --flood-seconds 15
}

# wait_exit PID SECONDS : waits for PID to exit (RC holds its status); false, with PID killed, after SECONDS.
wait_exit() {
    local pid=$1 tenths=$(($2 * 10))
    while [ "$tenths" -gt 0 ] && kill -0 "$pid" 2>/dev/null; do
        sleep 0.1
        tenths=$((tenths - 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        RC=killed
        return 1
    fi
    wait "$pid"
    RC=$?
}

if [ -z "$TEST_SERVER_BIN" ]; then
    echo "skip - the flooding-server checks (no llm_test_server given)"
else
    for kind in comments continues content; do
        if ! start_flood "$kind"; then
            RC=none
            fail "llm_test_server --flood $kind starts"
            continue
        fi
        # stdout goes to /dev/null: a flood of content is a flood of output too.
        START=$(now_ms)
        LLM_BASE_URL=http://127.0.0.1:$FLOOD_PORT/v1 $LIMIT "$BIN" --deadline 1 --retries 0 hello \
            </dev/null >/dev/null 2>"$WORK/err"
        RC=$?
        ELAPSED=$(($(now_ms) - START))
        : >"$WORK/out"
        if [ "$RC" -eq 1 ] && err_has '^llm-chat: error: ' && [ "$ELAPSED" -lt 5000 ]; then
            pass "--deadline 1 holds against a flood of $kind (exit 1 after $ELAPSED ms)"
        else
            fail "--deadline 1 holds against a flood of $kind" "expected exit 1 and 'llm-chat: error:' within 5 s; took $ELAPSED ms"
        fi
        e2e_stop FLOOD_PID
    done

    if start_flood comments; then
        LLM_BASE_URL=http://127.0.0.1:$FLOOD_PORT/v1 "$BIN" --retries 0 hello </dev/null >"$WORK/out" 2>"$WORK/err" &
        CHAT_PID=$!
        sleep 1
        START=$(now_ms)
        kill -INT "$CHAT_PID" 2>/dev/null
        wait_exit "$CHAT_PID" 20
        ELAPSED=$(($(now_ms) - START))
        CHAT_PID=
        if [ "$RC" = 130 ] && err_has 'interrupted' && [ "$ELAPSED" -lt 3000 ]; then
            pass "SIGINT during a flood: exit 130 after $ELAPSED ms"
        else
            fail "SIGINT during a flood: exit 130 within 3 s" "took $ELAPSED ms"
        fi
        e2e_stop FLOOD_PID
    else
        RC=none
        fail "llm_test_server --flood comments starts"
    fi
fi

# ------------------------------------------------------------------------------------------------
# What goes on the wire: request bodies and headers, as llm_test_server saved them
# ------------------------------------------------------------------------------------------------

# start_recorder: llm_test_server answering every request with a short text stream and saving each
# request under $WORK/requests; sets RECORDER_PID and RECORDER_PORT.
start_recorder() {
    rm -rf "$WORK/requests" && mkdir "$WORK/requests"
    start_test_server RECORDER_PID RECORDER_PORT recorder --stream "$STREAMS/deepseek-chat.sse" --save-requests "$WORK/requests"
}
# recorded N ARGS...: llm-chat ARGS against the recorder, then waits (boundedly) for its request, the
# Nth, to be saved (the body is written last).
recorded() {
    local n=$1
    shift
    LLM_BASE_URL=http://127.0.0.1:$RECORDER_PORT/v1 LLM_MODEL=m run "$@"
    saved_request "$n"
}
# check_body N PYTHON_ASSERTIONS: the assertions hold for `body`, request N's parsed JSON body (and
# `head`, its request line and headers).
check_body() {
    $PYTHON - "$WORK/requests/request-$1.body" "$WORK/requests/request-$1.head" "$2" <<'EOF'
import base64, json, sys
body = json.load(open(sys.argv[1], encoding="utf-8"))
head = open(sys.argv[2], encoding="utf-8", newline="").read()
exec(sys.argv[3])
EOF
}
# expect_body NAME N PYTHON_ASSERTIONS: llm-chat succeeded and check_body holds.
expect_body() {
    if [ "$RC" -eq 0 ] && check_body "$2" "$3"; then
        pass "$1"
    else
        fail "$1"
    fi
}

if [ -z "$TEST_SERVER_BIN" ] || [ -z "$PYTHON" ]; then
    echo "skip - the request-body checks (they need llm_test_server and python3)"
elif ! start_recorder; then
    RC=none
    fail "llm_test_server --save-requests starts"
else
    mkdir -p "schemas dir"
    cp reply.schema.json "schemas dir/my reply.v2.json"
    recorded 1 --messages conversation.json --system ignored --image pixel.png --image https://example.com/cat.jpg \
        --tools tools.json --tool-choice calculator --schema "schemas dir/my reply.v2.json" \
        --header 'X-Route: blue' --header 'api-key:   k1  ' "And sandals?"
    expect_body "every new flag on the wire: messages, parts, tools, tool_choice, response_format, headers" 1 '
m = body["messages"]
assert [x["role"] for x in m] == ["system", "user", "user"], m
assert m[0]["content"] == "Be brief.", m[0]
assert m[1]["content"] == "Tell me about running shoes", m[1]
parts = m[2]["content"]
assert parts[0] == {"type": "text", "text": "And sandals?"}, parts
assert parts[1]["type"] == "image_url" and parts[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(open("pixel.png", "rb").read()).decode(), parts
assert parts[2] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}, parts
assert len(parts) == 3, parts
assert [t["function"]["name"] for t in body["tools"]] == ["calculator", "local_time"], body["tools"]
assert body["tools"][0]["type"] == "function" and body["tools"][0]["function"]["description"] == "Evaluates arithmetic", body["tools"]
assert body["tools"][0]["function"]["parameters"]["required"] == ["expression"], body["tools"]
assert body["tool_choice"] == {"type": "function", "function": {"name": "calculator"}}, body["tool_choice"]
schema = json.load(open("reply.schema.json"))
assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "my_reply_v2", "schema": schema, "strict": True}}, body["response_format"]
assert "\r\nX-Route: blue\r\n" in head and "\r\napi-key: k1\r\n" in head, head
'

    recorded 2 --messages conversation.json --json --tools tools.json --tool-choice required "JSON please"
    expect_body "--json and --tool-choice required" 2 '
assert body["response_format"] == {"type": "json_object"}, body
assert body["tool_choice"] == "required", body
assert body["messages"][-1] == {"role": "user", "content": "JSON please"}, body["messages"]
'

    printf '[{"role":"user","content":"hi"}]' >no-system.json
    recorded 3 --messages no-system.json --system "Be kind." --tools tools.json --tool-choice auto
    expect_body "--system goes first when the file has no system message; --tool-choice auto" 3 '
assert body["messages"] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}], body["messages"]
assert body["tool_choice"] == "auto", body
'

    recorded 4 --tools tools.json --tool-choice none hello
    expect_body "--tool-choice none; without --messages the default system message and PROMPT" 4 '
assert body["tool_choice"] == "none", body
assert body["messages"] == [{"role": "system", "content": "You are a helpful sales assistant."}, {"role": "user", "content": "hello"}], body["messages"]
assert "response_format" not in body, body
'

    cat >conversation-with-calls.json <<'EOF'
[{"role":"developer","content":"Use the tools."},
 {"role":"user","content":[{"type":"text","text":"What is 6*7?"},{"type":"image_url","image_url":{"url":"https://example.com/sum.png"}}]},
 {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"calculator","arguments":"{\"expression\":\"6*7\"}"}}]},
 {"role":"tool","tool_call_id":"call_1","content":"42"}]
EOF
    recorded 5 --messages conversation-with-calls.json --tools tools.json
    expect_body "--messages with parts, an assistant tool call and a tool result: sent as given" 5 '
given = json.load(open("conversation-with-calls.json"))
m = body["messages"]
assert [x["role"] for x in m] == ["developer", "user", "assistant", "tool"], m
assert m[1]["content"] == given[1]["content"], m[1]
assert m[2]["tool_calls"] == given[2]["tool_calls"], m[2]
assert m[3] == given[3], m[3]
'
    e2e_stop RECORDER_PID
fi

e2e_summary
