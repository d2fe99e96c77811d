# shellcheck shell=bash disable=SC2034  # (it sets variables for the scripts that source it)
# What the end-to-end scripts (tests/e2e_*.sh, tests/tls/nginx_tls.sh) share. Sourced, never run: it only
# defines functions, so each script decides what it uses and in which order.
#
# The usual start of a script checking one binary, BIN, with the optional llm_test_server:
#   source "$(dirname "${BASH_SOURCE[0]}")/support/e2e_common.sh"
#   e2e_arguments "path/to/llm-chat [path/to/llm_test_server]" "$@"
#   e2e_start llm-chat-e2e SERVER_PID ...
# then checks that call run / pass / fail, and at the end `e2e_summary`.

# absolute PATH: PATH made absolute against the current directory (the scripts change directory later).
absolute() {
    case "$1" in
        /*) echo "$1" ;;
        *) echo "$PWD/$1" ;;
    esac
}

# e2e_arguments USAGE ARGS...: ARGS must be the binary under test and, optionally, llm_test_server, both
# executable; sets BIN and TEST_SERVER_BIN (empty without it), or prints the usage and exits 2.
e2e_arguments() {
    local usage=$1
    shift
    if [ $# -lt 1 ] || [ $# -gt 2 ] || [ ! -x "$1" ] || { [ $# -eq 2 ] && [ ! -x "$2" ]; }; then
        echo "usage: $0 $usage" >&2
        exit 2
    fi
    BIN=$(absolute "$1")
    TEST_SERVER_BIN=
    [ $# -eq 2 ] && TEST_SERVER_BIN=$(absolute "$2")
}

# e2e_start NAME PID_VARIABLE...: moves into a fresh temporary directory, WORK (NAME.XXXXXX, removed on
# exit with every process whose PID one of the PID_VARIABLEs then holds), with the environment reset so
# that the checks do not depend on whoever runs them; sets PYTHON (python3 or empty) and LIMIT.
e2e_start() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || exit 2
    shift
    E2E_PID_VARIABLES=("$@")
    local variable
    for variable in "$@"; do printf -v "$variable" '%s' ''; done
    trap e2e_cleanup EXIT
    cd "$WORK" || exit 2

    unset LLM_BASE_URL LLM_API_KEY LLM_MODEL SSL_CERT_FILE SSL_CERT_DIR
    unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
    export LLM_STUB_DELAY_MS=0

    PYTHON=
    if command -v python3 >/dev/null 2>&1; then PYTHON=python3; fi
    # A hung binary must fail the run, not stall it.
    LIMIT=
    if command -v timeout >/dev/null 2>&1; then LIMIT="timeout 30"; fi
    PASSED=0
    FAILED=0
}

e2e_cleanup() {
    e2e_stop "${E2E_PID_VARIABLES[@]}"
    rm -rf "$WORK"
}

# e2e_stop PID_VARIABLE...: stops and reaps the process each variable names (if any), and empties it.
e2e_stop() {
    local variable
    for variable in "$@"; do
        if [ -n "${!variable}" ]; then
            kill "${!variable}" 2>/dev/null
            wait "${!variable}" 2>/dev/null
        fi
        printf -v "$variable" '%s' ''
    done
}

# The verdicts: "ok   - NAME", or "FAIL - NAME" with an optional detail, the exit status RC and the
# start of $WORK/out and $WORK/err.
pass() {
    PASSED=$((PASSED + 1))
    echo "ok   - $1"
}
fail() {
    FAILED=$((FAILED + 1))
    echo "FAIL - $1"
    [ $# -gt 1 ] && echo "       $2"
    echo "       exit: $RC"
    echo "       stdout: $(head -c 600 "$WORK/out")"
    echo "       stderr: $(head -c 600 "$WORK/err")"
}

# e2e_summary: "N passed, M failed"; its status is nonzero when anything failed (the script's last line).
e2e_summary() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

# run ARGS... : the binary with stdin from /dev/null; RC, $WORK/out and $WORK/err hold the result.
run() {
    $LIMIT "$BIN" "$@" </dev/null >"$WORK/out" 2>"$WORK/err"
    RC=$?
}

# check_version: BIN --version prints one line, "llm_stream X.Y.Z (tls: ...)", and exits 0.
check_version() {
    run --version
    if [ "$RC" -eq 0 ] && grep -Eq '^llm_stream [0-9]+\.[0-9]+\.[0-9]+ \(tls: [^)]+\)$' "$WORK/out" &&
        [ "$(wc -l <"$WORK/out")" -eq 1 ]; then
        pass "--version prints 'llm_stream X.Y.Z (tls: ...)'"
    else
        fail "--version prints 'llm_stream X.Y.Z (tls: ...)'"
    fi
}

# port_of PID OUTPUT: the port of the "PORT n" line that llm_test_server (process PID) prints to the file
# OUTPUT once it listens, waited for 10 s at most; fails when PID ends or the time is up without it.
port_of() {
    local port
    for _ in $(seq 100); do
        port=$(sed -n 's/^PORT \([0-9][0-9]*\)$/\1/p' "$2" 2>/dev/null)
        if [ -n "$port" ]; then
            echo "$port"
            return 0
        fi
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}

# start_test_server PID_VARIABLE PORT_VARIABLE NAME ARGS...: TEST_SERVER_BIN with ARGS on a free loopback
# port, its stdout and stderr in $WORK/NAME.out and .err; sets both variables (the port is empty, and the
# status nonzero, when it did not start).
start_test_server() {
    local pid_variable=$1 port_variable=$2 name=$3 port
    shift 3
    # An earlier server's output must not be read as this one's: the redirection below truncates the
    # file only once the background job runs, maybe after port_of has read it.
    rm -f "$WORK/$name.out"
    "$TEST_SERVER_BIN" --host 127.0.0.1 --port 0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    printf -v "$pid_variable" '%s' "$!"
    port=$(port_of "$!" "$WORK/$name.out")
    local started=$?
    printf -v "$port_variable" '%s' "$port"
    return "$started"
}

# within_10s COMMAND...: runs COMMAND every 0.1 s until it succeeds, for 10 s at most. For what a
# server or proxy writes after the client has exited (a saved request, a log line).
within_10s() {
    local tries
    for ((tries = 0; tries < 100; tries++)); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}
# saved_request N: waits until llm_test_server --save-requests "$WORK/requests" has saved its Nth
# request (the body is written last).
saved_request() { within_10s test -f "$WORK/requests/request-$1.body"; }
