#!/usr/bin/env bash
# tests/bench_concurrency.sh - throughput with 1, 2, 4 and 16 clients at once,
# next to gnutls-serv and nginx on the same certificates (make bench).
#
# Servers, all on 127.0.0.1, all asking for a client certificate and checking
# it against server_cert.pem, TLS 1.2 and 1.3, no session resumption:
#   ./server          a thread per connection (--max-per-address 64: every
#                     client here comes from 127.0.0.1)
#   gnutls-serv       GnuTLS's own server (--http): one process, one core
#   nginx, 1 worker   OpenSSL, an event loop per worker
#   nginx, 2 workers
# Keys: "rsa+ec": the tutorial's RSA-4096 server key with an ECDSA P-256
# Alice, so that the clients cost little next to the server; "ecdsa": P-256
# for both.  Each cell: N tests/tlsclient processes for SECONDS seconds, each
# connection a full handshake with Alice's certificate, GET /authenticate, the
# answer checked ("200 OK"), close.  The cells are measured round-robin,
# SAMPLES times, and every figure is the median (min-max beside it).  Peak
# memory is the server's VmHWM (nginx: master and workers added up).
#
#   SAMPLES=3 SECONDS_PER_CELL=2 tests/bench_concurrency.sh
# Needs gnutls-serv (gnutls-bin) and nginx (Debian's nginx); a benchmark, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."

SAMPLES=${SAMPLES:-3}
SECONDS_PER_CELL=${SECONDS_PER_CELL:-2}
CLIENTS=(1 2 4 16)
# shellcheck source=tests/lib.sh
. tests/lib.sh      # need, free_port, a temporary $work
need gnutls-serv nginx openssl python3
for built in ./server tests/tlsclient; do
    [ -x "$built" ] || { echo "bench: $built is not built (make bench builds it)" >&2; exit 1; }
done
keep=tests/work/bench   # the benchmark's certificates, kept between runs
[ -e "$keep/rsa/localhost_key.pem" ] || ./gencerts.sh -f "$keep/rsa" >/dev/null
[ -e "$keep/ecdsa/localhost_key.pem" ] || ./gencerts.sh -f -e "$keep/ecdsa" >/dev/null
# an ECDSA Alice signed by the RSA CA, for "rsa+ec"
if [ ! -e "$keep/rsa/alice_ec_cert.pem" ]; then
    (cd "$keep/rsa" &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout alice_ec_key.pem \
            -out alice_ec_csr.pem -subj /CN=Alice 2>/dev/null &&
        openssl x509 -req -in alice_ec_csr.pem -CA server_cert.pem -CAkey server_key.pem \
            -set_serial 0x77 -days 365 -out alice_ec_cert.pem 2>/dev/null)
fi
priorities=$(sed -n '/^#define TLS_PRIORITIES/,/[^\\]$/p' server.c | grep -o '"[^"]*"' | tr -d '"\n')

pids=()
stop_all() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap 'stop_all; cleanup' EXIT

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done
              echo "bench: nothing listens on port $1" >&2; exit 1; }

# start_servers DIR: the four servers on DIR's certificates; sets port[NAME], pid[NAME]
declare -A port pid
start_servers() {
    local dir=$1 name w conf
    port[ours]=$(free_port)
    ./server --port "${port[ours]}" --certs "$dir" --max-per-address 64 2>"$work/ours.log" &
    pid[ours]=$!
    port[gnutls-serv]=$(free_port)
    gnutls-serv --http --port "${port[gnutls-serv]}" --priority "$priorities" --verify-client-cert \
        --x509keyfile "$dir/localhost_key.pem" --x509certfile "$dir/localhost_cert.pem" \
        --x509cafile "$dir/server_cert.pem" >"$work/gnutls-serv.log" 2>&1 &
    pid[gnutls-serv]=$!
    for w in 1 2; do
        name=nginx-$w
        port[$name]=$(free_port)
        mkdir -p "$work/$name"
        conf=$work/$name/nginx.conf
        cat >"$conf" <<EOF
worker_processes $w;
pid $work/$name/nginx.pid;
error_log $work/$name/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_timeout 0;    # one request per connection, as ours; the client reads until close
    client_body_temp_path $work/$name;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets off;
    ssl_session_cache off;
    server {
        listen 127.0.0.1:${port[$name]} ssl;
        ssl_certificate $PWD/$dir/localhost_cert.pem;
        ssl_certificate_key $PWD/$dir/localhost_key.pem;
        ssl_client_certificate $PWD/$dir/server_cert.pem;
        ssl_verify_client optional;
        location = /authenticate {
            if (\$ssl_client_verify != SUCCESS) { return 403; }
            return 200 "Hello \$ssl_client_s_dn\n";
        }
    }
}
EOF
        nginx -p "$work/$name" -c "$conf" -g 'daemon off;' 2>>"$work/$name/error.log" &
        pid[$name]=$!
    done
    pids=("${pid[@]}")
    for name in "${!port[@]}"; do wait_port "${port[$name]}"; done
}

# peak_kib NAME: VmHWM of the server's processes (and their children), added up
peak_kib() {
    local total=0 p
    for p in ${pid[$1]} $(pgrep -P "${pid[$1]}" || true); do
        total=$((total + $(awk '/^VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
    done
    echo "$total"
}

# cell NAME DIR N: N clients for SECONDS_PER_CELL; prints "rate p50 p99"
cell() {
    local name=$1 dir=$2 n=$3 i out=() files=()
    for i in $(seq "$n"); do
        files+=("$work/client.$i")
        tests/tlsclient --port "${port[$name]}" --ca "$dir/server_cert.pem" \
            --cert "$dir/$alice_cert" --key "$dir/$alice_key" --count 1000000 \
            --seconds "$SECONDS_PER_CELL" --expect-text "200 OK" --stats >"$work/client.$i" 2>&1 &
        out+=($!)
    done
    for i in "${out[@]}"; do wait "$i" || { echo "bench: a client of $name failed:" >&2; cat "${files[@]}" >&2; exit 1; }; done
    # total rate; the median client's p50 and the worst p99
    local stats
    stats=$(grep -h '^connections' "${files[@]}")
    printf '%s %s %s\n' \
        "$(awk '{for (i = 1; i < NF; i++) if ($i == "rate") r += $(i + 1)} END {printf "%.1f", r}' <<<"$stats")" \
        "$(field p50_ms <<<"$stats" | middle)" "$(field p99_ms <<<"$stats" | sort -g | tail -n 1)"
}
# field NAME: the value after NAME on each line; middle: the median of a column
field() { awk -v k="$1" '{for (i = 1; i < NF; i++) if ($i == k) print $(i + 1)}'; }
middle() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

median() { sort -g | awk '{v[NR] = $1} END {m = v[int((NR + 1) / 2)]; printf "%s (%s-%s)", m, v[1], v[NR]}'; }

servers=(ours gnutls-serv nginx-1 nginx-2)
declare -A rates p50s p99s peaks
printf '%-7s %-12s %7s  %-26s %8s %8s %9s\n' keys server clients "conn/s median (min-max)" "p50 ms" "p99 ms" "peak KiB"
for keys in rsa+ec ecdsa; do
    if [ "$keys" = rsa+ec ]; then dir=$keep/rsa alice_cert=alice_ec_cert.pem alice_key=alice_ec_key.pem
    else dir=$keep/ecdsa alice_cert=alice_cert.pem alice_key=alice_key.pem; fi
    start_servers "$dir"
    for n in "${CLIENTS[@]}"; do for name in "${servers[@]}"; do
        cell "$name" "$dir" 1 >/dev/null       # warm-up
        rates[$name.$n]='' p50s[$name.$n]='' p99s[$name.$n]=''
    done; done
    for _ in $(seq "$SAMPLES"); do
        for n in "${CLIENTS[@]}"; do
            for name in "${servers[@]}"; do
                read -r rate p50 p99 <<<"$(cell "$name" "$dir" "$n")"
                rates[$name.$n]+="$rate "
                p50s[$name.$n]+="$p50 "
                p99s[$name.$n]+="$p99 "
            done
        done
    done
    for name in "${servers[@]}"; do peaks[$keys.$name]=$(peak_kib "$name"); done
    for n in "${CLIENTS[@]}"; do
        for name in "${servers[@]}"; do
            printf '%-7s %-12s %7s  %-26s %8s %8s %9s\n' "$keys" "$name" "$n" \
                "$(tr ' ' '\n' <<<"${rates[$name.$n]}" | grep . | median)" \
                "$(tr ' ' '\n' <<<"${p50s[$name.$n]}" | grep . | middle)" \
                "$(tr ' ' '\n' <<<"${p99s[$name.$n]}" | grep . | middle)" \
                "${peaks[$keys.$name]}"
        done
    done
    # the targets: 2 clients, ours against gnutls-serv (rsa+ec) and nginx with 2 workers (ecdsa)
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
    med() { tr ' ' '\n' <<<"$1" | grep . | middle; }
    echo "  $keys, 2 clients: ours / gnutls-serv = $(ratio "$(med "${rates[ours.2]}")" "$(med "${rates[gnutls-serv.2]}")"), ours / nginx-2 = $(ratio "$(med "${rates[ours.2]}")" "$(med "${rates[nginx-2.2]}")")"
    stop_all
done
