#!/usr/bin/env bash
# A throwaway Samba Active Directory domain controller for unlockbot's tests:
# loopback only, nothing in /etc, LDAPS on 127.0.0.1:636 and StartTLS on
# ldap://127.0.0.1:389 with a test CA. Samba's LDAP ports are fixed, so there
# is one DC per machine, shared by the tests (each uses accounts of its own).
#
#   samba.sh [start]   start it, or reuse the one already running if it
#                      answers; prints what the tests need (KEY=VALUE lines,
#                      also written to $SAMBA_DIR/env)
#   samba.sh stop      stop it; its data stay, so `start` brings it back as it was
#   samba.sh reset     stop it and delete its data
#
# Domain TEST.LAN (DC=test,DC=lan): lockout after 3 bad passwords (no
# automatic unlock), complexity on, history 24, no minimum password age.
# The bot's service account (CN=unlockbot,CN=Users) is an ordinary user
# delegated, on OU=People only, the "Reset Password" right and write access
# to lockoutTime and pwdLastSet. Tests create their accounts in OU=People.
#
# Settings: SAMBA_DIR (default unlockbot-samba in the temporary directory),
# SAMBA_MAX_RUNTIME (seconds before the DC stops by itself, default 21600).
# Needs root and the Debian packages samba samba-ad-dc samba-ad-provision
# samba-dsdb-modules winbind ldap-utils.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

W=${SAMBA_DIR:-$(temp_dir)/unlockbot-samba}
MAX_RUNTIME=${SAMBA_MAX_RUNTIME:-21600}
REALM=TEST.LAN
BASE="DC=test,DC=lan"
ADMIN_DN="CN=Administrator,CN=Users,$BASE"
ADMIN_PW='Adm1n-Pass!23'
SERVICE_DN="CN=unlockbot,CN=Users,$BASE"
SERVICE_PW='Serv1ce-Pass!23'
PEOPLE="OU=People,$BASE"
LDAPS="ldaps://127.0.0.1:636"
STARTTLS="ldap://127.0.0.1:389"

export LDAPTLS_CACERT="$W/pki/ca.pem" LDAPTLS_REQCERT=demand
admin() { "$@" -x -H "$LDAPS" -D "$ADMIN_DN" -w "$ADMIN_PW"; }
healthy() { admin ldapsearch -LLL -b "$PEOPLE" -s base 1.1 >/dev/null 2>&1; }
answers() { admin ldapsearch -LLL -b "" -s base 1.1 >/dev/null 2>&1; }

print_env() {
    cat >"$W/env.new" <<ENV
SAMBA_LDAPS_URL=$LDAPS
SAMBA_STARTTLS_URL=$STARTTLS
SAMBA_CA_FILE=$W/pki/ca.pem
SAMBA_REALM=$REALM
SAMBA_BASE_DN=$BASE
SAMBA_PEOPLE_DN=$PEOPLE
SAMBA_BIND_DN=$SERVICE_DN
SAMBA_BIND_PASSWORD=$SERVICE_PW
SAMBA_ADMIN_DN=$ADMIN_DN
SAMBA_ADMIN_PASSWORD=$ADMIN_PW
SAMBA_PID_FILE=$W/samba.pid
SAMBA_LOG=$W/logs/samba.out
ENV
    mv "$W/env.new" "$W/env"
    cat "$W/env"
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_samba() {
    rm -f "$W/samba.pid"
    local port
    for port in 389 636; do
        if port_taken "$port"; then
            echo "samba.sh: something else already listens on 127.0.0.1:$port (another LDAP server?)" >&2
            exit 1
        fi
    done
    # One process (-M single), LDAP only; setsid so that it outlives the caller.
    setsid samba -i -M single -s "$W/prov/etc/smb.conf" --maximum-runtime="$MAX_RUNTIME" \
        --option="server services=ldap" --option="log file=$W/logs/log.%m" \
        --option="tls enabled=yes" \
        --option="tls keyfile=$W/pki/leaf.key" --option="tls certfile=$W/pki/leaf.pem" \
        --option="tls cafile=$W/pki/ca.pem" \
        </dev/null >>"$W/logs/samba.out" 2>&1 9>&- &
    echo $! >"$W/samba.pid"
    for _ in $(seq 1 300); do
        answers && return 0
        alive "$W/samba.pid" || break
        sleep 0.1
    done
    echo "samba did not answer on $LDAPS; see $W/logs" >&2
    tail -5 "$W/logs/samba.out" >&2 || true
    exit 1
}

unicode_pwd() { printf '"%s"' "$1" | iconv -f UTF-8 -t UTF-16LE | base64 -w0; }

provision() {
    samba-tool domain provision --targetdir="$W/prov" --realm="$REALM" --domain=TEST \
        --server-role=dc --dns-backend=NONE --adminpass="$ADMIN_PW" --host-name=dc1 \
        --option="interfaces=lo" --option="bind interfaces only=yes" \
        >"$W/logs/provision.log" 2>&1 || {
        echo "samba-tool domain provision failed; see $W/logs/provision.log" >&2
        tail -5 "$W/logs/provision.log" >&2
        exit 1
    }
}

configure() {
    # Domain policy: lockout after 3 bad passwords, never unlocks by itself
    # (duration 0), complexity on, history 24, passwords may change at once.
    admin ldapmodify >/dev/null <<LDIF
dn: $BASE
changetype: modify
replace: lockoutThreshold
lockoutThreshold: 3
-
replace: lockoutDuration
lockoutDuration: 0
-
replace: lockOutObservationWindow
lockOutObservationWindow: -18000000000
-
replace: pwdProperties
pwdProperties: 1
-
replace: pwdHistoryLength
pwdHistoryLength: 24
-
replace: minPwdLength
minPwdLength: 7
-
replace: minPwdAge
minPwdAge: 0
LDIF
    admin ldapadd >/dev/null <<LDIF
dn: $PEOPLE
objectClass: organizationalUnit
ou: People

dn: $SERVICE_DN
objectClass: user
sAMAccountName: unlockbot
userPrincipalName: unlockbot@test.lan
unicodePwd:: $(unicode_pwd "$SERVICE_PW")
userAccountControl: 66048
LDIF
    # Delegate to the service account, on user objects under OU=People:
    # the Reset Password extended right, and write lockoutTime and pwdLastSet.
    local sid user reset lockout pwdlastset
    sid=$(samba-tool user show unlockbot -H "$W/prov/private/sam.ldb" --attributes=objectSid \
        | sed -n 's/^objectSid: //p')
    [ -n "$sid" ] || { echo "samba.sh: no SID for the service account" >&2; exit 1; }
    user=bf967aba-0de6-11d0-a285-00aa003049e2       # class user
    reset=00299570-246d-11d0-a768-00aa006e0529      # extended right Reset Password
    lockout=28630ebf-41d5-11d1-a9c1-0000f80367c1    # attribute lockoutTime
    pwdlastset=bf967a0a-0de6-11d0-a285-00aa003049e2 # attribute pwdLastSet
    samba-tool dsacl set -H "$W/prov/private/sam.ldb" --action=allow --objectdn="$PEOPLE" \
        --sddl="(OA;CIIO;CR;$reset;$user;$sid)(OA;CIIO;WP;$lockout;$user;$sid)(OA;CIIO;WP;$pwdlastset;$user;$sid)" \
        >>"$W/logs/provision.log" 2>&1
}

# What is set up: bump it whenever the set-up changes (configuration, policy,
# accounts, rights), so that a server set up the old way is made afresh
# rather than reused. Other edits leave running servers alone.
STAMP=samba-setup-1
same_version() { [ "$(cat "$W/stamp" 2>/dev/null)" = "$STAMP" ]; }

# One run of this script at a time per server (test binaries, worktrees).
mkdir -p "$(dirname "$W")"
exec 9>"$W.lock"
flock 9

cmd=${1:-start}
case "$cmd" in
start)
    mkdir -p "$W/logs"
    if same_version && alive "$W/samba.pid" && [ -s "$W/env" ] && healthy; then
        print_env
        exit 0
    fi
    if [ "$(id -u)" != 0 ] || ! have samba || ! have samba-tool || ! have ldapsearch || ! have openssl; then
        echo "samba.sh: needs root and the Debian packages samba samba-ad-dc samba-ad-provision samba-dsdb-modules winbind ldap-utils openssl" >&2
        exit 2
    fi
    stop_pid "$W/samba.pid"
    if same_version && [ -f "$W/provisioned" ] && openssl x509 -checkend 3600 -noout -in "$W/pki/leaf.pem" >/dev/null 2>&1; then
        start_samba # data kept from before: start it as it was
        if healthy; then print_env; exit 0; fi
        stop_pid "$W/samba.pid"
    fi
    rm -rf "$W/prov" "$W/pki" "$W/provisioned"
    make_pki "$W/pki"
    provision
    start_samba
    configure
    touch "$W/provisioned"
    echo "$STAMP" >"$W/stamp"
    print_env
    ;;
stop)
    stop_pid "$W/samba.pid"
    ;;
reset)
    stop_pid "$W/samba.pid"
    rm -rf "$W"
    ;;
*)
    echo "usage: $0 [start|stop|reset]" >&2
    exit 2
    ;;
esac
