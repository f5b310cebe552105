#!/usr/bin/env bash
# tests/profile.sh - where a connection's work goes inside the server (make profile).
#
# callgrind counts instructions, not seconds: the same run gives the same
# counts however busy the machine is.  The server runs under callgrind twice,
# for a few and for more of Alice's TLS 1.3 connections; the difference,
# divided by the difference in connections, is what one connection costs,
# without start-up.  Printed per connection: all instructions, those in the
# public-key operations (nettle's RSA, ECDSA and ECDH entry points, with all
# they call), their ratio, and every instruction by the library it ran in.
#
#   RSA_RUNS="5 25" ECDSA_RUNS="20 120" tests/profile.sh
set -euo pipefail
cd "$(dirname "$0")/.."

read -r -a rsa_runs <<<"${RSA_RUNS:-5 25}"
read -r -a ecdsa_runs <<<"${ECDSA_RUNS:-20 120}"
# shellcheck source=tests/lib.sh
. tests/lib.sh      # start_server, stop_server
keep=tests/work/profile     # callgrind's files, kept for callgrind_annotate
mkdir -p "$keep"
command -v valgrind >/dev/null || { echo "profile: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
for built in ./server tests/tlsclient; do
    [ -x "$built" ] || { echo "profile: $built is not built (make profile builds it)" >&2; exit 1; }
done
[ -e tests/work/bench/rsa/localhost_key.pem ] || ./gencerts.sh -f tests/work/bench/rsa >/dev/null
[ -e tests/work/bench/ecdsa/localhost_key.pem ] || ./gencerts.sh -f -e tests/work/bench/ecdsa >/dev/null

# The public-key entry points; none of them calls another.
PK='nettle_(rsa_pss_sha(256|384|512)_(sign_digest_tr|verify_digest)|rsa_pkcs1_(sign_tr|verify)|ecdsa_(sign|verify|generate_keypair)|ecc_point_mul(_g)?|curve25519_mul(_g)?|curve448_mul(_g)?)'

# profile_run CERTS-DIR COUNT OUT: the server under callgrind for COUNT connections
profile_run() {
    certs=$1 SERVER_WRAPPER="valgrind --tool=callgrind --callgrind-out-file=$3" start_server --timeout 30
    tests/tlsclient --port "$port" --ca "$1/server_cert.pem" --tls 1.3 --count "$2" \
        --cert "$1/alice_cert.pem" --key "$1/alice_key.pem" --expect 200 >/dev/null
    stop_server     # SIGTERM: the server exits and callgrind writes OUT
}
total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'; }
pk() {
    callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
        awk -v re="$PK" '{f = $0; sub(/.*:/, "", f); sub(/ .*/, "", f)}
            f ~ "^" re "$" {gsub(",", "", $1); s += $1} END {printf "%.0f\n", s}'
}
# by_library FILE: exclusive instructions per library, "name count" lines
by_library() {
    callgrind_annotate --threshold=100 "$1" 2>/dev/null |
        awk '/\[.*\]$/ {n = $1; gsub(",", "", n); lib = $NF; gsub(/[][]/, "", lib)
                        sub(/.*\//, "", lib); sub(/\.so.*/, "", lib); s[lib] += n}
             END {for (l in s) printf "%s %.0f\n", l, s[l]}' | sort
}

for keys in rsa ecdsa; do
    dir=tests/work/bench/$keys
    runs=("${rsa_runs[@]}")
    [ "$keys" = ecdsa ] && runs=("${ecdsa_runs[@]}")
    a=${runs[0]} b=${runs[1]}
    profile_run "$dir" "$a" "$keep/$keys.$a"
    profile_run "$dir" "$b" "$keep/$keys.$b"
    n=$((b - a))
    all=$(( ($(total "$keep/$keys.$b") - $(total "$keep/$keys.$a")) / n ))
    crypto=$(( ($(pk "$keep/$keys.$b") - $(pk "$keep/$keys.$a")) / n ))
    echo "$keys, TLS 1.3, per connection ($a and $b connections under callgrind):"
    awk -v a="$all" -v c="$crypto" 'BEGIN {
        printf "  instructions %d, public-key %d, ratio %.3f\n", a, c, a / c }'
    join <(by_library "$keep/$keys.$a") <(by_library "$keep/$keys.$b") |
        awk -v n="$n" -v a="$all" '{d = ($3 - $2) / n; if (d > a / 1000)
            printf "    %-16s %12d  %5.1f%%\n", $1, d, 100 * d / a}' | sort -k2 -n -r
done
