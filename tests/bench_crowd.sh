#!/usr/bin/env bash
# tests/bench_crowd.sh - Alice's time to an answer while a crowd from many
# addresses holds every slot, next to her time with no crowd (make bench).
#
# The crowd: 8 idle connections from each of 127.0.0.2-9 (tests/flood.py),
# 64 in all, every slot of --max-clients 64; the server's --timeout is 30 s,
# so without a slot given way she would wait that long.  Each sample: Alice
# alone (curl, her .p12, GET /authenticate, total time), then the crowd
# comes, Alice again, the crowd goes.  SAMPLES rounds, interleaved; medians
# with min-max.  A benchmark, not a test: it asserts nothing.
#
#   SAMPLES=15 tests/bench_crowd.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLES=${SAMPLES:-15}
# shellcheck source=tests/lib.sh
. tests/lib.sh
need curl python3 ss
make_certs
start_server --timeout 30

alice_ms() {
    curl -sS -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 40 \
        --cacert "$certs/server_cert.pem" --cert "$certs/alice.p12" --cert-type p12 \
        "https://localhost:$port/authenticate" | awk '$1 == 200 {printf "%.1f\n", $2 * 1000}'
}
held() { ss -Htn state established "( sport = :$port )" | wc -l; }
# stats: median (min-max) of the numbers on stdin
stats() { sort -n | awk '{v[NR] = $1} END {printf "%.1f ms (%.1f-%.1f)", v[int((NR + 1) / 2)], v[1], v[NR]}'; }

alone=() crowded=() holding=()
for _ in $(seq "$SAMPLES"); do
    alone+=("$(alice_ms)")
    pids=()
    for a in 2 3 4 5 6 7 8 9; do
        rm -f "$work/ready.$a"
        python3 tests/flood.py --port "$port" --source "127.0.0.$a" --idle 8 --dribble 0 \
            --hold 60 --ready-file "$work/ready.$a" >/dev/null 2>&1 &
        pids+=($!)
    done
    for a in 2 3 4 5 6 7 8 9; do
        for _ in $(seq 100); do [ -s "$work/ready.$a" ] && break; sleep 0.1; done
    done
    holding+=("$(held)")
    crowded+=("$(alice_ms)")
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 100); do [ "$(held)" = 0 ] && break; sleep 0.1; done
done
echo "Alice's time to an answer, $SAMPLES samples each, interleaved:"
echo "  alone:                                   $(printf '%s\n' "${alone[@]}" | stats)"
echo "  64 idle from 127.0.0.2-9 on every slot:  $(printf '%s\n' "${crowded[@]}" | stats)" \
    "(connections held before her: $(printf '%s\n' "${holding[@]}" | sort -n | uniq | tr '\n' ' '))"
