#!/usr/bin/env bash
# test.sh - see Alice admitted and Bob refused, the way the tutorial does it.
#
# Makes its own certificates (gencerts.sh into a temporary folder), starts its
# own ./server on a free port, and asks it with curl, as the tutorial does:
#   curl --cert alice.p12 --cert-type p12 https://localhost:PORT/authenticate
# (with --cacert instead of the tutorial's --insecure: we check the server too).
# Each check prints ok or FAIL; the last line is "N passed, N failed".
#
# SERVER_WRAPPER runs the server under another program, e.g.
#   SERVER_WRAPPER="valgrind --leak-check=full" ./test.sh
set -u
cd "$(dirname "$0")" || exit 1

for tool in curl openssl; do
    command -v "$tool" >/dev/null || { echo "test.sh: $tool is needed (apt-get install $tool)" >&2; exit 1; }
done
[ -x ./server ] || { echo "test.sh: ./server is not built (run make)" >&2; exit 1; }

work=$(mktemp -d)
certs=$work/certs
log=$work/server.log
server_pid=
passed=0
failed=0

stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
    server_pid=
}
cleanup() {
    stop_server
    [ -n "${KEEP_WORK:-}" ] && { echo "work folder kept: $work"; return; }
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok() {
    passed=$((passed + 1))
    echo "ok   $1"
}
fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
    shift
    printf '       %s\n' "$@"
}

# start_server [FLAGS...]: run the server in the background on a free port and
# wait until it says it listens; sets $port.
start_server() {
    # shellcheck disable=SC2086   # SERVER_WRAPPER is a command line to split
    ${SERVER_WRAPPER:-} ./server --port 0 --certs "$certs" "$@" 2>"$log" &
    server_pid=$!
    port=
    for _ in $(seq 300); do
        port=$(sed -n 's|^server: listening on https://localhost:\([0-9]*\)/.*|\1|p' "$log")
        [ -n "$port" ] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "test.sh: the server did not start; its output:" >&2
    cat "$log" >&2
    exit 1
}

# fetch CURL-ARGS...: GET (or whatever the args say) from our server; sets
# $code (the HTTP status, 000 if none) and $body (headers too with -i).
fetch() {
    local out
    out=$(curl -sS --max-time 20 --cacert "$certs/server_cert.pem" -w '\n%{http_code}' "$@" 2>&1)
    code=${out##*$'\n'}
    body=${out%$'\n'*}
}

# expect NAME STATUS TEXT CURL-ARGS...: the answer has STATUS and contains TEXT.
expect() {
    local name=$1 want_code=$2 want_text=$3
    shift 3
    fetch "$@"
    if [ "$code" = "$want_code" ] && [[ $body == *"$want_text"* ]]; then
        ok "$name"
    else
        fail "$name" "wanted: $want_code with \"$want_text\"" "got:    $code ${body:0:300}"
    fi
}

# raw BYTES: send BYTES as they are over TLS and print what comes back.
raw() {
    printf '%s' "$1" | timeout 20 openssl s_client -quiet \
        -connect "localhost:$port" -servername localhost \
        -CAfile "$certs/server_cert.pem" -verify_return_error 2>/dev/null
}

# expect_raw NAME STATUS BYTES: BYTES sent as the request get STATUS.
expect_raw() {
    local name=$1 want=$2 out
    out=$(raw "$3")
    if [[ $out == "HTTP/1.1 $want "* ]]; then
        ok "$name"
    else
        fail "$name" "wanted: HTTP/1.1 $want" "got:    ${out:0:200}"
    fi
}

# log_has NAME PATTERN: the server's log has a line matching PATTERN (grep -E).
log_has() {
    if grep -Eq -- "$2" "$log"; then
        ok "$1"
    else
        fail "$1" "no log line matches: $2" "log tail:" "$(tail -n 5 "$log")"
    fi
}

url() { echo "https://localhost:$port$1"; }

echo "# README: each line range of the crosswalk starts where it says"
# shellcheck disable=SC2016   # the backquotes are Markdown, not shell
crosswalk=$(grep -oE '\[[a-z.]+:[0-9]+-[0-9]+\]\([^)]*\) `[^`]+`' README.md |
            sed -E 's/^\[([a-z.]+):([0-9]+)-([0-9]+)\]\([^)]*\) `([^`]+)`$/\1 \2 \3 \4/')
[ -n "$crosswalk" ] || fail "README: the crosswalk has line ranges" "none found"
while read -r file first last anchor; do
    name="README: $file:$first-$last is $anchor"
    start=$(sed -n "${first}p" "$file")
    end=$(sed -n "${last}p" "$file")
    if [[ $start == "$anchor"* ]] && [ "$last" -ge "$first" ] &&
        { [ "$file" != server.c ] || [ "$end" = "}" ]; }; then
        ok "$name"
    else
        fail "$name" "line $first: $start" "line $last: $end"
    fi
done <<<"$crosswalk"

echo "# making certificates with gencerts.sh (RSA-4096, takes a few seconds)"
./gencerts.sh "$certs" >"$work/gencerts.log" 2>&1 || {
    cat "$work/gencerts.log"
    echo "test.sh: gencerts.sh failed" >&2
    exit 1
}

ALICE_P12=(--cert "$certs/alice.p12" --cert-type p12)
BOB_P12=(--cert "$certs/bob.p12" --cert-type p12)
ALICE_PEM=(--cert "$certs/alice_cert.pem" --key "$certs/alice_key.pem")
BOB_PEM=(--cert "$certs/bob_cert.pem" --key "$certs/bob_key.pem")
HELLO="Hello Alice, your certificate was issued by localhost!"
SORRY_BOB="Sorry Bob, certificates from Bob are not welcome here."
NEED_CERT="Sorry, but you need to provide a client certificate to continue."
LINK='<a href="authenticate">Log in using client certificate</a>'

start_server --timeout 2
echo "# server on port $port"

echo "# the tutorial's three visitors, over TLS 1.2 and TLS 1.3"
for v in 1.2 1.3; do
    tls=(--tlsv"$v" --tls-max "$v")
    expect "TLS $v: landing page for everyone"       200 "$LINK"      "${tls[@]}" "$(url /)"
    expect "TLS $v: Alice (p12) is welcome"          200 "$HELLO"     "${tls[@]}" "${ALICE_P12[@]}" "$(url /authenticate)"
    expect "TLS $v: Bob (p12) is not"                403 "$SORRY_BOB" "${tls[@]}" "${BOB_P12[@]}" "$(url /authenticate)"
    expect "TLS $v: no certificate, 401"             401 "$NEED_CERT" "${tls[@]}" "$(url /authenticate)"
done
log_has "log: Alice admitted over TLS 1.2" '^127\.0\.0\.1 TLS1\.2 "GET /authenticate HTTP/1\.1" 200 admitted "CN=Alice"'
log_has "log: Alice admitted over TLS 1.3" '^127\.0\.0\.1 TLS1\.3 "GET /authenticate HTTP/1\.1" 200 admitted "CN=Alice"'
log_has "log: Bob refused, with the reason" '403 refused "CN=Bob": .*issuer is unknown'
log_has "log: no certificate, said so"      '401 no client certificate'

echo "# the same with PEM files instead of .p12"
expect "Alice (PEM) is welcome"                       200 "$HELLO"     "${ALICE_PEM[@]}" "$(url /authenticate)"
expect "Bob (PEM) is not"                             403 "$SORRY_BOB" "${BOB_PEM[@]}" "$(url /authenticate)"
expect "Alice via https://127.0.0.1 (subjectAltName)" 200 "$HELLO" "${ALICE_P12[@]}" "https://127.0.0.1:$port/authenticate"

echo "# HTTP: routes, methods, malformed requests"
expect "query string is ignored"                 200 "$HELLO" "${ALICE_P12[@]}" "$(url '/authenticate?from=test')"
expect "unknown path: 404"                       404 "Not Found" "$(url /nope)"
expect "POST: 405 with Allow: GET, HEAD"         405 $'Allow: GET, HEAD\r' -i -X POST -d x=1 "$(url /)"
expect "HEAD: 200, headers only"                 200 "Content-Length: 59" -I "$(url /)"
fetch -I "$(url /authenticate)"
if [[ $body != *"$NEED_CERT"* && $body == *"Content-Type: text/html; charset=utf-8"* ]]; then
    ok "HEAD /authenticate: no body"
else
    fail "HEAD /authenticate: no body" "got: $body"
fi
expect "HTTP/1.1 without Host: 400"              400 "Bad Request" -H "Host:" "$(url /)"
expect "HTTP/1.0 without Host: 200"              200 "$LINK" --http1.0 -H "Host:" "$(url /)"
expect_raw "bare LF line ends (RFC 9112): 200"   200 $'GET / HTTP/1.0\n\n'
expect_raw "request line with no version: 400"   400 $'GET /\r\n\r\n'
expect_raw "garbage request line: 400"           400 $'\x01\x02 hello\r\n\r\n'
expect_raw "header line without colon: 400"      400 $'GET / HTTP/1.1\r\nHost: x\r\nnonsense\r\n\r\n'
expect_raw "two Host headers: 400"               400 $'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'
expect_raw "absolute-form target: 400"           400 $'GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n'
expect_raw "HTTP/2.0 on an HTTP/1 line: 505"     505 $'GET / HTTP/2.0\r\nHost: x\r\n\r\n'
long=$(printf 'a%.0s' $(seq 9000))
expect_raw "request line over 8 KiB: 414"        414 "GET /$long HTTP/1.1"$'\r\nHost: x\r\n\r\n'
expect_raw "headers over 8 KiB: 431"             431 $'GET / HTTP/1.1\r\nHost: x\r\nX-Big: '"$long"$'\r\n\r\n'
log_has "log: why a request was malformed"       '400 HTTP/1\.1 request without Host header'

echo "# slow and broken clients cost one connection, and at most --timeout (2 s)"
# A client that connects and says nothing is cut off at the deadline, and
# the next client is served.
exec 3<>"/dev/tcp/127.0.0.1/$port"
start=$(date +%s%N)
fetch "${ALICE_P12[@]}" "$(url /authenticate)"
waited=$(( ($(date +%s%N) - start) / 1000000 ))
exec 3<&-
if [ "$code" = 200 ] && [ "$waited" -lt 6000 ]; then
    ok "silent client: the next one is served (after $waited ms)"
else
    fail "silent client: the next one is served" "got $code after $waited ms (wanted 200 within 6000 ms)"
fi
log_has "log: the silent client timed out" 'handshake failed: .*timed out'

# A client that dribbles a byte every 0.2 s (it would hold GnuTLS's own
# per-read timeout forever) is cut off at the same deadline.
{
    printf '\x16\x03\x01\x10\x00'       # a TLS record header announcing 4 KiB
    for _ in $(seq 50); do printf 'x'; sleep 0.2; done
} 2>/dev/null >"/dev/tcp/127.0.0.1/$port" &
dribbler=$!
sleep 0.3
start=$(date +%s%N)
fetch "${ALICE_P12[@]}" "$(url /authenticate)"
waited=$(( ($(date +%s%N) - start) / 1000000 ))
kill "$dribbler" 2>/dev/null
wait "$dribbler" 2>/dev/null
if [ "$code" = 200 ] && [ "$waited" -lt 6000 ]; then
    ok "dribbling client: the next one is served (after $waited ms)"
else
    fail "dribbling client: the next one is served" "got $code after $waited ms (wanted 200 within 6000 ms)"
fi

# (in a subshell: if the server has closed already, SIGPIPE ends only that)
(printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' >"/dev/tcp/127.0.0.1/$port") 2>/dev/null
sleep 0.2
log_has "plain HTTP to the TLS port: handshake fails, logged" 'handshake failed'
expect "after all that, Alice is still welcome"  200 "$HELLO" "${ALICE_P12[@]}" "$(url /authenticate)"

echo "# stopping"
kill -TERM "$server_pid"
wait "$server_pid"
status=$?
server_pid=
if [ "$status" = 0 ] && grep -q '^server: stopped' "$log"; then
    ok "SIGTERM: the server stops with exit status 0"
else
    fail "SIGTERM: the server stops with exit status 0" "exit status $status" "$(tail -n 3 "$log")"
fi

echo "# the command line"
out=$(./server --certs "$work/nowhere" 2>&1)
status=$?
if [ "$status" -ne 0 ] && [[ $out == *"$work/nowhere/server_key.pem"* ]]; then
    ok "missing key file: error names it, exit $status"
else
    fail "missing key file: error names it" "exit $status: $out"
fi
out=$(./server --certs "$certs" --ca "$certs/alice_key.pem" 2>&1)
status=$?
if [ "$status" -ne 0 ] && [[ $out == *"no CA certificate in $certs/alice_key.pem"* ]]; then
    ok "CA file without certificates: error names it, exit $status"
else
    fail "CA file without certificates: error names it" "exit $status: $out"
fi
out=$(./server --port 70000 2>&1)
status=$?
if [ "$status" -eq 2 ] && [[ $out == *"--port"*"70000"* ]]; then
    ok "bad --port: error names the flag, exit 2"
else
    fail "bad --port: error names the flag, exit 2" "exit $status: $out"
fi
out=$(./server --frobnicate 2>&1)
status=$?
if [ "$status" -eq 2 ] && [[ $out == *"--frobnicate"* ]]; then
    ok "unknown flag: error names it, exit 2"
else
    fail "unknown flag: error names it, exit 2" "exit $status: $out"
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
