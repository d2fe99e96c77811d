#!/usr/bin/env bash
# llm-chat through real HTTP proxies on loopback (issue 11, item 1).
#
#   bash tests/proxy/proxy_e2e.sh BUILD_DIR
#
# BUILD_DIR is a CMake or Meson build tree with llm_test_server and llm-chat. In a fresh temporary
# directory it starts
#   - llm_test_server: the http:// origin (tests/data/streams/deepseek-chat.sse), saving each request;
#   - nginx serving TLS in front of it with a localhost certificate from a test CA (the PKI and nginx
#     helpers of tests/tls/nginx_common.sh): the https:// origin, left out without nginx, openssl or a
#     TLS backend in llm-chat;
#   - Debian's tinyproxy twice, without and with BasicAuth, and squid (no cache, localhost allowed,
#     CONNECT only to the nginx port), each on a free loopback port with its own config, pid and log
#     files in the temporary directory (a packaged service never gets in the way);
# then runs llm-chat with the proxy variables: both origins through each proxy, wrong and missing
# credentials (407, one attempt), a CONNECT squid refuses (403), no_proxy bypassing a dead proxy, and
# --verbose output without the API key or the proxy credentials. Every process it starts is stopped by
# its PID on exit. Prints "N passed, M failed"; exits 1 when anything failed, 77 when it cannot run here
# (no llm-chat or test server, neither tinyproxy nor squid), 2 on bad usage. A proxy that is not
# installed has its checks left out. LLM_PROXY_KEEP=1 keeps the temporary directory.

set -u

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 BUILD_DIR" >&2
    exit 2
fi
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR
source "$SRC/tests/support/e2e_common.sh"
# shellcheck source-path=SCRIPTDIR
source "$SRC/tests/tls/nginx_common.sh"
STREAM_FILE=$SRC/tests/data/streams/deepseek-chat.sse
EXPECTED='Hello! How can I assist you today? 😊'
API_KEY=sk-proxy-e2e-secret-key-0123
PROXY_USER=llmuser
PROXY_PASSWORD=pr0xy-pass
# The password percent-encoded in part in the URLs: llm-chat must decode it.
PROXY_PASSWORD_ENCODED=pr0xy%2Dpass

skip() {
    echo "proxy_e2e: skipped: $1"
    exit 77
}

SERVER_BIN=$(first_executable "$BUILD/tests/llm_test_server" "$BUILD/llm_test_server")
CHAT_BIN=$(first_executable "$BUILD/examples/llm-chat" "$BUILD/llm-chat")
TINYPROXY=$(command -v tinyproxy || true)
SQUID=$(command -v squid || true)
if [ -z "$SQUID" ] && [ -x /usr/sbin/squid ]; then SQUID=/usr/sbin/squid; fi
[ -n "$SERVER_BIN" ] || skip "no llm_test_server in $BUILD/tests or $BUILD (build the tests first)"
[ -n "$CHAT_BIN" ] || skip "no llm-chat in $BUILD/examples or $BUILD"
[ -n "$TINYPROXY" ] || [ -n "$SQUID" ] || skip "neither tinyproxy nor squid is installed (Debian: apt-get install tinyproxy squid)"
find_nginx
HTTPS=1
if [ -z "$NGINX" ] || ! command -v openssl >/dev/null 2>&1 || ! "$CHAT_BIN" --version | grep -q 'tls: mbedtls'; then
    echo "proxy_e2e: no nginx, openssl or TLS in llm-chat: the https:// checks are left out"
    HTTPS=
fi

work_dir llm-proxy-e2e LLM_PROXY_KEEP
chmod 755 "$WORK"  # run as root, nginx's worker and squid run as other users

# The checks must not depend on whoever runs them.
unset LLM_API LLM_API_KEY LLM_BASE_URL LLM_MODEL LLM_STUB_DELAY_MS SSL_CERT_FILE SSL_CERT_DIR
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

die() {
    echo "proxy_e2e: $1" >&2
    [ $# -gt 1 ] && [ -f "$2" ] && sed 's/^/    /' "$2" | tail -n 30 >&2
    echo "0 passed, 1 failed"
    exit 1
}

# wait_for_port PID PORT: PORT accepts connections on 127.0.0.1 within 10 s while PID runs.
wait_for_port() {
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$1" 2>/dev/null || return 1
        port_open "$2" && return 0
        sleep 0.1
    done
    return 1
}

# ------------------------------------------------------------------------------------------------
# 1. The origins
# ------------------------------------------------------------------------------------------------
"${SPAWN[@]+"${SPAWN[@]}"}" "$SERVER_BIN" --host 127.0.0.1 --port 0 --stream "$STREAM_FILE" --framing chunked \
    --chunk-per-event --save-requests "$WORK/requests" >"$WORK/origin.out" 2>"$WORK/origin.err" &
PIDS+=($!)
ORIGIN_PORT=$(port_of "${PIDS[-1]}" "$WORK/origin.out") || die "the test server did not start" "$WORK/origin.err"
HTTP_ORIGIN="http://127.0.0.1:$ORIGIN_PORT/v1"

read -r TLS_PORT TINY_PORT TINY_AUTH_PORT SQUID_PORT DEAD_PORT <<<"$(free_ports 5)"
[ -n "$DEAD_PORT" ] || die "no free loopback ports"

PKI=$WORK/pki
OPENSSL_LOG=$WORK/openssl.log
if [ -n "$HTTPS" ]; then
    mkdir -p "$PKI"
    { leaf_ext localhost "DNS:localhost, IP:127.0.0.1" && new_root "$PKI/root" "llm_stream proxy test CA" &&
        issue "$PKI/root" localhost localhost localhost -days 30; } || die "openssl could not make the test certificates" "$OPENSSL_LOG"
    NGX=$WORK/nginx
    mkdir -p "$NGX/tmp"
    chmod 755 "$NGX" "$NGX/tmp"
    {
        nginx_conf_head "$NGX"
        cat <<EOF
    server {
        listen 127.0.0.1:$TLS_PORT ssl;
        server_name localhost;
        ssl_certificate $PKI/localhost.pem;
        ssl_certificate_key $PKI/localhost.key;
        location / { proxy_pass http://127.0.0.1:$ORIGIN_PORT; }
    }
}
EOF
    } >"$NGX/nginx.conf"
    launch_nginx "$NGX" "$TLS_PORT" || die "nginx would not start" "$NGX/error.log"
    HTTPS_ORIGIN="https://localhost:$TLS_PORT/v1"
fi

# ------------------------------------------------------------------------------------------------
# 2. The proxies
# ------------------------------------------------------------------------------------------------
# start_tinyproxy NAME PORT [BasicAuth USER PASSWORD]: tinyproxy in the foreground, NAME.conf and
# NAME.log in the temporary directory.
start_tinyproxy() {
    local name=$1 port=$2
    shift 2
    {
        echo "Port $port"
        echo "Listen 127.0.0.1"
        echo "Timeout 30"
        echo "PidFile \"$WORK/$name.pid\""
        echo "LogFile \"$WORK/$name.log\""
        echo "LogLevel Info"
        echo "MaxClients 20"
        echo "Allow 127.0.0.1"
        [ $# -gt 0 ] && echo "$*"
    } >"$WORK/$name.conf"
    "${SPAWN[@]+"${SPAWN[@]}"}" "$TINYPROXY" -d -c "$WORK/$name.conf" >"$WORK/$name.out" 2>&1 </dev/null &
    PIDS+=($!)
    wait_for_port "${PIDS[-1]}" "$port" || die "tinyproxy ($name) did not start" "$WORK/$name.out"
}

start_squid() {
    mkdir -p "$WORK/squid"
    chmod 777 "$WORK/squid"  # run as root, squid works as the proxy user
    cat >"$WORK/squid/squid.conf" <<EOF
http_port 127.0.0.1:$SQUID_PORT
pid_filename $WORK/squid/squid.pid
cache_log $WORK/squid/cache.log
access_log stdio:$WORK/squid/access.log
coredump_dir $WORK/squid
netdb_filename none
pinger_enable off
cache deny all
shutdown_lifetime 0 seconds
acl llm_connect method CONNECT
acl llm_tls_port port $TLS_PORT
http_access deny llm_connect !llm_tls_port
http_access allow localhost
http_access deny all
EOF
    "${SPAWN[@]+"${SPAWN[@]}"}" "$SQUID" -N -f "$WORK/squid/squid.conf" >"$WORK/squid/stdout.log" 2>&1 </dev/null &
    PIDS+=($!)
    wait_for_port "${PIDS[-1]}" "$SQUID_PORT" || die "squid did not start" "$WORK/squid/cache.log"
}

if [ -n "$TINYPROXY" ]; then
    start_tinyproxy tinyproxy "$TINY_PORT"
    start_tinyproxy tinyproxy-auth "$TINY_AUTH_PORT" BasicAuth "$PROXY_USER" "$PROXY_PASSWORD"
else
    echo "proxy_e2e: tinyproxy is not installed: its checks are left out"
fi
if [ -n "$SQUID" ]; then start_squid; else echo "proxy_e2e: squid is not installed: its checks are left out"; fi

# ------------------------------------------------------------------------------------------------
# 3. The checks
# ------------------------------------------------------------------------------------------------
PASSED=0
FAILED=0

# chat [NAME=VALUE...] ARG...: llm-chat with those variables set (and the API key); RC, $WORK/out, $WORK/err.
# Loopback goes direct unless no_proxy names "<-loopback>", and every origin here is on loopback: so
# that word is the default, unless the call sets no_proxy or NO_PROXY itself.
chat() {
    local vars=() no_proxy_default=(no_proxy='<-loopback>')
    while [ $# -gt 0 ] && [[ "$1" =~ ^[A-Za-z_]+= ]]; do
        [[ "$1" =~ ^(no_proxy|NO_PROXY)= ]] && no_proxy_default=()
        vars+=("$1")
        shift
    done
    checked 60 env LLM_API_KEY="$API_KEY" "${no_proxy_default[@]+"${no_proxy_default[@]}"}" "${vars[@]+"${vars[@]}"}" \
        "$CHAT_BIN" "$@" </dev/null >"$WORK/out" 2>"$WORK/err"
}
streamed() { [ "$RC" -eq 0 ] && [ "$(cat "$WORK/out")" = "$EXPECTED" ]; }
error_line() { grep '^llm-chat: error: ' "$WORK/err" | head -c 300; }
one_error_line() { [ "$(grep -c '^llm-chat: error: ' "$WORK/err")" -eq 1 ]; }
# lines FILE: how many lines FILE has (0 when missing), to see what a run added to a log.
lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
# logged_since FILE COUNT REGEX: a line after the first COUNT lines of FILE matches REGEX.
logged_since() { tail -n +"$(($2 + 1))" "$1" 2>/dev/null | grep -qE "$3"; }
# logged_within FILE COUNT REGEX: as logged_since, waiting up to 10 s for the line. A proxy writes
# its log line when it finishes the transaction, which can be after the client has read the whole
# reply and exited (squid did so on a busy CI machine).
logged_within() { within_10s logged_since "$@"; }
# through NAME PROXY_URL LOG ORIGIN_URL REGEX [llm-chat ARGS]: streams ORIGIN_URL through the proxy,
# which logs a line matching REGEX.
through() {
    local name=$1 proxy=$2 log=$3 origin=$4 regex=$5 before
    shift 5
    before=$(lines "$log")
    chat LLM_BASE_URL="$origin" http_proxy="$proxy" https_proxy="$proxy" "$@" hi
    if streamed && logged_within "$log" "$before" "$regex"; then
        pass "$name"
    else
        fail "$name" "expected exit 0, the reply, and a line matching /$regex/ in $log"
    fi
}
# refused NAME REGEX [NAME=VALUE...]: exit 1, one error line matching REGEX, no retry.
refused() {
    local name=$1 regex=$2
    shift 2
    chat "$@" --verbose hi
    if [ "$RC" -eq 1 ] && [ ! -s "$WORK/out" ] && one_error_line && error_line | grep -qE "$regex" &&
        ! grep -q 'retrying' "$WORK/err" && [ "$(grep -c ', attempt ' "$WORK/err")" -eq 1 ]; then
        pass "$name ($(error_line))"
    else
        fail "$name" "expected exit 1, one error line matching /$regex/, one attempt"
    fi
}

TINY_URL=http://127.0.0.1:$TINY_PORT
AUTH_URL=http://$PROXY_USER:$PROXY_PASSWORD_ENCODED@127.0.0.1:$TINY_AUTH_PORT
WRONG_URL=http://$PROXY_USER:wrong-pass@127.0.0.1:$TINY_AUTH_PORT
SQUID_URL=http://127.0.0.1:$SQUID_PORT
HTTP_LOG_REGEX="POST http://127.0.0.1:$ORIGIN_PORT/v1/chat/completions"
CONNECT_LOG_REGEX="CONNECT localhost:$TLS_PORT"
CA=(--cacert "$PKI/root/ca.pem")

if [ -n "$TINYPROXY" ]; then
    through "tinyproxy: http:// origin, absolute-form request" "$TINY_URL" "$WORK/tinyproxy.log" \
        "$HTTP_ORIGIN" "$HTTP_LOG_REGEX"
    through "tinyproxy with BasicAuth: http:// origin, percent-encoded credentials" "$AUTH_URL" \
        "$WORK/tinyproxy-auth.log" "$HTTP_ORIGIN" "$HTTP_LOG_REGEX"
    if [ -n "$HTTPS" ]; then
        through "tinyproxy: https:// origin through CONNECT, TLS to localhost inside" "$TINY_URL" \
            "$WORK/tinyproxy.log" "$HTTPS_ORIGIN" "$CONNECT_LOG_REGEX" "${CA[@]}"
        through "tinyproxy with BasicAuth: https:// origin through CONNECT" "$AUTH_URL" \
            "$WORK/tinyproxy-auth.log" "$HTTPS_ORIGIN" "$CONNECT_LOG_REGEX" "${CA[@]}"
        refused "tinyproxy with BasicAuth, wrong password: 401 (tinyproxy's answer), not retried" \
            'the proxy 127\.0\.0\.1:[0-9]+ refused the credentials \((401|407)\)' \
            LLM_BASE_URL="$HTTPS_ORIGIN" https_proxy="$WRONG_URL" "${CA[@]}"
        refused "tinyproxy with BasicAuth, no credentials: 407, not retried" \
            'the proxy 127\.0\.0\.1:[0-9]+ requires authentication \(407\)' \
            LLM_BASE_URL="$HTTPS_ORIGIN" https_proxy="http://127.0.0.1:$TINY_AUTH_PORT" "${CA[@]}"
    fi
    refused "tinyproxy with BasicAuth, wrong password, http:// origin: HTTP 401, not retried" '^llm-chat: error: HTTP 40[17]' \
        LLM_BASE_URL="$HTTP_ORIGIN" http_proxy="$WRONG_URL"

    origin_args=(LLM_BASE_URL="$HTTP_ORIGIN")
    [ -n "$HTTPS" ] && origin_args=(LLM_BASE_URL="$HTTPS_ORIGIN" "${CA[@]}")
    chat https_proxy="$AUTH_URL" http_proxy="$AUTH_URL" "${origin_args[@]}" --verbose hi
    if streamed && grep -q "via the proxy 127.0.0.1:$TINY_AUTH_PORT" "$WORK/err" && ! grep -q "$API_KEY" "$WORK/err" &&
        ! grep -qE "$PROXY_PASSWORD|$PROXY_PASSWORD_ENCODED|$(printf '%s' "$PROXY_USER:$PROXY_PASSWORD" | base64)" "$WORK/err"; then
        pass "--verbose names the proxy, never the API key or the proxy credentials"
    else
        fail "--verbose names the proxy, never the API key or the proxy credentials"
    fi
fi

if [ -n "$SQUID" ]; then
    through "squid: http:// origin, absolute-form request" "$SQUID_URL" "$WORK/squid/access.log" \
        "$HTTP_ORIGIN" "$HTTP_LOG_REGEX"
    if [ -n "$HTTPS" ]; then
        through "squid: https:// origin through CONNECT, TLS to localhost inside" "$SQUID_URL" \
            "$WORK/squid/access.log" "$HTTPS_ORIGIN" "$CONNECT_LOG_REGEX" "${CA[@]}"
        # CONNECT is allowed to the nginx port only: squid refuses the test server's.
        refused "squid refuses CONNECT to another port: 403, not retried" \
            "the proxy 127\\.0\\.0\\.1:$SQUID_PORT refused CONNECT to localhost:$ORIGIN_PORT: HTTP 403" \
            LLM_BASE_URL="https://localhost:$ORIGIN_PORT/v1" https_proxy="$SQUID_URL" "${CA[@]}"
    fi
fi

# A proxy nobody listens on: no_proxy must keep llm-chat away from it.
DEAD_URL=http://127.0.0.1:$DEAD_PORT
for bypass in 127.0.0.1 127.0.0.0/8 "example.com, 127.0.0.1:$ORIGIN_PORT" '*'; do
    chat LLM_BASE_URL="$HTTP_ORIGIN" http_proxy="$DEAD_URL" no_proxy="<-loopback>,$bypass" hi
    if streamed; then pass "no_proxy=<-loopback>,$bypass: straight to the origin"; else fail "no_proxy=<-loopback>,$bypass: straight to the origin"; fi
done
chat LLM_BASE_URL="$HTTP_ORIGIN" http_proxy="$DEAD_URL" NO_PROXY="<-loopback>,127.0.0.1" hi
if streamed; then pass "NO_PROXY works as no_proxy"; else fail "NO_PROXY works as no_proxy"; fi
chat LLM_BASE_URL="$HTTP_ORIGIN" http_proxy="$DEAD_URL" no_proxy=example.com hi
if streamed; then pass "loopback goes direct although a proxy is set (no <-loopback>)"; else fail "loopback goes direct although a proxy is set (no <-loopback>)"; fi
chat LLM_BASE_URL="$HTTP_ORIGIN" http_proxy="$DEAD_URL" no_proxy="<-loopback>,example.com" --retries 0 hi
if [ "$RC" -eq 1 ] && one_error_line && error_line | grep -q "cannot connect to the proxy 127.0.0.1:$DEAD_PORT"; then
    pass "a host no_proxy does not list goes to the (dead) proxy ($(error_line))"
else
    fail "a host no_proxy does not list goes to the (dead) proxy"
fi
chat LLM_BASE_URL="$HTTP_ORIGIN" HTTP_PROXY="$DEAD_URL" hi
if streamed; then pass "HTTP_PROXY (upper case) is ignored, as curl does"; else fail "HTTP_PROXY (upper case) is ignored, as curl does"; fi
chat LLM_BASE_URL="$HTTP_ORIGIN" http_proxy="socks5://127.0.0.1:$DEAD_PORT" hi
if [ "$RC" -eq 1 ] && one_error_line && error_line | grep -q 'http_proxy: socks5:// proxies are not supported'; then
    pass "a socks5:// proxy is refused, naming the variable ($(error_line))"
else
    fail "a socks5:// proxy is refused, naming the variable"
fi

echo "$PASSED passed, $FAILED failed"
if [ "$FAILED" -ne 0 ]; then exit 1; fi
if [ "$PASSED" -eq 0 ]; then exit 77; fi
exit 0
