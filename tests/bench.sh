#!/usr/bin/env bash
# tests/bench.sh - what a connection costs the server, next to what its
# cryptography costs (make bench).
#
# For RSA-4096 keys (the tutorial's) and ECDSA P-256 keys (gencerts.sh -e),
# over TLS 1.3 and TLS 1.2: a fresh ./server, then SAMPLES samples, each
#   - tests/tlsclient: CONNS connections in a row, each a full handshake with
#     Alice's certificate, GET /authenticate, the answer checked, close;
#   - the server's CPU time over those connections, from /proc/PID/stat (all
#     threads);
#   - right after, tests/floor: the public-key work per connection alone.
# The machine is shared and noisy: the two are interleaved, every figure is
# the median of the samples (min-max beside it), and nothing here is a test.
#
#   SAMPLES=5 RSA_CONNS=200 ECDSA_CONNS=1000 MEMORY_CONNS=10000 tests/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SAMPLES=${SAMPLES:-5}
RSA_CONNS=${RSA_CONNS:-200}
ECDSA_CONNS=${ECDSA_CONNS:-1000}
MEMORY_CONNS=${MEMORY_CONNS:-10000}
# shellcheck source=tests/lib.sh
. tests/lib.sh      # start_server, stop_server (and a temporary $work for the log)
keep=tests/work/bench   # the benchmark's certificates, kept between runs
for built in ./server tests/tlsclient tests/floor; do
    [ -x "$built" ] || { echo "bench: $built is not built (make bench builds it)" >&2; exit 1; }
done
[ -e "$keep/rsa/localhost_key.pem" ] || ./gencerts.sh -f "$keep/rsa" >/dev/null
[ -e "$keep/ecdsa/localhost_key.pem" ] || ./gencerts.sh -f -e "$keep/ecdsa" >/dev/null

cpu_ns() { process_cpu_ns "$server_pid"; }
kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$server_pid/status"; }
# field NAME LINE: the value after NAME in a "name value name value" line
field() { awk -v n="$1" '{for (i = 1; i < NF; i++) if ($i == n) print $(i + 1)}' <<<"$2"; }
# stats VALUES...: "median (min-max)"
stats() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.4g (%.4g-%.4g)", m, v[1], v[NR]}'
}
median() { stats "$@" | cut -d' ' -f1; }

client() {  # client CERTS-DIR TLS COUNT: Alice's visits; prints tlsclient's stats line
    tests/tlsclient --port "$port" --ca "$1/server_cert.pem" --tls "$2" --count "$3" \
        --cert "$1/alice_cert.pem" --key "$1/alice_key.pem" --stats \
        --expect 200 --expect-text "Hello Alice, your certificate was issued by localhost!" |
        tail -n 1
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "GnuTLS $(pkg-config --modversion gnutls), $SAMPLES samples per row, medians (min-max)"
echo
printf '%-12s %-4s %-22s %-8s %-8s %-18s %-10s %-10s %-18s %s\n' \
    keys TLS "conn/s" "p50 ms" "p99 ms" "server CPU ms/conn" "client ms" "floor ms" "ratio" "peak RSS"
summary=()
floors_seen=()
for keys in rsa ecdsa; do
    dir=$keep/$keys
    conns=$RSA_CONNS
    [ "$keys" = ecdsa ] && conns=$ECDSA_CONNS
    for tls in 1.3 1.2; do
        certs=$dir start_server --timeout 5
        client "$dir" "$tls" 20 >/dev/null        # warm-up
        rates=() p50s=() p99s=() servers=() clients=() floors=() ratios=() walls=()
        for _ in $(seq "$SAMPLES"); do
            before=$(cpu_ns)
            line=$(client "$dir" "$tls" "$conns")
            after=$(cpu_ns)
            [ "$(field connections "$line")" = "$conns" ] || { echo "bench: $line" >&2; exit 1; }
            group=$(field group "$line")
            [ "$group" = X25519 ] && group=x25519
            [ "$group" = SECP256R1 ] && group=secp256r1
            floor=$(tests/floor --key "$dir/localhost_key.pem" --ca "$dir/server_cert.pem" \
                --client-cert "$dir/alice_cert.pem" --client-key "$dir/alice_key.pem" \
                --group "$group" --iterations $((conns / 4)))
            server_ms=$(awk -v a="$before" -v b="$after" -v n="$conns" 'BEGIN {print (b - a) / n / 1e6}')
            floor_ms=$(awk -v f="$(field floor_us "$floor")" 'BEGIN {print f / 1e3}')
            rates+=("$(field rate "$line")")
            p50s+=("$(field p50_ms "$line")")
            p99s+=("$(field p99_ms "$line")")
            clients+=("$(field client_cpu_ms "$line")")
            servers+=("$server_ms")
            floors+=("$floor_ms")
            ratios+=("$(awk -v s="$server_ms" -v f="$floor_ms" 'BEGIN {print s / f}')")
            walls+=("$(awk -v p="$(field p50_ms "$line")" -v s="$server_ms" -v c="$(field client_cpu_ms "$line")" \
                'BEGIN {print p / (s + c)}')")
        done
        peak=$(kib VmHWM)
        stop_server
        printf '%-12s %-4s %-22s %-8s %-8s %-18s %-10s %-10s %-18s %s KiB\n' \
            "$keys" "$tls" "$(stats "${rates[@]}")" "$(median "${p50s[@]}")" "$(median "${p99s[@]}")" \
            "$(stats "${servers[@]}")" "$(median "${clients[@]}")" "$(median "${floors[@]}")" \
            "$(stats "${ratios[@]}")" "$peak"
        summary+=("$keys TLS $tls ($(field version "$line"), $group): p50 / (server CPU + client CPU) = $(median "${walls[@]}")")
        floors_seen+=("$floor")
    done
done
echo
echo "floor, per connection (last sample of each row, in microseconds):"
for i in "${!summary[@]}"; do
    echo "  ${summary[$i]}"
    echo "      ${floors_seen[$i]}"
done

echo
echo "memory across $MEMORY_CONNS connections (ECDSA, TLS 1.3):"
certs=$keep/ecdsa start_server --timeout 5
client "$keep/ecdsa" 1.3 1000 >/dev/null
rss_1k=$(kib VmRSS)
client "$keep/ecdsa" 1.3 $((MEMORY_CONNS - 1000)) >/dev/null
rss_all=$(kib VmRSS)
echo "  resident after 1000: $rss_1k KiB, after $MEMORY_CONNS: $rss_all KiB, peak $(kib VmHWM) KiB"
stop_server
