#!/usr/bin/env bash
# A throwaway OpenLDAP server (slapd + ppolicy) for unlockbot's tests:
# loopback only, nothing in /etc, StartTLS on ldap://127.0.0.1:PORT with a
# test CA, simple binds refused without TLS.
#
#   slapd.sh [start]   start it, or reuse the one already running there if it
#                      answers; prints what the tests need (KEY=VALUE lines,
#                      also written to $SLAPD_DIR/env)
#   slapd.sh stop      stop it; its data stay, so `start` brings it back as it was
#   slapd.sh reset     stop it and delete its data
#
# Settings: SLAPD_DIR (default unlockbot-slapd in the temporary directory), SLAPD_PORT
# (default 38911). Needs the Debian packages slapd and ldap-utils. Runs as
# any user (no privileged port).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

W=${SLAPD_DIR:-$(temp_dir)/unlockbot-slapd}
PORT=${SLAPD_PORT:-38911}
URL="ldap://127.0.0.1:$PORT"
BASE="dc=test,dc=lan"
ADMIN_DN="cn=admin,$BASE"
ADMIN_PW="Admin-Pass-1"
SERVICE_DN="cn=unlockbot,ou=services,$BASE"
SERVICE_PW="Service-Pass-1"
PEOPLE="ou=people,$BASE"
POLICY="cn=default,ou=policies,$BASE"
SLAPD=$(PATH="$PATH:/usr/sbin:/sbin" command -v slapd || echo slapd)

export LDAPTLS_CACERT="$W/pki/ca.pem" LDAPTLS_REQCERT=demand
admin() { "$@" -x -ZZ -H "$URL" -D "$ADMIN_DN" -w "$ADMIN_PW"; }
healthy() { admin ldapsearch -LLL -b "$POLICY" -s base 1.1 >/dev/null 2>&1; }

print_env() {
    cat >"$W/env.new" <<ENV
SLAPD_URL=$URL
SLAPD_CA_FILE=$W/pki/ca.pem
SLAPD_BASE_DN=$BASE
SLAPD_PEOPLE_DN=$PEOPLE
SLAPD_POLICY_DN=$POLICY
SLAPD_BIND_DN=$SERVICE_DN
SLAPD_BIND_PASSWORD=$SERVICE_PW
SLAPD_ADMIN_DN=$ADMIN_DN
SLAPD_ADMIN_PASSWORD=$ADMIN_PW
SLAPD_PID_FILE=$W/slapd.pid
SLAPD_LOG=$W/slapd.log
ENV
    mv "$W/env.new" "$W/env"
    cat "$W/env"
}

write_conf() {
    cat >"$W/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile $W/slapd.pid
argsfile $W/slapd.args
TLSCACertificateFile $W/pki/ca.pem
TLSCertificateFile $W/pki/leaf.pem
TLSCertificateKeyFile $W/pki/leaf.key
# Simple binds (and everything else) only over TLS.
security simple_bind=1

database mdb
maxsize 104857600
suffix "$BASE"
rootdn "$ADMIN_DN"
rootpw $ADMIN_PW
directory $W/db
index objectClass eq
index mail,uid eq
overlay ppolicy
ppolicy_default "$POLICY"
ppolicy_hash_cleartext
ppolicy_use_lockout

# The service account may read people, unlock them (delete
# pwdAccountLockedTime), reset their passwords (write, never read,
# userPassword; not "manage", so the password policy still applies to it) and
# flag the reset (pwdReset); nothing else.
access to dn.subtree="$PEOPLE" attrs=userPassword
    by self =wx
    by dn.exact="$SERVICE_DN" =w
    by anonymous auth
    by * none
access to dn.subtree="$PEOPLE" attrs=pwdAccountLockedTime,pwdReset
    by dn.exact="$SERVICE_DN" write
    by self read
    by * none
access to dn.subtree="$PEOPLE" attrs=pwdHistory
    by * none
access to dn.subtree="$PEOPLE"
    by dn.exact="$SERVICE_DN" read
    by self read
    by * none
# A search from the base DN needs the base entry visible.
access to dn.base="$BASE"
    by dn.exact="$SERVICE_DN" read
    by * none
access to attrs=userPassword
    by self =wx
    by anonymous auth
    by * none
access to dn.base=""
    by * read
access to dn.base="cn=Subschema"
    by * read
access to *
    by self read
    by * none
CONF
}

start_slapd() {
    rm -f "$W/slapd.pid"
    # Daemonises once it listens; -d 0 would keep it in the foreground.
    "$SLAPD" -h "$URL/" -f "$W/slapd.conf" </dev/null >>"$W/slapd.log" 2>&1 9>&-
    if ! wait_until 10 healthy_or_empty; then
        echo "slapd did not answer on $URL; see $W/slapd.log" >&2
        tail -5 "$W/slapd.log" >&2 || true
        exit 1
    fi
}
healthy_or_empty() { admin ldapsearch -LLL -b "" -s base 1.1 >/dev/null 2>&1; }

provision() {
    admin ldapadd >/dev/null <<LDIF
dn: $BASE
objectClass: dcObject
objectClass: organization
o: Test
dc: test

dn: ou=policies,$BASE
objectClass: organizationalUnit
ou: policies

dn: $POLICY
objectClass: device
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdLockout: TRUE
pwdMaxFailure: 3
pwdLockoutDuration: 0
pwdFailureCountInterval: 0
pwdMustChange: TRUE
pwdAllowUserChange: TRUE
pwdInHistory: 5
pwdMinLength: 8
pwdCheckQuality: 1

dn: cn=service,ou=policies,$BASE
objectClass: device
objectClass: pwdPolicy
cn: service
pwdAttribute: userPassword
pwdLockout: FALSE

dn: ou=services,$BASE
objectClass: organizationalUnit
ou: services

dn: $SERVICE_DN
objectClass: person
objectClass: pwdPolicy
cn: unlockbot
sn: unlockbot
pwdAttribute: userPassword
userPassword: $SERVICE_PW

dn: $PEOPLE
objectClass: organizationalUnit
ou: people
LDIF
    # The service account follows a policy of its own: it never locks.
    printf 'dn: %s\nchangetype: modify\nadd: pwdPolicySubentry\npwdPolicySubentry: cn=service,ou=policies,%s\n' \
        "$SERVICE_DN" "$BASE" | admin ldapmodify >/dev/null
}

# What is set up: bump it whenever the set-up changes (configuration, policy,
# accounts, rights), so that a server set up the old way is made afresh
# rather than reused. Other edits leave running servers alone.
STAMP=slapd-setup-1
same_version() { [ "$(cat "$W/stamp" 2>/dev/null)" = "$STAMP" ]; }

# One run of this script at a time per server (test binaries, worktrees).
mkdir -p "$(dirname "$W")"
exec 9>"$W.lock"
flock 9

cmd=${1:-start}
case "$cmd" in
start)
    mkdir -p "$W"
    if same_version && alive "$W/slapd.pid" && [ -s "$W/env" ] && healthy; then
        print_env
        exit 0
    fi
    have slapd && have ldapsearch && have openssl || {
        echo "slapd.sh: needs the Debian packages slapd, ldap-utils and openssl" >&2
        exit 2
    }
    stop_pid "$W/slapd.pid"
    if same_version && [ -f "$W/provisioned" ] && [ -s "$W/pki/ca.pem" ] \
        && openssl x509 -checkend 3600 -noout -in "$W/pki/leaf.pem" >/dev/null 2>&1; then
        start_slapd # data kept from before: start it as it was
        if healthy; then print_env; exit 0; fi
        stop_pid "$W/slapd.pid"
    fi
    rm -rf "$W/db" "$W/provisioned" "$W/pki"
    mkdir -p "$W/db"
    make_pki "$W/pki"
    write_conf
    start_slapd
    provision
    touch "$W/provisioned"
    echo "$STAMP" >"$W/stamp"
    print_env
    ;;
stop)
    stop_pid "$W/slapd.pid"
    ;;
reset)
    stop_pid "$W/slapd.pid"
    rm -rf "$W"
    ;;
*)
    echo "usage: $0 [start|stop|reset]" >&2
    exit 2
    ;;
esac
