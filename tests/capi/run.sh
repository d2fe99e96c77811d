#!/usr/bin/env bash
# The C ABI (llm_stream_c.h) from one language, against three loopback servers: a recorded stream, an
# HTTP 401, and one that sends its head and then nothing (for cancel). Their base URLs go to the checks
# in LLS_TEST_URL, LLS_TEST_ERROR_URL and LLS_TEST_SILENT_URL.
#
#   tests/capi/run.sh c      path/to/libllm_stream_c.so path/to/llm_test_server path/to/capi_test
#   tests/capi/run.sh python path/to/libllm_stream_c.so path/to/llm_test_server     (capi_test.py, ctypes)
#   tests/capi/run.sh csharp path/to/libllm_stream_c.so path/to/llm_test_server     (capi_test.cs: mcs, mono)
#
# `c` also checks that the library exports exactly the functions llm_stream_c.h declares, and that each
# is used by one of the three programs. Exits 77 (a skip) when python3, or mcs and mono, are missing.
# Runs in a fresh temporary directory; every server is stopped by its PID on exit.

set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$here/../support/e2e_common.sh"

language=${1:-}
if [ $# -lt 3 ] || [ ! -f "$2" ] || [ ! -x "$3" ] || { [ "$language" = c ] && { [ $# -ne 4 ] || [ ! -x "$4" ]; }; }; then
    echo "usage: $0 c|python|csharp path/to/libllm_stream_c.so path/to/llm_test_server [path/to/capi_test]" >&2
    exit 2
fi
library=$(absolute "$2")
TEST_SERVER_BIN=$(absolute "$3")
program=${4:+$(absolute "$4")}

case "$language" in
python) if ! command -v python3 >/dev/null; then echo "skip: no python3"; exit 77; fi ;;
csharp) if ! command -v mcs >/dev/null || ! command -v mono >/dev/null; then echo "skip: no mcs or mono"; exit 77; fi ;;
c) ;;
*) echo "$0: unknown language $language" >&2; exit 2 ;;
esac

e2e_start capi-e2e STREAM_PID ERROR_PID SILENT_PID
RC=none
start_test_server STREAM_PID STREAM_PORT stream --stream "$here/../data/streams/deepseek-chat.sse" || { fail "the stream server starts"; e2e_summary; exit 1; }
start_test_server ERROR_PID ERROR_PORT error --status 401 --body '{"error":{"message":"Invalid API key"}}' ||
    { fail "the error server starts"; e2e_summary; exit 1; }
start_test_server SILENT_PID SILENT_PORT silent --stream "$here/../data/streams/deepseek-chat.sse" --delay-ms 3600000 ||
    { fail "the silent server starts"; e2e_summary; exit 1; }
export LLS_TEST_URL=http://127.0.0.1:$STREAM_PORT/v1
export LLS_TEST_ERROR_URL=http://127.0.0.1:$ERROR_PORT/v1
export LLS_TEST_SILENT_URL=http://127.0.0.1:$SILENT_PORT/v1

# exported_functions: the lls_ functions the library exports, one per line, sorted.
exported_functions() {
    nm -D --defined-only "$library" | awk '$2 == "T" && $3 ~ /^lls_/ { print $3 }' | sort
}

# declared_functions: the functions llm_stream_c.h declares (LLS_API), one per line, sorted.
declared_functions() {
    sed -n 's/^LLS_API [^(]*[ *]\(lls_[a-z_]*\)(.*/\1/p' "$here/../../llm_stream_c.h" | sort
}

check_exports() {
    local name unused=()
    if ! command -v nm >/dev/null; then
        echo "skip - the exported functions (no nm)"
        return
    fi
    if [ -n "$(declared_functions)" ] && [ "$(exported_functions)" = "$(declared_functions)" ]; then
        pass "the library exports exactly the $(declared_functions | wc -l) functions the header declares"
    else
        fail "the library exports exactly the functions the header declares" \
            "$(diff <(declared_functions) <(exported_functions) | tr '\n' ' ')"
    fi
    for name in $(declared_functions); do
        grep -qw "$name" "$here/capi_test.c" "$here/capi_test.py" "$here/capi_test.cs" || unused+=("$name")
    done
    if [ ${#unused[@]} -eq 0 ]; then
        pass "every exported function is used by a test"
    else
        fail "every exported function is used by a test" "unused: ${unused[*]}"
    fi
}

# run_checks COMMAND...: the language's checks (they print their own ok/FAIL lines).
run_checks() {
    $LIMIT "$@" >"$WORK/out" 2>"$WORK/err"
    RC=$?
    cat "$WORK/out"
    if [ "$RC" -eq 0 ] && ! grep -q '^FAIL' "$WORK/out" && grep -q '^ok' "$WORK/out"; then
        pass "the $language checks"
    else
        fail "the $language checks"
    fi
}

case "$language" in
c)
    check_exports
    run_checks "$program"
    ;;
python)
    run_checks python3 "$here/capi_test.py" "$library"
    ;;
csharp)
    # As Unity loads a native plugin: [DllImport("llm_stream_c")], found on the library path.
    if mcs -nologo -warnaserror+ -out:"$WORK/capi_test.exe" "$here/capi_test.cs" >"$WORK/out" 2>"$WORK/err"; then
        LD_LIBRARY_PATH="$(dirname "$library")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" run_checks mono "$WORK/capi_test.exe"
    else
        RC=$?
        fail "mcs compiles capi_test.cs"
    fi
    ;;
esac

e2e_summary
