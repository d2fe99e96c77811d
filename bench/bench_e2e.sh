#!/usr/bin/env bash
# End-to-end benchmark (issue 4, item 11; over TLS issue 8, item 2): llm-chat against curl on the same
# loopback stream.
#
#   bench/bench_e2e.sh [RUNS]          (default 7 runs of each client; prints medians)
#   TLS=1 bench/bench_e2e.sh [RUNS]    the same stream over HTTPS through nginx on loopback
#   CALLGRIND=1 ...                    instructions counted instead of time (a loaded machine)
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
# With TLS=1 nginx (one worker, 127.0.0.1 only, its files in the temporary directory; Debian nginx-light)
# terminates TLS 1.2/1.3 for https://localhost:PORT with a P-256 ECDSA certificate from a test CA made
# with openssl (tests/tls/nginx_common.sh), and proxies to the server unbuffered, re-chunking the body;
# the clients, alternating, are curl --cacert, llm-chat built with mbedTLS (LLM_STREAM_MBEDTLS) and
# llm-chat-openssl (llm_stream_openssl.hpp through the TLS hook; LLM_CHAT_OPENSSL), each --cacert.
# Each is a new process: a full handshake every run, as for curl. Targets: CPU <= 2x curl's with
# mbedTLS, <= 1.2x with OpenSSL; time to first byte <= curl's. Time to first byte: curl's
# %{time_starttransfer}, llm-chat's "first byte at" of --stats (Stats::first_byte_ms): the request's
# start to the response's first byte, both including name resolution, connect, the handshake. llm-chat's
# first content chunk (its "First chunk received") is reported too; curl has no counterpart.
#
# Binaries: LLM_CHAT (with TLS=1: LLM_CHAT_MBEDTLS, LLM_CHAT_OPENSSL) and LLM_TEST_SERVER name prebuilt
# ones; otherwise each is built with ${CXX:-g++} -std=c++17 -O2 -DNDEBUG into a temporary directory. A
# small helper that prints the expected reply is always built from tests/support/test_server.hpp.
#
# Loopback only; the server is stopped by its PID on exit. Exit status 0 whatever the figures (a
# benchmark, not a test); 1 if a client failed or llm-chat's output was wrong (the figures would mean
# nothing); 2 for bad usage or a setup failure.

# shellcheck disable=SC2016,SC2317  # awk programs in single quotes; cleanup runs from the EXIT trap
set -u

RUNS=${1:-7}
EVENTS=${EVENTS:-200000}
TLS=${TLS:-0}
case "$RUNS" in '' | *[!0-9]* | 0) echo "usage: $0 [RUNS]   (RUNS a positive integer, default 7)" >&2; exit 2 ;; esac
case "$EVENTS" in '' | *[!0-9]* | 0) echo "$0: EVENTS must be a positive integer" >&2; exit 2 ;; esac

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd) || exit 2
CXX=${CXX:-g++}
CXXFLAGS_BENCH=(-std=c++17 -O2 -DNDEBUG "-I$REPO" "-I$REPO/tests")

for tool in curl awk cmp; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$0: $tool is required" >&2; exit 2; }
done
if [ "$TLS" = 1 ]; then
    # shellcheck source-path=SCRIPTDIR
    source "$(dirname "${BASH_SOURCE[0]}")/../tests/tls/nginx_common.sh"
    find_nginx
    [ -n "$NGINX" ] || { echo "$0: TLS=1 needs nginx (Debian: nginx-light)" >&2; exit 2; }
    command -v openssl >/dev/null 2>&1 || { echo "$0: TLS=1 needs openssl" >&2; exit 2; }
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/llm-bench-e2e.XXXXXX") || exit 2
SERVER_PID=
NGINX_PID=
cleanup() {
    if [ -n "$NGINX_PID" ]; then stop_pid "$NGINX_PID"; fi
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
build() {  # build OUTPUT SOURCE [OPTIONS...]
    "$CXX" "${CXXFLAGS_BENCH[@]}" "$2" -o "$1" "${@:3}" -pthread || die "cannot build $2"
}

# llm_chat VARIABLE NAME [OPTIONS...]: adds NAME to CHATS, with CHAT_BINS[NAME] the prebuilt binary that
# VARIABLE names or llm-chat built with OPTIONS, and CHAT_ORIGINS[NAME] saying which.
declare -A CHAT_BINS CHAT_ORIGINS
CHATS=()
llm_chat() {
    local variable=$1 name=$2
    CHATS+=("$name")
    if [ -n "${!variable:-}" ]; then
        [ -x "${!variable}" ] || die "$variable=${!variable} is not executable"
        CHAT_BINS[$name]=${!variable}
        CHAT_ORIGINS[$name]="prebuilt ($variable)"
    else
        CHAT_BINS[$name]=$WORK/$name
        build "$WORK/$name" "$REPO/examples/llm-chat.cpp" "${@:3}"
        CHAT_ORIGINS[$name]="built: $CXX ${CXXFLAGS_BENCH[*]} ${*:3} -pthread"
    fi
}
if [ "$TLS" = 1 ]; then
    llm_chat LLM_CHAT_MBEDTLS llm-chat-mbedtls -DLLM_STREAM_MBEDTLS -lmbedtls -lmbedx509 -lmbedcrypto
    llm_chat LLM_CHAT_OPENSSL llm-chat-openssl -DLLM_CHAT_OPENSSL -lssl -lcrypto
else
    llm_chat LLM_CHAT llm-chat
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

# --- cores ----------------------------------------------------------------------------------------
# With two cores or more (and PIN not 0), the servers run on the last core this script may use and the
# clients on the first, as a real server runs on another machine: on a 2-core loopback an unpinned
# server thread writing the whole body can take the client's core between the head and the first
# event (measured: llm-chat's first content chunk at 0.8-1.2 ms in half the runs unpinned, 0.25-0.43 ms
# pinned, its first byte 0.19-0.55 ms either way). The script pins itself after starting the servers,
# so the clients inherit the core and no taskset process is timed.
SERVER_CORE=() CLIENT_CORE=
ALLOWED_CPUS=$(awk '$1 == "Cpus_allowed_list:" { print $2 }' /proc/self/status 2>/dev/null)
if [ "${PIN:-1}" != 0 ] && command -v taskset >/dev/null 2>&1 && [[ "$ALLOWED_CPUS" =~ ^[0-9] ]]; then
    CLIENT_CORE=${ALLOWED_CPUS%%[-,]*}
    server_core=${ALLOWED_CPUS##*[-,]}
    if [ "$server_core" != "$CLIENT_CORE" ]; then SERVER_CORE=(taskset -c "$server_core"); else CLIENT_CORE=; fi
fi
[ "${#SERVER_CORE[@]}" -gt 0 ] && SPAWN+=("${SERVER_CORE[@]}")  # nginx too (tests/tls/nginx_common.sh)

# --- server ---------------------------------------------------------------------------------------
"${SERVER_CORE[@]+"${SERVER_CORE[@]}"}" "$SERVER_BIN" --host 127.0.0.1 --generate-events "$EVENTS" --framing chunked --chunk-per-event \
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
CHAT_ARGS=(--stats hi)

# --- nginx in front, for TLS ----------------------------------------------------------------------
start_tls_proxy() {
    PKI=$WORK/pki
    # shellcheck disable=SC2034  # nginx_common.sh's PKI functions log there
    OPENSSL_LOG=$WORK/openssl.log
    mkdir -p "$PKI" "$WORK/nginx/tmp" || return 1
    leaf_ext localhost "DNS:localhost, IP:127.0.0.1" && new_root "$PKI/root" "llm_stream bench CA" &&
        issue "$PKI/root" leaf localhost localhost -days 2 || return 1
    read -r TLS_PORT <<<"$(free_ports 1)"
    {
        nginx_conf_head "$WORK/nginx"
        printf '    server {\n        listen 127.0.0.1:%s ssl;\n        server_name localhost;\n' "$TLS_PORT"
        printf '        ssl_certificate %s;\n        ssl_certificate_key %s;\n' "$PKI/leaf.pem" "$PKI/leaf.key"
        printf '        location / { proxy_pass http://127.0.0.1:%s; }\n    }\n}\n' "$PORT"
    } >"$WORK/nginx/nginx.conf"
    launch_nginx "$WORK/nginx" "$TLS_PORT"
}
if [ "$TLS" = 1 ]; then
    start_tls_proxy || die "nginx with TLS would not start: $(tail -n 5 "$WORK/openssl.log" "$WORK/nginx/error.log" 2>/dev/null)"
    URL=https://localhost:$TLS_PORT/v1/chat/completions
    BASE=https://localhost:$TLS_PORT/v1
    CURL_CMD+=(--cacert "$PKI/root/ca.pem")
    CHAT_ARGS=(--cacert "$PKI/root/ca.pem" --stats hi)
fi
unset LLM_API_KEY LLM_MODEL  # the request is the same whatever the caller's environment
cd "$WORK" || exit 2         # no stray .env is read by llm-chat

if [ -n "$CLIENT_CORE" ]; then taskset -pc "$CLIENT_CORE" $$ >/dev/null || die "cannot pin the clients to core $CLIENT_CORE"; fi

# --- warm-up and checks (not timed) ---------------------------------------------------------------
"${CURL_CMD[@]}" -o "$WORK/body.sse" "$URL" || die "curl cannot fetch $URL"
got=$(wc -c <"$WORK/body.sse")
[ "$got" -eq "$SSE_BYTES" ] || die "curl fetched $got body bytes, expected $SSE_BYTES (another server build?)"
rm -f "$WORK/body.sse"
for name in "${CHATS[@]}"; do
    LLM_BASE_URL=$BASE "${CHAT_BINS[$name]}" "${CHAT_ARGS[@]}" >"$WORK/out.txt" 2>"$WORK/chat.err" ||
        die "$name failed: $(head -c 400 "$WORK/chat.err")"
    cmp -s "$WORK/out.txt" "$WORK/expected.txt" ||
        die "$name wrote $(wc -c <"$WORK/out.txt") bytes, not the expected reply of $((CONTENT_BYTES + 1)) bytes"
done

# --- or instructions counted, where timing means nothing --------------------------------------------
# CALLGRIND=1: each client runs once under valgrind's callgrind; its instruction count (the whole
# process: loader, TLS library, everything) stands for its CPU. For a loaded machine.
count_instructions() {
    local name profile=$WORK/callgrind.out
    echo "llm_stream end-to-end instruction counts: TLS=$TLS CALLGRIND=1 $0 ($EVENTS events; $(valgrind --version))"
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    for name in "${CLIENTS[@]}"; do
        rm -f "$profile"
        if [ "$name" = curl ]; then
            valgrind --tool=callgrind --callgrind-out-file="$profile" "${CURL_CMD[@]}" -o /dev/null "$URL" 2>"$WORK/vg.err"
        else
            LLM_BASE_URL=$BASE valgrind --tool=callgrind --callgrind-out-file="$profile" "${CHAT_BINS[$name]}" \
                "${CHAT_ARGS[@]}" >"$WORK/out.txt" 2>"$WORK/vg.err" && cmp -s "$WORK/out.txt" "$WORK/expected.txt"
        fi || { echo "$name failed under callgrind: $(tail -c 300 "$WORK/vg.err")" >&2; exit 1; }
        INSTRUCTIONS[$name]=$(awk '$1 == "summary:" { print $2 }' "$profile")
        printf '%-18s %14s instructions  %6.2fx curl\n' "$name" "${INSTRUCTIONS[$name]}" \
            "$(awk -v a="${INSTRUCTIONS[$name]}" -v b="${INSTRUCTIONS[curl]}" 'BEGIN { print a / b }')"
    done
}
CLIENTS=(curl "${CHATS[@]}")
declare -A INSTRUCTIONS
if [ "${CALLGRIND:-0}" = 1 ]; then
    command -v valgrind >/dev/null 2>&1 || die "CALLGRIND=1 needs valgrind"
    count_instructions
    exit 0
fi

# --- timed runs -----------------------------------------------------------------------------------
# Each client's times go to NAME.times ("wall user sys"), its time to first byte in ms to NAME.ttfb,
# llm-chat's to its first content chunk to NAME.content.
TIMEFORMAT='%3R %3U %3S'
FAILED=0
for name in "${CLIENTS[@]}"; do : >"$WORK/$name.times"; : >"$WORK/$name.ttfb"; : >"$WORK/$name.content"; done
for run in $(seq 1 "$RUNS"); do
    { time "${CURL_CMD[@]}" -o /dev/null -w '%{time_starttransfer}\n' "$URL" >"$WORK/curl.out" 2>"$WORK/curl.err"; } 2>"$WORK/t"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "run $run: curl failed (exit $rc): $(head -c 300 "$WORK/curl.err")" >&2
        FAILED=1
    fi
    cat "$WORK/t" >>"$WORK/curl.times"
    awk '{ printf "%.3f\n", $1 * 1000 }' "$WORK/curl.out" >>"$WORK/curl.ttfb"

    for name in "${CHATS[@]}"; do
        { time LLM_BASE_URL=$BASE "${CHAT_BINS[$name]}" "${CHAT_ARGS[@]}" >"$WORK/out.txt" 2>"$WORK/chat.err"; } 2>"$WORK/t"
        rc=$?
        if [ "$rc" -ne 0 ]; then
            echo "run $run: $name failed (exit $rc): $(head -c 300 "$WORK/chat.err")" >&2
            FAILED=1
        elif ! cmp -s "$WORK/out.txt" "$WORK/expected.txt"; then
            echo "run $run: $name output differs from the expected reply ($(wc -c <"$WORK/out.txt") bytes)" >&2
            FAILED=1
        fi
        cat "$WORK/t" >>"$WORK/$name.times"
        sed -n 's/.*, first byte at \([0-9.]*\) ms,.*/\1/p' "$WORK/chat.err" >>"$WORK/$name.ttfb"
        sed -n 's/^First chunk received: .*(\([0-9.]*\)ms)$/\1/p' "$WORK/chat.err" >>"$WORK/$name.content"
    done
done

# --- report ---------------------------------------------------------------------------------------
# median FILE COLUMN-EXPRESSION (awk, over fields $1 wall, $2 user, $3 sys)
median() {
    awk "{ print $2 }" "$1" | sort -g | awk '{ v[NR] = $1 }
        END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
declare -A WALL CPU TTFB
for name in "${CLIENTS[@]}"; do
    WALL[$name]=$(median "$WORK/$name.times" '$1')
    CPU[$name]=$(median "$WORK/$name.times" '$2 + $3')
    TTFB[$name]=$(median "$WORK/$name.ttfb" '$1')
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { if (r == "n/a") print "n/a"; else if (r + 0 <= t + 0) print "met"; else print "MISSED" }'; }

CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
[ -n "$CPU_MODEL" ] || CPU_MODEL=unknown

echo "llm_stream end-to-end benchmark: TLS=$TLS $0 $RUNS"
echo "machine:  $(nproc) CPUs, $CPU_MODEL; $(uname -sr); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "stream:   $EVENTS events from llm_test_server on 127.0.0.1 (HTTP chunked, one chunk per event),"
printf '          %.1f MB SSE body, %d bytes of reply content\n' "$(awk -v b="$SSE_BYTES" 'BEGIN { print b / 1e6 }')" "$CONTENT_BYTES"
if [ "$TLS" = 1 ]; then
    echo "TLS:      $("$NGINX" -v 2>&1 | sed 's/^nginx version: //') at $BASE (P-256 ECDSA certificate), unbuffered proxy to the server"
fi
for name in "${CHATS[@]}"; do
    echo "$name: ${CHAT_ORIGINS[$name]}"
    echo "          LLM_BASE_URL=$BASE $name ${CHAT_ARGS[*]} > out.txt"
done
echo "curl:     $(curl --version | head -n 1 | awk '{ print $1, $2, $5 }')"
echo "          $(printf '%q ' "${CURL_CMD[@]}")-o /dev/null -w '%{time_starttransfer}' $URL"
echo "runs:     $RUNS of each, alternating; client process only; medians in seconds (bash time, 1 ms resolution;"
echo "          CPU = user + sys per run, then the median, so it need not equal user + sys of the medians);"
echo "          first byte in ms: curl's time_starttransfer, llm-chat's \"first byte at\" (--stats), both the"
echo "          response's first byte from the start of the request"
if [ -n "$CLIENT_CORE" ]; then
    echo "cores:    servers on core ${SERVER_CORE[2]}, clients on core $CLIENT_CORE (PIN=0: unpinned)"
else
    echo "cores:    unpinned"
fi
echo
printf '%-18s %9s %9s %9s %9s %10s %12s\n' "" "wall" "user" "sys" "CPU" "body MB/s" "1st byte ms"
for name in "${CLIENTS[@]}"; do
    printf '%-18s %9s %9s %9s %9s %10.0f %12s\n' "$name" "${WALL[$name]}" "$(median "$WORK/$name.times" '$2')" \
        "$(median "$WORK/$name.times" '$3')" "${CPU[$name]}" \
        "$(median "$WORK/$name.times" "(\$1 > 0 ? $SSE_BYTES / 1e6 / \$1 : 0)")" "${TTFB[$name]}"
done
echo
for name in "${CHATS[@]}"; do
    cpu_target=2
    [ "$name" = llm-chat-openssl ] && cpu_target=1.2
    cpu_ratio=$(ratio "${CPU[$name]}" "${CPU[curl]}")
    wall_ratio=$(ratio "${WALL[$name]}" "${WALL[curl]}")
    ttfb_ratio=$(ratio "${TTFB[$name]}" "${TTFB[curl]}")
    echo "$name / curl:  CPU ${cpu_ratio}x (target <= ${cpu_target}x: $(verdict "$cpu_ratio" "$cpu_target")),  wall ${wall_ratio}x (target <= 1.5x: $(verdict "$wall_ratio" 1.5)),  first byte ${ttfb_ratio}x (target <= 1x: $(verdict "$ttfb_ratio" 1))"
done
for name in "${CHATS[@]}"; do
    echo "$name first content chunk (llm-chat's \"First chunk received\"; curl parses nothing): median $(median "$WORK/$name.content" '$1') ms"
done
echo
echo "per run (wall user sys, first byte ms; llm-chat: / first content chunk ms):"
for run in $(seq 1 "$RUNS"); do
    line=" "
    for name in "${CLIENTS[@]}"; do
        line+=" $name $(sed -n "${run}p" "$WORK/$name.times"), $(sed -n "${run}p" "$WORK/$name.ttfb")"
        [ "$name" = curl ] || line+=" / $(sed -n "${run}p" "$WORK/$name.content")"
        line+=" |"
    done
    echo "$line"
done

if [ "$FAILED" -ne 0 ]; then
    echo "some runs failed (see above): the figures are not trustworthy" >&2
    exit 1
fi
exit 0
