#!/usr/bin/env bash
# tests/bench_versions.sh - server CPU per connection, this server.c against
# the one at git revision REV, one client at a time, measured interleaved.
#
# For a change that should cost nothing per connection (the thread per
# connection, say): both servers run side by side on the same certificates;
# each sample sends CONNS connections in a row (full handshake with Alice's
# certificate, TLS 1.3, GET /authenticate, answer checked) to one and then the
# other, and takes each server's CPU time from /proc/PID/stat.  Medians
# of SAMPLES samples, min-max beside them, and the ratio of the medians.
#
#   tests/bench_versions.sh REV        (make builds ./server and tests/tlsclient)
#   SAMPLES=7 RSA_CONNS=100 ECDSA_CONNS=1000 tests/bench_versions.sh 7a87822
set -euo pipefail
cd "$(dirname "$0")/.."

rev=${1:?usage: tests/bench_versions.sh REV}
SAMPLES=${SAMPLES:-7}
RSA_CONNS=${RSA_CONNS:-100}
ECDSA_CONNS=${ECDSA_CONNS:-1000}
# shellcheck source=tests/lib.sh
. tests/lib.sh
for built in ./server tests/tlsclient; do
    [ -x "$built" ] || { echo "bench: $built is not built (run make)" >&2; exit 1; }
done
keep=tests/work/bench
[ -e "$keep/rsa/localhost_key.pem" ] || ./gencerts.sh -f "$keep/rsa" >/dev/null
[ -e "$keep/ecdsa/localhost_key.pem" ] || ./gencerts.sh -f -e "$keep/ecdsa" >/dev/null
old=$work/server-$rev
git show "$rev:server.c" >"$work/old.c"
# shellcheck disable=SC2046   # pkg-config prints flags to split
${CC:-cc} -O2 -g -pthread $(pkg-config --cflags gnutls) -o "$old" "$work/old.c" $(pkg-config --libs gnutls)

cpu_ns() { process_cpu_ns "$1"; }
median() { sort -g | awk '{v[NR] = $1} END {printf "%.3f (%.3f-%.3f)", v[int((NR + 1) / 2)], v[1], v[NR]}'; }
middle() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

printf '%-6s %-10s %-26s %-26s %s\n' keys conns "this server.c, ms/conn" "$rev, ms/conn" "ratio of medians"
for keys in rsa ecdsa; do
    dir=$keep/$keys
    conns=$RSA_CONNS
    [ "$keys" = ecdsa ] && conns=$ECDSA_CONNS
    declare -A port pid
    for which in new old; do
        bin=./server
        [ "$which" = old ] && bin=$old
        port[$which]=$(free_port)
        "$bin" --port "${port[$which]}" --certs "$dir" 2>"$work/$which.log" &
        pid[$which]=$!
    done
    for which in new old; do
        for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/${port[$which]}") 2>/dev/null && break; sleep 0.1; done
    done
    new_ms='' old_ms=''
    for i in $(seq $((SAMPLES + 1))); do
        for which in new old; do
            before=$(cpu_ns "${pid[$which]}")
            tests/tlsclient --port "${port[$which]}" --ca "$dir/server_cert.pem" --tls 1.3 \
                --cert "$dir/alice_cert.pem" --key "$dir/alice_key.pem" --count "$conns" \
                --expect 200 >/dev/null
            after=$(cpu_ns "${pid[$which]}")
            ms=$(awk -v a="$before" -v b="$after" -v n="$conns" 'BEGIN {print (b - a) / n / 1e6}')
            [ "$i" = 1 ] && continue        # the first round warms up
            if [ "$which" = new ]; then new_ms+="$ms "; else old_ms+="$ms "; fi
        done
    done
    kill "${pid[new]}" "${pid[old]}"
    wait "${pid[new]}" "${pid[old]}" 2>/dev/null || true
    ratio=$(awk -v a="$(tr ' ' '\n' <<<"$new_ms" | grep . | middle)" \
                -v b="$(tr ' ' '\n' <<<"$old_ms" | grep . | middle)" 'BEGIN {printf "%.3f", a / b}')
    printf '%-6s %-10s %-26s %-26s %s\n' "$keys" "$conns" "$(tr ' ' '\n' <<<"$new_ms" | grep . | median)" \
        "$(tr ' ' '\n' <<<"$old_ms" | grep . | median)" "$ratio"
done
