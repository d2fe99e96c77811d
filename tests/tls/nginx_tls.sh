#!/usr/bin/env bash
# HTTPS end to end against a real nginx on loopback (issue 4, items 3 and 9).
#
#   bash tests/tls/nginx_tls.sh BUILD_DIR
#
# BUILD_DIR is a CMake or Meson build tree: it uses BUILD_DIR/tests/llm_test_server (or
# BUILD_DIR/llm_test_server), BUILD_DIR/tests/test_tls and BUILD_DIR/examples/llm-chat (either may be
# missing; their checks are then left out). In a fresh temporary directory it
#   1. makes a PKI with openssl: a root CA, an intermediate CA under it, and leaf certificates signed by
#      the intermediate -- valid for localhost (SAN DNS:localhost, IP:127.0.0.1), for wrong.example,
#      for the IP address only (SAN IP:127.0.0.1), for the name only (SAN DNS:localhost, CN 127.0.0.1),
#      expired (2020), not yet valid (2099) -- plus a second, untrusted root with its own localhost leaf;
#   2. starts our test server (tests/data/streams/deepseek-chat.sse, chunked) several times: at once,
#      one event at a time with pauses (/slow/), a long generated stream (/big/) and one that stalls
#      (/stall/);
#   3. starts nginx (daemon off, one worker, everything inside the temporary directory, 127.0.0.1 only)
#      with one TLS server per certificate, and one plain-HTTP server, each proxying to the test servers
#      with proxy_http_version 1.1 and proxy_buffering off, so that nginx re-frames every body as chunked
#      the way a production proxy does;
#   4. runs test_tls (the library checks; see tests/test_tls.cpp) with the ports and CA paths in
#      LLM_TLS_* variables, then llm-chat against the same servers.
# Every process it starts is stopped by its PID on exit. Prints "N passed, M failed" (each test_tls
# test case and each llm-chat check counts once) and exits 1 when anything failed, 77 when it cannot
# run here (no nginx, no openssl, no test server, no TLS in the build), 2 on bad usage.
# LLM_TLS_KEEP=1 keeps the temporary directory (certificates, nginx.conf, logs) for a look afterwards.
# For another platform's build (tests/tls/wine_schannel.sh: Windows under wine): LLM_TLS_RUN is the
# command that runs test_tls and llm-chat (also found as .exe), LLM_TLS_BACKEND the backend their
# --version must name (default mbedtls), LLM_TLS_TEST_SERVER a native llm_test_server, and
# LLM_TLS_MORE_CHECKS a file sourced after the llm-chat checks, with everything above still running.
# LLM_TLS_BACKEND=openssl runs test_tls_openssl and llm-chat-openssl instead (the OpenSSL backend of
# llm_stream_openssl.hpp through the TLS hook).

set -u

SCRIPT_START=$(date +%s%N)

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 BUILD_DIR" >&2
    exit 2
fi
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../support/e2e_common.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/nginx_common.sh"
STREAM_FILE=$SRC/tests/data/streams/deepseek-chat.sse
EXPECTED='Hello! How can I assist you today? 😊'

skip() {
    echo "nginx_tls: skipped: $1"
    exit 77
}

SERVER_BIN=${LLM_TLS_TEST_SERVER:-$(first_executable "$BUILD/tests/llm_test_server" "$BUILD/llm_test_server")}
BACKEND=${LLM_TLS_BACKEND:-mbedtls}
TEST_NAME=test_tls
CHAT_NAME=llm-chat
if [ "$BACKEND" = openssl ]; then
    TEST_NAME=test_tls_openssl
    CHAT_NAME=llm-chat-openssl
fi
TEST_BIN=$(first_executable "$BUILD/tests/$TEST_NAME" "$BUILD/$TEST_NAME" "$BUILD/$TEST_NAME.exe")
CHAT_BIN=$(first_executable "$BUILD/examples/$CHAT_NAME" "$BUILD/$CHAT_NAME" "$BUILD/$CHAT_NAME.exe")
read -r -a RUN <<<"${LLM_TLS_RUN:-}"

[ -n "$SERVER_BIN" ] || skip "no llm_test_server in $BUILD/tests or $BUILD (build the tests first)"
find_nginx
[ -n "$NGINX" ] || skip "nginx is not installed (Debian: apt-get install nginx-light)"
command -v openssl >/dev/null 2>&1 || skip "openssl is not installed"
[ -f "$STREAM_FILE" ] || skip "$STREAM_FILE is missing"
[ -n "$TEST_BIN" ] || [ -n "$CHAT_BIN" ] || skip "neither test_tls nor llm-chat is built in $BUILD"
if [ -n "$CHAT_BIN" ] && ! "${RUN[@]+"${RUN[@]}"}" "$CHAT_BIN" --version 2>/dev/null | grep -q "tls: $BACKEND"; then
    echo "nginx_tls: $CHAT_BIN has no TLS backend ($("${RUN[@]+"${RUN[@]}"}" "$CHAT_BIN" --version 2>&1)): its checks are left out"
    CHAT_BIN=
fi
[ -n "$TEST_BIN" ] || [ -n "$CHAT_BIN" ] || skip "the build has no TLS backend (mbedTLS not found at configure time)"

work_dir llm-nginx-tls LLM_TLS_KEEP

# The checks must not depend on whoever runs them.
unset LLM_API_KEY LLM_BASE_URL LLM_MODEL LLM_STUB_DELAY_MS SSL_CERT_FILE SSL_CERT_DIR
unset OPENSSL_CONF http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

die() {
    echo "nginx_tls: $1" >&2
    [ $# -gt 1 ] && [ -f "$2" ] && sed 's/^/    /' "$2" | tail -n 30 >&2
    echo "0 passed, 1 failed"
    exit 1
}

# ------------------------------------------------------------------------------------------------
# 1. The PKI
# ------------------------------------------------------------------------------------------------
PKI=$WORK/pki
mkdir -p "$PKI"
OPENSSL_LOG=$WORK/openssl.log

make_pki() {
    leaf_ext localhost "DNS:localhost, IP:127.0.0.1" &&
        leaf_ext wrong "DNS:wrong.example" &&
        leaf_ext ip-only "IP:127.0.0.1" &&
        leaf_ext name-only "DNS:localhost" &&
        printf '[ ext ]\nbasicConstraints = critical, CA:TRUE, pathlen:0\nkeyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always, issuer\n' \
            >"$PKI/intermediate.ext" &&
        new_root "$PKI/root" "llm_stream test root CA" &&
        new_root "$PKI/other" "llm_stream untrusted CA" &&
        ca_config "$PKI/intermediate" &&
        issue "$PKI/root" intermediate-cert "llm_stream test intermediate CA" intermediate -days 30 &&
        cp "$PKI/intermediate-cert.key" "$PKI/intermediate/ca.key" &&
        cp "$PKI/intermediate-cert.pem" "$PKI/intermediate/ca.pem" &&
        issue "$PKI/intermediate" valid localhost localhost -days 30 &&
        issue "$PKI/intermediate" wrong-name wrong.example wrong -days 30 &&
        issue "$PKI/intermediate" ip-only "llm_stream IP-only leaf" ip-only -days 30 &&
        issue "$PKI/intermediate" name-only 127.0.0.1 name-only -days 30 &&
        issue "$PKI/intermediate" expired localhost localhost -startdate 20200101000000Z -enddate 20200201000000Z &&
        issue "$PKI/intermediate" not-yet-valid localhost localhost -startdate 20990101000000Z -enddate 20990201000000Z &&
        issue "$PKI/other" untrusted localhost localhost -days 30 || return 1
    # nginx serves each leaf with the intermediate after it.
    local name
    for name in valid wrong-name ip-only name-only expired not-yet-valid; do
        cat "$PKI/$name.pem" "$PKI/intermediate/ca.pem" >"$PKI/$name.chain.pem" || return 1
    done
    cp "$PKI/untrusted.pem" "$PKI/untrusted.chain.pem" || return 1
    # The trust the clients get: the root only, as a file and as a directory holding only PEM certificates.
    cp "$PKI/root/ca.pem" "$PKI/ca.pem" && mkdir -p "$PKI/ca-dir" && cp "$PKI/root/ca.pem" "$PKI/ca-dir/root.pem"
}
make_pki || die "openssl could not make the test certificates" "$OPENSSL_LOG"
openssl verify -CAfile "$PKI/ca.pem" -untrusted "$PKI/intermediate/ca.pem" "$PKI/valid.pem" >>"$OPENSSL_LOG" 2>&1 ||
    die "the valid chain does not verify with openssl" "$OPENSSL_LOG"
CA_FILE=$PKI/ca.pem
CA_DIR=$PKI/ca-dir

# ------------------------------------------------------------------------------------------------
# 2. The test servers
# ------------------------------------------------------------------------------------------------
# start_server NAME ARGS...: starts llm_test_server; sets PORT. Its stdout/stderr go to NAME.out/.err.
start_server() {
    local name=$1
    shift
    "${SPAWN[@]+"${SPAWN[@]}"}" "$SERVER_BIN" --host 127.0.0.1 --port 0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PIDS+=($!)
    PORT=$(port_of "${PIDS[-1]}" "$WORK/$name.out") || die "the $name test server did not start" "$WORK/$name.err"
}
start_server upstream --stream "$STREAM_FILE" --framing chunked --chunk-per-event
UP_FAST=$PORT
start_server upstream-slow --stream "$STREAM_FILE" --framing chunked --chunk-per-event --delay-ms 5
UP_SLOW=$PORT
start_server upstream-big --generate-events 6000 --framing chunked --chunk-size 7001
UP_BIG=$PORT
start_server upstream-stall --stream "$STREAM_FILE" --framing chunked --chunk-per-event --delay-ms 3000
UP_STALL=$PORT

# ------------------------------------------------------------------------------------------------
# 3. nginx
# ------------------------------------------------------------------------------------------------
NGX=$WORK/nginx
mkdir -p "$NGX/tmp"
chmod 755 "$WORK" "$NGX" "$NGX/tmp"  # when run as root, the worker runs as nobody

write_nginx_conf() {
    local routes="
        location /slow/ { proxy_pass http://127.0.0.1:$UP_SLOW; }
        location /big/ { proxy_pass http://127.0.0.1:$UP_BIG; }
        location /stall/ { proxy_pass http://127.0.0.1:$UP_STALL; }
        location / { proxy_pass http://127.0.0.1:$UP_FAST; }"
    local tls_server name port
    {
        nginx_conf_head "$NGX"
        for tls_server in valid:$P_VALID wrong-name:$P_WRONG ip-only:$P_IP_ONLY name-only:$P_NAME_ONLY \
            expired:$P_EXPIRED not-yet-valid:$P_NYV untrusted:$P_UNTRUSTED; do
            name=${tls_server%%:*}
            port=${tls_server##*:}
            cat <<EOF
    server {  # $name
        listen 127.0.0.1:$port ssl;
        server_name localhost;
        ssl_certificate $PKI/$name.chain.pem;
        ssl_certificate_key $PKI/$name.key;
$routes
    }
EOF
        done
        cat <<EOF
    server {  # plain HTTP
        listen 127.0.0.1:$P_PLAIN;
        server_name localhost;
$routes
    }
}
EOF
    } >"$NGX/nginx.conf"
}

start_nginx() {
    read -r P_VALID P_WRONG P_IP_ONLY P_NAME_ONLY P_EXPIRED P_NYV P_UNTRUSTED P_PLAIN <<<"$(free_ports 8)"
    [ -n "$P_PLAIN" ] || return 1
    write_nginx_conf
    launch_nginx "$NGX" "$P_VALID" "$P_WRONG" "$P_IP_ONLY" "$P_NAME_ONLY" "$P_EXPIRED" "$P_NYV" "$P_UNTRUSTED" "$P_PLAIN"
}
# A port taken between choosing and binding it: choose again.
started=0
for attempt in 1 2 3; do
    if start_nginx; then
        started=1
        break
    fi
    echo "nginx_tls: nginx did not start (attempt $attempt):"
    cat "$NGX/stderr.log" "$NGX/error.log" 2>/dev/null | tail -n 5 | sed 's/^/    /'
done
[ "$started" = 1 ] || die "nginx would not start" "$NGX/error.log"
echo "nginx_tls: nginx $("$NGINX" -v 2>&1 | sed 's/^nginx version: //') on 127.0.0.1:" \
    "valid $P_VALID, wrong-name $P_WRONG, ip-only $P_IP_ONLY, name-only $P_NAME_ONLY, expired $P_EXPIRED," \
    "not-yet-valid $P_NYV, untrusted $P_UNTRUSTED, plain $P_PLAIN"

# ------------------------------------------------------------------------------------------------
# 4. The checks (pass and fail: tests/support/e2e_common.sh)
# ------------------------------------------------------------------------------------------------
PASSED=0
FAILED=0

# 4a. The library, through test_tls.
if [ -n "$TEST_BIN" ]; then
    echo "nginx_tls: running $TEST_BIN"
    checked 600 env \
        LLM_TLS_PORT_VALID="$P_VALID" LLM_TLS_PORT_WRONG_NAME="$P_WRONG" LLM_TLS_PORT_EXPIRED="$P_EXPIRED" \
        LLM_TLS_PORT_IP_ONLY="$P_IP_ONLY" LLM_TLS_PORT_NAME_ONLY="$P_NAME_ONLY" \
        LLM_TLS_PORT_NOT_YET_VALID="$P_NYV" LLM_TLS_PORT_UNTRUSTED="$P_UNTRUSTED" LLM_TLS_PORT_PLAIN="$P_PLAIN" \
        LLM_TLS_UPSTREAM_PORT="$UP_FAST" LLM_TLS_BIG_UPSTREAM_PORT="$UP_BIG" \
        LLM_TLS_CA_FILE="$CA_FILE" LLM_TLS_CA_DIR="$CA_DIR" LLM_TLS_ACCESS_LOG="$NGX/access.log" \
        "${RUN[@]+"${RUN[@]}"}" "$TEST_BIN" </dev/null >"$WORK/test_tls.log" 2>&1
    cat "$WORK/test_tls.log"
    # "[doctest] test cases: 27 | 25 passed | 2 failed | 0 skipped"
    summary=$(grep '^\[doctest\] test cases:' "$WORK/test_tls.log" | tail -n 1)
    cases_passed=$(sed -n 's/.*| *\([0-9][0-9]*\) passed.*/\1/p' <<<"$summary")
    cases_failed=$(sed -n 's/.*| *\([0-9][0-9]*\) failed.*/\1/p' <<<"$summary")
    if [ -z "$cases_passed" ] || [ -z "$cases_failed" ]; then
        FAILED=$((FAILED + 1))
        echo "FAIL - test_tls ended without a doctest summary (exit $RC: a crash or a hang?)"
    else
        PASSED=$((PASSED + cases_passed))
        FAILED=$((FAILED + cases_failed))
        if [ "$RC" -ne 0 ] && [ "$cases_failed" -eq 0 ]; then
            FAILED=$((FAILED + 1))
            echo "FAIL - test_tls exited $RC with no failed test case (a sanitizer report?)"
        fi
        echo "nginx_tls: test_tls: $cases_passed passed, $cases_failed failed"
    fi
fi

# 4b. llm-chat.
if [ -n "$CHAT_BIN" ]; then
    # chat [NAME=VALUE...] ARG...: llm-chat with those variables set; RC, $WORK/out, $WORK/err; ELAPSED_MS.
    chat() {
        local vars=()
        while [ $# -gt 0 ] && [[ "$1" =~ ^[A-Z_]+= ]]; do
            vars+=("$1")
            shift
        done
        local t0
        t0=$(date +%s%N)
        checked 30 env "${vars[@]+"${vars[@]}"}" "${RUN[@]+"${RUN[@]}"}" "$CHAT_BIN" "$@" </dev/null >"$WORK/out" 2>"$WORK/err"
        ELAPSED_MS=$((($(date +%s%N) - t0) / 1000000))
    }
    url() { echo "https://localhost:$1/v1"; }
    out_is_expected() { [ "$(cat "$WORK/out")" = "$EXPECTED" ]; }
    one_error_line() { [ "$(grep -c '^llm-chat: error: ' "$WORK/err")" -eq 1 ]; }
    err_has() { grep -qi -- "$1" "$WORK/err"; }

    chat --version
    if [ "$RC" -eq 0 ] && grep -q "tls: $BACKEND" "$WORK/out"; then
        pass "llm-chat --version names the TLS backend ($(cat "$WORK/out"))"
    else
        fail "llm-chat --version names the TLS backend" "expected 'tls: $BACKEND' on stdout"
    fi

    chat LLM_BASE_URL="$(url "$P_VALID")" --cacert "$CA_FILE" hi
    if [ "$RC" -eq 0 ] && out_is_expected && ! err_has 'error'; then
        pass "--cacert: the valid chain streams through nginx"
    else
        fail "--cacert: the valid chain streams through nginx" "expected exit 0 and '$EXPECTED'"
    fi

    chat LLM_BASE_URL="$(url "$P_VALID")" --cacert "$CA_FILE" --events hi
    if [ "$RC" -eq 0 ] && grep -q '"type":"finish","reason":"stop"' "$WORK/out" &&
        grep -q '"type":"usage","prompt_tokens":12,"completion_tokens":11,"total_tokens":23' "$WORK/out"; then
        pass "--cacert --events: finish and usage events over TLS"
    else
        fail "--cacert --events: finish and usage events over TLS"
    fi

    chat LLM_BASE_URL="https://localhost:$P_VALID/slow/v1" --cacert "$CA_FILE" --stats hi
    if [ "$RC" -eq 0 ] && out_is_expected && err_has 'LLM stream completed: .* chunks, 36 chars'; then
        pass "--stats: one event per chunk through nginx, counted"
    else
        fail "--stats: one event per chunk through nginx, counted"
    fi

    chat LLM_BASE_URL="$(url "$P_VALID")" SSL_CERT_FILE="$CA_FILE" hi
    if [ "$RC" -eq 0 ] && out_is_expected; then
        pass "SSL_CERT_FILE is the CA bundle when --cacert is not given"
    else
        fail "SSL_CERT_FILE is the CA bundle when --cacert is not given"
    fi

    chat LLM_BASE_URL="$(url "$P_VALID")" SSL_CERT_DIR="$CA_DIR" hi
    if [ "$RC" -eq 0 ] && out_is_expected; then
        pass "SSL_CERT_DIR is the CA directory when --cacert is not given"
    else
        fail "SSL_CERT_DIR is the CA directory when --cacert is not given"
    fi

    chat LLM_BASE_URL="$(url "$P_VALID")" hi
    if [ "$RC" -eq 1 ] && [ ! -s "$WORK/out" ] && one_error_line && err_has 'certificate'; then
        pass "no CA given: the system bundle does not trust the test CA (exit 1)"
    else
        fail "no CA given: the system bundle does not trust the test CA (exit 1)"
    fi

    # expect_refused NAME PORT WORDS: exit 1, nothing on stdout, one error line about the certificate
    # that matches the extended regex WORDS, quickly (no retries). The CA comes from CA_ARGS.
    CA_ARGS=(--cacert "$CA_FILE")
    expect_refused() {
        chat LLM_BASE_URL="$(url "$2")" "${CA_ARGS[@]+"${CA_ARGS[@]}"}" hi
        if [ "$RC" -eq 1 ] && [ ! -s "$WORK/out" ] && one_error_line &&
            grep '^llm-chat: error: ' "$WORK/err" | grep -qiE 'tls|certificate' &&
            grep '^llm-chat: error: ' "$WORK/err" | grep -qiE "$3" && ! err_has 'retrying'; then
            pass "$1 ($(grep '^llm-chat: error: ' "$WORK/err" | head -c 200))"
        else
            fail "$1" "expected exit 1, empty stdout, one 'llm-chat: error: ' line matching /$3/, no retry"
        fi
    }
    expect_refused "wrong host name: refused" "$P_WRONG" 'does not match the host name localhost'

    chat LLM_BASE_URL="https://127.0.0.1:$P_IP_ONLY/v1" --cacert "$CA_FILE" hi
    if [ "$RC" -eq 0 ] && out_is_expected && ! err_has 'error'; then
        pass "https:// to an IP address: a certificate listing it (SAN IP:127.0.0.1) streams"
    else
        fail "https:// to an IP address: a certificate listing it (SAN IP:127.0.0.1) streams"
    fi
    chat LLM_BASE_URL="https://127.0.0.1:$P_NAME_ONLY/v1" --cacert "$CA_FILE" hi
    if [ "$RC" -eq 1 ] && [ ! -s "$WORK/out" ] && one_error_line &&
        grep '^llm-chat: error: ' "$WORK/err" | grep -q 'does not match the IP address 127.0.0.1'; then
        pass "https:// to an IP address the certificate does not list: refused ($(grep '^llm-chat: error: ' "$WORK/err" | head -c 200))"
    else
        fail "https:// to an IP address the certificate does not list: refused"
    fi
    expect_refused "expired certificate: refused" "$P_EXPIRED" 'expired'
    expect_refused "certificate not yet valid: refused" "$P_NYV" 'future|not yet valid'
    expect_refused "untrusted CA: refused" "$P_UNTRUSTED" 'trusted|signed'

    chat LLM_BASE_URL="$(url "$P_UNTRUSTED")" --insecure hi
    if [ "$RC" -eq 0 ] && out_is_expected && grep -qi 'warning' "$WORK/err" && err_has 'insecure'; then
        pass "--insecure: the untrusted server streams, with a loud warning on stderr"
    else
        fail "--insecure: the untrusted server streams, with a loud warning on stderr"
    fi

    chat LLM_BASE_URL="$(url "$P_WRONG")" --cacert "$CA_FILE" --insecure hi
    if [ "$RC" -eq 0 ] && out_is_expected && grep -qi 'warning' "$WORK/err"; then
        pass "--insecure: the wrong-name server streams too"
    else
        fail "--insecure: the wrong-name server streams too"
    fi

    chat LLM_BASE_URL="$(url "$P_VALID")" --cacert "$WORK/no-such-ca.pem" hi
    if [ "$RC" -eq 1 ] && [ ! -s "$WORK/out" ] && one_error_line && err_has 'no-such-ca.pem'; then
        pass "--cacert with a missing file: one error line naming it"
    else
        fail "--cacert with a missing file: one error line naming it"
    fi

    # Several times: the message must not depend on whether a read would have blocked first.
    plain_ok=1
    for i in 1 2 3 4; do
        chat LLM_BASE_URL="$(url "$P_PLAIN")" --cacert "$CA_FILE" --timeout 1 hi
        if ! { [ "$RC" -eq 1 ] && one_error_line && grep '^llm-chat: error: ' "$WORK/err" | grep -qi 'tls' &&
            ! err_has 'temporarily unavailable' && [ "$ELAPSED_MS" -lt 5000 ]; }; then
            plain_ok=0
            break
        fi
    done
    if [ "$plain_ok" = 1 ]; then
        pass "https:// to nginx's plain-HTTP port: a TLS error, quickly ($(grep '^llm-chat: error: ' "$WORK/err" | head -c 200))"
    else
        fail "https:// to nginx's plain-HTTP port: a TLS error, quickly" \
            "run $i took ${ELAPSED_MS} ms; expected exit 1 and one TLS error line not blaming EAGAIN"
    fi

    chat LLM_BASE_URL="http://localhost:$P_PLAIN/v1" hi
    if [ "$RC" -eq 0 ] && out_is_expected; then
        pass "http:// through nginx's plain-HTTP port (the same proxy, no TLS)"
    else
        fail "http:// through nginx's plain-HTTP port (the same proxy, no TLS)"
    fi

    chat LLM_BASE_URL="https://localhost:$P_VALID/big/v1" --cacert "$CA_FILE" hi
    big_tls=$(cat "$WORK/out")
    big_rc=$RC
    chat LLM_BASE_URL="http://127.0.0.1:$UP_BIG/v1" hi
    if [ "$big_rc" -eq 0 ] && [ "$RC" -eq 0 ] && [ "${#big_tls}" -gt 20000 ] && [ "$big_tls" = "$(cat "$WORK/out")" ]; then
        pass "a long stream through nginx over TLS prints exactly what the server sent (${#big_tls} characters)"
    else
        fail "a long stream through nginx over TLS prints exactly what the server sent" \
            "TLS exit $big_rc, ${#big_tls} characters"
    fi

    # shellcheck disable=SC1090  # the caller's file
    if [ -n "${LLM_TLS_MORE_CHECKS:-}" ]; then source "$LLM_TLS_MORE_CHECKS"; fi
fi

# nginx's own view: anything it logged as an error (a worker crash, a config problem) is worth seeing.
if grep -qE '\[(alert|emerg|crit)\]' "$NGX/error.log"; then
    FAILED=$((FAILED + 1))
    echo "FAIL - nginx logged alerts:"
    grep -E '\[(alert|emerg|crit)\]' "$NGX/error.log" | head -n 10 | sed 's/^/       /'
fi

ELAPSED=$((($(date +%s%N) - SCRIPT_START) / 1000000))
echo "nginx_tls: done in $((ELAPSED / 1000)).$(printf '%03d' $((ELAPSED % 1000))) s"
echo "$PASSED passed, $FAILED failed"
if [ "$FAILED" -ne 0 ]; then exit 1; fi
if [ "$PASSED" -eq 0 ]; then exit 77; fi
exit 0
