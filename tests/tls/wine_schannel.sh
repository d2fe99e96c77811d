#!/usr/bin/env bash
# HTTPS through SChannel, Windows' own TLS, under wine (issue 11): the mingw-w64 build's test_tls.exe and
# llm-chat.exe against the nginx of tests/tls/nginx_tls.sh, which makes the PKI and the servers and runs
# its checks through wine; tests/tls/wine_root_store.sh adds those that need Windows' certificate store.
#
#   bash tests/tls/wine_schannel.sh MINGW_DIR TEST_SERVER
#
# MINGW_DIR holds test_tls.exe, llm-chat.exe and import_root.exe (tests/tls/import_root.cpp), TEST_SERVER
# is a native llm_test_server. WINEPREFIX names a prefix (made on first use, ~8 s): the root-store checks
# work on a throwaway copy of it. Every process is stopped by its PID. Exit status as nginx_tls.sh's.

set -u

if [ $# -ne 2 ] || [ ! -f "$1/llm-chat.exe" ] || [ ! -f "$1/test_tls.exe" ] || [ ! -f "$1/import_root.exe" ] ||
    [ ! -x "$2" ] || [ -z "${WINEPREFIX:-}" ]; then
    echo "usage: WINEPREFIX=DIR $0 MINGW_DIR TEST_SERVER (MINGW_DIR with llm-chat.exe, test_tls.exe, import_root.exe)" >&2
    exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WINE=${WINE:-/usr/lib/wine/wine64}
[ -x "$WINE" ] || { echo "wine_schannel: skipped: no $WINE"; exit 77; }

export WINEDEBUG=-all
# The prefix exists before the copy is made, and before the timed checks.
"$WINE" "$1/llm-chat.exe" --version || exit 1

LLM_TLS_RUN=$WINE LLM_TLS_BACKEND=schannel LLM_TLS_TEST_SERVER=$(cd "$(dirname "$2")" && pwd)/$(basename "$2") \
    LLM_TLS_MORE_CHECKS=$HERE/wine_root_store.sh LLM_TLS_IMPORT_ROOT=$(cd "$1" && pwd)/import_root.exe \
    exec bash "$HERE/nginx_tls.sh" "$1"
