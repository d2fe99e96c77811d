# shellcheck shell=bash disable=SC2034  # CA_ARGS is read by expect_refused, in nginx_tls.sh
# The checks of tests/tls/wine_schannel.sh that need Windows itself, sourced by tests/tls/nginx_tls.sh
# (LLM_TLS_MORE_CHECKS) after its llm-chat checks, with its servers running and its chat, pass, fail,
# url, expect_refused. SNI as nginx logged it; then the test CA imported into the ROOT store of a
# throwaway copy of the wine prefix (LLM_TLS_IMPORT_ROOT), which must then be all the trust needed.

# log_lines: how many lines nginx's access log has.
log_lines() { wc -l <"$NGX/access.log"; }
# sni_is WHAT: the request after the first LOGGED lines of nginx's access log came with SNI WHAT ("-":
# none). nginx writes the line as the request ends, which can be after llm-chat has exited: up to 10 s.
sni_is() {
    within_10s logged_after || true  # then the last line, whatever it is
    [ "$(tail -n 1 "$NGX/access.log" | sed -n 's/.* sni=\([^ ]*\).*/\1/p')" = "$1" ]
}
# logged_after: nginx's access log has more than LOGGED lines.
logged_after() { [ "$(log_lines)" -gt "$LOGGED" ]; }

LOGGED=$(log_lines)
chat LLM_BASE_URL="$(url "$P_VALID")" --cacert "$CA_FILE" hi
if [ "$RC" -eq 0 ] && sni_is localhost; then
    pass "SNI: the host name, as nginx logged it"
else
    fail "SNI: the host name, as nginx logged it" "access log: $(tail -n 1 "$NGX/access.log")"
fi
LOGGED=$(log_lines)
chat LLM_BASE_URL="https://127.0.0.1:$P_IP_ONLY/v1" --cacert "$CA_FILE" hi
if [ "$RC" -eq 0 ] && sni_is -; then
    pass "SNI: none for an IP address (RFC 6066)"
else
    fail "SNI: none for an IP address (RFC 6066)" "access log: $(tail -n 1 "$NGX/access.log")"
fi

ROOT_PREFIX=$WORK/wine-root
cp -a "$WINEPREFIX" "$ROOT_PREFIX"
checked 60 env WINEPREFIX="$ROOT_PREFIX" "${RUN[@]}" "$LLM_TLS_IMPORT_ROOT" "$CA_FILE" </dev/null >"$WORK/out" 2>"$WORK/err"
if [ "$RC" -ne 0 ]; then
    fail "the test CA goes into the ROOT store of a throwaway wine prefix"
else
    export WINEPREFIX=$ROOT_PREFIX
    chat LLM_BASE_URL="$(url "$P_VALID")" hi
    if [ "$RC" -eq 0 ] && out_is_expected; then
        pass "CA in the ROOT store, no --cacert: the valid chain streams"
    else
        fail "CA in the ROOT store, no --cacert: the valid chain streams"
    fi
    CA_ARGS=()
    expect_refused "CA in the ROOT store: wrong host name refused" "$P_WRONG" 'does not match the host name localhost'
    expect_refused "CA in the ROOT store: expired certificate refused" "$P_EXPIRED" 'expired'
    expect_refused "CA in the ROOT store: untrusted CA refused" "$P_UNTRUSTED" 'trusted|signed'
    CA_ARGS=(--cacert "$PKI/other/ca.pem")
    expect_refused "CA in the ROOT store, --cacert another CA: only that one is trusted" "$P_VALID" 'trusted|signed'
    # The prefix's wineserver goes when its last program has (within seconds): wait, before it is removed.
    limited 20 "$(dirname "${RUN[0]}")/wineserver" -w
fi
