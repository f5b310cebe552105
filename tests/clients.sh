#!/usr/bin/env bash
# tests/clients.sh - the three visitors with every client a reader may have
# (make test-clients).
#
# Against a server of its own, each client fetches / and /authenticate as
# Alice, as Bob and with no certificate, and checks the server against
# server_cert.pem (never --insecure).  Expected: landing page 200, Alice 200,
# nobody 401, Bob 403 -- except from a client that, like a browser, offers only
# a certificate whose issuer the server names in its CertificateRequest: it
# does not send Bob's at all, so Bob gets the 401.  Which clients do that is
# written below and checked (the server's log says whether a certificate came).
set -u
cd "$(dirname "$0")/.." || exit 1

# shellcheck source=tests/lib.sh
. tests/lib.sh
need curl wget openssl gnutls-cli python3 node
make_certs
start_server --timeout 2

ca=$certs/server_cert.pem
url=https://localhost:$port

# Each client function: CLIENT WHO PATH -> prints "STATUS BODY" (WHO is alice,
# bob or none), whatever the client's own way of saying it.
via_curl_p12() {
    local id=()
    [ "$2" != none ] && id=(--cert "$certs/$2.p12" --cert-type p12)
    curl -sS --max-time 20 --cacert "$ca" "${id[@]}" -w ' %{http_code}' "$url$3" |
        awk '{body = body $0 " "} END {n = split(body, w, " "); printf "%s %s\n", w[n], body}'
}
via_curl_pem() {
    local id=()
    [ "$2" != none ] && id=(--cert "$certs/$2_cert.pem" --key "$certs/$2_key.pem")
    curl -sS --max-time 20 --cacert "$ca" "${id[@]}" -w ' %{http_code}' "$url$3" |
        awk '{body = body $0 " "} END {n = split(body, w, " "); printf "%s %s\n", w[n], body}'
}
via_wget() {
    local id=() out
    [ "$2" != none ] && id=(--certificate="$certs/$2_cert.pem" --private-key="$certs/$2_key.pem")
    out=$(timeout 20 wget -S -O - --content-on-error --tries=1 --ca-certificate="$ca" "${id[@]}" "$url$3" 2>&1)
    echo "$(sed -n 's/^  HTTP\/1\.1 \([0-9]*\).*/\1/p' <<<"$out" | tail -n 1) $(grep -v '^ \|^--\|^Resolving\|^Connecting\|^HTTP\|^Length\|^Saving\|^$' <<<"$out" | tr '\n' ' ')"
}
# openssl s_client and gnutls-cli speak TLS only: we write the request.
raw_request() { printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$1"; }
answer() { tr -d '\r' | awk 'NR == 1 && /^HTTP\/1\.1/ {s = $2} /^$/ {b = 1; next} b {body = body $0 " "}
                              END {print s, body}'; }
via_openssl() {
    local id=()
    [ "$2" != none ] && id=(-cert "$certs/$2_cert.pem" -key "$certs/$2_key.pem")
    raw_request "$3" | timeout 20 openssl s_client -quiet -verify_return_error -CAfile "$ca" \
        -connect "localhost:$port" -servername localhost "${id[@]}" 2>/dev/null | answer
}
via_gnutls_cli() {
    local id=()
    [ "$2" != none ] && id=(--x509certfile "$certs/$2_cert.pem" --x509keyfile "$certs/$2_key.pem")
    raw_request "$3" | timeout 20 gnutls-cli --x509cafile "$ca" -p "$port" "${id[@]}" localhost 2>/dev/null |
        sed -n '/^HTTP\/1\.1/,$p' | answer
}
via_python() {
    python3 - "$port" "$certs" "$2" "$3" <<'PY'
import http.client, ssl, sys
port, certs, who, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=f"{certs}/server_cert.pem")
if who != "none":
    ctx.load_cert_chain(f"{certs}/{who}_cert.pem", f"{certs}/{who}_key.pem")
conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=20)
conn.request("GET", path)
r = conn.getresponse()
print(r.status, r.read().decode().replace("\n", " "))
PY
}
via_node() {
    node - "$port" "$certs" "$2" "$3" <<'JS'
// The tutorial's own runtime, with the tutorial's .p12 bundle as `pfx`.
const https = require("https"), fs = require("fs");
const [port, certs, who, path] = process.argv.slice(2);
const opts = { host: "localhost", port, path, ca: fs.readFileSync(`${certs}/server_cert.pem`) };
if (who !== "none") Object.assign(opts, { pfx: fs.readFileSync(`${certs}/${who}.p12`), passphrase: "" });
https.get(opts, res => {
  let body = "";
  res.on("data", d => (body += d));
  res.on("end", () => console.log(res.statusCode, body.replace(/\n/g, " ")));
}).on("error", e => console.log("error", e.message));
JS
}

version_of() {
    case $1 in
        curl_p12) echo "curl $(curl --version | head -n 1 | awk '{print $2, $5}') with .p12" ;;
        curl_pem) echo "curl $(curl --version | head -n 1 | awk '{print $2, $5}') with PEM" ;;
        wget) wget --version | head -n 1 | cut -d' ' -f1-3 ;;
        openssl) openssl version | cut -d' ' -f1-2 ;;
        gnutls_cli) echo "gnutls-cli $(gnutls-cli --version | head -n 1 | awk '{print $NF}')" ;;
        python) echo "Python $(python3 -c 'import ssl, sys; print(sys.version.split()[0], ssl.OPENSSL_VERSION)')" ;;
        node) echo "Node.js $(node --version) ($(node -p 'process.versions.openssl'))" ;;
    esac
}

HELLO="Hello Alice, your certificate was issued by localhost!"
SORRY_BOB="Sorry Bob, certificates from Bob are not welcome here."
NEED_CERT="Sorry, but you need to provide a client certificate to continue."
LINK="Log in using client certificate"

# check CLIENT WHO PATH STATUS TEXT: one visit; TEXT is "" when the client
# shows no body for that status (wget on a 401).
check() {
    local client=$1 who=$2 path=$3 want=$4 text=$5 got
    got=$("via_$client" "$client" "$who" "$path" 2>&1)
    if [ "${got%% *}" = "$want" ] && [[ $got == *"$text"* ]]; then
        ok "$client: $who $path -> $want"
    else
        fail "$client: $who $path -> $want" "got: ${got:0:200}"
    fi
}

# Clients that offer only a certificate from a CA the server names, like a
# browser (found by trying; docs/proving.md explains): GnuTLS's wget.
withholds_bob=" wget "
table=()
for client in curl_p12 curl_pem wget openssl gnutls_cli python node; do
    echo "# $client: $(version_of "$client")"
    check "$client" none / 200 "$LINK"
    check "$client" alice /authenticate 200 "$HELLO"
    check "$client" none /authenticate 401 "$([ "$client" = wget ] || echo "$NEED_CERT")"
    lines_before=$(wc -l <"$log")
    if [[ $withholds_bob == *" $client "* ]]; then
        check "$client" bob /authenticate 401 ""
        bob="401 (Bob's certificate not sent)"
    else
        check "$client" bob /authenticate 403 "$SORRY_BOB"
        bob=403
    fi
    # the server's side of Bob's visit: was a certificate presented at all?
    seen=$(tail -n +"$((lines_before + 1))" "$log")
    if [[ $bob == 403 && $seen == *'refused "CN=Bob"'* ]] ||
        [[ $bob == 401* && $seen == *"401 no client certificate"* ]]; then
        ok "$client: the server's log agrees about Bob"
    else
        fail "$client: the server's log agrees about Bob" "log: $seen"
    fi
    table+=("| $(version_of "$client") | 200 | 200 | $bob | 401 |")
done

echo "# alerts: gnutls-cli's own words, and gnutls-serv as a reference for tests/tls_probes.py"
out=$(timeout 20 gnutls-cli --priority 'NORMAL:-VERS-ALL:+VERS-TLS1.1' --x509cafile "$ca" \
    -p "$port" localhost </dev/null 2>&1)
if [[ $out == *"Received alert [70]: Error in protocol version"* ]]; then
    ok "gnutls-cli, TLS 1.1 only: Received alert [70]: Error in protocol version"
else
    fail "gnutls-cli, TLS 1.1 only: Received alert [70]" "got: ${out: -300}"
fi
# GnuTLS's own server, with server.c's priorities, answers each probe with the
# alert that test.sh expects from ours: the probes ask for what the library does.
# (the #define may go on over lines ending in \; its strings, joined)
priorities=$(sed -n '/^#define TLS_PRIORITIES/,/[^\\]$/p' server.c | grep -o '"[^"]*"' | tr -d '"\n')
# A free port can be taken by someone else before gnutls-serv binds it, and
# then whatever listens there would answer the probes: gnutls-serv must say
# it listens on it (or it has exited, and another port is tried; 5 at most).
for _ in 1 2 3 4 5; do
    ref_port=$(free_port)
    gnutls-serv --port "$ref_port" --priority "$priorities" --verify-client-cert \
        --x509keyfile "$certs/server_key.pem" --x509certfile "$certs/server_cert.pem" \
        --x509cafile "$certs/server_cert.pem" >"$work/gnutls-serv.log" 2>&1 &
    ref_pid=$!
    for _ in $(seq 100); do
        grep -q "listening on IPv4 .* port $ref_port\.\.\.done" "$work/gnutls-serv.log" && break 2
        kill -0 "$ref_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$ref_pid" 2>/dev/null
    wait "$ref_pid" 2>/dev/null
done
probes=$(python3 tests/tls_probes.py --port "$ref_port" 2>&1)
kill "$ref_pid" 2>/dev/null
wait "$ref_pid" 2>/dev/null
if [ -n "$priorities" ] && grep -qE '^[1-9][0-9]* passed, 0 failed$' <<<"$probes"; then
    ok "gnutls-serv ($priorities) sends the alert each probe expects: $(tail -n 1 <<<"$probes")"
else
    fail "gnutls-serv sends the alert each probe expects" "priorities: $priorities" "$probes"
fi

echo
echo "| client | landing | Alice | Bob | no certificate |"
echo "|---|---|---|---|---|"
printf '%s\n' "${table[@]}"
finish
