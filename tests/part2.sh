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
    for _ in $(seq 600); do
        grep -qx "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
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
for cp in 00AD 034F 0600 115F 180E 200B 2060 2064 2800 3164 FE0F FEFF FFA0 FFF9 110BD E0041; do
    refuses "--invite: U+$cp before Alice (drawn as nothing, or blank)" 2 "$NO_HIDING" \
        "$SERVER" --certs "$p2" --invite "$(uchar "$cp")Alice"
done
for cp in 00A0 2003 3000; do
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
start_server --timeout 2 --certs "$p2" --enroll
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
hostile "a body that stops short of its Content-Length: cut off at the deadline" \
    '"POST /enroll HTTP/1\.1" - reading the body: The operation timed out' \
    tests/tlsclient --port "$port" --ca "$p2/server_cert.pem" --raw 'POST /enroll HTTP/1.1\r\nHost: localhost\r\nOrigin: https://localhost\r\nContent-Length: 20\r\n\r\ncode=00'

# Making a bundle runs PBKDF2 three times (two bags and the MAC) with GnuTLS's
# 600,000 iterations: 0.35 s here, and many times that under valgrind, where
# the server gets a deadline and curl a limit to match.
p2_timeout=2
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

echo "# Part 2: serials with the high bit set (a DER INTEGER is positive)"
# openssl x509 -set_serial 0x80 writes the INTEGER 00 80, and prints it as 80
for s in 80 FF01; do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/s${s}_key.pem" \
        -subj "/CN=Serial $s" -out "$work/s$s.csr" 2>/dev/null
    openssl x509 -req -in "$work/s$s.csr" -CA "$p2/server_cert.pem" -CAkey "$p2/server_key.pem" \
        -set_serial "0x$s" -days 1 -out "$work/s${s}_cert.pem" 2>/dev/null
done
if [ "$(serial_of "$work/s80_cert.pem") $(serial_of "$work/sFF01_cert.pem")" = "80 FF01" ]; then
    ok "openssl prints the serials 80 and FF01"
else
    fail "openssl prints the serials 80 and FF01" "$(serial_of "$work/s80_cert.pem") $(serial_of "$work/sFF01_cert.pem")"
fi
expect "serial 80, before: welcome" 200 "Hello Serial 80" --cert "$work/s80_cert.pem" --key "$work/s80_key.pem" "$(url /authenticate)"
if out=$("$SERVER" --certs "$p2" --revoke 80 2>&1) && [[ $out == *"80 is now revoked"* ]] &&
   [[ $out == *"80 is no certificate of part 2's accounts"* ]]; then
    ok "./server --revoke 80: exit 0"
else
    fail "./server --revoke 80: exit 0" "$out"
fi
expect "  ... and it is refused: 403, revoked" 403 "it was revoked by its issuer" \
    --cert "$work/s80_cert.pem" --key "$work/s80_key.pem" "$(url /authenticate)"
crl_text=$(openssl crl -in "$p2/crl.pem" -noout -text)
if grep -q '^ *Serial Number: 80$' <<<"$crl_text" && ! grep -q 'Serial Number: -' <<<"$crl_text"; then
    ok "  ... openssl reads the CRL's entry as 80, not -80"
else
    fail "  ... openssl reads the CRL's entry as 80" "$(grep 'Serial Number' <<<"$crl_text")"
fi
crl_before=$(sha256sum <"$p2/crl.pem")
if out=$("$SERVER" --certs "$p2" --revoke 0080 2>&1) && [[ $out == *"80 was revoked already; $p2/crl.pem is unchanged"* ]] &&
   [ "$(sha256sum <"$p2/crl.pem")" = "$crl_before" ]; then
    ok "./server --revoke 0080: the same serial, revoked already; crl.pem not written"
else
    fail "./server --revoke 0080: revoked already, crl.pem not written" "$out"
fi
"$SERVER" --certs "$p2" --revoke ff01 >"$work/revoke.out" 2>&1 || fail "./server --revoke ff01" "$(cat "$work/revoke.out")"
expect "./server --revoke ff01: the FF01 certificate is refused" 403 "it was revoked by its issuer" \
    --cert "$work/sFF01_cert.pem" --key "$work/sFF01_key.pem" "$(url /authenticate)"

# a negative serial (openssl -set_serial -0x80): no serial RFC 5280 allows,
# so the page must not name one that would revoke another certificate
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/neg_key.pem" \
    -subj "/CN=Negative" -out "$work/neg.csr" 2>/dev/null
openssl x509 -req -in "$work/neg.csr" -CA "$p2/server_cert.pem" -CAkey "$p2/server_key.pem" \
    -set_serial -0x80 -days 1 -out "$work/neg_cert.pem" 2>/dev/null
expect "a negative serial (-80): /certificates names no serial for it" 403 "./server --revoke SERIAL" \
    --cert "$work/neg_cert.pem" --key "$work/neg_key.pem" "$(url /certificates)"
log_has "  ... nor does the log" '"GET /certificates HTTP/1\.1" 403 admitted "CN=Negative"; serial \? belongs to no account$'
chmod 644 "$p2/crl.pem.lock"
( umask 377; "$SERVER" --certs "$p2" --revoke 7E57 >"$work/revoke.out" 2>&1 )
if [ "$(mode "$p2/crl.pem.lock")" = 600 ] && grep -q '7E57 is now revoked' "$work/revoke.out"; then
    ok "--revoke under umask 377 with crl.pem.lock at 0644: revoked, and crl.pem.lock (the last CRL signed here) is 0600"
else
    fail "--revoke: the lock file gets 0600" "mode $(mode "$p2/crl.pem.lock")" "$(cat "$work/revoke.out")"
fi

echo "# Part 2: revocation fails closed when crl.pem is moved, broken or locked"
entries() { openssl crl -in "$1" -noout -text | grep -c 'Serial Number:'; }
n_before=$(entries "$p2/crl.pem")
number_before=$(openssl crl -in "$p2/crl.pem" -noout -crlnumber | sed 's/.*=0x//')
mv "$p2/crl.pem" "$work/crl.moved"
expect "crl.pem moved away: the revoked laptop is still refused" 403 "it was revoked by its issuer" \
    "${CAROL1[@]}" "$(url /authenticate)"
for _ in 1 2 3; do fetch "${CAROL1[@]}" "$(url /authenticate)"; done
gone_lines=$(grep -c "^server: $p2/crl.pem changed, but cannot read the certificate revocation list $p2/crl.pem: No such file or directory" "$log")
if [ "$gone_lines" = 1 ] && [ "$code" = 403 ]; then
    ok "  ... said once in the log, not at every connection: the credentials loaded before stay in force"
else
    fail "  ... said once in the log" "$gone_lines lines; last answer $code" "$(grep '^server:' "$log" | tail -n 3)"
fi
expect "a revocation from the web meanwhile: 503, nothing revoked" 503 "nothing was revoked" \
    "${CAROL2[@]}" "${ORIGIN[@]}" --data "serial=$carol2" "$(url /revoke)"
log_has "  ... the log says why" "\"POST /revoke HTTP/1\\.1\" 503 admitted \"CN=Carol\"; account $account1, serial $carol2; revoke $carol2 failed: cannot read $p2/crl\\.pem: No such file or directory\$"
refuses "./server --revoke meanwhile: exit 1, nothing revoked" 1 "cannot read $p2/crl.pem: No such file or directory; nothing was revoked" \
    "$SERVER" --certs "$p2" --revoke "$carol2"
if [ ! -e "$p2/crl.pem" ]; then
    ok "  ... and no new crl.pem was started"
else
    fail "  ... and no new crl.pem was started" "$(openssl crl -in "$p2/crl.pem" -noout -text | head -n 12)"
fi
printf 'garbage\n' >"$p2/crl.pem"
expect "garbage in crl.pem: the laptop still refused" 403 "it was revoked by its issuer" "${CAROL1[@]}" "$(url /authenticate)"
expect "  ... Alice still welcome" 200 "$HELLO" "${ALICE2[@]}" "$(url /authenticate)"
log_has "  ... said once: no usable CRL, the credentials loaded before stay" \
    "^server: $p2/crl.pem changed, but no usable CRL in $p2/crl.pem: .*: the credentials loaded before stay in force\$"
refuses "./server --revoke with garbage in crl.pem: exit 1" 1 "holds no CRL signed by $p2/server_cert.pem; nothing was revoked" \
    "$SERVER" --certs "$p2" --revoke "$carol2"
cp "$work/crl.moved" "$p2/crl.new" && mv "$p2/crl.new" "$p2/crl.pem"
expect "crl.pem put back: the laptop still refused" 403 "it was revoked by its issuer" "${CAROL1[@]}" "$(url /authenticate)"
n_after=$(entries "$p2/crl.pem")
if [ "$n_after" = "$n_before" ]; then
    ok "  ... no revocation was lost: $n_after entries, as before"
else
    fail "  ... no revocation was lost" "$n_before entries before, $n_after now"
fi
# an older CRL of ours put back (gencerts.sh's first one): it would
# un-revoke the laptop, and a revocation built on it would lose entries
cp "$p2/crl.pem" "$work/crl.newest"
cp "$certs/crl.pem" "$p2/crl.new" && mv "$p2/crl.new" "$p2/crl.pem"
expect "an older crl.pem put back: the laptop still refused" 403 "it was revoked by its issuer" "${CAROL1[@]}" "$(url /authenticate)"
log_has "  ... said once: it goes back, the credentials loaded before stay" \
    "^server: $p2/crl.pem changed, but $p2/crl.pem goes back: its CRL of \"O=Client Certificate Demo,CN=localhost\" is older than one in force or signed here; put the newest back: the credentials loaded before stay in force\$"
expect "  ... a revocation from the web meanwhile: 503, nothing revoked" 503 "nothing was revoked" \
    "${CAROL2[@]}" "${ORIGIN[@]}" --data "serial=$carol2" "$(url /revoke)"
refuses "  ... ./server --revoke meanwhile: exit 1, it is older than the last one signed here" 1 \
    "$p2/crl.pem goes back: its CRL of \"O=Client Certificate Demo,CN=localhost\" is older than one in force or signed here; put the newest back; nothing was revoked" \
    "$SERVER" --certs "$p2" --revoke "$carol2"
if [ "$(entries "$p2/crl.pem")" = "$(entries "$certs/crl.pem")" ]; then
    ok "  ... and the old list was not signed anew"
else
    fail "  ... and the old list was not signed anew" "$(entries "$p2/crl.pem") entries"
fi
cp "$work/crl.newest" "$p2/crl.new" && mv "$p2/crl.new" "$p2/crl.pem"
# openssl ca -gencrl, as part 1 taught, with a higher number: its index knows
# nothing of the revocations signed here, so its CRL drops them
echo 2000 >"$p2/ca/crlnumber"
(cd "$p2" && openssl ca -config ca/ca.cnf -gencrl -out crl.new 2>/dev/null && mv crl.new crl.pem)
expect "openssl ca -gencrl over crl.pem (a higher number, fewer entries): the laptop still refused" 403 \
    "it was revoked by its issuer" "${CAROL1[@]}" "$(url /authenticate)"
log_has "  ... not loaded: it drops an entry in force" \
    "^server: $p2/crl.pem changed, but $p2/crl.pem goes back: its CRL of \"O=Client Certificate Demo,CN=localhost\" drops an entry of one in force or signed here; put the newest back: the credentials loaded before stay in force\$"
expect "  ... and a revocation from the web is not signed on top of it: 503" 503 "nothing was revoked" \
    "${CAROL2[@]}" "${ORIGIN[@]}" --data "serial=$carol2" "$(url /revoke)"
log_has "  ... the log says why" "revoke $carol2 failed: $p2/crl\\.pem goes back: its CRL of .* drops an entry of one in force or signed here; put the newest back\$"
refuses "  ... nor from the command line, whose lock file keeps the last CRL signed here: exit 1" 1 \
    "$p2/crl.pem goes back: its CRL of \"O=Client Certificate Demo,CN=localhost\" drops an entry of one in force or signed here" \
    "$SERVER" --certs "$p2" --revoke "$carol2"
cp "$work/crl.newest" "$p2/crl.new" && mv "$p2/crl.new" "$p2/crl.pem"
# a FIFO where crl.pem was: nothing may hang on it
mv "$p2/crl.pem" "$work/crl.kept"
mkfifo "$p2/crl.pem"
expect "a FIFO at crl.pem: the server still answers, the laptop still refused" 403 "it was revoked by its issuer" \
    "${CAROL1[@]}" "$(url /authenticate)"
log_has "  ... the FIFO is no file" "^server: $p2/crl.pem changed, but cannot read the certificate revocation list $p2/crl.pem: not a file: the credentials loaded before stay in force\$"
rm "$p2/crl.pem"
mv "$work/crl.kept" "$p2/crl.pem"
# the lock held by someone else past the connection's deadline: the page
# gives up within the deadline, and the lock is not left held
# flock holds the lock until told to let go, through a fifo: no sleep, no race
mkfifo "$work/hold.in"
flock "$p2" -c 'echo held; read -r x' <"$work/hold.in" >"$work/hold.out" &
hold_pid=$!
exec 8>"$work/hold.in"
wait_for_line "$work/hold.out" held
held=$(cat "$work/hold.out")
t0=$(date +%s%N)
expect "crl.pem's folder locked by someone else: 503 within a second, nothing revoked" 503 "nothing was revoked" \
    "${CAROL2[@]}" "${ORIGIN[@]}" --data "serial=$carol2" "$(url /revoke)"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
log_has "  ... the log says the lock could not be had" "revoke $carol2 failed: cannot lock the folder of $p2/crl\\.pem: Connection timed out\$"
echo >&8
exec 8>&-
wait "$hold_pid"
[ "$held" = held ] || fail "flock held the lock" "got: $held"
echo "       (answered after $ms ms; a page waits a second at most for the lock)"
expect "the lock free again: the revocation goes through" 200 "Certificate $carol2 is revoked" \
    "${CAROL2[@]}" "${ORIGIN[@]}" --data "serial=$carol2" "$(url /revoke)"
number_after=$(openssl crl -in "$p2/crl.pem" -noout -crlnumber | sed 's/.*=0x//')
if [ $((16#$number_after)) -gt $((16#$number_before)) ] && [ "$(entries "$p2/crl.pem")" = $((n_before + 1)) ]; then
    ok "  ... one entry more, the CRL number went up ($number_before -> $number_after)"
else
    fail "  ... one entry more, the CRL number up" "$number_before -> $number_after, $(entries "$p2/crl.pem") entries"
fi

echo "# Part 2: a second trusted CA, its own Carol and its own CRL in crl.pem"
# Mallory's CA (gencerts.sh) becomes a CA we trust, with a CRL of its own
# that revokes one of its certificates; it signs a "CN=Carol" too.
ca2=$work/ca2
mkdir -p "$ca2/newcerts"
: >"$ca2/index.txt"
echo 1000 >"$ca2/crlnumber"
sed -e "s|^certificate .*|certificate = $p2/mallory_ca_cert.pem|" -e "s|^private_key .*|private_key = $p2/mallory_ca_key.pem|" \
    -e "s|^database .*|database = $ca2/index.txt|" -e "s|^new_certs_dir .*|new_certs_dir = $ca2/newcerts|" \
    -e "s|^serial .*|serial = $ca2/serial|" -e "s|^crlnumber .*|crlnumber = $ca2/crlnumber|" \
    "$p2/ca/ca.cnf" >"$ca2/ca.cnf"
for who in carol2ca gone2ca; do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$ca2/${who}_key.pem" \
        -subj "/CN=$([ "$who" = carol2ca ] && echo Carol || echo Gone)" -out "$ca2/$who.csr" 2>/dev/null
    openssl x509 -req -in "$ca2/$who.csr" -CA "$p2/mallory_ca_cert.pem" -CAkey "$p2/mallory_ca_key.pem" \
        -set_serial "0x$([ "$who" = carol2ca ] && echo 0C0C || echo 0D0D)" -days 30 -out "$ca2/${who}_cert.pem" 2>/dev/null
done
(openssl ca -config "$ca2/ca.cnf" -revoke "$ca2/gone2ca_cert.pem" &&
 openssl ca -config "$ca2/ca.cnf" -gencrl -out "$ca2/crl.pem") >/dev/null 2>&1 || fail "openssl ca: the second CA's CRL"
cat "$p2/server_cert.pem" "$p2/mallory_ca_cert.pem" >"$p2/two_cas.pem"
cat "$p2/crl.pem" "$ca2/crl.pem" >"$p2/crl.new" && mv "$p2/crl.new" "$p2/crl.pem"
stop_server
start_server --timeout "$p2_timeout" --certs "$p2" --enroll --ca "$p2/two_cas.pem"
ORIGIN=(-H "Origin: https://localhost:$port")
CAROL2CA=(--cert "$ca2/carol2ca_cert.pem" --key "$ca2/carol2ca_key.pem")
expect "the second CA's Carol: trusted, welcome" 200 "Hello Carol" "${CAROL2CA[@]}" "$(url /authenticate)"
expect "  ... but she has no account here" 403 "belongs to no account" "${CAROL2CA[@]}" "$(url /certificates)"
expect "  ... and may not revoke ours" 403 "belongs to no account" \
    "${CAROL2CA[@]}" "${ORIGIN[@]}" --data "serial=$carolb" "$(url /revoke)"
expect "the second CA's revoked certificate: refused" 403 "it was revoked by its issuer" \
    --cert "$ca2/gone2ca_cert.pem" --key "$ca2/gone2ca_key.pem" "$(url /authenticate)"
ca2_block_before=$(sed -n '/BEGIN X509 CRL/,/END X509 CRL/p' "$ca2/crl.pem" | sha256sum)
"$SERVER" --certs "$p2" --revoke 0D0E >"$work/revoke.out" 2>&1
crl_blocks=$(grep -c 'BEGIN X509 CRL' "$p2/crl.pem")
ours_ok=$(openssl crl -in "$p2/crl.pem" -CAfile "$p2/server_cert.pem" -noout 2>&1)
theirs=$(awk '/BEGIN X509 CRL/{n++} n==2' "$p2/crl.pem")
theirs_ok=$(openssl crl -CAfile "$p2/mallory_ca_cert.pem" -noout <<<"$theirs" 2>&1)
if [ "$crl_blocks" = 2 ] && [ "$ours_ok" = "verify OK" ] && [ "$theirs_ok" = "verify OK" ] &&
   [ "$(sha256sum <<<"$theirs")" = "$ca2_block_before" ] &&
   openssl crl -in "$p2/crl.pem" -noout -text | grep -q 'Serial Number: 0D0E'; then
    ok "./server --revoke 0D0E with two CRLs in crl.pem: ours signed anew, the second CA's kept byte for byte"
else
    fail "two CRLs in crl.pem: ours signed anew, the other kept" "blocks $crl_blocks; ours: $ours_ok; theirs: $theirs_ok" "$(cat "$work/revoke.out")"
fi
expect "  ... and the second CA's revoked certificate is still refused" 403 "it was revoked by its issuer" \
    --cert "$ca2/gone2ca_cert.pem" --key "$ca2/gone2ca_key.pem" "$(url /authenticate)"

# the second CA's CRL alone over crl.pem: ours must not go with it
cp "$p2/crl.pem" "$work/crl.both"
cp "$ca2/crl.pem" "$p2/crl.new" && mv "$p2/crl.new" "$p2/crl.pem"
expect "only the second CA's CRL left in crl.pem: our revoked laptop still refused" 403 "it was revoked by its issuer" \
    "${CAROL1[@]}" "$(url /authenticate)"
log_has "  ... the file is not loaded: it holds no CRL of ours" \
    "^server: $p2/crl.pem changed, but $p2/crl.pem goes back: it holds no CRL of \"O=Client Certificate Demo,CN=localhost\", which was in force or signed here; put the newest back: the credentials loaded before stay in force\$"
stop_server
refuses "  ... and a restart with it is refused" 1 "$p2/crl.pem goes back: it holds no CRL of \"O=Client Certificate Demo,CN=localhost\"" \
    timeout 10 "$SERVER" --certs "$p2" --port 0 --ca "$p2/two_cas.pem"
cp "$work/crl.both" "$p2/crl.new" && mv "$p2/crl.new" "$p2/crl.pem"

echo "# Part 2: a restart"
stop_server
start_server --timeout "$p2_timeout" --certs "$p2" --enroll --ca "$p2/two_cas.pem"
expect "after a restart: the laptop's still refused"       403 "it was revoked by its issuer" "${CAROL1[@]}" "$(url /authenticate)"
expect "after a restart: the other device's still refused" 403 "it was revoked by its issuer" "${CAROL2[@]}" "$(url /authenticate)"
expect "after a restart: Alice welcome"                    200 "$HELLO" "${ALICE2[@]}" "$(url /authenticate)"
stop_server
mv "$p2/crl.pem" "$work/crl.keep"
refuses "a restart with crl.pem gone: the server won't start" 1 "$p2/crl.pem is required: it holds every revocation" \
    timeout 10 "$SERVER" --certs "$p2" --port 0
mv "$work/crl.keep" "$p2/crl.pem"
if out=$("$SERVER" --certs "$p2" --renew-crl 2>&1) &&
   openssl crl -in "$p2/crl.pem" -CAfile "$p2/server_cert.pem" -noout -text 2>&1 | grep -q "Serial Number: $carol2"; then
    ok "./server --renew-crl: signed again, entries kept"
else
    fail "./server --renew-crl" "$out"
fi
# A CRL past its nextUpdate: GnuTLS refuses it, so the server won't start;
# --renew-crl is the remedy (README: Keeping the CRL fresh).
stale=$work/part2-stale
cp -r "$certs" "$stale"
(cd "$stale" && openssl ca -config ca/ca.cnf -gencrl -crlsec 1 -out crl.pem 2>/dev/null)
due=$(date -d "$(openssl crl -in "$stale/crl.pem" -noout -nextupdate | cut -d= -f2)" +%s)
while [ "$(date +%s)" -le "$due" ]; do sleep 0.2; done  # GnuTLS counts whole seconds
refuses "a CRL past its nextUpdate: the server won't start" 1 "no usable CRL in $stale/crl.pem" \
    timeout 10 "$SERVER" --certs "$stale" --port 0
next=
if "$SERVER" --certs "$stale" --renew-crl 2>"$work/renew.err"; then
    next=$(openssl crl -in "$stale/crl.pem" -noout -nextupdate | cut -d= -f2)
fi
if [ -n "$next" ] && [ "$(date -d "$next" +%s)" -gt $(( $(date +%s) + 300 * 86400 )) ] &&
   openssl crl -in "$stale/crl.pem" -noout -text | grep -q "Serial Number: 1000"; then
    ok "./server --renew-crl: the same list, nextUpdate $next"
else
    fail "./server --renew-crl renews a stale CRL" "$(cat "$work/renew.err")"
fi
start_server --timeout 2 --certs "$stale"
expect "  ... and the server starts, Carol of part 1 still revoked" 403 "it was revoked by its issuer" \
    --cert "$stale/carol_cert.pem" --key "$stale/carol_key.pem" "$(url /authenticate)"
stop_server

max_time=20

echo "# Part 2: a read-only disk, then a full one (a tmpfs of our own)"
[ -n "${SERVER_WRAPPER:-}" ] && max_time=120
# The certificates on a 1 MiB tmpfs, remounted read-only, then filled up.
# The server runs under umask 077; its certificates must still be 0644.
disk=$work/disk
mkdir -p "$disk"
if mount -t tmpfs -o size=1m tmpfs "$disk"; then
    mounted+=("$disk")
    cp -r "$certs"/. "$disk"
    rm -rf "$disk/ca" "$disk"/*.p12 "$disk"/*_csr.pem
    umask 077
    start_server --timeout "$p2_timeout" --certs "$disk" --enroll
    umask 022
    ORIGIN=(-H "Origin: https://localhost:$port")
    dcode=$("$SERVER" --certs "$disk" --port "$port" --invite Dana 2>/dev/null | sed -n 's|.*code=||p')
    mount -o remount,ro "$disk"
    enroll_post "$work/dana.p12" "${ORIGIN[@]}" --data "code=$dcode&passphrase="
    if [ "$code" = 503 ] && grep -q 'still good' "$work/dana.p12" && [ -f "$(code_file "$dcode" "$disk")" ]; then
        ok "read-only: POST /enroll gets 503, the invitation still good (not used up)"
    else
        fail "read-only: 503, the invitation not used up" "got $code: $(head -c 200 "$work/dana.p12")" "$(ls "$disk/invites")"
    fi
    log_has "  ... the log says what really happened" '"POST /enroll HTTP/1\.1" 503 enroll account [0-9A-F]{16} "Dana": cannot use the invitation: Read-only file system$'
    mount -o remount,rw "$disk"
    dd if=/dev/zero of="$disk/fill" bs=4k 2>/dev/null
    enroll_post "$work/dana.p12" "${ORIGIN[@]}" --data "code=$dcode&passphrase="
    left=$(find "$disk/accounts" "$disk/issued" -type f ! -name name 2>/dev/null | wc -l)
    if [ "$code" = 500 ] && grep -q 'still good' "$work/dana.p12" && [ "$left" = 0 ] &&
       [ -f "$(code_file "$dcode" "$disk")" ]; then
        ok "a full disk: 500, no file left behind in accounts/ or issued/, the invitation given back"
    else
        fail "a full disk: 500, nothing left behind, the invitation given back" "got $code: $(head -c 200 "$work/dana.p12")" \
            "$(find "$disk/accounts" "$disk/issued" "$disk/invites" 2>&1)"
    fi
    log_has "  ... the log says why" '"POST /enroll HTTP/1\.1" 500 enroll account [0-9A-F]{16} "Dana" failed: cannot write .*: No space left on device$'
    rm -f "$disk/fill"
    enroll_post "$work/dana.p12" "${ORIGIN[@]}" --data "code=$dcode&passphrase="
    bundle_parts "$work/dana.p12" "" dana
    dana=$(serial_of "$work/dana_cert.pem")
    danafile=$(find "$disk/accounts" -name "$dana.pem")
    if [ "$code" = 200 ] && [ -n "$danafile" ] && [ "$(mode "$danafile")" = 644 ] && [ "$(mode "$disk/issued/$dana")" = 600 ]; then
        ok "room again: the same invitation works; under umask 077 the certificate is still 0644, the index 0600"
    else
        fail "room again: the invitation works, modes explicit" "got $code" "$(find "$disk" -newer "$disk/server_cert.pem" -printf '%m %p\n')"
    fi
    stop_server
    umount "$disk" && unset 'mounted[-1]'
else
    fail "mount a tmpfs for the read-only and full-disk checks (test.sh runs as root in CI)"
fi
