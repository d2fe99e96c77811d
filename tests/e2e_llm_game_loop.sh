#!/usr/bin/env bash
# End-to-end checks of examples/llm-game-loop.cpp (SPEC section 6): its command line, a few dialogues in
# stub mode, and with llm_test_server 32 dialogues over loopback, each line compared with the recorded
# stream's expected content (tests/data/streams/manifest.json, read with jq), and upstream errors.
# The frame times it prints are measured, never asserted: only their format is checked.
#
#   tests/e2e_llm_game_loop.sh path/to/llm-game-loop [path/to/llm_test_server]
#
# Runs in a fresh temporary directory (no .env) with LLM_BASE_URL / LLM_API_KEY / LLM_MODEL unset and
# LLM_STUB_DELAY_MS=0. Prints "N passed, M failed" and exits nonzero when anything failed.

set -u

# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/support/e2e_common.sh"
e2e_arguments "path/to/llm-game-loop [path/to/llm_test_server]" "$@"
STREAMS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/data/streams
e2e_start llm-game-loop-e2e GAME_PID SERVER_PID

# expect_usage_error NAME ARGS... : exit 2, "llm-game-loop: ..." and the usage on stderr, nothing on stdout.
expect_usage_error() {
    local name=$1
    shift
    run "$@"
    if [ "$RC" -eq 2 ] && grep -q '^llm-game-loop: ' "$WORK/err" && grep -q '^usage: llm-game-loop ' "$WORK/err" &&
        [ ! -s "$WORK/out" ]; then
        pass "$name"
    else
        fail "$name" "expected exit 2, 'llm-game-loop: ...' and the usage on stderr, empty stdout"
    fi
}

# summary_ok COMPLETED FAILED: the summary's four lines (counts as given; '[0-9]+' for any), `worst frame`
# last; the times only have to be numbers.
summary_ok() {
    local number='[0-9]+\.[0-9]{3}'
    grep -Eq '^[0-9]+ dialogues at [0-9.]+ fps for [0-9.]+ s \(.+\): [0-9]+ frames, [0-9]+ overran$' "$WORK/out" &&
        grep -Eq "^lines: $1 completed, $2 failed; [0-9]+ events$" "$WORK/out" &&
        grep -Eq "^library time per frame: median $number ms, 99th percentile $number ms$" "$WORK/out" &&
        tail -n 1 "$WORK/out" | grep -Eq "^worst frame: $number ms$"
}

# printed_lines: the lines --print wrote.
printed_lines() { grep '^\[npc [0-9]*, line [0-9]*\] ' "$WORK/out"; }

# completed_count: the number of completed lines the summary gives.
completed_count() { sed -n 's/^lines: \([0-9]*\) completed.*/\1/p' "$WORK/out"; }

# every_npc_spoke N: each of NPCs 1..N has at least one printed line.
every_npc_spoke() {
    local i
    for i in $(seq "$1"); do
        grep -q "^\[npc $i, line [0-9]*\] " "$WORK/out" || return 1
    done
}

# ------------------------------------------------------------------------------------------------
# Information and usage
# ------------------------------------------------------------------------------------------------

check_version

run --help
HELP_LISTS_ALL=yes
for flag in --streams --fps --seconds --print --version --help; do
    grep -q "^  $flag " "$WORK/out" || HELP_LISTS_ALL=no
done
if [ "$RC" -eq 0 ] && grep -q '^usage: llm-game-loop ' "$WORK/out" && [ "$HELP_LISTS_ALL" = yes ] && [ ! -s "$WORK/err" ]; then
    pass "--help prints the usage and every option to stdout, exit 0"
else
    fail "--help prints the usage and every option to stdout, exit 0"
fi

expect_usage_error "unknown option" --bogus
expect_usage_error "an argument that is no option" 32
expect_usage_error "missing value at the end" --streams
expect_usage_error "flag given a value" --print=yes
expect_usage_error "zero streams" --streams 0
expect_usage_error "fractional streams" --streams 1.5
expect_usage_error "too many streams" --streams=1001
expect_usage_error "zero fps" --fps 0
expect_usage_error "non-numeric fps" --fps fast
expect_usage_error "negative seconds" --seconds=-1
expect_usage_error "seconds nan" --seconds nan

LLM_BASE_URL='' run --streams 2 --seconds 0.1
if [ "$RC" -eq 1 ] && [ "$(wc -l <"$WORK/err")" -eq 1 ] &&
    grep -q '^llm-game-loop: error: LLM_BASE_URL is set but empty' "$WORK/err" && [ ! -s "$WORK/out" ]; then
    pass "a broken configuration: one 'llm-game-loop: error:' line, exit 1"
else
    fail "a broken configuration: one 'llm-game-loop: error:' line, exit 1"
fi

LLM_BASE_URL=http://127.0.0.1:/v1 run --streams 2 --seconds 0.1
if [ "$RC" -eq 1 ] && summary_ok 0 '[1-9][0-9]*' &&
    [ "$(cat "$WORK/err")" = "$(printf 'llm-game-loop: error: LLM_BASE_URL: invalid port in the URL (%s lines)' \
        "$(sed -n 's/^lines: 0 completed, \([0-9]*\) failed.*/\1/p' "$WORK/out")")" ]; then
    pass "lines that fail as they are created end, are counted, and their error is said once, exit 1"
else
    fail "lines that fail as they are created end, are counted, and their error is said once, exit 1"
fi

# ------------------------------------------------------------------------------------------------
# Stub mode: every NPC's lines complete, each answering its own prompt
# ------------------------------------------------------------------------------------------------

LLM_STUB_DELAY_MS=5 run --streams 4 --fps 120 --seconds 0.3 --print
EACH_OWN_PROMPT=yes
while IFS= read -r line; do
    name=$(printf '%s\n' "$line" | sed 's/^\[npc [0-9]*, line [0-9]*\] \([^:]*\): .*/\1/')
    printf '%s\n' "$line" | grep -qF 'You asked: “Traveller to '"$name: " || EACH_OWN_PROMPT=no
done < <(printed_lines)
if [ "$RC" -eq 0 ] && summary_ok '[1-9][0-9]*' 0 && every_npc_spoke 4 && [ "$EACH_OWN_PROMPT" = yes ] &&
    [ "$(printed_lines | wc -l)" -eq "$(completed_count)" ] &&
    [ "$(cat "$WORK/err")" = "llm-game-loop: stub mode (LLM_BASE_URL is not set): simulated replies" ]; then
    pass "stub mode: 4 NPCs, every line completed and printed, each quoting its own prompt, exit 0"
else
    fail "stub mode: 4 NPCs, every line completed and printed, each quoting its own prompt, exit 0"
fi

# At the default pace (30 ms a chunk) no line can end within the run's 50 ms: the three first lines
# finish after it, and no NPC starts another.
unset LLM_STUB_DELAY_MS
run --streams 3 --seconds 0.05
export LLM_STUB_DELAY_MS=0
if [ "$RC" -eq 0 ] && summary_ok 3 0 && ! printed_lines >/dev/null; then
    pass "stub mode at the default pace, without --print: the lines in progress finish after the run, summary only"
else
    fail "stub mode at the default pace, without --print: the lines in progress finish after the run, summary only"
fi

# Ctrl-C: once the stub notice is out, the handler is in place (it overrides the SIG_IGN that a
# non-interactive shell gives background jobs); the loop stops within a frame and says so.
$LIMIT "$BIN" --streams 4 --seconds 20 </dev/null >"$WORK/out" 2>"$WORK/err" &
GAME_PID=$!
for _ in $(seq 100); do
    grep -q 'stub mode' "$WORK/err" && break
    sleep 0.1
done
kill -INT "$GAME_PID" 2>/dev/null
wait "$GAME_PID"
RC=$?
GAME_PID=
if [ "$RC" -eq 130 ] && [ "$(tail -n 1 "$WORK/err")" = "llm-game-loop: interrupted" ] && summary_ok '[0-9]+' 0; then
    pass "SIGINT stops the loop: the summary, 'interrupted', exit 130"
else
    fail "SIGINT stops the loop: the summary, 'interrupted', exit 130"
fi

# ------------------------------------------------------------------------------------------------
# Over loopback: 32 dialogues from llm_test_server, and upstream errors
# ------------------------------------------------------------------------------------------------

# expected_line FILE: the recorded stream's content as --print writes it (\\, \n and \r escaped).
expected_line() {
    jq -r --arg file "$1" '.[] | select(.file == $file) | .expected.content
        | gsub("\\\\"; "\\\\") | gsub("\n"; "\\n") | gsub("\r"; "\\r")' "$STREAMS/manifest.json"
}

# shellcheck disable=SC2153  # PORT is set by start_test_server
if [ -z "$TEST_SERVER_BIN" ] || ! command -v jq >/dev/null 2>&1; then
    echo "skip - the loopback checks (they need llm_test_server and jq)"
elif ! start_test_server SERVER_PID PORT server --stream "$STREAMS/deepseek-r1-reasoning.sse" --delay-ms 2; then
    RC=none
    fail "llm_test_server starts"
else
    # Reasoning and then content with line breaks: only the content is the NPC's line, escaped.
    EXPECTED=$(expected_line deepseek-r1-reasoning.sse)
    LLM_BASE_URL=http://127.0.0.1:$PORT/v1 run --streams 32 --seconds 0.5 --print
    if [ "$RC" -eq 0 ] && summary_ok '[1-9][0-9]*' 0 && every_npc_spoke 32 &&
        [ "$(printed_lines | wc -l)" -eq "$(completed_count)" ] && [ -n "$EXPECTED" ] &&
        ! printed_lines | sed 's/^\[npc [0-9]*, line [0-9]*\] [^:]*: //' | grep -qvxF -- "$EXPECTED" &&
        [ ! -s "$WORK/err" ]; then
        pass "loopback: 32 dialogues, every line completed with the recorded stream's content, exit 0"
    else
        fail "loopback: 32 dialogues, every line completed with the recorded stream's content, exit 0" \
            "expected each line to be: $EXPECTED"
    fi
    e2e_stop SERVER_PID

    start_test_server SERVER_PID PORT error --status 401 --body '{"error":{"message":"Invalid API key"}}'
    LLM_BASE_URL=http://127.0.0.1:$PORT/v1 run --streams 4 --seconds 0.2
    if [ "$RC" -eq 1 ] && summary_ok 0 '[1-9][0-9]*' &&
        grep -Eqx 'llm-game-loop: error: HTTP 401: Invalid API key \([0-9]+ lines\)' "$WORK/err" &&
        [ "$(wc -l <"$WORK/err")" -eq 1 ]; then
        pass "loopback: an HTTP error is a failure with the server's message, exit 1"
    else
        fail "loopback: an HTTP error is a failure with the server's message, exit 1"
    fi
    e2e_stop SERVER_PID

    # An error event after some text (Anthropic's overloaded_error): the line fails, its text is not printed.
    start_test_server SERVER_PID PORT overloaded --stream "$STREAMS/anthropic-overloaded-error.sse"
    LLM_API=anthropic LLM_BASE_URL=http://127.0.0.1:$PORT/v1 run --streams 4 --seconds 0.2 --print
    if [ "$RC" -eq 1 ] && summary_ok 0 '[1-9][0-9]*' && ! printed_lines >/dev/null &&
        grep -Eqx 'llm-game-loop: error: server error: Overloaded \(type: overloaded_error\) \([0-9]+ lines\)' "$WORK/err" && [ "$(wc -l <"$WORK/err")" -eq 1 ]; then
        pass "loopback: an error event mid-stream is a failure with its message, exit 1"
    else
        fail "loopback: an error event mid-stream is a failure with its message, exit 1"
    fi
    e2e_stop SERVER_PID
fi

e2e_summary
