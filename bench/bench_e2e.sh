#!/usr/bin/env bash
# End-to-end benchmark (issue 4, item 11): llm-chat against curl on the same loopback stream.
#
#   bench/bench_e2e.sh [RUNS]          (default 7 runs of each client; prints medians)
#
# Our loopback test server (tests/llm_test_server.cpp) is started once and serves a 200,000-event
# OpenAI-style SSE stream, chunked one HTTP chunk per event (EVENTS=N overrides the count). The script
# then alternates, RUNS times,
#
#   curl -sN -X POST -H 'Content-Type: application/json' -d '{}' -o /dev/null URL
#   LLM_BASE_URL=http://127.0.0.1:PORT/v1 llm-chat hi > out.txt
#
# timing each client process only (the bash `time` keyword, which takes the getrusage(RUSAGE_CHILDREN)
# difference around the command: wall time, user and system CPU to the millisecond; the server is not
# counted). curl does no parsing: the difference is llm_stream's whole pipeline (socket, HTTP chunked
# framing, SSE, JSON, UTF-8) plus llm-chat's output to a file. Every llm-chat output is compared byte
# for byte with the expected reply (content of the generated events and a final newline).
# Target: llm-chat CPU <= 2x curl's, wall <= 1.5x curl's.
#
# Binaries: LLM_CHAT and LLM_TEST_SERVER name prebuilt ones; otherwise both are built with
# ${CXX:-g++} -std=c++17 -O2 -DNDEBUG into a temporary directory. A small helper that prints the
# expected reply is always built from tests/support/test_server.hpp.
#
# Loopback only; the server is stopped by its PID on exit. Exit status 0 whatever the figures (a
# benchmark, not a test); 1 if a client failed or llm-chat's output was wrong (the figures would mean
# nothing); 2 for bad usage or a setup failure.

# shellcheck disable=SC2016,SC2317  # awk programs in single quotes; cleanup runs from the EXIT trap
set -u

RUNS=${1:-7}
EVENTS=${EVENTS:-200000}
case "$RUNS" in '' | *[!0-9]* | 0) echo "usage: $0 [RUNS]   (RUNS a positive integer, default 7)" >&2; exit 2 ;; esac
case "$EVENTS" in '' | *[!0-9]* | 0) echo "$0: EVENTS must be a positive integer" >&2; exit 2 ;; esac

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd) || exit 2
CXX=${CXX:-g++}
CXXFLAGS_BENCH=(-std=c++17 -O2 -DNDEBUG "-I$REPO" "-I$REPO/tests")

for tool in curl awk cmp; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$0: $tool is required" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/llm-bench-e2e.XXXXXX") || exit 2
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP

die() { echo "$0: $*" >&2; exit 2; }

# --- binaries -------------------------------------------------------------------------------------
build() {  # build OUTPUT SOURCE
    "$CXX" "${CXXFLAGS_BENCH[@]}" "$2" -o "$1" -pthread || die "cannot build $2"
}

if [ -n "${LLM_CHAT:-}" ]; then
    [ -x "$LLM_CHAT" ] || die "LLM_CHAT=$LLM_CHAT is not executable"
    CHAT_BIN=$LLM_CHAT
    CHAT_ORIGIN="prebuilt (LLM_CHAT)"
else
    CHAT_BIN=$WORK/llm-chat
    build "$CHAT_BIN" "$REPO/examples/llm-chat.cpp"
    CHAT_ORIGIN="built: $CXX ${CXXFLAGS_BENCH[*]} -pthread"
fi
if [ -n "${LLM_TEST_SERVER:-}" ]; then
    [ -x "$LLM_TEST_SERVER" ] || die "LLM_TEST_SERVER=$LLM_TEST_SERVER is not executable"
    SERVER_BIN=$LLM_TEST_SERVER
else
    SERVER_BIN=$WORK/llm_test_server
    build "$SERVER_BIN" "$REPO/tests/llm_test_server.cpp"
fi

# The expected reply: the content deltas of the same generated events (the server's default seed).
cat >"$WORK/expected_reply.cpp" <<'EOF'
#include "support/test_server.hpp"
#include <cstdio>
#include <cstdlib>
int main(int argc, char** argv) {
    if (argc != 3) return 2;
    std::string content;
    const std::string sse = llm_test::generate_events(std::strtoull(argv[1], nullptr, 10), &content);
    std::FILE* f = std::fopen(argv[2], "wb");
    if (!f) return 1;
    const bool ok = std::fwrite(content.data(), 1, content.size(), f) == content.size() &&
                    std::fputc('\n', f) == '\n';
    if (std::fclose(f) != 0 || !ok) return 1;
    std::printf("%zu %zu\n", sse.size(), content.size());
    return 0;
}
EOF
build "$WORK/expected_reply" "$WORK/expected_reply.cpp"
read -r SSE_BYTES CONTENT_BYTES < <("$WORK/expected_reply" "$EVENTS" "$WORK/expected.txt") ||
    die "cannot compute the expected reply"
[ -n "${CONTENT_BYTES:-}" ] || die "cannot compute the expected reply"

# --- server ---------------------------------------------------------------------------------------
"$SERVER_BIN" --host 127.0.0.1 --generate-events "$EVENTS" --framing chunked --chunk-per-event \
    >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
PORT=
for _ in $(seq 1 600); do  # up to 60 s: the server builds the whole framed body before listening
    PORT=$(awk '$1 == "PORT" { print $2; exit }' "$WORK/server.out")
    [ -n "$PORT" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
[ -n "$PORT" ] || die "the test server did not start: $(head -c 400 "$WORK/server.err")"

URL=http://127.0.0.1:$PORT/v1/chat/completions
BASE=http://127.0.0.1:$PORT/v1
CURL_CMD=(curl -sN -X POST -H 'Content-Type: application/json' -d '{}')
unset LLM_API_KEY LLM_MODEL  # the request is the same whatever the caller's environment
cd "$WORK" || exit 2         # no stray .env is read by llm-chat

# --- warm-up and checks (not timed) ---------------------------------------------------------------
"${CURL_CMD[@]}" -o "$WORK/body.sse" "$URL" || die "curl cannot fetch $URL"
got=$(wc -c <"$WORK/body.sse")
[ "$got" -eq "$SSE_BYTES" ] || die "curl fetched $got body bytes, expected $SSE_BYTES (another server build?)"
rm -f "$WORK/body.sse"
LLM_BASE_URL=$BASE "$CHAT_BIN" hi >"$WORK/out.txt" 2>"$WORK/chat.err" ||
    die "llm-chat failed: $(head -c 400 "$WORK/chat.err")"
cmp -s "$WORK/out.txt" "$WORK/expected.txt" ||
    die "llm-chat wrote $(wc -c <"$WORK/out.txt") bytes, not the expected reply of $((CONTENT_BYTES + 1)) bytes"

# --- timed runs -----------------------------------------------------------------------------------
TIMEFORMAT='%3R %3U %3S'
FAILED=0
: >"$WORK/curl.times"
: >"$WORK/chat.times"
for run in $(seq 1 "$RUNS"); do
    { time "${CURL_CMD[@]}" -o /dev/null "$URL" 2>"$WORK/curl.err"; } 2>"$WORK/t"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "run $run: curl failed (exit $rc): $(head -c 300 "$WORK/curl.err")" >&2
        FAILED=1
    fi
    cat "$WORK/t" >>"$WORK/curl.times"

    { time LLM_BASE_URL=$BASE "$CHAT_BIN" hi >"$WORK/out.txt" 2>"$WORK/chat.err"; } 2>"$WORK/t"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "run $run: llm-chat failed (exit $rc): $(head -c 300 "$WORK/chat.err")" >&2
        FAILED=1
    elif ! cmp -s "$WORK/out.txt" "$WORK/expected.txt"; then
        echo "run $run: llm-chat output differs from the expected reply ($(wc -c <"$WORK/out.txt") bytes)" >&2
        FAILED=1
    fi
    cat "$WORK/t" >>"$WORK/chat.times"
done

# --- report ---------------------------------------------------------------------------------------
# median FILE COLUMN-EXPRESSION (awk, over fields $1 wall, $2 user, $3 sys)
median() {
    awk "{ print $2 }" "$1" | sort -g | awk '{ v[NR] = $1 }
        END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
CURL_WALL=$(median "$WORK/curl.times" '$1')
CURL_USER=$(median "$WORK/curl.times" '$2')
CURL_SYS=$(median "$WORK/curl.times" '$3')
CURL_CPU=$(median "$WORK/curl.times" '$2 + $3')
CHAT_WALL=$(median "$WORK/chat.times" '$1')
CHAT_USER=$(median "$WORK/chat.times" '$2')
CHAT_SYS=$(median "$WORK/chat.times" '$3')
CHAT_CPU=$(median "$WORK/chat.times" '$2 + $3')
CURL_MBS=$(median "$WORK/curl.times" "(\$1 > 0 ? $SSE_BYTES / 1e6 / \$1 : 0)")
CHAT_MBS=$(median "$WORK/chat.times" "(\$1 > 0 ? $SSE_BYTES / 1e6 / \$1 : 0)")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { if (r == "n/a") print "n/a"; else if (r + 0 <= t + 0) print "met"; else print "MISSED" }'; }
CPU_RATIO=$(ratio "$CHAT_CPU" "$CURL_CPU")
WALL_RATIO=$(ratio "$CHAT_WALL" "$CURL_WALL")

CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
[ -n "$CPU_MODEL" ] || CPU_MODEL=unknown

echo "llm_stream end-to-end benchmark: $0 $RUNS"
echo "machine:  $(nproc) CPUs, $CPU_MODEL; $(uname -sr)"
echo "stream:   $EVENTS events from llm_test_server on 127.0.0.1 (HTTP chunked, one chunk per event),"
printf '          %.1f MB SSE body, %d bytes of reply content\n' "$(awk -v b="$SSE_BYTES" 'BEGIN { print b / 1e6 }')" "$CONTENT_BYTES"
echo "llm-chat: $CHAT_ORIGIN"
echo "          LLM_BASE_URL=$BASE $CHAT_BIN hi > out.txt"
echo "curl:     $(curl --version | head -n 1 | awk '{ print $1, $2 }')"
echo "          curl -sN -X POST -H 'Content-Type: application/json' -d '{}' -o /dev/null $URL"
echo "runs:     $RUNS of each, alternating; client process only; medians in seconds (bash time, 1 ms resolution;"
echo "          CPU = user + sys per run, then the median, so it need not equal user + sys of the medians)"
echo
printf '%-10s %9s %9s %9s %9s %12s\n' "" "wall" "user" "sys" "CPU" "body MB/s"
printf '%-10s %9s %9s %9s %9s %12.0f\n' "curl" "$CURL_WALL" "$CURL_USER" "$CURL_SYS" "$CURL_CPU" "$CURL_MBS"
printf '%-10s %9s %9s %9s %9s %12.0f\n' "llm-chat" "$CHAT_WALL" "$CHAT_USER" "$CHAT_SYS" "$CHAT_CPU" "$CHAT_MBS"
echo
echo "llm-chat / curl:  CPU ${CPU_RATIO}x (target <= 2x: $(verdict "$CPU_RATIO" 2)),  wall ${WALL_RATIO}x (target <= 1.5x: $(verdict "$WALL_RATIO" 1.5))"
printf 'llm-chat median throughput: %.0f MB/s of SSE body (%.0f events/s)\n' "$CHAT_MBS" \
    "$(awk -v m="$CHAT_WALL" -v e="$EVENTS" 'BEGIN { if (m > 0) print e / m; else print 0 }')"
echo
echo "per run (wall user sys):"
paste -d' ' <(awk '{ printf "  curl %s %s %s  |", $1, $2, $3 }; { print "" }' "$WORK/curl.times") \
    <(awk '{ printf " llm-chat %s %s %s\n", $1, $2, $3 }' "$WORK/chat.times")

if [ "$FAILED" -ne 0 ]; then
    echo "some runs failed (see above): the figures are not trustworthy" >&2
    exit 1
fi
exit 0
