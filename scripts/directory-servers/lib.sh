# Shared by slapd.sh and samba.sh: a throwaway test CA and a leaf certificate
# for 127.0.0.1 (rustls rejects a server certificate without a
# subjectAltName, and a self-signed certificate used as the end entity).

# make_pki DIR: writes DIR/ca.pem, DIR/leaf.pem and DIR/leaf.key (mode 0600),
# valid for 30 days. Keeps a set that is still valid for a day.
make_pki() {
    local dir=$1
    if [ -s "$dir/ca.pem" ] && [ -s "$dir/leaf.key" ] \
        && openssl x509 -checkend 86400 -noout -in "$dir/leaf.pem" >/dev/null 2>&1; then
        return 0
    fi
    mkdir -p "$dir"
    (
        cd "$dir"
        umask 077
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
            -subj "/CN=unlockbot test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout leaf.key -out leaf.csr \
            -subj "/CN=localhost" 2>/dev/null
        printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >ext.cnf
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out leaf.pem -days 30 -extfile ext.cnf 2>/dev/null
        chmod 0644 ca.pem leaf.pem
        chmod 0600 leaf.key ca.key
        rm -f leaf.csr ext.cnf
    )
}

# wait_until SECONDS COMMAND...: runs COMMAND every 0.1 s until it succeeds.
wait_until() {
    local tries=$(( $1 * 10 )); shift
    for _ in $(seq 1 "$tries"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# alive PIDFILE: the process named in PIDFILE is running, and is the server
# (slapd or samba: a pid reused by another program does not count).
alive() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1")
    kill -0 "$pid" 2>/dev/null && grep -qxE 'slapd|samba' "/proc/$pid/comm" 2>/dev/null
}

# stop_pid PIDFILE: TERM, then KILL after 5 s; waits until it is gone.
stop_pid() {
    local pidfile=$1 pid
    if alive "$pidfile"; then
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
}

# have PROGRAM: PROGRAM is an executable file on PATH (or in /usr/sbin).
have() {
    local p
    p=$(PATH="$PATH:/usr/sbin:/sbin" command -v "$1") && [ -f "$p" ] && [ -x "$p" ]
}

# temp_dir: the system's directory for temporary files ($TMPDIR or its default).
temp_dir() {
    dirname "$(mktemp -u)"
}
