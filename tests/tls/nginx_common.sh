# shellcheck shell=bash disable=SC2034  # (it sets variables for the scripts that source it)
# What the scripts that run a real nginx on loopback share (tests/tls/nginx_tls.sh,
# tests/proxy/proxy_e2e.sh): process control, free ports, a test PKI made with openssl, and nginx in the
# foreground with everything in a directory of its own. Sourced, never run: it only defines functions
# (and SPAWN); work_dir also sets the traps that stop every process on exit. The PKI functions write
# into $PKI and log to $OPENSSL_LOG, which the script sets.

# first_executable CANDIDATE... : the first that is an executable file, or nothing.
first_executable() {
    local f
    for f in "$@"; do
        if [ -f "$f" ] && [ -x "$f" ]; then
            echo "$f"
            return
        fi
    done
}

# find_nginx: sets NGINX to the nginx program, or empty when there is none.
find_nginx() {
    NGINX=$(command -v nginx || true)
    if [ -z "$NGINX" ] && [ -x /usr/sbin/nginx ]; then NGINX=/usr/sbin/nginx; fi
}

# limited SECONDS COMMAND...: a hung process must fail the run, not stall it.
limited() {
    if command -v timeout >/dev/null 2>&1; then
        timeout -k 5 "$@"
    else
        shift
        "$@"
    fi
}

# checked SECONDS COMMAND... (with redirections by the caller): runs it in the background and waits, so
# that a signal to this script is handled at once (and the command stopped by cleanup); RC is its status.
checked() {
    if command -v timeout >/dev/null 2>&1; then
        timeout -k 5 "$@" &
    else
        shift
        "$@" &
    fi
    CHILD_PID=$!
    wait "$CHILD_PID"
    RC=$?
    CHILD_PID=
}

# Servers get SIGTERM if this script dies without cleaning up (SIGKILL from a test driver's timeout).
SPAWN=()
if command -v setpriv >/dev/null 2>&1 && setpriv --pdeathsig TERM -- true 2>/dev/null; then
    SPAWN=(setpriv --pdeathsig TERM --)
fi

# stop_pid PID: SIGTERM, up to 5 s to exit, then SIGKILL (children of nginx's master too).
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return; }
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        local child
        for child in $(pgrep -P "$pid" 2>/dev/null); do kill -KILL "$child" 2>/dev/null; done
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
}

# work_dir NAME KEEP_VARIABLE: moves into a fresh temporary directory, WORK (NAME.XXXXXX). On exit
# every process in PIDS, NGINX_PID and CHILD_PID is stopped and WORK removed, unless the variable named
# KEEP_VARIABLE is 1.
work_dir() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || exit 2
    WORK_KEEP_VARIABLE=$2
    PIDS=()
    NGINX_PID=
    CHILD_PID=
    trap stop_everything EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    cd "$WORK" || exit 2
}

stop_everything() {
    local pid
    if [ -n "$CHILD_PID" ]; then stop_pid "$CHILD_PID"; fi
    if [ -n "$NGINX_PID" ]; then stop_pid "$NGINX_PID"; fi
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$pid"; done
    if [ "${!WORK_KEEP_VARIABLE:-0}" = 1 ]; then
        echo "${0##*/}: kept $WORK"
    else
        rm -rf "$WORK"
    fi
}

# ca_config DIR: the openssl config of the CA in DIR (its database, serial and policy).
ca_config() {
    local dir=$1
    mkdir -p "$dir/issued"
    : >"$dir/index.txt"
    echo 1000 >"$dir/serial"
    cat >"$dir/ca.cnf" <<EOF
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = $dir
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
default_days = 30
[ policy_any ]
commonName = supplied
[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = unused
[ root_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ intermediate_ext ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always, issuer
EOF
}

# new_key FILE ec|rsa
new_key() {
    if [ "$2" = rsa ]; then
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>>"$OPENSSL_LOG"
    else
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>>"$OPENSSL_LOG"
    fi
}

# new_root DIR "CN": a self-signed root CA: DIR/ca.key, DIR/ca.pem.
new_root() {
    ca_config "$1"
    new_key "$1/ca.key" ec &&
        openssl req -x509 -new -key "$1/ca.key" -subj "/CN=$2" -days 30 -sha256 -config "$1/ca.cnf" \
            -extensions root_ext -out "$1/ca.pem" >>"$OPENSSL_LOG" 2>&1
}

# issue CA_DIR NAME "CN" EXTENSIONS [openssl ca options...]: NAME.key, NAME.pem in $PKI, signed by CA_DIR.
issue() {
    local ca=$1 name=$2 cn=$3 ext=$4 keytype=ec
    shift 4
    [ "$name" = valid ] && keytype=rsa  # one RSA chain among the EC ones
    new_key "$PKI/$name.key" "$keytype" &&
        openssl req -new -key "$PKI/$name.key" -subj "/CN=$cn" -config "$ca/ca.cnf" -out "$PKI/$name.csr" \
            >>"$OPENSSL_LOG" 2>&1 &&
        openssl ca -batch -notext -config "$ca/ca.cnf" -cert "$ca/ca.pem" -keyfile "$ca/ca.key" \
            -in "$PKI/$name.csr" -out "$PKI/$name.pem" -extfile "$PKI/$ext.ext" -extensions ext "$@" \
            >>"$OPENSSL_LOG" 2>&1
}

# leaf_ext NAME SAN: the extensions of a server certificate.
leaf_ext() {
    cat >"$PKI/$1.ext" <<EOF
[ ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $2
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
}

# free_ports N: N distinct TCP ports free on 127.0.0.1 right now.
free_ports() {
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$1" <<'EOF' && return
import socket, sys
held = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
EOF
    fi
    # Without python3: random high ports that nothing listens on (per /proc/net/tcp*).
    local out=() p hex
    while [ ${#out[@]} -lt "$1" ]; do
        p=$((20000 + RANDOM % 40000))
        hex=$(printf ':%04X ' "$p")
        if ! cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q "$hex" && [[ " ${out[*]} " != *" $p "* ]]; then
            out+=("$p")
        fi
    done
    echo "${out[@]}"
}

# port_open PORT: a TCP connect to 127.0.0.1:PORT succeeds.
port_open() {
    limited 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# nginx_conf_head DIR: the start of an nginx.conf that keeps everything in DIR (pid, logs, temporary
# files), in the foreground with one worker, up to the open http block: the caller adds its servers and
# closes it. Proxied bodies are streamed (HTTP/1.1 to the upstream, no buffering).
nginx_conf_head() {
    cat <<EOF
# Written by ${0##*/} for one run.
worker_processes 1;
daemon off;
pid $1/nginx.pid;
lock_file $1/nginx.lock;
error_log $1/error.log info;
events { worker_connections 256; }
http {
    log_format llm_tls '\$server_port \$connection \$connection_requests "\$request" \$status \$bytes_sent \$ssl_protocol \$ssl_cipher sni=\$ssl_server_name reused=\$ssl_session_reused';
    access_log $1/access.log llm_tls;
    client_body_temp_path $1/tmp/body;
    proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fastcgi;
    uwsgi_temp_path $1/tmp/uwsgi;
    scgi_temp_path $1/tmp/scgi;
    keepalive_timeout 60s;
    keepalive_requests 1000;
    proxy_http_version 1.1;
    proxy_buffering off;
    proxy_read_timeout 60s;
    ssl_protocols TLSv1.2 TLSv1.3;
EOF
}

# launch_nginx DIR PORT...: nginx ($NGINX) with DIR/nginx.conf, its output in DIR; sets NGINX_PID once
# every PORT accepts connections on 127.0.0.1 (10 s at most), else stops it and fails.
launch_nginx() {
    local dir=$1 i p ready
    shift
    : >"$dir/error.log"
    "${SPAWN[@]+"${SPAWN[@]}"}" "$NGINX" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" \
        >"$dir/stdout.log" 2>"$dir/stderr.log" </dev/null &
    NGINX_PID=$!
    for ((i = 0; i < 100; i++)); do
        kill -0 "$NGINX_PID" 2>/dev/null || break
        ready=1
        for p in "$@"; do
            port_open "$p" || { ready=0; break; }
        done
        [ "$ready" = 1 ] && return 0
        sleep 0.1
    done
    stop_pid "$NGINX_PID"
    NGINX_PID=
    return 1
}
