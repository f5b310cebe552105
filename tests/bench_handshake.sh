#!/usr/bin/env bash
# tests/bench_handshake.sh - what GET /handshake's record costs the routes
# that never show it (make bench).
#
# Section 6 records every handshake message of every connection (GnuTLS
# calls a hook per message; the ClientHello and the CertificateRequest are
# copied), whether or not the visitor ever asks for /handshake.  Three
# builds, each with the Makefile's own rule and flags, in a temporary folder:
#   baseline    server.c of the last commit before the one titled
#               "GET /handshake: ..." (found in git log, named below)
#   new         server.c as it is in the working tree
#   unrecorded  the same, with section 1's call to record_handshake made
#               dead code: new against it is the record alone; new against
#               the baseline is everything that commit changed for GET /
#               (the landing page also gained a link, and the request
#               parser reads Accept)
# ROUNDS rounds; in each, every build in turn (the order reversed every
# other round), a fresh server, WARMUP connections, then CONNS connections
# in a row by tests/tlsclient: a full handshake with Alice's certificate,
# GET /, the answer checked (200), close.  The server's CPU over those CONNS
# is read from /proc/PID/task/*/schedstat (nanoseconds, every thread: the
# workers and the log thread live as long as the server), since lib.sh's
# process_cpu_ns counts 10 ms ticks, too coarse for a sample of a few
# hundred milliseconds; a worker started during a sample counts whole, but
# a sample in which one of the server's threads ended would lose that
# thread's time, and is refused.
# Printed: per build, the median of its CPU per connection with the
# interquartile range and min-max; per round, the ratios new / baseline and
# new / unrecorded, and their median, IQR and min-max.  The machine is
# shared and noisy; this is a benchmark, not a test: nothing is asserted on
# the timings, only that every answer was a 200.
#
#   tests/bench_handshake.sh                       (ECDSA keys, TLS 1.3 and 1.2)
#   ROUNDS=11 CONNS=200 WARMUP=20 KEYS=rsa TLS="1.3" tests/bench_handshake.sh
# KEYS=rsa is the tutorial's RSA-4096 (about 11 ms of server CPU per
# connection); ECDSA's handshake is cheaper, so a fixed cost of the record
# would show as a larger share of it.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

ROUNDS=${ROUNDS:-11}
CONNS=${CONNS:-200}
WARMUP=${WARMUP:-20}
KEYS=${KEYS:-ecdsa}
TLS=${TLS:-1.3 1.2}
# shellcheck source=tests/lib.sh
. tests/lib.sh      # start_server, stop_server, a temporary $work
keep=tests/work/bench   # the benchmark's certificates, kept between runs (as bench.sh)
[ -x tests/tlsclient ] || { echo "bench: tests/tlsclient is not built (make bench builds it)" >&2; exit 1; }
case $KEYS in
    ecdsa) [ -e "$keep/ecdsa/localhost_key.pem" ] || ./gencerts.sh -f -e "$keep/ecdsa" >/dev/null ;;
    rsa) [ -e "$keep/rsa/localhost_key.pem" ] || ./gencerts.sh -f "$keep/rsa" >/dev/null ;;
    *) echo "bench: KEYS is ecdsa or rsa" >&2; exit 1 ;;
esac
dir=$keep/$KEYS

# The commit that brought the record, and the one before it.
recording=$(git log --reverse --format=%H --grep='^GET /handshake: ' | head -n 1)
[ -n "$recording" ] || { echo "bench: no commit titled 'GET /handshake: ...' in git log" >&2; exit 1; }
baseline=$(git rev-parse "$recording^")

# build NAME: $work/NAME/server from $work/NAME/server.c, by the Makefile's rule
build() {
    make -s -C "$work/$1" -f "$top/Makefile" server >"$work/$1/build.log" 2>&1 ||
        { cat "$work/$1/build.log" >&2; echo "bench: building $1 failed" >&2; exit 1; }
}
mkdir -p "$work/baseline" "$work/new" "$work/unrecorded"
git show "$baseline:server.c" >"$work/baseline/server.c"
cp server.c "$work/new/server.c"
call='^    record_handshake(s, conn); '
[ "$(grep -c "$call" server.c)" = 1 ] ||
    { echo "bench: server.c has no single call '$call' to take out" >&2; exit 1; }
sed "s/$call/    if (0) record_handshake(s, conn); /" server.c >"$work/unrecorded/server.c"
for name in baseline new unrecorded; do build "$name"; done
builds=(baseline new unrecorded)
edited=
git diff --quiet HEAD -- server.c || edited=", with uncommitted edits"

# cpu_ns PID: CPU time of every thread of the process, in nanoseconds (the
# first field of each schedstat); threads PID: its thread ids, one a line
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {print s}'; }
threads() { (cd /proc/"$1"/task && printf '%s\n' *) | sort; }

# stats VALUES...: "median (q1-q3; min-max)", quartiles interpolated
stats() {
    printf '%s\n' "$@" | sort -g | awk -v f="$FORMAT" '{v[NR] = $1}
        function q(p,   x, i) { x = 1 + (NR - 1) * p; i = int(x); return v[i] + (x - i) * (v[i + 1] - v[i]) }
        END { printf f " (" f "-" f "; " f "-" f ")", q(0.5), q(0.25), q(0.75), v[1], v[NR] }'
}

# sample BUILD TLS: a fresh server of that build; prints its CPU per
# connection in microseconds over CONNS connections
sample() {
    SERVER=$work/$1/server certs=$dir start_server --timeout 10
    tests/tlsclient --port "$port" --ca "$dir/server_cert.pem" --tls "$2" --count "$WARMUP" \
        --cert "$dir/alice_cert.pem" --key "$dir/alice_key.pem" --path / --expect 200 >/dev/null
    local before after tids line
    tids=$(threads "$server_pid")
    before=$(cpu_ns "$server_pid")
    line=$(tests/tlsclient --port "$port" --ca "$dir/server_cert.pem" --tls "$2" --count "$CONNS" \
        --cert "$dir/alice_cert.pem" --key "$dir/alice_key.pem" --path / --expect 200 --stats | tail -n 1)
    after=$(cpu_ns "$server_pid")
    [ -z "$(comm -23 <(echo "$tids") <(threads "$server_pid"))" ] ||
        { echo "bench: a thread of the $1 server ended during a sample" >&2; exit 1; }
    stop_server
    [[ "$line" == *"connections $CONNS "* ]] || { echo "bench: $1: $line" >&2; exit 1; }
    awk -v a="$before" -v b="$after" -v n="$CONNS" 'BEGIN {printf "%.2f\n", (b - a) / n / 1e3}'
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "GnuTLS $(pkg-config --modversion gnutls), $KEYS keys; $ROUNDS rounds of $CONNS connections after $WARMUP"
echo "  (a full handshake with Alice's certificate, GET /, 200), each build in turn"
echo "builds (the Makefile's rule, CFLAGS ${CFLAGS:--O2 -g}):"
echo "  baseline    $(git log -1 --format='%h %s' "$baseline" | cut -c1-72)"
echo "  new         server.c of the working tree (HEAD $(git rev-parse --short HEAD)$edited)"
echo "  unrecorded  the same without section 6's record ('if (0) record_handshake')"
echo "  the record came with $(git log -1 --format='%h %s' "$recording" | cut -c1-64)"
for tls in $TLS; do
    declare -A cpu=()
    ratio_base=() ratio_unrec=()
    for round in $(seq "$ROUNDS"); do
        order=("${builds[@]}")
        [ $((round % 2)) = 0 ] && order=(unrecorded new baseline)
        declare -A this=()
        for name in "${order[@]}"; do
            this[$name]=$(sample "$name" "$tls")
            cpu[$name]="${cpu[$name]:-} ${this[$name]}"
        done
        ratio_base+=("$(awk -v n="${this[new]}" -v b="${this[baseline]}" 'BEGIN {print n / b}')")
        ratio_unrec+=("$(awk -v n="${this[new]}" -v u="${this[unrecorded]}" 'BEGIN {print n / u}')")
    done
    echo
    echo "TLS $tls: server CPU per connection, microseconds: median (IQR; min-max)"
    for name in "${builds[@]}"; do
        # shellcheck disable=SC2086   # the samples, one word each
        printf '  %-12s %s\n' "$name" "$(FORMAT=%.1f stats ${cpu[$name]})"
    done
    echo "TLS $tls: the ratios in each round: median (IQR; min-max)"
    printf '  %-20s %s\n' "new / baseline" "$(FORMAT=%.4f stats "${ratio_base[@]}")"
    printf '  %-20s %s\n' "new / unrecorded" "$(FORMAT=%.4f stats "${ratio_unrec[@]}")"
done
