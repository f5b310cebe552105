# tests/part2.sh - test.sh's part on part 2: the server issues and revokes
# certificates (--invite, --enroll, --revoke).  Sourced by test.sh, whose
# helpers it uses (expect, log_has, refuses, start_server...); not run alone.
# Each attack from the issue "Part 2 under attack" has its check here: two
# accounts with one name, a second CA's "Carol", part 1's Alice, a DN made
# to overflow a page, serials with the high bit set, crl.pem moved, broken
# or locked while the server runs, a connection that says hello after a
# revocation, a read-only and a full disk.
# shellcheck shell=bash
# shellcheck disable=SC2154   # work, certs, log, port...: set by test.sh and tests/lib.sh

echo "# Part 2: the server issues and revokes certificates (--invite, --enroll, --revoke)"
# In a copy of the certificates, so that the rest of the suite sees part 1's.
p2=$work/part2
cp -r "$certs" "$p2"
stop_server
start_server --timeout 2
expect "without --enroll, GET /enroll does not exist" 404 "404 Not Found" "$(url /enroll?code=00)"
expect "without --enroll, POST /enroll does not exist" 404 "404 Not Found" \
    -H "Origin: https://localhost:$port" --data "code=00" "$(url /enroll)"
stop_server
# invite NAME [FLAGS...]: ./server --invite; prints the code of the link
invite() {
    local name=$1
    shift
    "$SERVER" --certs "$p2" --port "$port" --invite "$name" "$@" 2>"$work/invite.err" |
        sed -n "s|^https://localhost:$port/enroll?code=\([0-9A-F]*\)$|\1|p"
}
# code_file CODE [DIR]: the invitation's file, named by the code's SHA-256
code_file() { echo "${2:-$p2}/invites/$(printf '%s' "$1" | openssl dgst -sha256 -r | cut -c1-64 | tr a-f A-F)"; }
# wait_for_line FILE LINE: until FILE holds LINE (a process in the
# background says it is ready); at most 60 s, then the check that reads it fails
wait_for_line() {
    for _ in $(seq 3000); do
        grep -qx "$2" "$1" 2>/dev/null && return 0
        sleep 0.02
    done
}
# mode PATH: its permission bits, as 644
mode() { stat -c %a "$1"; }
NO_HIDING="--invite: a name holds no control, direction or invisible characters"
refuses "--invite: a name with a newline"    2 "$NO_HIDING" "$SERVER" --certs "$p2" --invite $'Eve\n9.9.9.9 admitted'
refuses "--invite: a name over 64 bytes"      2 "--invite: a name has 1 to 64 bytes" \
    "$SERVER" --certs "$p2" --invite "$(printf 'x%.0s' $(seq 65))"
refuses "--invite: bytes that are not UTF-8"  2 "--invite: a name is UTF-8 text" \
    "$SERVER" --certs "$p2" --invite $'Eve\xff'
refuses "--invite: an RTL override"           2 "$NO_HIDING" "$SERVER" --certs "$p2" --invite $'Eve\u202e'
# invisible characters: "\uFEFFAlice" would be greeted as "Hello Alice"
# uchar HEX: the character U+HEX
uchar() { printf '%b' "$(printf '\\U%08X' "$((16#$1))")"; }
# (make test tries U+FEFF and U+00A0; LONG=1 every one listed)
invisible=(FEFF)
spaces=(00A0)
if long; then
    invisible=(00AD 034F 0600 115F 180E 200B 2060 2064 2800 3164 FE0F FEFF FFA0 FFF9 110BD E0041)
    spaces=(00A0 2003 3000)
fi
for cp in "${invisible[@]}"; do
    refuses "--invite: U+$cp before Alice (drawn as nothing, or blank)" 2 "$NO_HIDING" \
        "$SERVER" --certs "$p2" --invite "$(uchar "$cp")Alice"
done
for cp in "${spaces[@]}"; do
    refuses "--invite: Alice and U+$cp (a space of another kind) at the end" 2 \
        "--invite: a name does not begin or end with a space" "$SERVER" --certs "$p2" --invite "Alice$(uchar "$cp")"
done
if [ ! -e "$p2/accounts" ]; then
    ok "  ... and none of those made an account"
else
    fail "  ... and none of those made an account" "$(ls "$p2/accounts")"
fi
refuses "--enroll with --reject-unauthorized" 2 "can't go with --reject-unauthorized" \
    "$SERVER" --certs "$p2" --enroll --reject-unauthorized
# Making a bundle runs PBKDF2 three times (two bags and the MAC) with GnuTLS's
# 600,000 iterations: 0.35 s here, and many times that under valgrind, where
# the server gets a deadline and curl a limit to match.  curl opening a
# bundle runs them too, after it has connected: on a loaded machine (load 13
# on 2 cores, with make test, asan and soak at once) that outlasted a 2 s
# deadline, and Carol's first visit got no answer; so the deadline here is 10 s.
p2_timeout=10
start_server --timeout "$p2_timeout" --certs "$p2" --enroll
log_has "--enroll: says who signs" "^server: --enroll: invited visitors get certificates signed by $p2/server_cert.pem"
link=$( umask 000; "$SERVER" --certs "$p2" --port "$port" --invite Carol 2>"$work/invite.err")
icode=${link##*code=}
account1=$(sed -n 's/^server: invited "Carol" to a new account, \([0-9A-F]\{16\}\), for 24 hours.*/\1/p' "$work/invite.err")
if [[ $link =~ ^https://localhost:$port/enroll\?code=[0-9A-F]{32}$ ]] && [ -n "$account1" ]; then
    ok "--invite Carol: a new account, $account1, and one line, the link with a 128-bit code"
else
    fail "--invite Carol prints the link and names the new account" "got: $link" "$(cat "$work/invite.err")"
fi
ifile=$(code_file "$icode")
if [ -f "$ifile" ] && ! grep -rqF "$icode" "$p2"; then
    ok "the invitation on disk is the code's SHA-256 (invites/$(basename "$ifile" | cut -c1-12)...), never the code"
else
    fail "the invitation on disk is the code's SHA-256, never the code" "$(ls -la "$p2/invites")"
fi
modes="$(mode "$p2/invites") $(mode "$ifile") $(mode "$p2/accounts") $(mode "$p2/accounts/$account1") $(mode "$p2/accounts/$account1/name")"
if [ "$modes" = "700 600 700 700 600" ]; then
    ok "under umask 000: folders 0700, the invitation and the account's name 0600"
else
    fail "under umask 000: folders 0700, files 0600" "invites, invitation, accounts, account, name: $modes"
fi
expect "GET /enroll?code=...: the form names the invited person" 200 "<h1>Welcome, Carol</h1>" "$(url "/enroll?code=$icode")"
for field in 'name="code"' 'name="passphrase"' 'name="legacy"' 'carol.p12' 'Firefox: Settings' 'Chrome and Chromium'; do
    [[ $body == *"$field"* ]] || fail "the form has $field" "${body:0:300}"
done
ok "  ... with the code, a passphrase, the legacy choice, and import steps for Firefox and Chrome"
# a wrong code: the real one with its last digit changed, never by chance the same
last=${icode: -1}
wrong=${icode%?}$([ "$last" = 0 ] && echo 1 || echo 0)
expect "an unknown code: 404, said plainly" 404 "not a valid invitation code" "$(url "/enroll?code=$wrong")"
log_has "the log never shows an invitation code (code=...)" \
    "\"GET /enroll\\?code=\\.\\.\\. HTTP/1\\.1\" 200 enroll form for account $account1 \"Carol\"\$"
fetch "$(url "/enroll?%63ode=$icode")"
fetch "$(url "/enroll?x=1&CODE=$icode")"
fetch "$(url "/enroll?x=1;code=$icode")"
if grep -qF "$icode" "$log"; then
    fail "the code is hidden however its name is spelled" "$(grep -F "$icode" "$log")"
else
    log_has "the code is hidden however its name is spelled or set off: %63ode, CODE, ;code" \
        '"GET /enroll\?%63ode=\.\.\. HTTP/1\.1" 200 .*'
fi
ORIGIN=(-H "Origin: https://localhost:$port")
# enroll_post FILE CURL-ARGS...: POST /enroll, the answer's body into FILE
enroll_post() {
    local out=$1
    shift
    code=$(curl -sS --max-time "$max_time" --cacert "$p2/server_cert.pem" -D "$work/enroll.head" -o "$out" \
        -w '%{http_code}' "$@" "$(url /enroll)" 2>&1)
    body=$(cat "$work/enroll.head")
}
expect "POST /enroll without Origin: 403 (CSRF)"         403 "403 Forbidden" --data "code=$icode&passphrase=" "$(url /enroll)"
expect "POST /enroll from another site's page: 403"    403 "403 Forbidden" -H "Origin: https://evil.example" \
    --data "code=$icode&passphrase=" "$(url /enroll)"
expect "POST /enroll with Origin: null: 403"            403 "403 Forbidden" -H "Origin: null" \
    --data "code=$icode&passphrase=" "$(url /enroll)"
log_has "log: the cross-site POST, said so" '"POST /enroll HTTP/1\.1" 403 a POST from another site.s page'
expect "a malformed %-escape in the body: 400"          400 "malformed" "${ORIGIN[@]}" \
    --data "code=$icode&passphrase=%zz" "$(url /enroll)"
expect "a form with the code twice: 400"                400 "malformed" "${ORIGIN[@]}" \
    --data "code=$icode&code=$icode" "$(url /enroll)"
expect "legacy=yes (the box sends 1): 400"               400 "malformed" "${ORIGIN[@]}" \
    --data "code=$icode&legacy=yes" "$(url /enroll)"
expect "a body over 4 KiB: 413"                         413 "413 Content Too Large" "${ORIGIN[@]}" \
    --data "code=$icode&passphrase=$(printf 'x%.0s' $(seq 4100))" "$(url /enroll)"
expect_raw "a POST without Content-Length: 411" 411 \
    $'POST /enroll HTTP/1.1\r\nHost: localhost\r\nOrigin: https://localhost\r\n\r\n'
expect_raw "a chunked body: 411" 411 \
    $'POST /enroll HTTP/1.1\r\nHost: localhost\r\nOrigin: https://localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
expect_raw "Sec-Fetch-Site: same-origin stands in for Origin (and a bogus code: 404)" 404 \
    $'POST /enroll HTTP/1.1\r\nHost: localhost\r\nSec-Fetch-Site: same-origin\r\nContent-Length: 7\r\n\r\ncode=00'
expect_raw "Sec-Fetch-Site: cross-site: 403" 403 \
    $'POST /enroll HTTP/1.1\r\nHost: localhost\r\nSec-Fetch-Site: cross-site\r\nContent-Length: 7\r\n\r\ncode=00'
# a body that stops short waits for the deadline (10 s): LONG=1 only
if long; then
    slow_pids=()
    slow_hostile 127.0.1.5 tests/tlsclient --port "$port" --ca "$p2/server_cert.pem" \
        --raw 'POST /enroll HTTP/1.1\r\nHost: localhost\r\nOrigin: https://localhost\r\nContent-Length: 20\r\n\r\ncode=00'
    wait "${slow_pids[@]}"
    slow_checked "a body that stops short of its Content-Length: cut off at the deadline" 127.0.1.5 \
        '"POST /enroll HTTP/1\.1" - reading the body: The operation timed out'
else
    echo "       (LONG=1: a body that stops short of its Content-Length, cut off at the deadline)"
fi

if [ -n "${SERVER_WRAPPER:-}" ]; then
    max_time=120
    p2_timeout=90
    stop_server
    start_server --timeout "$p2_timeout" --certs "$p2" --enroll
    ORIGIN=(-H "Origin: https://localhost:$port")
fi
enroll_post "$work/carol.p12" "${ORIGIN[@]}" --data "code=$icode&passphrase="
if [ "$code" = 200 ] && grep -qi '^Content-Type: application/x-pkcs12' <<<"$body" &&
   grep -qi '^Content-Disposition: attachment; filename="carol.p12"' <<<"$body" &&
   grep -qi '^Cache-Control: no-store' <<<"$body" && grep -qi '^X-Frame-Options: DENY' <<<"$body" &&
   grep -qi "^Content-Security-Policy: .*frame-ancestors 'none'" <<<"$body"; then
    ok "POST /enroll: 200, the bundle as carol.p12 (application/x-pkcs12, no-store, no framing)"
else
    fail "POST /enroll: 200, the bundle" "got $code" "$body"
fi
# bundle_parts P12 PASS STEM: the certificate and key out of a bundle, as
# STEM_cert.pem, STEM_key.pem, and what openssl pkcs12 -info says of it in
# STEM.info; one openssl pkcs12 (each runs the bundle's 600,000 PBKDF2 rounds)
bundle_parts() {
    openssl pkcs12 -in "$1" -passin "pass:$2" -nodes -clcerts -info 2>"$work/$3.info" >"$work/$3.pem"
    openssl x509 -in "$work/$3.pem" -out "$work/$3_cert.pem" 2>/dev/null
    openssl pkey -in "$work/$3.pem" -out "$work/$3_key.pem" 2>/dev/null
    rm -f "$work/$3.pem"
}
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }
bundle_parts "$work/carol.p12" "" carol
if [ -s "$work/carol_cert.pem" ] && [ -s "$work/carol_key.pem" ]; then
    ok "openssl pkcs12 opens it with the empty passphrase: a certificate and a key"
else
    fail "openssl pkcs12 opens the bundle with the empty passphrase" "$(openssl pkcs12 -in "$work/carol.p12" -passin pass: -info -noout 2>&1 | tail -3)"
fi
info=$(cat "$work/carol.info")
if [[ $info == *"PBES2"*"AES-256-CBC"* ]] && [[ $info == *"MAC: sha256"* ]]; then
    ok "  ... encrypted with PBES2/AES-256, MAC HMAC-SHA256"
else
    fail "  ... encrypted with PBES2/AES-256, MAC HMAC-SHA256" "$info"
fi
carol1=$(serial_of "$work/carol_cert.pem")
text=$(openssl x509 -in "$work/carol_cert.pem" -noout -text)
verified=$(openssl verify -CAfile "$p2/server_cert.pem" "$work/carol_cert.pem" 2>&1)
days=$(( ($(date -d "$(openssl x509 -in "$work/carol_cert.pem" -noout -enddate | cut -d= -f2)" +%s) -
          $(date -d "$(openssl x509 -in "$work/carol_cert.pem" -noout -startdate | cut -d= -f2)" +%s)) / 86400 ))
problems=
[[ $verified == *": OK" ]] || problems+=" openssl-verify"
[[ $text == *"Subject: CN = Carol"* ]] || problems+=" subject"
[[ $text == *"CA:FALSE"* ]] || problems+=" CA:FALSE"
[[ $text == *"X509v3 Subject Key Identifier"* ]] || problems+=" SKI"
[[ $text == *"X509v3 Authority Key Identifier"* ]] || problems+=" AKI"
[[ $text == *"TLS Web Client Authentication"* ]] || problems+=" clientAuth"
[[ $text == *"prime256v1"* ]] || problems+=" P-256"
[ "$days" = 365 ] || problems+=" days=$days"
[ "${#carol1}" = 32 ] || problems+=" serial=$carol1"
if [ -z "$problems" ]; then
    ok "the certificate: verifies against server_cert.pem (openssl verify), CN=Carol, ECDSA P-256, clientAuth, CA:FALSE, SKI and AKI, 365 days, serial $carol1"
else
    fail "the certificate as the issue asks" "missing:$problems" "$verified"
fi
kept=$p2/accounts/$account1/$carol1.pem
if [ -f "$kept" ] && cmp -s <(openssl x509 -in "$kept") "$work/carol_cert.pem" &&
   [ "$(cat "$p2/issued/$carol1")" = "$account1" ] &&
   [ "$(mode "$kept") $(mode "$p2/issued") $(mode "$p2/issued/$carol1")" = "644 700 600" ]; then
    ok "recorded under its account: accounts/$account1/$carol1.pem (0644), and issued/$carol1 (0600) names the account"
else
    fail "recorded under its account, and indexed by serial" "$(find "$p2/accounts" "$p2/issued" -printf '%m %p\n' 2>&1)"
fi
keyline=$(sed -n 2p "$work/carol_key.pem")
if [ -n "$keyline" ] && ! grep -rqF "$keyline" "$p2"; then
    ok "the private key is nowhere in the certificate folder"
else
    fail "the private key is nowhere in the certificate folder" "$(grep -rlF "$keyline" "$p2")"
fi
log_has "log: enrolled, with the account and the serial" \
    "\"POST /enroll HTTP/1\\.1\" 200 enrolled account $account1 \"Carol\", serial $carol1\$"
expect "the same code again: 410, used already" 410 "has been used already" "${ORIGIN[@]}" \
    --data "code=$icode&passphrase=" "$(url /enroll)"
log_has "log: the used code, said so" '"POST /enroll HTTP/1\.1" 410 enroll: the invitation was used already$'
CAROL1=(--cert "$work/carol.p12" --cert-type p12)
expect "Carol, with the bundle the server made: welcome" 200 "Hello Carol, your certificate was issued by localhost!" \
    "${CAROL1[@]}" "$(url /authenticate)"
# From here on the same certificate and key as PEM: curl would otherwise run
# the bundle's 600,000 PBKDF2 rounds again at every request (0.35 s each).
CAROL1=(--cert "$work/carol_cert.pem" --key "$work/carol_key.pem")

echo "# Part 2: a second device joins the account from /certificates"
expect "POST /add-device from another site's page: 403" 403 "403 Forbidden" \
    "${CAROL1[@]}" -H "Origin: https://evil.example" --data "" "$(url /add-device)"
expect "GET /add-device: 405, it takes a POST" 405 "405 Method Not Allowed" "${CAROL1[@]}" "$(url /add-device)"
expect "POST /add-device as Carol: a one-time link for her other device" 200 "A link for your other device" \
    "${CAROL1[@]}" "${ORIGIN[@]}" --data "" "$(url /add-device)"
dcode=$(grep -o 'enroll?code=[0-9A-F]\{32\}' <<<"$body" | head -n 1 | cut -d= -f2)
if [[ $body == *"https://localhost:$port/enroll?code=$dcode"* ]] && [ -n "$dcode" ] &&
   [ "$(awk '{print $2}' "$(code_file "$dcode")")" = "$account1" ]; then
    ok "  ... https://localhost:$port/enroll?code=..., an invitation to account $account1"
else
    fail "  ... the link, an invitation to Carol's account" "${body:0:400}"
fi
log_has "log: the device invitation, with the account and the serial" "\"POST /add-device HTTP/1\\.1\" 200 admitted \"CN=Carol\"; account $account1, serial $carol1; a device invitation written\$"
enroll_post "$work/carol2.p12" "${ORIGIN[@]}" --data "code=$dcode&passphrase=s3cret+%26+more&legacy=1"
bundle_parts "$work/carol2.p12" 's3cret & more' carol2
info=$(cat "$work/carol2.info")
if [ "$code" = 200 ] && [[ $info == *"pbeWithSHA1And3-KeyTripleDES-CBC"* ]] && [[ $info == *"MAC: sha1"* ]] &&
   [[ $info != *"PBES2"* ]]; then
    ok "the second device, legacy=1 and a passphrase: 3DES and an HMAC-SHA1 MAC, opened with 's3cret & more'"
else
    fail "the second device's legacy bundle" "got $code" "$info"
fi
carol2=$(serial_of "$work/carol2_cert.pem")
log_has "log: enrolled into the same account" "200 enrolled account $account1 \"Carol\", serial $carol2 \\(legacy bundle\\)\$"
CAROL2=(--cert "$work/carol2.p12:s3cret & more" --cert-type p12)
expect "Carol's second device: welcome" 200 "Hello Carol" "${CAROL2[@]}" "$(url /authenticate)"
CAROL2=(--cert "$work/carol2_cert.pem" --key "$work/carol2_key.pem")
expect "GET /certificates from the second device: both of the account's" 200 "The certificates of Carol" \
    "${CAROL2[@]}" "$(url /certificates)"
if [[ $body == *"<td>$carol1</td>"*"<td>valid</td>"* ]] && [[ $body == *"<td>$carol2</td>"*"<td>valid (this device)</td>"* ]] &&
   [[ $body == *"Account $account1"* ]]; then
    ok "  ... $carol1 and $carol2 (this device), both valid, each with a Revoke button"
else
    fail "  ... both listed and valid" "${body:0:700}"
fi
log_has "log: the list, with the account and the visitor's serial" \
    "\"GET /certificates HTTP/1\\.1\" 200 admitted \"CN=Carol\"; account $account1, serial $carol2; its certificates listed\$"

echo "# Part 2: a name decides nothing: another Carol, a second CA's Carol, part 1's Alice"
icode=$(invite Carol)
account2=$(sed -n 's/^server: invited "Carol" to a new account, \([0-9A-F]\{16\}\),.*/\1/p' "$work/invite.err")
if [ -n "$account2" ] && [ "$account2" != "$account1" ] &&
   grep -q '^server: 1 other account is named "Carol" already; this is a new one' "$work/invite.err"; then
    ok "--invite Carol again: a new account, $account2, and it says the name is in use"
else
    fail "--invite Carol again: a new account, said so" "$(cat "$work/invite.err")"
fi
enroll_post "$work/carolb.p12" "${ORIGIN[@]}" --data "code=$icode&passphrase="
bundle_parts "$work/carolb.p12" "" carolb
carolb=$(serial_of "$work/carolb_cert.pem")
CAROLB=(--cert "$work/carolb_cert.pem" --key "$work/carolb_key.pem")
expect "the other Carol: welcome as Carol" 200 "Hello Carol" "${CAROLB[@]}" "$(url /authenticate)"
expect "the other Carol's list: only her own" 200 "<td>$carolb</td>" "${CAROLB[@]}" "$(url /certificates)"
[[ $body != *"$carol1"* && $body != *"$carol2"* ]] || fail "the other Carol sees none of the first Carol's" "${body:0:500}"
expect "the first Carol's list: none of the other's" 200 "<td>$carol1</td>" "${CAROL1[@]}" "$(url /certificates)"
[[ $body != *"$carolb"* ]] || fail "the first Carol sees none of the other's" "${body:0:500}"
crl_before=$(sha256sum <"$p2/crl.pem")
expect "the other Carol may not revoke the first Carol's laptop: 403" 403 "only your own account's certificates" \
    "${CAROLB[@]}" "${ORIGIN[@]}" --data "serial=$carol1" "$(url /revoke)"
log_has "  ... the log names the account, the visitor's serial and the one asked for" "\"POST /revoke HTTP/1\\.1\" 403 admitted \"CN=Carol\"; account $account2, serial $carolb; revoke $carol1: not one of the account's certificates\$"
ALICE2=(--cert "$p2/alice.p12" --cert-type p12)
expect "part 1's Alice (made by gencerts.sh) has no account: /certificates says so" 403 "belongs to no account" \
    "${ALICE2[@]}" "$(url /certificates)"
log_has "  ... in the log too" '"GET /certificates HTTP/1\.1" 403 admitted "CN=Alice"; serial 01 belongs to no account$'
expect "Alice may not revoke Carol's certificate: 403" 403 "belongs to no account" \
    "${ALICE2[@]}" "${ORIGIN[@]}" --data "serial=$carol1" "$(url /revoke)"
expect "Alice may not ask for a device link: 403"        403 "belongs to no account" \
    "${ALICE2[@]}" "${ORIGIN[@]}" --data "" "$(url /add-device)"
expect "a revocation from another site's page: 403"  403 "403 Forbidden" \
    "${CAROL2[@]}" -H "Origin: https://evil.example" --data "serial=$carol1" "$(url /revoke)"
expect "a serial that is not one: 400"                 400 "no serial" \
    "${CAROL2[@]}" "${ORIGIN[@]}" --data "serial=../../server_key" "$(url /revoke)"
expect "GET /certificates without a certificate: 401" 401 "$NEED_CERT" "$(url /certificates)"
expect "GET /certificates as Bob: 403"                403 "Sorry Bob" "${BOB_P12[@]/$certs/$p2}" "$(url /certificates)"
# A DN made to overflow a page: trusted (our CA signed it), no CN, 256 '&'
# that escape to 1,280 bytes of HTML (the old /certificates wrote past its buffer)
amps=$(printf '&%.0s' $(seq 64))
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/longdn_key.pem" \
    -subj "/O=$amps/OU=$amps/OU=$amps/OU=$amps" -out "$work/longdn.csr" 2>/dev/null
openssl x509 -req -in "$work/longdn.csr" -CA "$p2/server_cert.pem" -CAkey "$p2/server_key.pem" \
    -set_serial 0x4C4F4E47 -days 1 -out "$work/longdn_cert.pem" 2>/dev/null
LONGDN=(--cert "$work/longdn_cert.pem" --key "$work/longdn_key.pem")
expect "a trusted certificate with a 1,280-byte DN and no CN: /certificates, 403 no account" 403 "belongs to no account" \
    "${LONGDN[@]}" "$(url /certificates)"
expect "  ... /authenticate greets the whole DN, escaped" 200 "Hello OU=&amp;&amp;" "${LONGDN[@]}" "$(url /authenticate)"
if [ "$(sha256sum <"$p2/crl.pem")" = "$crl_before" ]; then
    ok "  ... after those, crl.pem is as it was"
else
    fail "  ... after those, crl.pem is as it was" "it changed"
fi

echo "# Part 2: revocation from the web"
# the laptop asks for links before it is lost: each device holds one open
# link at most, and a link dies with the device that asked for it
expect "the laptop asks for a device link" 200 "A link for your other device" \
    "${CAROL1[@]}" "${ORIGIN[@]}" --data "" "$(url /add-device)"
link2=$(grep -o 'enroll?code=[0-9A-F]\{32\}' <<<"$body" | head -n 1 | cut -d= -f2)
# eight at once from the laptop: still one open link
link_pids=()
for _ in $(seq 8); do
    curl -s --max-time "$max_time" --cacert "$p2/server_cert.pem" -o /dev/null "${CAROL1[@]}" "${ORIGIN[@]}" \
        --data "" "$(url /add-device)" &
    link_pids+=($!)
done
wait "${link_pids[@]}"
open_links=$(grep -l " $carol1\$" "$p2"/invites/* 2>/dev/null | grep -vc '\.used$')
if [ "$open_links" = 1 ]; then
    ok "  ... eight more at once from the laptop: still one open link"
else
    fail "  ... eight at once: still one open link" "$open_links open links name the laptop"
fi
expect "  ... and one more" 200 "A link for your other device" \
    "${CAROL1[@]}" "${ORIGIN[@]}" --data "" "$(url /add-device)"
link3=$(grep -o 'enroll?code=[0-9A-F]\{32\}' <<<"$body" | head -n 1 | cut -d= -f2)
expect "  ... which withdrew the first: 404" 404 "not a valid invitation code" "$(url "/enroll?code=$link2")"
expect "  ... the last still opens, for now" 200 "Welcome, Carol" "$(url "/enroll?code=$link3")"
expect "Carol revokes her lost laptop's certificate from her other device" 200 "Certificate $carol1 is revoked" \
    "${CAROL2[@]}" "${ORIGIN[@]}" --data "serial=${carol1,,}" "$(url /revoke)"
log_has "log: revoked, with the account and both serials" "\"POST /revoke HTTP/1\\.1\" 200 admitted \"CN=Carol\"; account $account1, serial $carol2; revoked $carol1\$"
expect "the next connection with the laptop's: 403, revoked" 403 "it was revoked by its issuer" \
    "${CAROL1[@]}" "$(url /authenticate)"
expect "  ... her other device: still welcome" 200 "Hello Carol" "${CAROL2[@]}" "$(url /authenticate)"
expect "  ... the link the laptop asked for no longer works: 410" 410 "made by a device whose certificate has since been revoked" \
    "$(url "/enroll?code=$link3")"
expect "  ... nor can it be posted: 410" 410 "has since been revoked" "${ORIGIN[@]}" \
    --data "code=$link3&passphrase=" "$(url /enroll)"
log_has "  ... the log says why" '"POST /enroll HTTP/1\.1" 410 enroll: the device that asked for the link is revoked or expired$'
expect "  ... and the list says so" 200 "<td>$carol1</td><td>" "${CAROL2[@]}" "$(url /certificates)"
[[ $body == *"<td>$carol1</td><td>"*"</td><td>revoked</td>"* ]] || fail "the list shows $carol1 revoked" "${body:0:500}"
crl_before=$(sha256sum <"$p2/crl.pem")
expect "revoking it again: 200, revoked already" 200 "$carol1 was revoked already" \
    "${CAROL2[@]}" "${ORIGIN[@]}" --data "serial=$carol1" "$(url /revoke)"
if [ "$(sha256sum <"$p2/crl.pem")" = "$crl_before" ]; then
    ok "  ... and crl.pem is not written again"
else
    fail "  ... and crl.pem is not written again" "it changed"
fi
expect "Alice, throughout: welcome" 200 "$HELLO" "${ALICE2[@]}" "$(url /authenticate)"
crl_text=$(openssl crl -in "$p2/crl.pem" -CAfile "$p2/server_cert.pem" -noout -text 2>&1)
next=$(openssl crl -in "$p2/crl.pem" -noout -nextupdate | cut -d= -f2)
if [[ $crl_text == "verify OK"* ]] && [[ $crl_text == *"Serial Number: 1000"*"Key Compromise"* ]] &&
   [[ $crl_text == *"Serial Number: $carol1"* ]] && [ "$(date -d "$next" +%s)" -gt $(( $(date +%s) + 300 * 86400 )) ] &&
   [ "$(mode "$p2/crl.pem")" = 644 ]; then
    ok "crl.pem: verifies (openssl crl -CAfile), keeps part 1's Carol (1000) with her reason code, lists $carol1, nextUpdate $next, 0644"
else
    fail "crl.pem as the issue asks" "${crl_text:0:600}" "mode $(mode "$p2/crl.pem")"
fi

echo "# Part 2: a connection opened before a revocation, its certificate sent after it"
# late_hello.py waits on a fifo for its go: no sleep, no race
mkfifo "$work/late.in"
python3 tests/late_hello.py "$port" "$p2/server_cert.pem" "$work/carolb_cert.pem" "$work/carolb_key.pem" \
    /authenticate <"$work/late.in" >"$work/late.out" 2>&1 &
late_pid=$!
exec 7>"$work/late.in"
wait_for_line "$work/late.out" connected
said=$(head -n 1 "$work/late.out")
"$SERVER" --certs "$p2" --revoke "$carolb" >"$work/revoke.out" 2>&1
echo go >&7
exec 7>&-
wait "$late_pid"
answer=$(tail -n +2 "$work/late.out")
if [ "$said" = connected ] && [[ $answer == "HTTP/1.1 403 "* ]] && [[ $answer == *"it was revoked by its issuer"* ]] &&
   grep -q "^server: $carolb was issued to account $account2, \"Carol\"$" "$work/revoke.out"; then
    ok "connected, then revoked (--revoke, which names the account), then the handshake: 403, revoked"
else
    fail "connected, then revoked, then the handshake: 403" "client: $said ${answer:0:300}" "$(cat "$work/revoke.out")"
fi

echo "# Part 2: a revocation is never lost, though an older crl.pem is put back before the server looks"
# The server loaded crl.pem at the last connection.  ./server --revoke signs
# a newer one (and keeps its copy in crl.pem.lock); then, before any
# connection, an old backup of crl.pem is put back.  The server refuses the
# backup (it goes back), and must not keep the set it had either: that one
# predates the revocation.
expect "the long DN's certificate (our CA's, no account's), before: welcome" 200 "Hello " \
    "${LONGDN[@]}" "$(url /authenticate)"
cp "$p2/crl.pem" "$work/crl-backup.pem"
"$SERVER" --certs "$p2" --revoke 4C4F4E47 >"$work/revoke2.out" 2>&1   # the long DN's (no account's)
cp "$work/crl-backup.pem" "$p2/crl.pem.new" && mv "$p2/crl.pem.new" "$p2/crl.pem"
expect "revoked, then an older crl.pem put back before the next connection: 403, revoked" 403 \
    "it was revoked by its issuer" "${LONGDN[@]}" "$(url /authenticate)"
log_has "  ... the log: crl.pem goes back, and the CRL signed here last takes its place" \
    "^server: $p2/crl\\.pem changed, but .*goes back.*; the CRL signed here last \\($p2/crl\\.pem\\.lock\\) is newer"
expect "  ... Alice, whom nobody revoked: welcome" 200 "$HELLO" "${ALICE2[@]}" "$(url /authenticate)"
# the newest back in its place (its copy), for what follows
cp "$p2/crl.pem.lock" "$p2/crl.pem.new" && mv "$p2/crl.pem.new" "$p2/crl.pem"
expect "  ... the newest crl.pem back: still 403" 403 "it was revoked by its issuer" "${LONGDN[@]}" "$(url /authenticate)"
# our_cert STEM SERIAL: a certificate our CA signs by hand (no account's), ECDSA
our_cert() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/$1_key.pem" \
        -subj "/CN=$1" 2>/dev/null |
        openssl x509 -req -CA "$p2/server_cert.pem" -CAkey "$p2/server_key.pem" -set_serial "0x$2" \
            -days 1 -out "$work/$1_cert.pem" 2>/dev/null
}
our_cert dee 5A5A01
our_cert eff 5A5A02
DEE=(--cert "$work/dee_cert.pem" --key "$work/dee_key.pem")
EFF=(--cert "$work/eff_cert.pem" --key "$work/eff_key.pem")
expect "two more of our CA's certificates, before: welcome" 200 "Hello dee" "${DEE[@]}" "$(url /authenticate)"
# a hard-linked backup put back by a rename keeps its inode, size and mtime
ln "$p2/crl.pem" "$work/crl-linked.pem"
"$SERVER" --certs "$p2" --revoke 5A5A01 >"$work/revoke3.out" 2>&1
mv "$work/crl-linked.pem" "$p2/crl.pem"
expect "revoked, then a hard-linked backup of crl.pem put back (same inode, size, mtime): 403" 403 \
    "it was revoked by its issuer" "${DEE[@]}" "$(url /authenticate)"
# crl.pem.lock put back from the same old backup must not un-revoke either
cp "$p2/crl.pem.lock" "$work/lock-newest.pem"
cp "$work/crl-backup.pem" "$p2/crl.pem.lock"
cp "$work/crl-backup.pem" "$p2/crl.pem.new" && mv "$p2/crl.pem.new" "$p2/crl.pem"
expect "an old crl.pem and an old crl.pem.lock put back: still 403" 403 "it was revoked by its issuer" \
    "${DEE[@]}" "$(url /authenticate)"
expect "  ... and the long DN's: still 403" 403 "it was revoked by its issuer" "${LONGDN[@]}" "$(url /authenticate)"
expect "  ... and one nobody revoked: welcome" 200 "Hello eff" "${EFF[@]}" "$(url /authenticate)"
# the newest back, for what follows
cp "$work/lock-newest.pem" "$p2/crl.pem.lock"
cp "$work/lock-newest.pem" "$p2/crl.pem.new" && mv "$p2/crl.pem.new" "$p2/crl.pem"
expect "  ... the newest back: still 403" 403 "it was revoked by its issuer" "${DEE[@]}" "$(url /authenticate)"
# the copy can't be written (a folder in its place): --revoke says so
mv "$p2/crl.pem.lock" "$work/lock-aside.pem"
mkdir "$p2/crl.pem.lock"
"$SERVER" --certs "$p2" --revoke 5A5A02 >"$work/revoke4.out" 2>&1
status=$?
rmdir "$p2/crl.pem.lock"
mv "$work/lock-aside.pem" "$p2/crl.pem.lock"
if [ "$status" = 0 ] && grep -q "^server: $p2/crl.pem is signed anew, but its copy is not kept: cannot write $p2/crl.pem.lock: Is a directory; until it is, an older crl.pem put back would undo this revocation\$" "$work/revoke4.out"; then
    ok "--revoke with crl.pem.lock unwritable: revoked, and it says the copy is not kept"
else
    fail "--revoke with crl.pem.lock unwritable: says the copy is not kept" "exit $status: $(cat "$work/revoke4.out")"
fi
expect "  ... and in force at the next connection: 403" 403 "it was revoked by its issuer" "${EFF[@]}" "$(url /authenticate)"


if long; then
    # shellcheck source=tests/part2_long.sh
    . tests/part2_long.sh
else
    echo "       (LONG=1, tests/part2_long.sh: serials with the high bit set; revocation that fails closed"
    echo "       when crl.pem is moved, broken or locked; a second trusted CA; a restart and a stale CRL;"
    echo "       a read-only and a full disk)"
    stop_server
fi
