#!/usr/bin/env bash
# gencerts.sh - the tutorial's openssl steps, in the tutorial's order.
#
# "Authentication using HTTPS client certificates" (2017) makes every key and
# certificate with the openssl command line.  This script runs the same
# commands, with the same file names, and prints each one before it runs it,
# so its output reads like the tutorial.  Where today's OpenSSL 3 differs from
# the 2017 one, the command is changed and a comment says why (README.md,
# "OpenSSL 3 and the tutorial", lists them all).
#
# Usage: ./gencerts.sh [-f] [-l] [-e] [DIR]     (DIR defaults to certs/)
set -euo pipefail

usage() {
    cat <<'EOF'
usage: ./gencerts.sh [-f] [-l] [-e] [DIR]
  Makes the tutorial's keys and certificates in DIR (default: certs/).
  -f   overwrite keys and certificates that already exist in DIR
  -l   write the .p12 bundles with the old algorithms (RC2/3DES, SHA-1 MAC)
       that older macOS and Windows keychains still expect
  -e   beyond the tutorial: ECDSA P-256 keys instead of RSA, for every key;
       a handshake then costs a fraction (docs/performance.md)
  -h   show this help
EOF
}

force=0
legacy=()
# The tutorial's keys are RSA-4096; the people beyond it get RSA-2048 (faster
# to make, same lesson).  -e makes them all ECDSA P-256.
key=(rsa:4096)
small_key=(rsa:2048)
key_name=RSA-4096
small_key_name=RSA-2048
while getopts ":flhe" opt; do
    case $opt in
        f) force=1 ;;
        l) legacy=(-legacy) ;;
        e) key=(ec -pkeyopt ec_paramgen_curve:P-256)
           small_key=("${key[@]}")
           key_name="ECDSA P-256"
           small_key_name=$key_name ;;
        h) usage; exit 0 ;;
        *) echo "gencerts.sh: unknown flag -$OPTARG" >&2; usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -le 1 ] || { echo "gencerts.sh: too many arguments: $*" >&2; usage >&2; exit 2; }
dir=${1:-certs}

command -v openssl >/dev/null || {
    echo "gencerts.sh: openssl not found (Debian: apt-get install openssl)" >&2
    exit 1
}

files=(server_key.pem server_cert.pem localhost_key.pem localhost_cert.pem
       alice_key.pem alice_csr.pem alice_cert.pem
       bob_key.pem bob_csr.pem bob_cert.pem
       alice.p12 bob.p12)
# and beyond the tutorial (the last part of this script)
for who in carol dave erin frank mallory zoe; do
    files+=("${who}_key.pem" "${who}_csr.pem" "${who}_cert.pem")
done
# (crl.pem.lock: the copy of the last CRL part 2 signed, with the CA that -f replaces)
files+=(mallory_ca_key.pem mallory_ca_cert.pem alice_secret.p12 crl.pem crl.pem.lock ca)

mkdir -p "$dir"
cd "$dir"
if [ "$force" -eq 0 ]; then
    for f in "${files[@]}"; do
        if [ -e "$f" ]; then
            echo "gencerts.sh: $dir/$f already exists; run with -f to make new ones" >&2
            exit 1
        fi
    done
fi
rm -rf "${files[@]}"

# Private keys must be readable by their owner only; the .p12 bundles hold
# keys too.  A umask covers every file this script writes.
umask 077

# step WHAT COMMAND...: print the command as the tutorial shows it, then run it.
# openssl's progress dots and chatter go to a buffer and are shown only when
# the command fails, so a good run prints nothing but the tutorial's story.
step() {
    local what=$1
    shift
    printf '\n# %s\n$' "$what"
    printf ' %q' "$@"
    printf '\n'
    local err
    if ! err=$("$@" 2>&1 >/dev/null); then
        printf '%s\n' "$err" >&2
        echo "gencerts.sh: the command above failed (in $dir)" >&2
        exit 1
    fi
}

echo "Writing into $dir/"

# --- Setting up the private key and the certificate ------------------------
# Tutorial: openssl req -x509 -newkey rsa:4096 ... -subj "/CN=localhost/O=..."
# OpenSSL 3 difference: browsers since 2017 ignore the CN and accept a server
# certificate only if its subjectAltName names the host, so we add one for
# localhost (IPv4 and IPv6 too, for https://127.0.0.1:9999/).
step "Server: a new $key_name key and a self-signed certificate for localhost, valid 365 days" \
    openssl req -x509 -newkey "${key[@]}" -keyout server_key.pem -out server_cert.pem \
    -nodes -days 365 -subj "/CN=localhost/O=Client Certificate Demo" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"

# Beyond the tutorial, for Firefox: server_cert.pem is a CA (CA:TRUE: it signs
# Alice), and Firefox refuses a CA's certificate as a web server's
# (MOZILLA_PKIX_ERROR_CA_CERT_USED_AS_END_ENTITY).  So the server gets a
# certificate of its own for localhost, signed by server_cert.pem, and marked
# as no CA.  server_cert.pem stays the CA that signs Alice and the one a reader
# imports; ./server presents localhost_cert.pem whenever it is here.  Its own
# name (OU) keeps it from looking self-issued next to its CA.  (Without
# the explicit CA:FALSE, req -x509 -CA writes CA:TRUE, and Firefox refuses again.)
step "Server: an $key_name key and a certificate for localhost alone, signed by server_cert.pem (CA:FALSE)" \
    openssl req -x509 -newkey "${key[@]}" -keyout localhost_key.pem -out localhost_cert.pem \
    -nodes -days 365 -subj "/CN=localhost/O=Client Certificate Demo/OU=This server" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
    -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
    -CA server_cert.pem -CAkey server_key.pem

# --- Setting up client certificates -----------------------------------------
# Tutorial: openssl req -newkey rsa:4096 ... -nodes -days 365 -subj "/CN=Alice"
# OpenSSL 3 difference: -days only means something with -x509 (a CSR has no
# validity); OpenSSL 3 says "Ignoring -days", so we leave it out here and give
# the days where the certificates are signed.
step "Alice: a new $key_name key and a certificate signing request (CSR) for CN=Alice" \
    openssl req -newkey "${key[@]}" -keyout alice_key.pem -out alice_csr.pem \
    -nodes -subj "/CN=Alice"
step "Bob: a new $key_name key and a CSR for CN=Bob" \
    openssl req -newkey "${key[@]}" -keyout bob_key.pem -out bob_csr.pem \
    -nodes -subj "/CN=Bob"

# We act as the certificate authority: the server's own certificate and key
# sign Alice's request.  The server trusts exactly this certificate as its CA.
step "Alice's CSR signed by our server certificate (we are her CA), serial 01, 365 days" \
    openssl x509 -req -in alice_csr.pem -CA server_cert.pem -CAkey server_key.pem \
    -out alice_cert.pem -set_serial 01 -days 365

# Bob "doesn't believe in authority": his own key signs his certificate.
step "Bob's CSR signed by Bob's own key (self-signed), 365 days" \
    openssl x509 -req -in bob_csr.pem -signkey bob_key.pem -out bob_cert.pem -days 365

# --- Trying to get in: PKCS#12 bundles for the browser and curl ------------
# Tutorial: openssl pkcs12 -export -clcerts -in alice_cert.pem ...
# OpenSSL 3 differences:
#  - -clcerts only filters when *reading* a .p12; with -export it is ignored
#    (with a warning).  It is not needed: -in alice_cert.pem holds Alice's
#    certificate alone, so our CA certificate is not in the bundle anyway.
#  - The tutorial's prompt for an export password is answered with Enter, an
#    empty password; -passout pass: gives the same without the prompt.
#  - The default encryption is now AES-256 (PBES2), which older macOS and
#    Windows keychains cannot open; -l above selects -legacy for them.
step "Alice's key and certificate bundled as alice.p12 (empty export password)" \
    openssl pkcs12 -export "${legacy[@]}" -in alice_cert.pem -inkey alice_key.pem \
    -out alice.p12 -passout pass:
step "Bob's key and certificate bundled as bob.p12 (empty export password)" \
    openssl pkcs12 -export "${legacy[@]}" -in bob_cert.pem -inkey bob_key.pem \
    -out bob.p12 -passout pass:


echo
echo "The tutorial's files are done: the server's key and certificate, and Alice's"
echo "and Bob's keys, certificates and .p12 bundles."

# =========================== Beyond the tutorial ============================
# The tutorial shows one trusted and one untrusted visitor.  A real CA makes
# more kinds of certificate, and the server must refuse each bad one for the
# right reason.  These people are made the way a CA would really make them,
# with smaller (RSA-2048) keys to save time; test.sh visits with each.
#
#   Carol    issued by our CA, then revoked; the CA publishes crl.pem  -> 403
#   Dave     issued by our CA, expired (2020)                           -> 403
#   Erin     issued by our CA, valid only from ten years on             -> 403
#   Frank    issued by our CA for servers only (serverAuth)             -> 403
#   Mallory  issued by another CA, "Mallory's CA"                       -> 403
#   Zoe      issued by our CA; her name is HTML and non-ASCII           -> 200
#   alice_secret.p12: Alice's bundle protected by a passphrase, "sesame"
echo
echo "Beyond the tutorial: more people, and a revocation list"

# `openssl ca` keeps the CA's records (issued serials, revocations) in ca/.
# Its serials start at 1000 (hex) so that none can equal Alice's 01: a
# revocation list names certificates by serial, and revoking Carol must not
# revoke Alice.
mkdir -p ca/newcerts
: >ca/index.txt
echo 1000 >ca/serial
echo 1000 >ca/crlnumber
cat >ca/ca.cnf <<'CONFIG'
[ ca ]
default_ca = our_ca

[ our_ca ]
certificate      = server_cert.pem
private_key      = server_key.pem
database         = ca/index.txt
new_certs_dir    = ca/newcerts
serial           = ca/serial
crlnumber        = ca/crlnumber
default_md       = sha256
default_days     = 365
default_crl_days = 365
policy           = any_name
unique_subject   = no
copy_extensions  = none
x509_extensions  = client

[ any_name ]
commonName = supplied

# What a careful CA puts into a client certificate.
[ client ]
basicConstraints = critical, CA:FALSE
keyUsage         = critical, digitalSignature
extendedKeyUsage = clientAuth

# A certificate for a web server, not for a client.
[ server_only ]
basicConstraints = critical, CA:FALSE
keyUsage         = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
CONFIG

new_request() {     # new_request NAME SUBJECT
    step "$1: a new $small_key_name key and a CSR for $2" \
        openssl req -newkey "${small_key[@]}" -keyout "$1_key.pem" -out "$1_csr.pem" \
        -nodes -utf8 -subj "$2"
}
our_ca_signs() {    # our_ca_signs NAME WHAT [openssl ca flags...]
    local who=$1 what=$2
    shift 2
    step "$who: $what" \
        openssl ca -batch -config ca/ca.cnf -notext -in "${who}_csr.pem" \
        -out "${who}_cert.pem" "$@"
}

new_request carol "/CN=Carol"
our_ca_signs carol "issued by our CA, like Alice"
step "carol: revoked (her key was lost)" \
    openssl ca -config ca/ca.cnf -revoke carol_cert.pem -crl_reason keyCompromise
step "Our CA publishes its certificate revocation list (CRL); the server reads crl.pem" \
    openssl ca -config ca/ca.cnf -gencrl -out crl.pem

new_request dave "/CN=Dave"
our_ca_signs dave "issued by our CA for 2020 only: expired" \
    -startdate 20200101000000Z -enddate 20210101000000Z

new_request erin "/CN=Erin"
our_ca_signs erin "issued by our CA, valid only from ten years on" \
    -startdate "$(date -u -d '+10 years' +%Y%m%d%H%M%SZ)" \
    -enddate "$(date -u -d '+11 years' +%Y%m%d%H%M%SZ)"

new_request frank "/CN=Frank"
our_ca_signs frank "issued by our CA for a web server (serverAuth), not a client" \
    -extensions server_only

step "Mallory's CA: a CA of its own, which our server does not trust" \
    openssl req -x509 -newkey "${small_key[@]}" -keyout mallory_ca_key.pem -out mallory_ca_cert.pem \
    -nodes -days 365 -subj "/CN=Mallory's CA"
new_request mallory "/CN=Mallory"
step "mallory: issued by Mallory's CA" \
    openssl x509 -req -in mallory_csr.pem -CA mallory_ca_cert.pem -CAkey mallory_ca_key.pem \
    -out mallory_cert.pem -set_serial 01 -days 365

# Whoever asks for a certificate chooses its name; the server must show it
# as text, never run it as HTML.  (In -subj a / separates names: \/ is one.)
new_request zoe '/CN=<script>alert(1)<\/script> "Zoë", Jr.'
our_ca_signs zoe "issued by our CA: a trusted name full of HTML and non-ASCII"

# Tutorial: "You can also password-protect the certificate."
step "Alice's bundle again, as alice_secret.p12, protected by the passphrase sesame" \
    openssl pkcs12 -export "${legacy[@]}" -in alice_cert.pem -inkey alice_key.pem \
    -out alice_secret.p12 -passout pass:sesame

echo
echo "Done: $dir/ holds the tutorial's files and the people beyond it."
