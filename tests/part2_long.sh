# tests/part2_long.sh - the rest of tests/part2.sh, which sources it under
# LONG=1 (make soak, asan, tsan and valgrind; make test leaves it out to
# stay short): serials with the high bit set, revocation that fails closed
# when crl.pem is moved, broken or locked, a second trusted CA, a restart
# and a stale CRL, a read-only and a full disk.  Each part needs the ones
# before it (and part2.sh's accounts and revocations), so they go together.
# shellcheck shell=bash
# shellcheck disable=SC2154,SC2153   # work, certs, log, port, CAROL2...: set by test.sh and tests/part2.sh
# shellcheck disable=SC2034   # max_time: used by test.sh's fetch

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
# --renew-crl is the remedy (docs/part2.md: Keeping the CRL fresh).
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
