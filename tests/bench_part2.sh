#!/usr/bin/env bash
# tests/bench_part2.sh - what part 2 costs as it grows.
#
#  1. GET /certificates for an account of one certificate, with 10, 1,000 and
#     10,000 certificates issued in all (one server per size, side by side,
#     requests interleaved).  Beside it GET /authenticate on the same server:
#     the same handshake, no lookup; the difference is what the lookup costs.
#  2. A revocation with 5,000, 10,000 and 20,000 entries already in the CRL:
#     ./server --revoke, and POST /revoke (whose connection has a 5 s
#     deadline), each on a fresh copy of the folder, interleaved.
# Medians of SAMPLES samples, min-max beside them, in milliseconds (curl's
# time_total, or the command's wall time).  Not a test: nothing is asserted.
#
#   tests/bench_part2.sh            (make builds ./server)
#   SAMPLES=9 tests/bench_part2.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLES=${SAMPLES:-5}
# shellcheck source=tests/lib.sh
. tests/lib.sh
[ -x ./server ] || { echo "bench: ./server is not built (run make)" >&2; exit 1; }
make_certs

median() { sort -g | awk '{v[NR] = $1} END {printf "%.1f (%.1f-%.1f)", v[int((NR + 1) / 2)], v[1], v[NR]}'; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000 )) | awk '{printf "%.1f\n", $1 / 1000}'; }

# Carol, enrolled for real: her account, her certificate
start_server --enroll
code=$(./server --certs "$certs" --port "$port" --invite Carol 2>/dev/null | sed -n 's|.*code=||p')
curl -sS --cacert "$certs/server_cert.pem" -H "Origin: https://localhost:$port" \
    --data "code=$code&passphrase=" -o "$work/carol.p12" "https://localhost:$port/enroll"
stop_server
carol=$(openssl pkcs12 -in "$work/carol.p12" -passin pass: -nokeys | openssl x509 -noout -serial | cut -d= -f2)
account=$(cat "$certs/issued/$carol")
# as PEM: curl would decrypt a .p12 (600,000 PBKDF2 rounds) at every request
openssl pkcs12 -in "$work/carol.p12" -passin pass: -nodes -out "$work/carol.pem" 2>/dev/null
CAROL=(--cert "$work/carol.pem" --cacert "$certs/server_cert.pem")

# fill DIR N: N - 1 more accounts of one certificate each, as part 2 lays
# them out (their certificates are Carol's bytes under other serials: the
# lookup never reads another account's files, and this shows it)
fill() {
    python3 - "$1" "$2" "$certs/accounts/$account/$carol.pem" <<'PY'
import os, secrets, sys
top, n, pem = sys.argv[1], int(sys.argv[2]), open(sys.argv[3]).read()
for i in range(n - 1):
    acct, serial = secrets.token_hex(8).upper(), secrets.token_hex(16).upper()
    os.makedirs(f"{top}/accounts/{acct}", mode=0o700)
    open(f"{top}/accounts/{acct}/name", "w").write(f"Person {i}\n")
    open(f"{top}/accounts/{acct}/{serial}.pem", "w").write(pem)
    open(f"{top}/issued/{serial}", "w").write(acct + "\n")
PY
}

# start_beside KEY DIR LOG: one more server --enroll on DIR, side by side
# with the others; sets ports[KEY] and pids[KEY]
declare -A ports pids
start_beside() {
    ./server --port 0 --certs "$2" --enroll 2>"$3" &
    pids[$1]=$!
    for _ in $(seq 100); do
        ports[$1]=$(sed -n 's|^server: listening on https://localhost:\([0-9]*\)/.*|\1|p' "$3")
        [ -n "${ports[$1]}" ] && return
        sleep 0.1
    done
    echo "bench: a server on $2 did not start" >&2
    exit 1
}

echo "# GET /certificates, one account among N issued certificates: ms per request"
for n in 10 1000 10000; do
    cp -r "$certs" "$work/n$n"
    fill "$work/n$n" "$n"
    start_beside "$n" "$work/n$n" "$work/n$n.log"
done
for _ in $(seq "$SAMPLES"); do
    for n in 10 1000 10000; do
        for path in certificates authenticate; do
            curl -sS -o /dev/null -w '%{time_total}\n' "${CAROL[@]}" "https://localhost:${ports[$n]}/$path" |
                awk '{print $1 * 1000}' >>"$work/get-$n-$path"
        done
    done
done
printf '%-8s %-24s %-24s\n' issued "/certificates" "/authenticate"
for n in 10 1000 10000; do
    kill "${pids[$n]}"
    printf '%-8s %-24s %-24s\n' "$n" "$(median <"$work/get-$n-certificates")" "$(median <"$work/get-$n-authenticate")"
    grep -q "200 admitted \"CN=Carol\"; account $account, serial $carol; its certificates listed" "$work/n$n.log" ||
        echo "bench: the n=$n server did not list Carol's account" >&2
done

echo
echo "# a revocation with N entries in the CRL: ms"
# Each sample starts from a fresh copy of the folder (and, for the web, a
# fresh server): putting the old crl.pem back after a revocation is what the
# server refuses to load or sign on top of ("goes back").
for n in 5000 10000 20000; do
    dir=$work/crl$n
    cp -r "$certs" "$dir"
    python3 - "$dir/ca/index.txt" "$n" <<'PY'
import sys
with open(sys.argv[1], "a") as f:
    for i in range(int(sys.argv[2])):
        f.write("R\t301128000000Z\t261128000000Z\t%06X\tunknown\t/CN=Gone %d\n" % (0x200000 + i, i))
PY
    (cd "$dir" && openssl ca -config ca/ca.cnf -gencrl -out crl.pem 2>/dev/null)
    rm -f "$dir/crl.pem.lock"
done
for i in $(seq "$SAMPLES"); do
    for n in 5000 10000 20000; do
        rm -rf "$work/cli" "$work/web"
        cp -r "$work/crl$n" "$work/cli"
        t0=$(date +%s%N)
        ./server --certs "$work/cli" --revoke "$(printf 'AB%04X' "$i")" 2>/dev/null
        ms_since "$t0" >>"$work/cli-$n"
        cp -r "$work/crl$n" "$work/web"
        start_beside web "$work/web" "$work/web.log"
        curl -sS -o "$work/web-$n.out" -w '%{time_total} %{http_code}\n' "${CAROL[@]}" \
            -H "Origin: https://localhost:${ports[web]}" --data "serial=$carol" \
            "https://localhost:${ports[web]}/revoke" >"$work/web-$n.now"
        kill "${pids[web]}"
        wait "${pids[web]}" 2>/dev/null || true
        read -r secs status <"$work/web-$n.now"
        [ "$status" = 200 ] || echo "bench: POST /revoke with $n entries: $status $(head -c 200 "$work/web-$n.out")" >&2
        awk -v s="$secs" 'BEGIN {print s * 1000}' >>"$work/web-$n"
    done
done
printf '%-8s %-24s %-24s\n' entries "./server --revoke" "POST /revoke"
for n in 5000 10000 20000; do
    printf '%-8s %-24s %-24s\n' "$n" "$(median <"$work/cli-$n")" "$(median <"$work/web-$n")"
done
