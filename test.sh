#!/usr/bin/env bash
# test.sh - see Alice admitted and Bob refused, the way the tutorial does it.
#
# Makes its own certificates (gencerts.sh into a temporary folder), starts its
# own ./server on a free port, and asks it with curl, as the tutorial does:
#   curl --cert alice.p12 --cert-type p12 https://localhost:PORT/authenticate
# (with --cacert instead of the tutorial's --insecure: we check the server too).
# Each check prints ok or FAIL; the last line is "N passed, N failed".
# SOAK_CONNECTIONS and CONCURRENT_CONNECTIONS size the soaks (default 50 and
# 32; 300 and 320 with LONG=1; make soak runs 2,000 of each).
# LONG=1 runs the long forms, which make soak, asan, tsan and valgrind use
# (CI runs all four): the soaks at 300 and 320, the clients that hold on
# until the deadline (four hostile ones, and part 2's body that stops short),
# a log reader that stops reading, the log on a terminal nobody reads, a
# flood from one address while Alice comes, --max-clients 2 and who gives
# way, SIGTERM with 50 connections in flight, tests/crowd.sh (crowds on every
# slot, many addresses, IPv6), every invisible character part 2 refuses in a
# name, and tests/part2_long.sh.  make test says, in place, each one it
# leaves out.
# SERVER, SERVER_WRAPPER, KEEP_WORK and LONG are explained in tests/lib.sh,
# which holds what the scripts share.
set -u
cd "$(dirname "$0")" || exit 1

# shellcheck source=tests/lib.sh
. tests/lib.sh
need curl openssl python3
[ -x tests/tlsclient ] || { echo "test.sh: tests/tlsclient is not built (run make test)" >&2; exit 1; }

max_time=20     # curl's limit, in seconds; longer for part 2 under valgrind
# fetch CURL-ARGS...: GET (or whatever the args say) from our server; sets
# $code (the HTTP status, 000 if none) and $body (headers too with -i).
fetch() {
    local out
    out=$(curl -sS --max-time "$max_time" --cacert "$certs/server_cert.pem" -w '\n%{http_code}' "$@" 2>&1)
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

# wait_log PATTERN [LINE]: until the server's log has a line matching
# PATTERN (grep -E), after its first LINE lines if given; at most 20 s.  The
# server writes a connection's line once the connection is over, from a
# thread of its own: a client may be done a moment before its line is.
wait_log() {
    for _ in $(seq 1000); do
        tail -n +"$((${2:-0} + 1))" "$log" | grep -Eq -- "$1" && return 0
        sleep 0.02
    done
    return 1
}
# log_has NAME PATTERN: the server's log has a line matching PATTERN (grep -E),
# or gets one within 20 s.
log_has() {
    if wait_log "$2"; then
        ok "$1"
    else
        fail "$1" "no log line matches: $2" "log tail:" "$(tail -n 5 "$log")"
    fi
}

url() { echo "https://localhost:$port$1"; }

# server_threads: the server's threads (the accept loop, its workers, and
# ThreadSanitizer's own under make tsan)
server_threads() { awk '/^Threads:/ {print $2}' "/proc/$server_pid/status"; }
# server_connections: the connections it has open, one descriptor each
server_connections() { echo $(( $(find "/proc/$server_pid/fd" -mindepth 1 | wc -l) - idle_fds )); }
idle_fds=0
# start_idle_server FLAGS...: start_server, and the descriptors it has idle
start_idle_server() {
    start_server "$@"
    idle_fds=0
    idle_fds=$(server_connections)
}
# wait_connections N: until the server has N connections open, or more when
# N > 0 (at most 10 s)
wait_connections() {
    local n
    for _ in $(seq 500); do
        n=$(server_connections)
        { [ "$n" = "$1" ] || { [ "$1" -gt 0 ] && [ "$n" -gt "$1" ]; }; } && return 0
        sleep 0.02
    done
    return 1
}

ALICE_P12=(--cert "$certs/alice.p12" --cert-type p12)
BOB_P12=(--cert "$certs/bob.p12" --cert-type p12)
ALICE_PEM=(--cert "$certs/alice_cert.pem" --key "$certs/alice_key.pem")
BOB_PEM=(--cert "$certs/bob_cert.pem" --key "$certs/bob_key.pem")
HELLO="Hello Alice, your certificate was issued by localhost!"
SORRY_BOB="Sorry Bob, certificates from Bob are not welcome here."
NEED_CERT="Sorry, but you need to provide a client certificate to continue."
LINK='<a href="authenticate">Log in using client certificate</a>'

# gencerts.sh makes the tutorial's files first and the people beyond it
# after; the tutorial's visitors go in as soon as the first part is done.
./gencerts.sh "$certs" >"$work/gencerts.log" 2>&1 &
gencerts_pid=$!
until grep -q "^The tutorial's files are done" "$work/gencerts.log"; do
    kill -0 "$gencerts_pid" 2>/dev/null || { cat "$work/gencerts.log" >&2; exit 1; }
    sleep 0.02
done
start_server --timeout 2

echo "# The tutorial's visitors, with the tutorial's curl commands (--cacert server_cert.pem"
echo "# instead of --insecure: curl checks the server too).  The server's answers:"
# visit WHO STATUS TEXT CURL-ARGS...: show the command and the answer, then check it
visit() {
    local who=$1 want_code=$2 want_text=$3 shown='' page
    shift 3
    [ $# -gt 0 ] && shown=$(printf ' %s' "$@")
    echo "\$ curl --cacert server_cert.pem${shown//"$certs/"/} https://localhost:$port/authenticate"
    fetch "$@" "$(url /authenticate)"
    page=${body%$'\n'}
    echo "  $code ${page//$'\n'/ }"
    if [ "$code" = "$want_code" ] && [[ $body == *"$want_text"* ]]; then
        ok "$who: $want_code"
    else
        fail "$who: $want_code" "wanted: $want_code with \"$want_text\""
    fi
}
visit "Alice, whose certificate our CA issued, is welcome" 200 "$HELLO" "${ALICE_P12[@]}"
visit "Bob, who signed his own, is not"                   403 "$SORRY_BOB" "${BOB_P12[@]}"
visit "a visitor with no certificate is asked for one"    401 "$NEED_CERT"

echo "# the rest of the certificates (gencerts.sh, beyond the tutorial), then a server that reads their CRL"
wait "$gencerts_pid" || { cat "$work/gencerts.log" >&2; echo "test.sh: gencerts.sh failed" >&2; exit 1; }
stop_server
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
expect "HEAD: 200, headers only"                 200 "Content-Length: 108" -I "$(url /)"
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
expect_raw "absolute-form target (RFC 9112 3.2.2): 200" 200 $'GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n'
expect_raw "absolute-form with no path is /: 200"    200 $'GET https://localhost HTTP/1.1\r\nHost: localhost\r\n\r\n'
expect_raw "absolute-form with user@: 400"           400 $'GET https://user@localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n'
expect_raw "absolute-form with another scheme: 400"  400 $'GET ftp://localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n'
expect_raw "invalid Host value (RFC 9112 3.2): 400"  400 $'GET / HTTP/1.1\r\nHost: a b/c@@\r\n\r\n'
expect_raw "Host with a port that is not a number: 400" 400 $'GET / HTTP/1.1\r\nHost: localhost:https\r\n\r\n'
expect_raw "Host as an IPv6 literal with a port: 200" 200 $'GET / HTTP/1.1\r\nHost: [::1]:9999\r\n\r\n'
expect_raw "empty lines before the request line (RFC 9112 2.2): 200" 200 $'\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n'
expect_raw "HTTP/2.0 on an HTTP/1 line: 505"     505 $'GET / HTTP/2.0\r\nHost: x\r\n\r\n'
long=$(printf 'a%.0s' $(seq 9000))
expect_raw "request line over 8 KiB: 414"        414 "GET /$long HTTP/1.1"$'\r\nHost: x\r\n\r\n'
expect_raw "headers over 8 KiB: 431"             431 $'GET / HTTP/1.1\r\nHost: x\r\nX-Big: '"$long"$'\r\n\r\n'
log_has "log: why a request was malformed"       '400 HTTP/1\.1 request without Host header'
log_has "log: why a Host was refused"            '"GET / HTTP/1\.1" 400 bad Host header'
# the authority in the target wins over Host (RFC 9112 3.2.3): Alice is greeted
out=$(tests/tlsclient --port "$port" --ca "$certs/server_cert.pem" \
    --cert "$certs/alice_cert.pem" --key "$certs/alice_key.pem" \
    --raw "GET https://localhost:$port/authenticate?x=1 HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n" 2>&1)
if [[ $out == "HTTP/1.1 200 "* && $out == *"$HELLO"* ]]; then
    ok "absolute-form https://localhost/authenticate with another Host: 200, Hello Alice"
else
    fail "absolute-form https://localhost/authenticate with another Host: 200, Hello Alice" "got: ${out:0:200}"
fi

echo "# every answer forbids framing (clickjacking) and loads nothing"
FRAMING=$'X-Frame-Options: DENY\r'
POLICY=$'Content-Security-Policy: default-src \'none\'; form-action \'self\'; base-uri \'none\'; frame-ancestors \'none\'\r'
for answer in "200 /" "200 /authenticate alice" "401 /authenticate" "403 /authenticate bob" \
    "404 /nope" "405 / post" "400 / nohost"; do
    read -r want path how <<<"$answer"
    case $how in
        alice) extra=("${ALICE_P12[@]}") ;;
        bob) extra=("${BOB_P12[@]}") ;;
        post) extra=(-X POST -d x=1) ;;
        nohost) extra=(-H "Host:") ;;
        *) extra=() ;;
    esac
    fetch -i "${extra[@]}" "$(url "$path")"
    if [ "$code" = "$want" ] && grep -qxF "$FRAMING" <<<"$body" && grep -qxF "$POLICY" <<<"$body"; then
        ok "$want $path${how:+ ($how)}: X-Frame-Options: DENY, and CSP frame-ancestors 'none'"
    else
        fail "$want $path${how:+ ($how)}: X-Frame-Options and CSP" "got: $code ${body:0:400}"
    fi
done

echo "# beyond the tutorial: certificates that must be refused, and one that must not"
pem() { echo --cert "$certs/$1_cert.pem" --key "$certs/$1_key.pem"; }
# shellcheck disable=SC2046   # pem prints flags to split
{
expect "Carol (revoked, CRL): 403 'revoked'"        403 "Sorry Carol, certificates from localhost are not welcome here." $(pem carol) "$(url /authenticate)"
[[ $body == *"revoked"* ]] || fail "Carol's page says why" "got: $body"
expect "Dave (expired): 403 'expired'"              403 "because it has expired" $(pem dave) "$(url /authenticate)"
expect "Erin (not yet valid): 403"                  403 "because it is not valid yet" $(pem erin) "$(url /authenticate)"
expect "Frank (serverAuth only): 403 'purpose'"     403 "(wrong purpose)" $(pem frank) "$(url /authenticate)"
expect "Mallory (another CA): 403 'unknown issuer'" 403 "(unknown issuer)" $(pem mallory) "$(url /authenticate)"
expect "Bob's page says why: unknown issuer"        403 "(unknown issuer)" "${BOB_P12[@]}" "$(url /authenticate)"
expect "Zoe (markup in her CN): 200, name escaped"  200 'Hello &lt;script&gt;alert(1)&lt;/script&gt; &quot;Zoë&quot;, Jr., your certificate' $(pem zoe) "$(url /authenticate)"
}
if [[ $body != *"<script>"* && $body != *'"Zoë"'* ]]; then
    ok "Zoe's page holds no raw markup"
else
    fail "Zoe's page holds no raw markup" "got: $body"
fi
expect "Alice with a passphrase-protected .p12"     200 "$HELLO" --cert "$certs/alice_secret.p12:sesame" --cert-type p12 "$(url /authenticate)"
fetch --cert "$certs/alice_secret.p12:wrong" --cert-type p12 "$(url /authenticate)"
if [ "$code" = 000 ]; then
    ok "the same .p12 with a wrong passphrase: curl can't use it"
else
    fail "the same .p12 with a wrong passphrase: curl can't use it" "got $code"
fi
log_has "log: Carol refused as revoked"  '403 refused "CN=Carol": it was revoked by its issuer'
log_has "log: Dave refused as expired"   '403 refused "CN=Dave": it has expired'
log_has "log: Erin refused, not yet valid" '403 refused "CN=Erin": it is not valid yet'
log_has "log: Frank refused, wrong purpose" '403 refused "CN=Frank": .*wrong purpose'
log_has "log: Mallory refused, unknown issuer" '403 refused "CN=Mallory": .*unknown issuer'
log_has "log: the CRL was loaded"        "^server: revoked certificates are listed in $certs/crl.pem"

echo "# the log: one line per connection, whatever a certificate's name holds"
# Anyone can make a certificate with any name.  Each of these is self-signed
# (refused: 403), made by openssl, or by tests/tlsclient where openssl can't
# (a NUL, bytes that are not UTF-8).  The forged text would read, on a line of
# its own, like Alice admitted from 9.9.9.9.
FORGED='9.9.9.9 TLS1.3 "GET / HTTP/1.1" 200 admitted "CN=Alice"'   # a CN holds 64 bytes
# hostile_cert STEM SUBJECT: a self-signed certificate made by openssl
hostile_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
        -keyout "$work/$1_key.pem" -out "$work/$1_cert.pem" -subj "$2" >/dev/null 2>&1 ||
        fail "openssl makes the certificate $1" "subject: $2"
}
log_lines() { wc -l <"$log"; }
marks=0
# one_line NAME ESCAPED COMMAND...: COMMAND visits /authenticate with a hostile
# certificate and is refused (403); the log gains exactly one line, with no
# control byte, holding ESCAPED (grep -F); no log line starts with the forged
# text.  The client's output is left in $body.
one_line() {
    local name=$1 escaped=$2 before added answer
    shift 2
    before=$(log_lines)
    answer=$("$@" 2>&1)
    for _ in $(seq 250); do [ "$(log_lines)" -gt "$before" ] && break; sleep 0.02; done
    # then a visit of our own: what the log holds before its line is this visit's
    marks=$((marks + 1))
    fetch "$(url "/one-line-$marks")"
    body=$answer
    wait_log "\"GET /one-line-$marks HTTP/1\\.1\" 404" "$before"
    added=$(( $(grep -n "\"GET /one-line-$marks HTTP/1\.1\" 404" "$log" | cut -d: -f1) - 1 - before ))
    if [[ $body == *"403"* ]] && [ "$added" = 1 ] &&
        ! tail -n +"$((before + 1))" "$log" | LC_ALL=C grep -aq '[[:cntrl:]]' &&
        ! grep -aq '^9\.9\.9\.9' "$log" &&
        tail -n +"$((before + 1))" "$log" | grep -aqF -- "$escaped"; then
        ok "$name: refused, one log line, no control byte, shows $escaped"
    else
        fail "$name: refused, one log line, no control byte, shows $escaped" \
            "lines added: $added; answer: ${body:0:120}" \
            "log: $(tail -n +"$((before + 1))" "$log" | cat -A | head -c 400)"
    fi
}
curl_visit() { curl -sS --max-time 20 --cacert "$certs/server_cert.pem" -w '\n%{http_code}' \
    --cert "$work/$1_cert.pem" --key "$work/$1_key.pem" "$(url /authenticate)"; }
self_signed_visit() { tests/tlsclient --port "$port" --ca "$certs/server_cert.pem" --self-signed "$1"; }

hostile_cert newline "/CN=Nobody"$'\n'"${FORGED//\//\\/}"
one_line "CN with a newline and a forged line (openssl)" 'CN=Nobody\x0a9.9.9.9 TLS1.3 \\\"GET' curl_visit newline
hostile_cert cr "/CN=Nobody"$'\r'"${FORGED//\//\\/}"
one_line "CN with a bare CR (openssl)" 'CN=Nobody\x0d9.9.9.9' curl_visit cr
hostile_cert esc $'/CN=\e[2J\e]0;owned\aNobody'
one_line "CN with terminal escapes: clear screen, window title (openssl)" 'CN=\x1b[2J\x1b]0\\;owned\x07Nobody' curl_visit esc
hostile_cert quote "/CN=Nobody\" 200 admitted \"CN=Alice\\\\"
one_line "CN with the log's quote and a backslash (openssl)" "CN=Nobody\\\\\\\" 200 admitted \\\\\\\"CN=Alice\\\\\\\\" curl_visit quote
if [[ $body == *"Sorry Nobody&quot; 200 admitted &quot;CN=Alice"* && $body != *'Nobody"'* ]]; then
    ok "  ... and its page shows the quotes HTML-escaped"
else
    fail "  ... and its page shows the quotes HTML-escaped" "got: ${body:0:200}"
fi
one_line "CN with a NUL and a forged line (GnuTLS-made)" 'CN=#0c' self_signed_visit 'Nobody\0\n'"$FORGED"
one_line "CN with bytes that are not UTF-8 (GnuTLS-made)" 'CN=Nobody\xff\xfe\xc0\xaf' self_signed_visit 'Nobody\xff\xfe\xc0\xaf'
one_line "CN with a right-to-left override (GnuTLS-made)" 'CN=Nobody\xe2\x80\xae' self_signed_visit 'Nobody\xe2\x80\xae ecilA'
one_line "CN with a C1 control, CSI (GnuTLS-made)" 'CN=Nobody\xc2\x9b2J' self_signed_visit 'Nobody\xc2\x9b2J'
one_line "CN with an Arabic letter mark, U+061C (GnuTLS-made)" 'CN=Nobody\xd8\x9c' self_signed_visit 'Nobody\xd8\x9c ecilA'
if grep -qF 'admitted "CN=\\<script\\>alert(1)\\</script\\> \\\"Zoë\\\"\\, Jr."' "$log"; then
    ok "log: a readable name stays readable: Zoë, with her quotes escaped"
else
    fail "log: a readable name stays readable: Zoë, with her quotes escaped" "$(grep -a 'Zo' "$log")"
fi

echo "# the handshake, seen: GET /handshake shows each visitor their own (tests/wire.sh checks it against tshark)"
# messages NAME WANT CURL-ARGS...: the page's message lines ("client -> server
# ClientHello"), joined by spaces, are exactly WANT; the page is left in $body.
messages() {
    local name=$1 want=$2 got
    shift 2
    fetch "$@" "$(url /handshake)"
    got=$(sed -nE 's/^(client -> server|server -> client)  ([A-Za-z]+)$/\1 \2/p' <<<"$body" |
        sed -E 's/client -> server/C/; s/server -> client/S/' | tr '\n' ' ')
    if [ "$code" = 200 ] && [ "${got% }" = "$want" ]; then
        ok "$name"
    else
        fail "$name" "wanted: $want" "got:    $code ${got% }" "page: ${body:0:300}"
    fi
}
# page_has NAME TEXT...: the last page holds each TEXT (a whole line, grep -Fx)
page_has() {
    local name=$1 missing=
    shift
    for line in "$@"; do
        grep -Fxq -- "$line" <<<"$body" || missing+="[$line] "
    done
    if [ -z "$missing" ]; then ok "$name"; else fail "$name" "missing: $missing" "page: ${body:0:600}"; fi
}
CA_LINE="    CA name: $(openssl x509 -in "$certs/server_cert.pem" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')"
TLS13_CERT="S ServerHello S EncryptedExtensions S CertificateRequest S Certificate S CertificateVerify S Finished C Certificate"
messages "Alice, TLS 1.3: every message, in order and direction" \
    "C ClientHello $TLS13_CERT C CertificateVerify C Finished" --tlsv1.3 "${ALICE_P12[@]}"
page_has "  ... the list of CA names, her certificate, the check and the verdict" "$CA_LINE" \
    "    sent encrypted (TLS 1.3): hidden from anyone watching the network, though any client that connects is sent it" \
    "    certificate 1 subject: CN=Alice" "    its issuer is one of our CAs (ca), by name: yes" \
    "    not revoked (the revocation lists below): yes" "authorized: true" \
    "    its issuer is in the list: a browser may offer it; the check below decides whether it is admitted" \
    "/authenticate would answer: 200 Hello ...; the tutorial's line: if (req.client.authorized) { res.send(\`Hello ...\`)"
messages "Alice, TLS 1.2: the TLS 1.2 flight" \
    "C ClientHello S ServerHello S Certificate S ServerKeyExchange S CertificateRequest S ServerHelloDone C Certificate C ClientKeyExchange C CertificateVerify C Finished S Finished" \
    --tls-max 1.2 "${ALICE_P12[@]}"
page_has "  ... its CertificateRequest went in the clear, with the same list" "$CA_LINE" \
    "    sent in the clear (TLS 1.2): anyone watching the network reads the list" "authorized: true"
messages "Bob: the same flight, refused" \
    "C ClientHello $TLS13_CERT C CertificateVerify C Finished" "${BOB_P12[@]}"
page_has "  ... his certificate, an unknown issuer, 403" "    certificate 1 subject: CN=Bob" \
    "    its issuer is one of our CAs (ca), by name: no" "authorized: false" \
    "refused because its issuer is not a CA we trust (unknown issuer)" \
    "    valid today (not before, not after): yes" \
    "    the issuer's signature verifies: not checked (no trusted issuer's key to check with)" \
    "    its issuer is not in the list: a browser would not have offered it (curl and openssl send what they are told to)" \
    "/authenticate would answer: 403 Sorry ...; the tutorial's line: } else if (cert.subject) { .send(\`Sorry ...\`)"
messages "no certificate, TLS 1.3: an empty Certificate, no CertificateVerify" \
    "C ClientHello $TLS13_CERT C Finished"
page_has "  ... says it was empty, and 401" \
    "    empty: the client had no certificate from these CAs, or chose none" \
    "    nothing to check: no client certificate" "authorized: false"
# shellcheck disable=SC2046   # pem prints flags to split
fetch $(pem carol) "$(url /handshake)"
page_has "Carol: the check's revocation step fails, and names the CRL in force" \
    "    not revoked (the revocation lists below): no" "    its issuer is one of our CAs (ca), by name: yes" "authorized: false"
if grep -q "^    revocation list (CRL) in force: number [0-9]*, issued 20" <<<"$body"; then
    ok "  ... the CRL's number and date"
else
    fail "  ... the CRL's number and date" "page: ${body:0:800}"
fi
expect "a browser (Accept: text/html) gets the diagram: HTML, SVG arrows" 200 \
    '<td align="right">ClientHello</td><td><svg' -i -H 'Accept: text/html,*/*;q=0.8' "${ALICE_P12[@]}" "$(url /handshake)"
if [[ $body == *$'Content-Type: text/html; charset=utf-8\r'* && $body == *$'Vary: Accept\r'* &&
    $body != *"<script"* ]]; then
    ok "  ... as text/html, with Vary: Accept, and no script"
else
    fail "  ... as text/html, with Vary: Accept, and no script" "${body:0:400}"
fi
fetch -i "$(url /handshake)"
if [[ $body == *$'Content-Type: text/plain; charset=utf-8\r'* && $body == *$'Vary: Accept\r'* ]]; then
    ok "curl (no Accept: text/html) gets text/plain"
else
    fail "curl (no Accept: text/html) gets text/plain" "${body:0:300}"
fi
# the DN as GnuTLS writes it (RFC 4514: "\<"), then escaped for HTML
# shellcheck disable=SC2046
expect "Zoe's markup is escaped in the diagram" 200 'certificate 1 subject: CN=\&lt;script\&gt;alert(1)\&lt;/script\&gt; \&quot;Zoë\&quot;' \
    -H 'Accept: text/html' $(pem zoe) "$(url /handshake)"
if [[ $body != *"<script>"* ]]; then
    ok "  ... and no raw markup"
else
    fail "  ... and no raw markup" "${body:0:500}"
fi
fetch --cert "$work/newline_cert.pem" --key "$work/newline_key.pem" "$(url /handshake)"
if [ "$code" = 200 ] && ! LC_ALL=C grep -aq $'[\x01-\x09\x0b-\x1f\x7f]' <<<"$body" &&
    ! grep -q '^9\.9\.9\.9' <<<"$body" && grep -qF 'CN=Nobody\x0a9.9.9.9' <<<"$body"; then
    ok "a CN with a newline and a forged line: escaped in the text form, on one line"
else
    fail "a CN with a newline and a forged line: escaped in the text form, on one line" "${body:0:600}"
fi
body=$(tests/tlsclient --port "$port" --ca "$certs/server_cert.pem" --cert "$certs/alice_cert.pem" \
    --key "$certs/alice_key.pem" --tls '1.2:%NO_EXTENSIONS' --path /handshake 2>&1)
page_has "a TLS 1.2 ClientHello with no extensions at all (GnuTLS's %NO_EXTENSIONS): read, not 'broken'" \
    "client -> server  ClientHello" "    versions offered: up to TLS1.2 (no supported_versions extension)" \
    "authorized: true"
# a chain longer than GnuTLS takes (16): the check fails with an error, and no step may say "yes"
{ cat "$certs/alice_cert.pem"; for _ in $(seq 16); do cat "$certs/mallory_ca_cert.pem"; done; } >"$work/chain17.pem"
fetch --cert "$work/chain17.pem" --key "$certs/alice_key.pem" "$(url /handshake)"
if [ "$code" = 200 ] && grep -q '^    the check could not be made: ' <<<"$body" &&
    ! grep -q ': yes$' <<<"$body" && grep -qx 'authorized: false' <<<"$body"; then
    ok "Alice with 16 more certificates in her chain: 'the check could not be made', no step says yes"
else
    fail "Alice with 16 more certificates in her chain: 'the check could not be made', no step says yes" "${body: -700}"
fi
expect "POST /handshake: 405" 405 $'Allow: GET, HEAD\r' -i -X POST -d x=1 "$(url /handshake)"
expect "the landing page links to it" 200 '<a href="handshake">See the handshake</a>' "$(url /)"
expect "so do /authenticate's answers" 403 '<a href="handshake">See the handshake</a>' "${BOB_P12[@]}" "$(url /authenticate)"
log_has "log: /handshake notes the visitor as /authenticate does" '"GET /handshake HTTP/1\.1" 200 admitted "CN=Alice"'

echo "# a revocation takes effect at the next connection, without a restart"
# Our CA revokes Zoë and publishes a new CRL with openssl ca, as gencerts.sh
# made the first; written beside crl.pem and renamed over it, so that the
# server never reads half a file.
publish_crl() {   # publish_crl CA-CERT CA-KEY: a CRL of our CA's records, over crl.pem
    (cd "$certs" && openssl ca -config ca/ca.cnf -gencrl -cert "$1" -keyfile "$2" \
        -out crl.new >/dev/null 2>&1 && mv crl.new crl.pem) || fail "openssl ca -gencrl ($1)"
}
(cd "$certs" && openssl ca -config ca/ca.cnf -revoke zoe_cert.pem -crl_reason keyCompromise \
    >/dev/null 2>&1) || fail "openssl ca -revoke zoe_cert.pem"
publish_crl server_cert.pem server_key.pem
# shellcheck disable=SC2046   # pem prints flags to split
{
expect "Zoë, revoked while the server runs: 403 'revoked by its issuer'" 403 "because it was revoked by its issuer" \
    $(pem zoe) "$(url /authenticate)"
log_has "  ... the server loaded the new CRL first" "^server: $certs/crl\\.pem changed: loading the credentials anew"
expect "  ... and Alice is still welcome" 200 "$HELLO" "${ALICE_P12[@]}" "$(url /authenticate)"
# a CRL none of our CAs signed: refused, and the one loaded before stays
cp "$certs/crl.pem" "$work/crl.good"
publish_crl mallory_ca_cert.pem mallory_ca_key.pem
expect "a CRL from Mallory's CA put in its place: refused, Zoë still revoked" 403 "because it was revoked by its issuer" \
    $(pem zoe) "$(url /authenticate)"
log_has "  ... and the server says it keeps what it had" \
    "^server: $certs/crl\\.pem changed, but no usable CRL in $certs/crl\\.pem: .*: the credentials loaded before stay in force\$"
cp "$work/crl.good" "$certs/crl.new" && mv "$certs/crl.new" "$certs/crl.pem"
stop_server
start_idle_server --timeout 2
expect "after a restart, Zoë is still revoked" 403 "because it was revoked by its issuer" $(pem zoe) "$(url /authenticate)"
}

echo "# TLS policy: versions, resumption, renegotiation"
TLSCLIENT=(tests/tlsclient --port "$port" --ca "$certs/server_cert.pem")
for v in 1.0 1.1; do
    before=$(wc -l <"$log")
    out=$("${TLSCLIENT[@]}" --tls "$v" --path / 2>&1)
    if [[ $out == "handshake failed:"* ]] && wait_log 'handshake failed: .*unsupported version' "$before"; then
        ok "TLS $v is refused by the server (unsupported version)"
    else
        fail "TLS $v is refused by the server" "client: ${out:0:200}" "log: $(tail -n 2 "$log")"
    fi
done
# s_client ARGS...: one request for /authenticate with openssl; prints all it says
s_client() {
    printf 'GET /authenticate HTTP/1.0\r\n\r\n' |
        timeout 20 openssl s_client -connect "localhost:$port" -servername localhost \
            -CAfile "$certs/server_cert.pem" -ign_eof "$@" 2>&1
}
out=$(s_client -tls1_2 -cert "$certs/alice_cert.pem" -key "$certs/alice_key.pem" -sess_out "$work/session")
[[ $out == *"$HELLO"* ]] || fail "TLS 1.2: Alice's first visit" "got: ${out:0:300}"
out=$(s_client -tls1_2 -sess_in "$work/session")
if [[ $out == *"New, TLSv1.2"* && $out == *"$NEED_CERT"* ]]; then
    ok "TLS 1.2: offering Alice's old session gets a full handshake and a fresh 401"
else
    fail "TLS 1.2: offering Alice's old session gets a full handshake and a fresh 401" \
        "got: $(grep -E '^(New|Reused)|Sorry|Hello' <<<"$out")"
fi
rm -f "$work/session"
out=$(s_client -tls1_3 -cert "$certs/alice_cert.pem" -key "$certs/alice_key.pem" -sess_out "$work/session")
if [[ $out == *"$HELLO"* && ! -s $work/session ]]; then
    ok "TLS 1.3: no session ticket to resume with"
else
    fail "TLS 1.3: no session ticket to resume with" "session file: $(ls -l "$work/session" 2>&1)"
fi
# s_client renegotiates at R; the request goes only once the server has said
# what it did with that (or after 20 s), and s_client's input ends with it
before=$(wc -l <"$log")
out=$( (printf 'R\n'; wait_log 'the client asked to renegotiate; refused' "$before"
        printf 'GET / HTTP/1.0\r\n\r\n') 2>/dev/null |
    timeout 20 openssl s_client -tls1_2 -connect "localhost:$port" -servername localhost \
        -CAfile "$certs/server_cert.pem" 2>&1)
if [[ $out == *RENEGOTIATING* && $out != *"HTTP/1.1 200"* ]] &&
    wait_log 'the client asked to renegotiate; refused' "$before"; then
    ok "TLS 1.2: client-initiated renegotiation ends the connection"
else
    fail "TLS 1.2: client-initiated renegotiation ends the connection" "got: ${out: -300}"
fi

echo "# TLS alerts: a refused handshake ends with an alert that says why (RFC 8446 6, RFC 5246 7.2)"
# Raw bytes on the wire: tests/tls_probes.py writes each ClientHello by hand
# and reads the first record that comes back.
probes=$(python3 tests/tls_probes.py --port "$port" 2>&1)
probes_status=$?
while IFS= read -r line; do
    case $line in
        "ok   "*) ok "on the wire: ${line#ok   }" ;;
        "FAIL "*) fail "on the wire: ${line#FAIL }" ;;
    esac
done <<<"$probes"
if [ "$probes_status" != 0 ] && ! grep -q '^FAIL ' <<<"$probes"; then
    fail "tests/tls_probes.py runs" "exit $probes_status: ${probes:0:300}"
fi
# client_says NAME PATTERN COMMAND...: a real client's own words (grep -E)
client_says() {
    local name=$1 pattern=$2 out
    shift 2
    out=$("$@" 2>&1 </dev/null)
    if grep -Eq -- "$pattern" <<<"$out"; then
        ok "$name"
    else
        fail "$name" "wanted: $pattern" "got: ${out:0:300}"
    fi
}
client_says "openssl s_client -tls1_1: 'alert protocol version'" 'alert protocol version' \
    timeout 20 openssl s_client -connect "localhost:$port" -tls1_1
client_says "openssl s_client with no cipher suite in common: 'alert handshake failure'" 'alert handshake failure' \
    timeout 20 openssl s_client -connect "localhost:$port" -tls1_2 -cipher CAMELLIA128-SHA
# TLS 1.2: forward-secret key exchange (ECDHE) and AEAD ciphers only
for suite in AES128-GCM-SHA256 AES256-SHA DHE-RSA-AES128-GCM-SHA256 ECDHE-RSA-AES128-SHA; do
    client_says "TLS 1.2, $suite (no ECDHE, or CBC): 'alert handshake failure'" 'alert handshake failure' \
        timeout 20 openssl s_client -connect "localhost:$port" -tls1_2 -cipher "$suite"
done
for suite in ECDHE-RSA-AES128-GCM-SHA256 ECDHE-RSA-AES256-GCM-SHA384 ECDHE-RSA-CHACHA20-POLY1305; do
    client_says "TLS 1.2, $suite: agreed" "Cipher is $suite" \
        timeout 20 openssl s_client -connect "localhost:$port" -tls1_2 -cipher "$suite"
done
for suite in TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256 TLS_AES_128_CCM_SHA256; do
    client_says "TLS 1.3, $suite: agreed, as before" "Cipher is $suite" \
        timeout 20 openssl s_client -connect "localhost:$port" -tls1_3 -ciphersuites "$suite"
done
client_says "curl --tls-max 1.1: exit 35, 'alert protocol version'" '^curl: \(35\) .*alert protocol version' \
    curl -sS --max-time 20 --cacert "$certs/server_cert.pem" --tls-max 1.1 "$(url /)"
for v in 1.2 1.3; do
    client_says "TLS $v: Alice's certificate signed with Bob's key: alert decrypt_error" \
        'alert GNUTLS_A_DECRYPT_ERROR' "${TLSCLIENT[@]}" --tls "$v" \
        --cert "$certs/alice_cert.pem" --key "$certs/bob_key.pem"
    client_says "TLS $v: a request record that fails to decrypt: alert bad_record_mac" \
        'alert GNUTLS_A_BAD_RECORD_MAC' "${TLSCLIENT[@]}" --tls "$v" --mode bad-record
done
log_has "log: the alert sent, with GnuTLS's reason" \
    '^127\.0\.0\.1 - "" - handshake failed: A packet with illegal or unsupported version was received\. \(sent alert protocol_version\)$'
log_has "log: a bad CertificateVerify"  'handshake failed: Public key signature verification has failed\. \(sent alert decrypt_error\)'
log_has "log: a record that fails to decrypt" 'no request: Decryption has failed\. \(sent alert bad_record_mac\)'
# curl without our CA does not trust the server, and says so with an alert
# (over TLS 1.2: in 1.3 OpenSSL's alert at that point does not decrypt)
curl -sS --max-time 20 --tls-max 1.2 "$(url /)" >/dev/null 2>&1
log_has "log: the client's own alert (curl, no CA: unknown_ca)" 'handshake failed: .*\(the client sent alert unknown_ca\)'

echo "# hostile clients: each costs one connection, at most --timeout (2 s); Alice is served after each"
# hostile NAME LOG-PATTERN COMMAND...: run a misbehaving client; the server's
# log line for it must match LOG-PATTERN (grep -E), and Alice must still be
# welcome right after.  The client's output is left in $work/hostile.out.
hostile() {
    local name=$1 pattern=$2 before new
    shift 2
    before=$(wc -l <"$log")
    "$@" >"$work/hostile.out" 2>&1
    # its line (the slow clients' from 127.0.1.x come in between)
    for _ in $(seq 1000); do
        tail -n +"$((before + 1))" "$log" | grep -v '^127\.0\.1\.' | grep -Eq -- "$pattern" && break
        sleep 0.02
    done
    fetch "${ALICE_P12[@]}" "$(url /authenticate)"
    new=$(tail -n +"$((before + 1))" "$log" | grep -v '^127\.0\.1\.')
    if grep -Eq -- "$pattern" <<<"$new" && [ "$code" = 200 ] && [[ $body == *"$HELLO"* ]]; then
        ok "$name"
    else
        fail "$name" "wanted a log line matching: $pattern, then Alice: 200" \
            "log: $new" "client: $(head -c 300 "$work/hostile.out")" "Alice: $code"
    fi
}
# within_bound NAME: the client's output says the server closed after N ms; N must
# be at most the timeout plus a second.
within_bound() {
    local ms
    ms=$(sed -n 's/.*closed after \([0-9]*\) ms.*/\1/p' "$work/hostile.out")
    if [ -n "$ms" ] && [ "$ms" -le 3000 ]; then
        ok "$1: cut off after $ms ms"
    else
        fail "$1: cut off within 3000 ms" "client said: $(cat "$work/hostile.out")"
    fi
}
# client_saw NAME PATTERN: the last hostile client's output matches PATTERN.
client_saw() {
    if grep -Eq -- "$2" "$work/hostile.out"; then
        ok "$1"
    else
        fail "$1" "wanted: $2" "got: $(head -c 300 "$work/hostile.out")"
    fi
}
connect_and_close() { exec 3<>"/dev/tcp/127.0.0.1/$port"; exec 3<&-; }
# (a subshell each: if the server has closed already, SIGPIPE ends only that)
send_bytes() { (printf '%b' "$1" >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; sleep 0.1; }
big=$(printf 'a%.0s' $(seq 65536))
many_headers=$(printf 'X-Header-%d: value\\r\\n' $(seq 600))

# The clients that hold on until the deadline (2 s each) run under LONG=1
# only (make soak, asan, tsan, valgrind), one after another (four RSA-4096
# handshakes at once under valgrind can outlast the 2 s deadline), each from
# an address of its own (tlsclient --source), so that each one's log line is
# told from the others'; each is checked after the quick ones.
# slow_hostile SOURCE COMMAND...: start COMMAND --source SOURCE; its output
# goes to $work/hostile.SOURCE.out, its time from start to end (ms) to .ms
slow_pids=()
slow_hostile() {
    local source=$1
    shift
    (
        start=$(date +%s%N)
        "$@" --source "$source" >"$work/hostile.$source.out" 2>&1
        echo $(( ($(date +%s%N) - start) / 1000000 )) >"$work/hostile.$source.ms"
    ) &
    slow_pids+=($!)
    if long || [ -n "${SERVER_WRAPPER:-}" ]; then wait "$!"; fi
}
# slow_checked NAME SOURCE LOG-PATTERN: as hostile, for the client from
# SOURCE: its own log line matches LOG-PATTERN, and Alice is welcome after;
# its output is left in $work/hostile.out
slow_checked() {
    local name=$1 source=$2 pattern="^${2//./\\.} .*$3" new
    cp "$work/hostile.$source.out" "$work/hostile.out"
    wait_log "$pattern"
    fetch "${ALICE_P12[@]}" "$(url /authenticate)"
    new=$(grep "^$source " "$log")
    if grep -Eq -- "$pattern" <<<"$new" && [ "$code" = 200 ] && [[ $body == *"$HELLO"* ]]; then
        ok "$name"
    else
        fail "$name" "wanted a log line matching: $pattern, then Alice: 200" \
            "log: $new" "client: $(head -c 300 "$work/hostile.out")" "Alice: $code"
    fi
}
if long; then
    slow_hostile 127.0.1.1 "${TLSCLIENT[@]}" --mode tcp-silent
    slow_hostile 127.0.1.2 "${TLSCLIENT[@]}" --mode half-hello
    slow_hostile 127.0.1.3 "${TLSCLIENT[@]}" --mode silent
    slow_hostile 127.0.1.4 "${TLSCLIENT[@]}" --mode dribble --delay-ms 100
else
    echo "       (LONG=1: four clients that hold on until the deadline: silent, half a ClientHello,"
    echo "       a handshake then silence, a request dribbled a byte per 100 ms)"
fi

hostile "connect and close (as browsers do with spare connections)" '" - closed before a handshake began$' connect_and_close
hostile "the start of a ClientHello, then close" '" - the client left during the handshake$' send_bytes '\x16\x03\x01'
# while a silent client is connected, the next client is served at once
exec 3<>"/dev/tcp/127.0.0.1/$port"
start=$(date +%s%N)
fetch "${ALICE_P12[@]}" "$(url /authenticate)"
waited=$(( ($(date +%s%N) - start) / 1000000 ))
exec 3<&-
if [ "$code" = 200 ] && [ "$waited" -le 3500 ]; then
    ok "a client connects and stays silent: the next client is served while it is still connected (after $waited ms)"
else
    fail "a client connects and stays silent: the next client is served while it is still connected" \
        "got $code after $waited ms (wanted 200 within 3500 ms)"
fi
hostile "garbage bytes"               'handshake failed'                           send_bytes '\x00\xff garbage \x01\x02\x03 garbage garbage garbage garbage'
hostile "plain HTTP to the TLS port"  'handshake failed: .*(unexpected|packet)'    send_bytes 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'
hostile "request head over 8 KiB: 431"      '" 431 request head over 8192 bytes'                               "${TLSCLIENT[@]}" --raw "GET / HTTP/1.1\r\nHost: x\r\nX-Big: $big\r\n\r\n"
client_saw "  ... and the client reads the 431" '^HTTP/1.1 431 '
hostile "a 64 KiB URI: 414"                 '" 414 request line over 8192 bytes'                               "${TLSCLIENT[@]}" --raw "GET /$big HTTP/1.1\r\nHost: x\r\n\r\n"
client_saw "  ... and the client reads the 414" '^HTTP/1.1 414 '
hostile "600 headers: 431"                  '" 431 request head over 8192 bytes'                               "${TLSCLIENT[@]}" --raw "GET / HTTP/1.1\r\nHost: x\r\n${many_headers}\r\n"
hostile "NUL in the request line: 400"      '400 target holds a byte outside printable ASCII' "${TLSCLIENT[@]}" --raw 'GET /a\0b HTTP/1.1\r\nHost: x\r\n\r\n'
hostile "non-ASCII in the request line: 400" '400 target holds a byte outside printable ASCII' "${TLSCLIENT[@]}" --raw 'GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n'
hostile "NUL in a header: 400"              '400 bad header line'                   "${TLSCLIENT[@]}" --raw 'GET / HTTP/1.1\r\nHost: x\0y\r\n\r\n'
hostile "pipelined requests: the first is answered" '"GET / HTTP/1.1" 200'          "${TLSCLIENT[@]}" --raw 'GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /authenticate HTTP/1.1\r\nHost: x\r\n\r\n'
if [ "$(grep -c '^HTTP/1.1 ' "$work/hostile.out")" = 1 ]; then
    ok "  ... with one answer, then the connection closes"
else
    fail "  ... with one answer, then the connection closes" "$(cat "$work/hostile.out")"
fi
hostile "request, then close without reading" '"GET /authenticate HTTP/1.1"'       "${TLSCLIENT[@]}" --mode send-close
# whether the answer went out before the reset or not, the line still says who it was
hostile "request, then reset (RST)"         '"GET /authenticate HTTP/1.1" [-0-9]+ no client certificate' "${TLSCLIENT[@]}" --mode reset

if long; then
    wait "${slow_pids[@]}"
    slow_checked "connect and stay silent"     127.0.1.1 'handshake failed: The operation timed out'
    within_bound "connect and stay silent"
    slow_checked "half a ClientHello"          127.0.1.2 'handshake failed: The operation timed out'
    within_bound "half a ClientHello"
    slow_checked "handshake, then silence"     127.0.1.3 'no request: The operation timed out'
    within_bound "handshake, then silence"
    slow_checked "request dribbled a byte per 100 ms" 127.0.1.4 '"GET /authen[^"]*" - no request: The operation timed out'
    waited=$(cat "$work/hostile.127.0.1.4.ms")
    if [ "$waited" -le 4500 ]; then
        ok "request dribbled: cut off at the deadline ($waited ms from the client's start to its end)"
    else
        fail "request dribbled: cut off at the deadline" "the client took $waited ms"
    fi
fi
# (make test: 50 connections, 45 in a row; LONG=1: 300, as make asan, tsan
# and valgrind had them; make soak: 2,000)
if long; then : "${SOAK_CONNECTIONS:=300}"; else : "${SOAK_CONNECTIONS:=50}"; fi
round=$((SOAK_CONNECTIONS / 10))
echo "# soak: $((round * 9)) connections in a row (Alice, Bob, none) after a warm-up; descriptors and memory stay flat"
# Its own server, whose per-address cap (tested in its own section) is out
# of the way: every soak client comes from 127.0.0.1, and when this shared
# machine stalls, finished connections can hold their slots a moment (CI
# once saw one client of 2,000 refused, with the pool grown by 3 workers,
# under the cap of 8; the cause was not pinned down).
# Under valgrind, the warm-up's three clients at once outlast a 2 s deadline
# (RSA-4096 handshakes, three at a time; CI saw one cut off), as the
# 16-clients section below finds too: a deadline to match.
# Its deadline is 10 s, well apart from the 5 s bound of the stop with a
# silent client below (make asan, at load 12, took 1.4 s to stop: LeakSanitizer
# looks through memory at exit; a 2 s deadline left no room to tell them apart).
soak_timeout=10
[ -n "${SERVER_WRAPPER:-}" ] && soak_timeout=30
stop_server
start_server --timeout "$soak_timeout" --max-per-address 64
TLSCLIENT=(tests/tlsclient --port "$port" --ca "$certs/server_cert.pem")
# server_usage: "open-descriptors resident-KiB" of the server process
server_usage() {
    local pid=$server_pid
    # under a wrapper (valgrind) the server is the wrapper's process itself
    echo "$(find "/proc/$pid/fd" -mindepth 1 | wc -l) $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")"
}
soak_ok=1
# soak_clients OUT: one round's clients, one after another; quiet unless one fails
soak_clients() {
    { "${TLSCLIENT[@]}" --count $((round / 2)) --expect 200 --expect-text "$HELLO" \
          --cert "$certs/alice_cert.pem" --key "$certs/alice_key.pem" &&
      "${TLSCLIENT[@]}" --count $((round / 4)) --expect 403 --expect-text "$SORRY_BOB" \
          --cert "$certs/bob_cert.pem" --key "$certs/bob_key.pem" &&
      "${TLSCLIENT[@]}" --count $((round - round / 2 - round / 4)) \
          --expect 401 --expect-text "$NEED_CERT"; } >"$1" 2>&1
}
soak_round() {
    if ! soak_clients "$work/soak.out"; then
        soak_ok=0
        fail "soak: every answer as expected" "$(tail -n 5 "$work/soak.out")"
    fi
}
# The warm-up runs three rounds at once, so that the pool holds a few workers
# before the baseline. One client after another can still need a second
# worker (the last connection is still closing when the next arrives), and
# each worker new to the pool adds its stack and its malloc arena: 100-250 KiB
# measured here, not a leak. After a one-worker warm-up, CI once failed on a
# 504 KiB step.
warm_pids=()
for i in 1 2 3; do
    soak_clients "$work/soak-warm$i.out" & warm_pids+=($!)
done
for i in 1 2 3; do
    if ! wait "${warm_pids[i - 1]}"; then
        soak_ok=0
        fail "soak: every answer as expected (warm-up $i)" "$(tail -n 5 "$work/soak-warm$i.out")"
    fi
done
# nine_rounds: the rounds one after another, with usage before and after
nine_rounds() {
    wait_connections 0  # the last connection may still be closing
    read -r fds_before rss_before <<<"$(server_usage)"
    threads_before=$(server_threads)
    for _ in $(seq 9); do
        [ "$soak_ok" = 1 ] && soak_round
    done
    wait_connections 0
    read -r fds_after rss_after <<<"$(server_usage)"
    threads_after=$(server_threads)
}
nine_rounds
if [ "$threads_after" != "$threads_before" ] && [ "$soak_ok" = 1 ]; then
    # The pool grew even so (CI once saw threads 6 -> 9 mid-soak, on a
    # stall): a new worker's stack and arena are no leak, so the nine rounds
    # are measured again, once, from the larger pool.
    echo "       the pool grew ($threads_before -> $threads_after threads, $rss_before -> $rss_after KiB): once more from here"
    nine_rounds
fi
[ "$soak_ok" = 1 ] && ok "soak: all answers as expected (3 rounds of warm-up at once, then rounds of $round one after another)"
echo "       descriptors $fds_before -> $fds_after, resident memory $rss_before -> $rss_after KiB, threads $threads_before -> $threads_after"
if [ "$fds_after" = "$fds_before" ]; then
    ok "soak: open descriptors flat ($fds_before -> $fds_after)"
else
    fail "soak: open descriptors flat" "$fds_before -> $fds_after"
fi
if [ "$SERVER" != ./server ] || [ -n "${SERVER_WRAPPER:-}" ]; then
    # ASan holds freed memory in quarantine and valgrind adds its own, so
    # resident memory says nothing there; their leak checks at exit stand in.
    echo "       (resident memory is asserted for the plain build only)"
elif [ "$rss_after" -le $((rss_before + 256)) ]; then
    ok "soak: resident memory flat within 256 KiB ($rss_before -> $rss_after KiB)"
else
    fail "soak: resident memory flat within 256 KiB" "$rss_before -> $rss_after KiB (threads $threads_before -> $threads_after)"
fi
expect "after all that, Alice is still welcome"  200 "$HELLO" "${ALICE_P12[@]}" "$(url /authenticate)"

echo "# stopping, while a silent client is connected"
fds=$(find "/proc/$server_pid/fd" -mindepth 1 | wc -l)
exec 3<>"/dev/tcp/127.0.0.1/$port"
# until the server has taken it (a descriptor more; at most 10 s)
for _ in $(seq 500); do [ "$(find "/proc/$server_pid/fd" -mindepth 1 | wc -l)" -gt "$fds" ] && break; sleep 0.02; done
start=$(date +%s%N)
kill -TERM "$server_pid"
wait "$server_pid"
status=$?
waited=$(( ($(date +%s%N) - start) / 1000000 ))
exec 3<&-
server_pid=
# (a server that waited for the silent client would stop at its deadline,
# 10 s or more; 5 s leaves room for a loaded machine and LeakSanitizer)
if [ "$status" = 0 ] && grep -q '^server: stopped' "$log" && [ "$waited" -le 5000 ]; then
    ok "SIGTERM: the server stops at once with exit status 0 (after $waited ms)"
else
    fail "SIGTERM: the server stops at once with exit status 0" "exit status $status after $waited ms" "$(tail -n 3 "$log")"
fi
log_has "SIGTERM: the connection in flight is dropped and logged" '^127\.0\.0\.1 - "" - .*dropped: the server is stopping$'

echo "# a closed log: the server outlives whatever reads it"
# ./server 2> >(head -c 300 >/dev/null), as dd so that the start-up lines
# (among them "listening on" and the port) reach a file at once: the reader
# goes after 300 bytes.
# The server must keep serving (no SIGPIPE death) and say so once on stdout.
# valgrind's own report goes to a file of its own, and is checked here.
wrapper=()
# shellcheck disable=SC2206   # SERVER_WRAPPER is a command line to split
[ -n "${SERVER_WRAPPER:-}" ] && wrapper=($SERVER_WRAPPER "--log-file=$work/closed-log.valgrind")
"${wrapper[@]}" "$SERVER" --port 0 --certs "$certs" >"$work/closed-log.out" \
    2> >(dd bs=1 count=300 status=none of="$work/closed-log.head") &
server_pid=$!
port=
for _ in $(seq 1500); do
    port=$(sed -n 's|^server: listening on https://localhost:\([0-9]*\)/.*|\1|p' "$work/closed-log.head" 2>/dev/null)
    [ -n "$port" ] && break
    sleep 0.02
done
codes=
for _ in $(seq 10); do
    codes+="$(curl -s -o /dev/null -w '%{http_code}' --max-time "$max_time" --cacert "$certs/server_cert.pem" \
        "${ALICE_P12[@]}" "$(url /authenticate)") "
done
# said while serving, not only at the stop
said=$(grep -c '^server: the log (standard error) is gone: its reader closed it; serving on without it$' "$work/closed-log.out")
kill -TERM "$server_pid"
wait "$server_pid"
status=$?
server_pid=
if [ "$codes" = "200 200 200 200 200 200 200 200 200 200 " ] && [ "$status" = 0 ] && [ "$said" = 1 ]; then
    ok "log reader gone after 300 bytes: 10 more visits answered 200, exit 0 at SIGTERM, said once on stdout"
else
    fail "log reader gone: the server serves on and says so once" "answers: $codes exit: $status" \
        "stdout: $(head -c 300 "$work/closed-log.out")"
fi
if [ -n "${SERVER_WRAPPER:-}" ]; then
    if grep -q 'ERROR SUMMARY: 0 errors from 0 contexts' "$work/closed-log.valgrind"; then
        ok "  ... valgrind: 0 errors"
    else
        fail "  ... valgrind: 0 errors" "$(grep -A3 'ERROR SUMMARY' "$work/closed-log.valgrind")"
    fi
fi

if ! long; then
    echo "       (LONG=1: a log reader that stops reading, 600 connections)"
else
    # A reader that stops reading without closing (| less on its first screen):
    # tests/stalled_log.py shrinks the pipe to 8 KiB and stops after the port.
    # 600 connections that close at once write about 30 KiB of lines, more than
    # the pipe and the server's queue of 256 lines hold: a server that waits for
    # the log stops serving there (and a stop waits for ever).
    mkfifo "$work/stalled"
    python3 tests/stalled_log.py "$work/stalled" "$work/stalled.port" "$work/stalled.log" &
    holder_pid=$!
    # shellcheck disable=SC2206
    [ -n "${SERVER_WRAPPER:-}" ] && wrapper=($SERVER_WRAPPER "--log-file=$work/stalled.valgrind")
    "${wrapper[@]}" "$SERVER" --port 0 --certs "$certs" >"$work/stalled.out" 2>"$work/stalled" &
    server_pid=$!
    for _ in $(seq 1500); do [ -s "$work/stalled.port" ] && break; sleep 0.02; done
    port=$(cat "$work/stalled.port" 2>/dev/null)
    python3 -c 'import socket, sys
for i in range(600):     # each from an address of its own: no --max-per-address refusals
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), source_address=("127.0.3.%d" % (i % 250 + 1), 0)).close()' \
        "${port:-1}" 2>/dev/null
    fetch "${ALICE_P12[@]}" "$(url /authenticate)"
    if [ "$code" = 200 ] && [[ $body == *"$HELLO"* ]] &&
        grep -qx 'server: the log (standard error) is not taking lines: its reader is not reading; lines are dropped until it does, and counted' "$work/stalled.out"; then
        ok "log reader stalled (the pipe full): Alice is still welcome, and stdout says once that lines are dropped"
    else
        fail "log reader stalled: Alice is still welcome, stdout says so" "got $code ${body:0:100}" \
            "stdout: $(head -c 300 "$work/stalled.out")"
    fi
    kill -USR1 "$holder_pid"                # the reader reads again
    for _ in $(seq 500); do [ -e "$work/stalled.log.resumed" ] && break; sleep 0.02; done
    fetch "${ALICE_P12[@]}" "$(url /authenticate)"
    kill -TERM "$server_pid"
    wait "$server_pid"
    status=$?
    server_pid=
    wait "$holder_pid"
    # every connection (600, and Alice twice) is a line in the log or in a count
    logged=$(grep -cE '^127\.0\.(3\.[0-9]+|0\.1) ' "$work/stalled.log")
    dropped=$(sed -n 's/^server: \([0-9]*\) log lines dropped or cut short: the log could not take them$/\1/p' \
        "$work/stalled.log" | awk '{sum += $1} END {print sum + 0}')
    if [ "$status" = 0 ] && [ $((logged + ${dropped:-0})) = 602 ] && [ "${dropped:-0}" -gt 0 ] &&
        [ "$(tail -n 1 "$work/stalled.log")" = "server: stopped" ]; then
        ok "  ... reading again: $logged lines, and $dropped counted as dropped: all 602 connections; SIGTERM: exit 0"
    else
        fail "  ... reading again: every connection a line or counted, exit 0 at SIGTERM" \
            "exit $status, $logged lines + ${dropped:-0} dropped (want 602)" "log: $(tail -n 3 "$work/stalled.log")"
    fi
fi

# A frozen terminal: the log on a pseudo-terminal nobody reads (a tty may
# say "writable" with room for part of a line, and then a write() waits).
# make test leaves it to LONG=1 (make soak, asan, tsan, valgrind): it takes
# twice the stalled pipe's connections, and the pipe above shows the same
# rule (a log that does not take lines costs lines, never a worker).
if ! long; then
    echo "       (LONG=1: the log on a terminal nobody reads, 1,200 connections)"
else
    # shellcheck disable=SC2206
    [ -n "${SERVER_WRAPPER:-}" ] && wrapper=($SERVER_WRAPPER "--log-file=$work/pty.valgrind")
    python3 tests/stalled_log.py --pty "$work/pty.port" "$work/pty.log" -- \
        "${wrapper[@]}" "$SERVER" --port 0 --certs "$certs" &
    holder_pid=$!
    for _ in $(seq 1500); do [ -s "$work/pty.port" ] && break; sleep 0.02; done
    read -r port server_pid <"$work/pty.port"
    python3 -c 'import socket, sys
for i in range(1200):    # about 60 KiB: the terminal holds 16 KiB, the queue 256 lines
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), source_address=("127.0.3.%d" % (i % 250 + 1), 0)).close()' \
        "${port:-1}" 2>/dev/null
    fetch "${ALICE_P12[@]}" "$(url /authenticate)"
    kill -USR1 "$holder_pid"                # the terminal is read again
    for _ in $(seq 500); do [ -e "$work/pty.log.resumed" ] && break; sleep 0.02; done
    kill -TERM "$server_pid" 2>/dev/null
    wait "$holder_pid"
    server_pid=
    if [ "$code" = 200 ] && [[ $body == *"$HELLO"* ]] && [ "$(tail -n 1 "$work/pty.log")" = "server: stopped" ] &&
        grep -Eq '^server: [0-9]+ log lines dropped or cut short: the log could not take them$' "$work/pty.log"; then
        ok "log on a terminal nobody reads: Alice is still welcome; read again, the count, and the stop"
    else
        fail "log on a terminal nobody reads: Alice welcome, the count, the stop" "got $code ${body:0:100}" \
            "log: $(tail -n 3 "$work/pty.log")"
    fi
fi

# A full disk: the log is a file on a 12 KiB tmpfs, 8 KiB of it taken.  150
# connections from 150 addresses write more than the 4 KiB left: lines are
# lost, one is cut short.  Then the space comes back, and Alice visits: no
# line may run into the next, and the count comes first.
fulllog=$work/fulllog
mkdir -p "$fulllog"
if mount -t tmpfs -o size=12k tmpfs "$fulllog"; then
    mounted+=("$fulllog")
    head -c 8192 /dev/zero >"$fulllog/filler"
    # shellcheck disable=SC2206
    [ -n "${SERVER_WRAPPER:-}" ] && wrapper=($SERVER_WRAPPER "--log-file=$work/fulllog.valgrind")
    "${wrapper[@]}" "$SERVER" --port 0 --certs "$certs" >"$work/fulllog.out" 2>"$fulllog/log" &
    server_pid=$!
    port=
    for _ in $(seq 1500); do
        port=$(sed -n 's|^server: listening on https://localhost:\([0-9]*\)/.*|\1|p' "$fulllog/log")
        [ -n "$port" ] && break
        sleep 0.02
    done
    python3 -c 'import socket, sys
for i in range(150):
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), source_address=("127.0.3.%d" % (i + 1), 0)).close()' \
        "${port:-1}" 2>/dev/null
    # the disk is full once the server says so on stdout (at most 20 s)
    for _ in $(seq 1000); do grep -q 'cannot be written: No space left on device' "$work/fulllog.out" && break; sleep 0.02; done
    rm "$fulllog/filler"
    fetch "${ALICE_P12[@]}" "$(url /authenticate)"
    kill -TERM "$server_pid"
    wait "$server_pid"
    status=$?
    server_pid=
    cp "$fulllog/log" "$work/fulllog.log"
    umount "$fulllog" && mounted=("${mounted[@]/$fulllog}")
    glued=$(grep -cE '^127\.0\.3\.[0-9]+ .*127\.0\.' "$work/fulllog.log")
    if [ "$code" = 200 ] && [ "$status" = 0 ] && [ "$glued" = 0 ] &&
        grep -Eq '^server: [0-9]+ log lines dropped or cut short: the log could not take them$' "$work/fulllog.log" &&
        grep -q '^127\.0\.0\.1 TLS1.3 "GET /authenticate HTTP/1.1" 200 admitted "CN=Alice"$' "$work/fulllog.log" &&
        grep -qx 'server: the log (standard error) cannot be written: No space left on device; lines are dropped until it can, and counted' "$work/fulllog.out"; then
        ok "log on a full disk: Alice welcome, no line runs into another, the count of lost lines, said once on stdout ($(grep 'lines dropped' "$work/fulllog.log" | head -n 1))"
    else
        fail "log on a full disk: Alice welcome, lines whole, the count" "Alice $code, exit $status, $glued lines glued" \
            "log: $(grep -v '^127\.0\.3' "$work/fulllog.log" | tail -n 4)" "stdout: $(cat "$work/fulllog.out")"
    fi
else
    fail "log on a full disk: a tmpfs of our own" "mount -t tmpfs failed (make test runs as root in CI)"
fi

echo "# many visitors at once: a worker thread per connection in flight, with caps"
# flood_from SOURCE FLOOD-ARGS...: tests/flood.py in the background, from
# SOURCE; returns once it has tried every connection (its line is in $flood)
flood_from() {
    local source=$1
    shift
    rm -f "$work/flood.ready"
    python3 tests/flood.py --port "$port" --source "$source" --ready-file "$work/flood.ready" "$@" \
        >/dev/null 2>&1 &
    flood_pid=$!
    for _ in $(seq 1000); do [ -s "$work/flood.ready" ] && break; sleep 0.02; done
    flood=$(cat "$work/flood.ready" 2>/dev/null)
}
plain_build() { [ "$SERVER" = ./server ] && [ -z "${SERVER_WRAPPER:-}" ]; }

if ! long; then
    echo "       (LONG=1: 100 idle and 20 dribbling clients from one address, and Alice answered at once)"
else
    start_idle_server --timeout 3
    # Alice's time from her handshake to her answer (curl: time_total - time_appconnect)
    alice_after_handshake_ms() {
        curl -sS -o "$work/alice.out" -w '%{http_code} %{time_appconnect} %{time_total}' --max-time 20 \
            --cacert "$certs/server_cert.pem" "${ALICE_P12[@]}" "$(url /authenticate)" |
            awk '{printf "%s %d %d", $1, $2 * 1000, ($3 - $2) * 1000}'
    }
    read -r _ _ before_ms <<<"$(alice_after_handshake_ms)"
    flood_from 127.0.0.2 --idle 100 --dribble 20 --hold 5
    read -r code handshake_ms after_ms <<<"$(alice_after_handshake_ms)"
    echo "       flood from 127.0.0.2: $flood; connections open: $(server_connections)"
    echo "       Alice from 127.0.0.1: handshake done after ${handshake_ms} ms, answer ${after_ms} ms later (${before_ms} ms before the flood)"
    # (a server that made her wait for the flood would answer at its deadline,
    # 3 s; the bound is a third of that, not the few ms seen here, so that a
    # loaded machine's pauses do not fail it)
    if [ "$code" = 200 ] && grep -qF "$HELLO" "$work/alice.out" &&
        { ! plain_build || [ "$after_ms" -le 1000 ]; }; then
        ok "100 idle and 20 dribbling clients from 127.0.0.2: Alice is answered $after_ms ms after her handshake"
    else
        fail "100 idle and 20 dribbling clients from 127.0.0.2: Alice answered within 1000 ms of her handshake" \
            "got $code after $after_ms ms"
    fi
    log_has "the flood: over 8 from one address are closed at once, and logged" \
        '^127\.0\.0\.2 - "" - refused at once: 8 connections from this address already \(--max-per-address\)'
    kill "$flood_pid" 2>/dev/null
    wait "$flood_pid" 2>/dev/null
    wait_connections 0 || true     # the flood's 8 end at their deadline

    stop_server
fi

if ! long; then
    echo "       (LONG=1: tests/crowd.sh: a crowd on every slot, churns, many addresses, IPv6 /64s)"
else
    # Many addresses, and IPv6 networks: in a network of its own (tests/netns.sh
    # gives its loopback these IPv6 addresses), tests/crowd.sh, whose ok/FAIL
    # lines count here.
    crowd=$(tests/netns.sh 2001:db8:1::1 2001:db8:1::2 2001:db8:1::3 2001:db8:1::ffff:4 2001:db8:2::1 \
        -- tests/crowd.sh "$certs" 2>&1)
    crowd_status=$?
    while IFS= read -r line; do
        case $line in
            "ok   "*) ok "${line#ok   }" ;;
            "FAIL "*) fail "${line#FAIL }" ;;
            "#"*|"       "*) echo "$line" ;;
        esac
    done <<<"$crowd"
    if [ "$crowd_status" != 0 ] && ! grep -q '^FAIL ' <<<"$crowd"; then
        fail "tests/crowd.sh runs" "exit $crowd_status: ${crowd:0:300}"
    fi
fi

# 16 clients at once (Alice, Bob, none), CONCURRENT_CONNECTIONS in all; all
# from 127.0.0.1, so the cap per address is raised to let all 16 in (and
# the connections each has just closed, while their threads finish)
# (under valgrind a handshake takes far longer: a deadline to match)
busy_timeout=3
[ -n "${SERVER_WRAPPER:-}" ] && busy_timeout=30
start_idle_server --timeout "$busy_timeout" --max-per-address 32
concurrent_round() {
    local n=$1 each pids=() i who status=0
    each=$((n / 16))
    for i in $(seq 16); do
        case $((i % 4)) in
            0|1) who=(--cert "$certs/alice_cert.pem" --key "$certs/alice_key.pem" --expect 200 --expect-text "$HELLO") ;;
            2) who=(--cert "$certs/bob_cert.pem" --key "$certs/bob_key.pem" --expect 403 --expect-text "$SORRY_BOB") ;;
            3) who=(--expect 401 --expect-text "$NEED_CERT") ;;
        esac
        tests/tlsclient --port "$port" --ca "$certs/server_cert.pem" --count "$each" "${who[@]}" \
            >"$work/concurrent.$i" 2>&1 &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { status=1; tail -n 3 "$work/concurrent.$((i + 1))"; }
    done
    return $status
}
# (make test: 32 after a warm-up of 32; LONG=1: 320 after 160, as make
# asan, tsan and valgrind had them; make soak: 2,000)
warm_up=160
long || warm_up=32
if long; then : "${CONCURRENT_CONNECTIONS:=320}"; else : "${CONCURRENT_CONNECTIONS:=32}"; fi
# a first round warms up what GnuTLS, malloc (an arena per thread) and the
# thread library (a cache of stacks) keep; the second must not add to it
concurrent_round "$warm_up" >/dev/null
wait_connections 0 || true
read -r fds_before rss_before <<<"$(server_usage)"
if out=$(concurrent_round "$CONCURRENT_CONNECTIONS"); then
    ok "16 clients at once, Alice, Bob and none: $CONCURRENT_CONNECTIONS answers, every one as expected"
else
    fail "16 clients at once: every answer as expected" "$out"
fi
wait_connections 0
threads=$(server_threads)
read -r fds_after rss_after <<<"$(server_usage)"
echo "       threads $threads (workers kept for the next connections), descriptors $fds_before -> $fds_after, resident memory $rss_before -> $rss_after KiB"
if [ "$threads" -le 66 ] && [ "$fds_after" = "$fds_before" ]; then
    ok "after them: no connection left open, descriptors flat ($fds_before -> $fds_after), $threads threads (at most 64 workers)"
else
    fail "after them: no connection left open, at most 64 workers" "threads $threads, descriptors $fds_before -> $fds_after"
fi
if ! plain_build; then
    echo "       (resident memory is asserted for the plain build only)"
elif [ "$rss_after" -le $((rss_before + 2048)) ]; then
    # Not to the KiB, as in the soak: malloc keeps what threads free in its
    # arenas, fragmented (about 100 KiB more per 320 connections here, less
    # and less); valgrind, over the same run, finds no block lost.
    ok "after them: resident memory flat within 2 MiB ($rss_before -> $rss_after KiB)"
else
    fail "after them: resident memory flat within 2 MiB" "$rss_before -> $rss_after KiB"
fi
stop_server

start_server --timeout 2 --max-per-address 3
flood_from 127.0.0.3 --idle 4 --dribble 0 --hold 1
if [[ $flood == "ready: 4 opened, 1 closed at once by the server" ]]; then
    ok "--max-per-address 3: the 4th connection from one address is closed at once"
else
    fail "--max-per-address 3: the 4th connection from one address is closed at once" "flood.py: $flood"
fi
log_has "  ... and logged" '^127\.0\.0\.3 - "" - refused at once: 3 connections from this address already'
wait "$flood_pid" 2>/dev/null
stop_server

if ! long; then
    echo "       (LONG=1: --max-clients 2: a newcomer over its cap is refused; the one waiting longest gives way to Alice)"
else
    # --max-clients 2, both slots held by idle clients, first 127.0.0.4, then
    # 127.0.0.5, with a deadline of 30 s: a second from 127.0.0.5 is over its
    # cap (1) and is refused without making anyone give way; Alice does not
    # wait the deadline out: 127.0.0.4's, which has kept us waiting longest, gives way
    start_idle_server --timeout 30 --max-clients 2 --max-per-address 1
    flood_from 127.0.0.4 --idle 1 --dribble 0 --hold 40 --settle 0
    flood4_pid=$flood_pid
    wait_connections 1
    flood_from 127.0.0.5 --idle 1 --dribble 0 --hold 40 --settle 0
    wait_connections 2
    flood5_pid=$flood_pid
    flood_from 127.0.0.5 --idle 1 --dribble 0 --hold 1
    if [ "$flood" = "ready: 1 opened, 1 closed at once by the server" ] && ! grep -q 'gave way' "$log"; then
        ok "--max-clients 2, both taken: a newcomer over its address's cap is refused, and nobody gives way to it"
    else
        fail "--max-clients 2: a newcomer over its cap is refused, nobody gives way" "flood.py: $flood" "$(tail -n 3 "$log")"
    fi
    wait "$flood_pid" 2>/dev/null
    flood_pid=$flood5_pid
    expect "--max-clients 2, both held by idle clients (deadline 30 s): Alice is welcome" 200 "$HELLO" \
        "${ALICE_P12[@]}" "$(url /authenticate)"
    order=$(grep -E '^127\.0\.0\.[45] |admitted "CN=Alice"' "$log" | grep -v 'refused at once' | cut -d' ' -f1 | tr '\n' ' ')
    if [ "$order" = "127.0.0.4 127.0.0.1 " ] &&
        grep -q '^127\.0\.0\.4 - "" - dropped: every slot was taken, and this connection gave way to a newcomer' "$log"; then
        ok "  ... the one that kept us waiting longest (127.0.0.4's) gave way to her, and says so (log order: $order)"
    else
        fail "  ... the one waiting longest (127.0.0.4's) gave way to her" "log order: $order" "$(tail -n 4 "$log")"
    fi
    kill "$flood4_pid" "$flood_pid" 2>/dev/null
    wait "$flood4_pid" "$flood_pid" 2>/dev/null
    stop_server
fi

if ! long; then
    echo "       (LONG=1: SIGTERM with 50 connections in flight)"
else
    start_idle_server --timeout 5 --max-per-address 64
    flood_from 127.0.0.5 --idle 50 --dribble 0 --hold 20 --settle 0
    wait_connections 50     # (at least the 50 descriptors: CI once counted 52 under valgrind)
    # the flood's own, exactly: the server's ends of the connections from
    # 127.0.0.5 (ss, iproute2's, as LONG=1 needs it anyway)
    need ss
    in_flight=$(ss -Htn state established "( sport = :$port )" dst 127.0.0.5 | wc -l)
    start=$(date +%s%N)
    kill -TERM "$server_pid"
    wait "$server_pid"
    status=$?
    waited=$(( ($(date +%s%N) - start) / 1000000 ))
    server_pid=
    dropped=$(grep -c '^127\.0\.0\.5 - "" - dropped: the server is stopping$' "$log")
    if [ "$status" = 0 ] && [ "$in_flight" = 50 ] && [ "$dropped" = 50 ] && [ "$waited" -le 6000 ]; then
        ok "SIGTERM with 50 connections in flight: exit 0 after $waited ms, 50 lines 'dropped'"
    else
        fail "SIGTERM with 50 connections in flight: exit 0 within the deadline + 1 s, 50 lines 'dropped'" \
            "in flight $in_flight, exit $status after $waited ms, $dropped dropped" "$(tail -n 3 "$log")"
    fi
    kill "$flood_pid" 2>/dev/null
    wait "$flood_pid" 2>/dev/null
fi

echo "# --reject-unauthorized: the tutorial's rejectUnauthorized: true"
# No page for Bob or for a visitor without a certificate: the handshake
# fails with an alert, and curl says which (exit 35 in the handshake, 56 when
# TLS 1.3's alert comes after curl's side of the handshake is done).
start_server --timeout 2 --reject-unauthorized
log_has "says at start that it refuses in the handshake" '^server: --reject-unauthorized: '
# refused_in_handshake NAME EXITS PATTERN CURL-ARGS...: curl exits with one
# of EXITS ("35 56") and its message matches PATTERN (grep -E)
refused_in_handshake() {
    local name=$1 exits=$2 pattern=$3 out status
    shift 3
    out=$(curl -sS --max-time 20 --cacert "$certs/server_cert.pem" "$@" "$(url /authenticate)" 2>&1)
    status=$?
    if [[ " $exits " == *" $status "* ]] && grep -Eq -- "$pattern" <<<"$out"; then
        ok "$name: curl exit $status, ${out##*routines::}"
    else
        fail "$name" "wanted exit in ($exits) and: $pattern" "got exit $status: $out"
    fi
}
for v in 1.2 1.3; do
    tls=(--tlsv"$v" --tls-max "$v")
    expect "TLS $v: Alice is still welcome" 200 "$HELLO" "${tls[@]}" "${ALICE_P12[@]}" "$(url /authenticate)"
done
refused_in_handshake "TLS 1.2: Bob, no page"  35 'alert bad certificate'   --tlsv1.2 --tls-max 1.2 "${BOB_P12[@]}"
refused_in_handshake "TLS 1.3: Bob, no page"  56 'alert bad certificate'   --tlsv1.3 --tls-max 1.3 "${BOB_P12[@]}"
refused_in_handshake "TLS 1.2: no certificate, no page" 35 'alert handshake failure'       --tlsv1.2 --tls-max 1.2
refused_in_handshake "TLS 1.3: no certificate, no page" 56 'alert certificate required'    --tlsv1.3 --tls-max 1.3
# shellcheck disable=SC2046   # pem prints flags to split
refused_in_handshake "Frank (serverAuth only): the purpose is checked in the handshake too" \
    "35 56" 'alert bad certificate' $(pem frank)
log_has "log: Bob refused in the handshake, with the alert" \
    '^127\.0\.0\.1 - "" - handshake failed: Error in the certificate verification\. \(sent alert bad_certificate\)$'
log_has "log: no certificate, TLS 1.2 (RFC 5246 7.4.6)" \
    'handshake failed: No certificate was found\. \(sent alert handshake_failure\)$'
log_has "log: no certificate, TLS 1.3" \
    'handshake failed: Certificate is required\. \(sent alert certificate_required\)$'
stop_server

# refuses NAME STATUS TEXT COMMAND...: the command exits with STATUS and
# says TEXT (an error that names the file or the flag)
refuses() {
    local name=$1 want=$2 text=$3 out status
    shift 3
    out=$("$@" 2>&1)
    status=$?
    if [ "$status" = "$want" ] && [[ $out == *"$text"* ]]; then
        ok "$name: exit $status, \"${text:0:60}\""
    else
        fail "$name" "wanted exit $want and: $text" "got exit $status: $out"
    fi
}
# shellcheck source=tests/part2.sh
. tests/part2.sh

echo "# every server this script started: no sanitizer or valgrind report"
cat "$work/servers.log" "$log" >"$work/all-servers.log" 2>/dev/null
if grep -Eq 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer|runtime error:|ERROR SUMMARY: [1-9]|definitely lost: [1-9]' "$work/all-servers.log"; then
    fail "no sanitizer or valgrind report in the servers' output" "$(grep -E -A5 'ERROR|WARNING: ThreadSanitizer|runtime error|lost' "$work/all-servers.log" | head -n 30)"
else
    ok "no sanitizer or valgrind report in the servers' output ($(grep -c '^server: stopped' "$work/all-servers.log") servers)"
fi
if [ -n "${SERVER_WRAPPER:-}" ]; then
    n=$(grep -c '^server: stopped' "$work/all-servers.log")
    if [ "$(grep -c 'ERROR SUMMARY: 0 errors from 0 contexts' "$work/all-servers.log")" = "$n" ]; then
        ok "valgrind: 0 errors, in each of the $n servers"
    else
        fail "valgrind: 0 errors in each server" "$(grep 'ERROR SUMMARY' "$work/all-servers.log")"
    fi
    if [ "$(grep -c 'All heap blocks were freed -- no leaks are possible' "$work/all-servers.log")" = "$n" ]; then
        ok "valgrind: every heap block freed, in each of the $n servers"
    else
        fail "valgrind: every heap block freed in each server" "$(grep -E 'in use at exit|definitely' "$work/all-servers.log")"
    fi
fi

echo "# the command line"
refuses "missing key file"             1 "$work/nowhere/server_key.pem" "$SERVER" --certs "$work/nowhere"
refuses "CA file without certificates" 1 "no CA certificate in $certs/alice_key.pem" \
    "$SERVER" --certs "$certs" --ca "$certs/alice_key.pem"
# a CRL that none of our CAs signed: made by Mallory's CA from our CA's records
(cd "$certs" && openssl ca -config ca/ca.cnf -gencrl -cert mallory_ca_cert.pem \
    -keyfile mallory_ca_key.pem -out "$work/mallory_crl.pem" 2>/dev/null)
refuses "CRL not signed by our CA"     1 "no usable CRL in $work/mallory_crl.pem" \
    "$SERVER" --certs "$certs" --crl "$work/mallory_crl.pem"
refuses "--crl FILE that is missing"   1 "$work/nowhere.pem" "$SERVER" --certs "$certs" --crl "$work/nowhere.pem"
refuses "bad --port"                   2 "--port wants a number from 0 to 65535, not '70000'" "$SERVER" --port 70000
refuses "bad --timeout"                2 "--timeout wants a number from 1 to 3600, not '0'" "$SERVER" --timeout 0
refuses "bad --max-clients"            2 "--max-clients wants a number from 1 to 10000, not '0'" "$SERVER" --max-clients 0
refuses "bad --max-per-address"        2 "--max-per-address wants a number from 1 to 10000, not 'x'" "$SERVER" --max-per-address x
refuses "unknown flag"                 2 "unknown flag '--frobnicate'" "$SERVER" --frobnicate
refuses "flag without its value"       2 "--certs needs a value" "$SERVER" --certs
refuses "an empty value"               2 "--crl needs a value, not ''" "$SERVER" --certs "$certs" --crl ''
refuses "--revoke twice (one would be lost)" 2 "--revoke is given twice" \
    "$SERVER" --certs "$certs" --revoke 03 --revoke 04
refuses "--invite twice"               2 "--invite is given twice" "$SERVER" --certs "$certs" --invite A --invite B
refuses "--invite with a flag for a name" 2 "--invite wants a name, not the flag '--enroll'" \
    "$SERVER" --certs "$certs" --invite --enroll
refuses "--invite with --port 0"       2 "--invite prints a link to the server's --port" \
    "$SERVER" --certs "$certs" --invite Ann --port 0

echo "# the lesson's shape: part 1 in 550 lines, the story first, the header's map (tests/lesson.sh)"
while IFS= read -r line; do
    case $line in
        "ok "*) ok "${line#ok }" ;;
        "FAIL "*) fail "${line#FAIL }" ;;
    esac
done < <(tests/lesson.sh)

echo "# README: each line of the crosswalk is the line or block it names (README.md and docs/*.md)"
crosswalk=$(tests/crosswalk.sh)
grep -q '^README.md ' <<<"$crosswalk" || fail "README: the crosswalk has line ranges" "none found in README.md"
while read -r doc file first last now_first now_last target anchor; do
    if [ "$target" != ok ]; then
        fail "$doc: the link [$file:$first-$last] $anchor goes to $target" \
            "not where its text says; tests/crosswalk.sh --fix rewrites it"
    elif [ "$first-$last" = "$now_first-$now_last" ]; then
        ok "$doc: $file:$first-$last is $anchor"
    else
        fail "$doc: $file:$first-$last is $anchor" \
            "it is at $now_first-$now_last now (0-0: not found); tests/crosswalk.sh --fix renumbers"
    fi
done <<<"$crosswalk"


finish
