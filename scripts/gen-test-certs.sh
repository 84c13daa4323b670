#!/usr/bin/env bash
# gen-test-certs.sh -- create a throwaway CA and TLS certificates for tests.
#
# Usage:
#   scripts/gen-test-certs.sh DIR
#
# Creates in DIR (with the openssl command-line tool, EC P-256 keys,
# valid for 10 years):
#   ca.crt ca.key                        self-signed CA, CN "Sluice Test CA"
#   server.crt server.key                CN=localhost, SAN DNS:localhost,
#                                        IP:127.0.0.1, IP:::1; serverAuth
#   client.crt client.key                CN=app; clientAuth
#   client-postgres.crt client-postgres.key  CN=postgres; clientAuth
# All leaf certificates are signed by the CA.  Key files are mode 600.
#
# Idempotent: if all of these files already exist, nothing is done.
# Otherwise the whole set is regenerated.  Prints nothing on success.
#
# THESE ARE TEST CERTIFICATES ONLY: the CA key is stored next to them
# unencrypted.  Never use them for anything real.
set -euo pipefail

PROG=gen-test-certs
die() { echo "$PROG: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 DIR"
DIR=$1
[ -n "$DIR" ] || die "usage: $0 DIR (DIR must not be empty)"

FILES=(ca.crt ca.key server.crt server.key client.crt client.key
       client-postgres.crt client-postgres.key)

all_present=1
for f in "${FILES[@]}"; do
    [ -s "$DIR/$f" ] || { all_present=0; break; }
done
[ "$all_present" -eq 1 ] && exit 0

command -v openssl >/dev/null 2>&1 ||
    die "openssl not found (run scripts/install-deps.sh)"

mkdir -p -- "$DIR" || die "cannot create directory $DIR"

# Work in a private temporary directory next to DIR's files, then move the
# finished set into place so that a failure never leaves half a set behind.
umask 077
TMP=$(mktemp -d "$DIR/.certs.XXXXXX") || die "cannot create a temporary directory in $DIR"
trap 'rm -rf -- "$TMP"' EXIT

DAYS=3650
LOG=$TMP/openssl.log

ossl() {
    openssl "$@" >>"$LOG" 2>&1 || {
        cat "$LOG" >&2
        die "openssl $1 failed"
    }
}

newkey() {   # newkey FILE
    ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

serial() {   # random positive 128-bit serial number
    echo "0x1$(openssl rand -hex 15)"
}

cat >"$TMP/ext.cnf" <<'CNF'
[ req ]
distinguished_name = req_dn
prompt             = no
[ req_dn ]
CN = unused

[ v3_ca ]
basicConstraints       = critical, CA:TRUE
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ v3_server ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature, keyAgreement
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid, issuer

[ v3_client ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature, keyAgreement
extendedKeyUsage       = clientAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid, issuer
CNF

# --- CA ---------------------------------------------------------------------
newkey "$TMP/ca.key"
ossl req -new -x509 -config "$TMP/ext.cnf" -extensions v3_ca \
    -key "$TMP/ca.key" -subj "/CN=Sluice Test CA" \
    -days "$DAYS" -set_serial "$(serial)" -sha256 -out "$TMP/ca.crt"

# --- leaf certificates ------------------------------------------------------
leaf() {   # leaf NAME CN EXTENSION_SECTION
    local name=$1 cn=$2 ext=$3
    newkey "$TMP/$name.key"
    ossl req -new -config "$TMP/ext.cnf" -key "$TMP/$name.key" \
        -subj "/CN=$cn" -out "$TMP/$name.csr"
    ossl x509 -req -in "$TMP/$name.csr" \
        -CA "$TMP/ca.crt" -CAkey "$TMP/ca.key" -set_serial "$(serial)" \
        -extfile "$TMP/ext.cnf" -extensions "$ext" \
        -days "$DAYS" -sha256 -out "$TMP/$name.crt"
    rm -f "$TMP/$name.csr"
}

leaf server          localhost v3_server
leaf client          app       v3_client
leaf client-postgres postgres  v3_client

# Sanity check: every leaf must verify against the CA.
for name in server client client-postgres; do
    ossl verify -CAfile "$TMP/ca.crt" "$TMP/$name.crt"
done

chmod 600 "$TMP"/*.key
chmod 644 "$TMP"/*.crt
for f in "${FILES[@]}"; do
    mv -f -- "$TMP/$f" "$DIR/$f"
done
