#!/usr/bin/env bash
# tests/browser.sh - the tutorial's browser visit, in headless Chromium and
# in headless Firefox ESR, the tutorial's own browser (make test-browser).
#
# A reader imports alice.p12 into the browser, opens https://localhost:9999/
# and picks Alice's certificate when asked.  Here, for a fresh profile of its
# own (nothing of the machine's user is touched):
#   - an NSS database (Chromium on Linux keeps certificates in ~/.pki/nssdb,
#     so HOME points into the work folder) that trusts server_cert.pem as a
#     CA, the way a user would trust it, and holds Alice's .p12 (pk12util);
#   - the profile preference behind Chromium's AutoSelectCertificateForUrls
#     policy, so that Alice is chosen for https://localhost:PORT without a
#     dialog nobody would answer.
# It asserts the page text, saves a screenshot, then does the same with no
# certificate in the database and expects the 401 text.  Every browser run is
# under a timeout.
#
# GET /handshake, Alice's own handshake drawn, is read as a reader sees it,
# in both browsers: the rendered text (innerText) for the messages in order,
# Alice's certificate, the CA name and "authorized: true"; a script in the
# page measures the arrows (drawn, one a message, pointing the right way)
# and finds no script of the page's own.  Chromium is driven through its
# DevTools protocol for that (chromium_page), Firefox through Marionette;
# once more with Chromium held to TLS 1.2, whose CertificateRequest crosses
# in the clear.  Each visit is screenshotted whole.
#
# Firefox: a fresh profile per visit, whose NSS database is made the same way
# (certutil, pk12util), with the preference security.default_personal_cert =
# "Select Automatically" in place of the dialog; tests/marionette.py drives it
# and reads the page (Firefox's --screenshot never returns on an error page).
# Then the tutorial's own certificates: the server presents server_cert.pem,
# a CA's certificate, and Firefox refuses it, which is why gencerts.sh makes
# localhost_cert.pem.  Last, ./server --reject-unauthorized: Alice still gets
# in; without a certificate Firefox shows its own error page.
#
#   SCREENSHOT=docs/browser-alice.png FIREFOX_SCREENSHOT=docs/firefox-alice.png \
#   HANDSHAKE_SCREENSHOT=docs/handshake-chromium-tls13.png \
#   FIREFOX_HANDSHAKE_SCREENSHOT=docs/handshake-firefox-tls13.png \
#   TLS12_HANDSHAKE_SCREENSHOT=docs/handshake-chromium-tls12.png \
#       tests/browser.sh                                  (where to keep the pictures)
set -u
cd "$(dirname "$0")/.." || exit 1

# shellcheck source=tests/lib.sh
. tests/lib.sh
need chromium firefox-esr certutil pk12util python3 openssl
make_certs
start_server --timeout 2

origin=https://localhost:$port
HELLO="Hello Alice, your certificate was issued by localhost!"
ff_extra=()     # more arguments for tests/marionette.py (Part 2 submits forms)

# nss_db DIR [PERSON...]: an NSS database, as a browser keeps one, that
# trusts server_cert.pem as a CA and holds the people's .p12 bundles
nss_db() {
    local db=$1
    mkdir -p "$db"
    certutil -N -d "sql:$db" --empty-password
    # trust flags C,,: a CA for TLS servers (what "Import ... Authorities" does)
    certutil -A -d "sql:$db" -n "Client Certificate Demo" -t "C,," -i "$certs/server_cert.pem"
    for person in "${@:2}"; do
        pk12util -d "sql:$db" -i "$certs/$person.p12" -W "" >/dev/null 2>&1 ||
            fail "pk12util imports $person.p12"
    done
}

# new_browser NAME [PERSON...]: a HOME with an NSS database holding the
# people's .p12 bundles, and a Chromium profile
new_browser() {
    local home=$work/$1
    mkdir -p "$home/profile/Default"
    nss_db "$home/.pki/nssdb" "${@:2}"
    # AutoSelectCertificateForUrls, as a profile preference: for this origin,
    # pick a certificate matching the (empty) filter, without asking.
    cat >"$home/profile/Default/Preferences" <<EOF
{"profile": {"content_settings": {"exceptions": {"auto_select_certificate": {
  "$origin,*": {"last_modified": "13300000000000000", "setting": {"filters": [{}]}}}}}}}
EOF
}

# chromium_in NAME ARGS...: headless Chromium with that HOME and profile
chromium_flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
    --disable-background-networking --disable-component-update --disable-sync)
chromium_in() {
    local home=$work/$1
    shift
    HOME=$home timeout 60 chromium "${chromium_flags[@]}" --user-data-dir="$home/profile" \
        "$@" 2>>"$work/chromium.err"
}

echo "# $(chromium --version 2>/dev/null)"
new_browser with-alice alice
new_browser without
new_browser only-bob bob

page=$(chromium_in with-alice --dump-dom "$origin/authenticate")
if [[ $page == *"$HELLO"* ]]; then
    ok "Chromium with Alice's certificate: the Hello Alice page"
else
    fail "Chromium with Alice's certificate: the Hello Alice page" "got: ${page:0:300}" \
        "chromium said: $(tail -n 3 "$work/chromium.err")"
fi
if grep -q '200 admitted "CN=Alice"' "$log"; then
    ok "the server admitted Alice (log)"
else
    fail "the server admitted Alice (log)" "$(tail -n 5 "$log")"
fi

shot=${SCREENSHOT:-$work/alice.png}
rm -f "$shot"
chromium_in with-alice --hide-scrollbars --window-size=640,160 --screenshot="$shot" \
    "$origin/authenticate" >/dev/null
if [ -s "$shot" ] && [ "$(head -c 8 "$shot" | od -An -tx1 | tr -d ' ')" = 89504e470d0a1a0a ]; then
    ok "screenshot saved ($shot, $(wc -c <"$shot") bytes)"
else
    fail "screenshot saved" "no PNG at $shot"
fi

page=$(chromium_in with-alice --dump-dom "$origin/")
if [[ $page == *'<a href="authenticate">Log in using client certificate</a>'* ]]; then
    ok "Chromium: the landing page and its link"
else
    fail "Chromium: the landing page and its link" "got: ${page:0:300}"
fi

page=$(chromium_in without --dump-dom "$origin/authenticate")
if [[ $page == *"Sorry, but you need to provide a client certificate to continue."* ]]; then
    ok "Chromium without a certificate: the 401 text"
else
    fail "Chromium without a certificate: the 401 text" "got: ${page:0:300}"
fi

# The tutorial: "only Alice's certificate is in the list".  The server's
# CertificateRequest names the CAs it trusts; Chromium offers only
# certificates from them, so Bob's is never sent, even when chosen
# automatically: Bob sees the 401, not the 403 curl gets.
page=$(chromium_in only-bob --dump-dom "$origin/authenticate")
if [[ $page == *"Sorry, but you need to provide a client certificate to continue."* ]] &&
    ! grep -q 'refused "CN=Bob"' "$log"; then
    ok "Chromium with only Bob's certificate: Bob is not offered, 401"
else
    fail "Chromium with only Bob's certificate: Bob is not offered, 401" "got: ${page:0:300}" \
        "log: $(grep Bob "$log")"
fi

# --- GET /handshake: the page as a reader sees it ------------------------------
# The visitor's own handshake, drawn: a table whose rows are the messages,
# each with an SVG arrow from its sender.  Both browsers read the page's
# rendered text (document.body.innerText: cells end in tabs, rows and <br>
# in newlines) and run PAGE_FACTS in it, the body of a function that
# measures what text cannot say: the arrows' boxes, where each one's head
# points (away from the column the message's name is in), the page's
# scripts, and the page's size against the window's.
PAGE_FACTS='
var rows = Array.from(document.querySelectorAll("tr")).filter(function (tr) {
    return tr.querySelector("svg"); });
var sized = 0, lined = 0, aimed = 0;
rows.forEach(function (tr) {
    var svg = tr.querySelector("svg"), box = svg.getBoundingClientRect();
    var line = svg.querySelector("line"), head = svg.querySelector("polygon");
    if (box.width > 0 && box.height > 0) sized++;
    if (!line || !head) return;
    var l = line.getBoundingClientRect(), h = head.getBoundingClientRect();
    if (l.width > 0 && h.width > 0 && h.height > 0) lined++;
    var fromClient = tr.cells[0].innerText.trim() !== "";
    if (fromClient ? h.left + h.width / 2 > l.left + l.width / 2
                   : h.left + h.width / 2 < l.left + l.width / 2) aimed++;
});
var handlers = Array.from(document.querySelectorAll("*")).filter(function (e) {
    return Array.from(e.attributes).some(function (a) {
        return /^on/i.test(a.name) || /^\s*javascript:/i.test(a.value); }); }).length;
var html = document.documentElement;
return "facts: svg=" + document.querySelectorAll("svg").length + " rows=" + rows.length +
    " sized=" + sized + " lined=" + lined + " aimed=" + aimed +
    " scripts=" + document.scripts.length + " handlers=" + handlers +
    " page=" + html.scrollWidth + "x" + html.scrollHeight +
    " window=" + window.innerWidth + "x" + window.innerHeight;'
HANDSHAKE_WINDOW=1280x900       # wide enough for the table's longest lines

# chromium_page NAME URL SHOT [ARGS...]: one visit through Chromium's
# DevTools protocol (--remote-debugging-pipe: JSON messages ending in a NUL,
# read on fd 3, written on fd 4), which --dump-dom cannot do: it runs a
# script in the page.  Prints, as tests/marionette.py does, "url: ...", the
# error of a failed navigation, the page's text and PAGE_FACTS's line, and
# saves in SHOT a PNG of the whole page, the window made as tall as the page.
chromium_page() {
    local home=$work/$1 url=$2 shot=$3
    shift 3
    HOME=$home timeout 90 python3 - "$url" "$shot" "$PAGE_FACTS" "$HANDSHAKE_WINDOW" \
        timeout 60 chromium "${chromium_flags[@]}" --user-data-dir="$home/profile" \
        --hide-scrollbars "$@" 2>>"$work/chromium.err" <<'EOF'
import base64, json, os, subprocess, sys
url, shot, facts, window = sys.argv[1:5]
width, height = (int(n) for n in window.split("x"))
to_chromium, to_us = os.pipe()          # what Chromium reads on fd 3
from_chromium, for_us = os.pipe()       # what it writes on fd 4
def pipes():
    os.dup2(to_chromium, 3)
    os.dup2(for_us, 4)
    os.set_inheritable(3, True)         # dup2 onto itself keeps close-on-exec
    os.set_inheritable(4, True)
browser = subprocess.Popen(sys.argv[5:] + ["--remote-debugging-pipe", "about:blank"],
                           stdin=subprocess.DEVNULL, preexec_fn=pipes, close_fds=False)
os.close(to_chromium)
os.close(for_us)
buf, events, last = b"", [], 0
def read():
    global buf
    while b"\0" not in buf:
        chunk = os.read(from_chromium, 65536)
        if not chunk:                   # Chromium ended (or its timeout did)
            raise SystemExit("chromium_page: Chromium closed its DevTools pipe")
        buf += chunk
    message, _, buf = buf.partition(b"\0")
    return json.loads(message)
def call(method, params=None, session=None):
    global last
    last += 1
    command = {"id": last, "method": method, "params": params or {}}
    if session:
        command["sessionId"] = session
    os.write(to_us, json.dumps(command).encode() + b"\0")
    while True:
        answer = read()
        if answer.get("id") == last:
            if "error" in answer:
                raise SystemExit("chromium_page: %s: %s" % (method, answer["error"]))
            return answer["result"]
        events.append(answer)
def wait_for(test):                     # an event, kept or still to come
    while True:
        for event in events:
            if test(event):
                events.remove(event)
                return event
        events.append(read())
def run(script, session):
    result = call("Runtime.evaluate", {"expression": script, "returnByValue": True}, session)
    return result["result"].get("value")
target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
tab = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
call("Page.enable", session=tab)
call("Page.setLifecycleEventsEnabled", {"enabled": True}, tab)
metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
call("Emulation.setDeviceMetricsOverride", metrics, tab)
went = call("Page.navigate", {"url": url}, tab)
if "errorText" not in went:             # this navigation's document has loaded
    wait_for(lambda e: e.get("method") == "Page.lifecycleEvent" and
             e["params"]["name"] == "load" and e["params"]["loaderId"] == went["loaderId"])
metrics["height"] = max(height, run("document.documentElement.scrollHeight", tab) or 0)
call("Emulation.setDeviceMetricsOverride", metrics, tab)
print("url: %s" % run("document.URL", tab))
if "errorText" in went:
    print("navigate: %s" % went["errorText"])
print(run("document.body ? document.body.innerText : ''", tab))
print(run("(function () {%s})()" % facts, tab))
if shot:
    with open(shot, "wb") as out:
        out.write(base64.b64decode(call("Page.captureScreenshot", {"format": "png"}, tab)["data"]))
call("Browser.close")
browser.wait()
EOF
}

# diagram [rows]: the page's text (stdin) as the diagram's lines, each
# "client Certificate | certificate 1 subject: CN=Alice" (the side and name
# of the message whose row it is in); with "rows", only a line a message
diagram() {
    awk -F'\t' -v rows_only="${1:-}" '
        $0 == "The certificate check" { exit }
        NF >= 4 && $1 == "client" && $3 == "server" { table = 1; next }
        !table { next }
        NF >= 4 { row = ($1 != "" ? "client " $1 : "server " $3); $0 = $4
                  if (rows_only) { print row; next } }
        !rows_only { print row " | " $0 }'
}
# fact NAME: a number PAGE_FACTS printed (the page is in $page)
fact() { sed -n "s/^facts: .*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$page"; }
# the server's CA, as the CertificateRequest names it (RFC 4514)
ca=$(openssl x509 -noout -subject -nameopt RFC2253 -in "$certs/server_cert.pem" | sed 's/^subject=//')
# the messages the tutorial is about, in this order (others between them)
IN_ORDER=',client ClientHello,(.*,)?server ServerHello,(.*,)?server CertificateRequest,(.*,)?'
IN_ORDER+='client Certificate,(.*,)?client CertificateVerify,(.*,)?client Finished,'

# handshake_shows WHO VERSION SHOT: the checks of one visit to /handshake as
# Alice, whose page ($page) chromium_page or marionette.py read; VERSION as
# the page and the log write it (TLS1.3), SHOT the screenshot saved; the
# log's lines after $before are the visit's
handshake_shows() {
    local who=$1 version=$2 shot=$3 rows seq sent messages page_size window
    rows=$(diagram <<<"$page")
    seq=$(diagram rows <<<"$page" | paste -sd, -)
    messages=$(diagram rows <<<"$page" | wc -l)
    if [[ ,$seq, =~ $IN_ORDER ]] && [[ ,$seq, == *",server Finished,"* ]]; then
        ok "$who: /handshake as Alice, the messages in order: ${seq//,/, }"
    else
        fail "$who: /handshake as Alice, the messages in order" "got: $seq" "page: ${page:0:600}" \
            "chromium said: $(tail -n 3 "$work/chromium.err")" "firefox said: $(tail -n 3 "$work/firefox.err")"
    fi
    if grep -qx 'client Certificate | certificate 1 subject: CN=Alice' <<<"$rows" &&
        grep -qxF "server CertificateRequest | CA name: $ca" <<<"$rows" &&
        grep -qx 'authorized: true' <<<"$page"; then
        ok "  ... the client's Certificate: CN=Alice; the CertificateRequest's CA name: $ca; authorized: true"
    else
        fail "  ... CN=Alice, the CA name ($ca), authorized: true" "rows: $rows" \
            "the end: $(tail -n 3 <<<"$page")"
    fi
    # the version the page says, and the server's log line of that visit
    sent="sent encrypted (TLS 1.3): hidden from anyone watching the network, though any client that connects is sent it"
    [ "$version" = TLS1.2 ] && sent="sent in the clear (TLS 1.2): anyone watching the network reads the list"
    if grep -q "^server ServerHello | version agreed: $version;" <<<"$rows" &&
        grep -qxF "server CertificateRequest | $sent" <<<"$rows" &&
        tail -n +"$((before + 1))" "$log" | grep -qF "$version \"GET /handshake HTTP/1.1\" 200 admitted \"CN=Alice\""; then
        ok "  ... version agreed: $version (the server's log says so too); the CertificateRequest: \"${sent%%:*}\""
    else
        fail "  ... version agreed: $version; the CertificateRequest: ${sent%%:*}" "rows: $rows" \
            "log: $(tail -n +"$((before + 1))" "$log")"
    fi
    if [ "$messages" -gt 0 ] && [ "$(fact rows)" = "$messages" ] && [ "$(fact svg)" = "$messages" ] &&
        [ "$(fact sized)" = "$messages" ] && [ "$(fact lined)" = "$messages" ] &&
        [ "$(fact aimed)" = "$messages" ]; then
        ok "  ... $messages arrows drawn, one a message: each with a size, a line and a head, pointing away from its sender"
    else
        fail "  ... an arrow a message ($messages), drawn, pointing away from its sender" \
            "$(grep '^facts: ' <<<"$page" || echo "no facts: ${page:0:300}")"
    fi
    if [ "$(fact scripts)" = 0 ] && [ "$(fact handlers)" = 0 ]; then
        ok "  ... no script: no <script>, no on... attribute, no javascript: address"
    else
        fail "  ... no script" "$(grep '^facts: ' <<<"$page" || echo "no facts")"
    fi
    page_size=$(fact page)
    window=$(fact window)
    if [ -s "$shot" ] && [ "$(head -c 8 "$shot" | od -An -tx1 | tr -d ' ')" = 89504e470d0a1a0a ] &&
        [ -n "$page_size" ] && [ "${page_size%x*}" -le "${window%x*}" ]; then
        ok "  ... screenshot saved ($shot, $(wc -c <"$shot") bytes): the page, ${page_size}, fits the window's width (${window%x*})"
    else
        fail "  ... screenshot of the whole page" "$shot: $(ls -l "$shot" 2>&1)" "page $page_size, window $window"
    fi
}

# /handshake as Alice: over TLS 1.3, then with Chromium held to TLS 1.2,
# whose flight differs (ServerKeyExchange, ServerHelloDone, the client's
# ClientKeyExchange) and whose CertificateRequest crosses in the clear
shot=${HANDSHAKE_SCREENSHOT:-$work/handshake-chromium-tls13.png}
rm -f "$shot"
before=$(wc -l <"$log")
page=$(chromium_page with-alice "$origin/handshake" "$shot")
handshake_shows "Chromium" TLS1.3 "$shot"
shot=${TLS12_HANDSHAKE_SCREENSHOT:-$work/handshake-chromium-tls12.png}
rm -f "$shot"
before=$(wc -l <"$log")
page=$(chromium_page with-alice "$origin/handshake" "$shot" --ssl-version-max=tls1.2)
handshake_shows "Chromium, --ssl-version-max=tls1.2" TLS1.2 "$shot"

# --- Firefox ESR -------------------------------------------------------------
echo "# $(firefox-esr --version 2>/dev/null)"
# firefox_visit URL SHOT [PERSON...]: one visit in a fresh profile with the
# people's .p12 bundles; prints what tests/marionette.py reads (SHOT: a PNG
# to save, or "")
firefox_visit() {
    local url=$1 shot=$2 profile mport ff_pid
    shift 2
    profile=$(mktemp -d "$work/firefox.XXXXXX")
    nss_db "$profile" "$@"
    mport=$(free_port)
    # "Select Automatically" answers the certificate dialog; downloads (the
    # bundle part 2 answers with) go to downloads/ without asking; the rest
    # keeps a first run quiet and off the network
    cat >"$profile/user.js" <<EOF
user_pref("security.default_personal_cert", "Select Automatically");
user_pref("marionette.port", $mport);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.aboutwelcome.enabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("app.update.disabledForTesting", true);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("browser.download.folderList", 2);
user_pref("browser.download.dir", "$profile/downloads");
user_pref("browser.download.useDownloadDir", true);
user_pref("browser.download.start_downloads_in_tmp_dir", false);
user_pref("browser.download.always_ask_before_handling_new_types", false);
user_pref("browser.download.alwaysOpenPanel", false);
EOF
    mkdir -p "$profile/downloads"
    HOME=$profile timeout 60 firefox-esr --headless --marionette --no-remote --profile "$profile" \
        about:blank >>"$work/firefox.err" 2>&1 &
    ff_pid=$!
    timeout 60 python3 tests/marionette.py --port "$mport" ${shot:+--screenshot "$shot"} \
        --downloads "$profile/downloads" "${ff_extra[@]}" "$url" 2>>"$work/firefox.err"
    # Marionette:Quit ends Firefox; the timeout ends one that hangs
    wait "$ff_pid" 2>/dev/null
}

# firefox_shows NAME TEXT URL SHOT [PERSON...]: the visit's page, or its
# error code, holds TEXT
firefox_shows() {
    local name=$1 text=$2 page
    shift 2
    page=$(firefox_visit "$@")
    if [[ $page == *"$text"* ]]; then
        ok "$name"
    else
        fail "$name" "wanted: $text" "got: ${page:0:300}" "firefox said: $(tail -n 3 "$work/firefox.err")"
    fi
}
shot=${FIREFOX_SCREENSHOT:-$work/firefox-alice.png}
rm -f "$shot"
firefox_shows "Firefox with Alice's certificate: the Hello Alice page" "$HELLO" \
    "$origin/authenticate" "$shot" alice
if [ -s "$shot" ] && [ "$(head -c 8 "$shot" | od -An -tx1 | tr -d ' ')" = 89504e470d0a1a0a ]; then
    ok "Firefox screenshot saved ($shot, $(wc -c <"$shot") bytes)"
else
    fail "Firefox screenshot saved" "no PNG at $shot"
fi
# /handshake as Alice, in a window as large as Chromium's; the screenshot
# is of the whole page
shot=${FIREFOX_HANDSHAKE_SCREENSHOT:-$work/handshake-firefox-tls13.png}
rm -f "$shot"
before=$(wc -l <"$log")
ff_extra=(--window "$HANDSHAKE_WINDOW" --full-page --eval "$PAGE_FACTS")
page=$(firefox_visit "$origin/handshake" "$shot" alice)
ff_extra=()
handshake_shows "Firefox" TLS1.3 "$shot"
before=$(wc -l <"$log")
page=$(firefox_visit "$origin/authenticate" "" bob)
if [[ $page == *"Sorry, but you need to provide a client certificate to continue."* ]] &&
    ! tail -n +"$((before + 1))" "$log" | grep -q 'refused "CN=Bob"'; then
    ok "Firefox with only Bob's certificate: Bob is not offered, 401"
else
    fail "Firefox with only Bob's certificate: Bob is not offered, 401" "got: ${page:0:300}" \
        "log: $(tail -n +"$((before + 1))" "$log")"
fi
firefox_shows "Firefox without a certificate: the 401 text" \
    "Sorry, but you need to provide a client certificate to continue." "$origin/authenticate" ""

# The tutorial's certificates as the tutorial uses them: the server presents
# server_cert.pem, which is also the CA that signs Alice (CA:TRUE).
stop_server
start_server --timeout 2 --cert "$certs/server_cert.pem" --key "$certs/server_key.pem"
firefox_shows "Firefox, the server presenting the tutorial's server_cert.pem (a CA): refused" \
    "error code: MOZILLA_PKIX_ERROR_CA_CERT_USED_AS_END_ENTITY" "https://localhost:$port/authenticate" "" alice

# --reject-unauthorized: no page without a trusted certificate, only the
# browser's own error, the "cryptic HTTPS error" the tutorial avoids
stop_server
start_server --timeout 2 --reject-unauthorized
firefox_shows "Firefox, --reject-unauthorized: Alice still gets the Hello Alice page" "$HELLO" \
    "https://localhost:$port/authenticate" "" alice
firefox_shows "Firefox, --reject-unauthorized, no certificate: Firefox's own error page" \
    "error code: SSL_ERROR_RX_CERTIFICATE_REQUIRED_ALERT" "https://localhost:$port/authenticate" ""

# --- Part 2: a certificate the server issues, in both browsers ---------------
# Firefox fills in the invitation's form and presses its button, so the
# CSRF check meets a real browser's Origin; the bundle it downloads is
# imported into a fresh NSS database for each browser, as alice.p12 is.
echo "# Part 2: ./server --enroll; Carol enrolls in Firefox, then visits in both browsers"
stop_server
start_server --timeout 2 --enroll
origin=https://localhost:$port
ff_extra=()
icode=$("$SERVER" --certs "$certs" --port "$port" --invite Carol 2>/dev/null | sed -n 's|.*code=||p')
ff_extra=(--submit-form "$certs/carol-issued.p12")
page=$(firefox_visit "$origin/enroll?code=$icode" "")
ff_extra=()
if [[ $page == *"Welcome, Carol"* ]] && [[ $page == *"submitted: download carol.p12"* ]] &&
    openssl pkcs12 -in "$certs/carol-issued.p12" -passin pass: -nokeys 2>/dev/null | grep -q 'subject=CN = Carol'; then
    ok "Firefox: the invitation's form, its button pressed: Carol's .p12 downloaded"
else
    fail "Firefox: the invitation's form, posted: Carol's .p12" "got: ${page:0:400}" "log: $(tail -n 3 "$log")"
fi
if grep -Eq '"POST /enroll HTTP/1.1" 200 enrolled account [0-9A-F]{16} "Carol"' "$log"; then
    ok "  ... the server took Firefox's Origin as its own page's (log: enrolled)"
else
    fail "  ... the server enrolled Carol (log)" "$(tail -n 3 "$log")"
fi
HELLO_CAROL="Hello Carol, your certificate was issued by localhost!"
new_browser with-carol carol-issued
page=$(chromium_in with-carol --dump-dom "$origin/authenticate")
if [[ $page == *"$HELLO_CAROL"* ]]; then
    ok "Chromium with the bundle the server issued: Hello Carol"
else
    fail "Chromium with the bundle the server issued: Hello Carol" "got: ${page:0:300}"
fi
firefox_shows "Firefox with the bundle the server issued: Hello Carol" "$HELLO_CAROL" \
    "$origin/authenticate" "" carol-issued
# A second device joins the account: Firefox, with the first device's
# certificate, presses "Get a link for it" on /certificates; then, as the
# new device, opens the link and posts the enrollment form.
ff_extra=(--submit-form "$work/device-link.html" --form 'form[action="/add-device"]')
page=$(firefox_visit "$origin/certificates" "" carol-issued)
ff_extra=()
dcode=$(grep -o 'enroll?code=[0-9A-F]\{32\}' "$work/device-link.html" 2>/dev/null | head -n 1 | cut -d= -f2)
if [[ $page == *"The certificates of Carol"* ]] && [[ $page == *"submitted: 200 text/html"* ]] && [ -n "$dcode" ]; then
    ok "Firefox: /certificates, \"Get a link for it\": a one-time link for another device"
else
    fail "Firefox: /certificates, the device link" "got: ${page:0:400}" "answer: $(head -c 300 "$work/device-link.html" 2>&1)"
fi
# Clickjacking: a page of another site (http://127.0.0.1:PORT) frames
# /certificates under its own bait; Firefox would send Carol's certificate
# with the framed request.  Our answers forbid framing (X-Frame-Options: DENY,
# CSP frame-ancestors 'none'), so the frame shows nothing of ours.  The
# page's second frame, its own, shows that the test does read frames.
mkdir -p "$work/evil"
echo "<p>the other site's own frame</p>" >"$work/evil/own.html"
cat >"$work/evil/index.html" <<EOF
<p>Win a prize: click the button below!</p>
<iframe src="$origin/certificates" width="600" height="300"></iframe>
<iframe src="own.html"></iframe>
EOF
# A free port can be taken by someone else before http.server binds it: it
# must say it serves on it (or it has exited, and another port is tried)
for _ in 1 2 3 4 5; do
    evil_port=$(free_port)
    python3 -u -m http.server --bind 127.0.0.1 --directory "$work/evil" "$evil_port" >"$work/evil.log" 2>&1 &
    evil_pid=$!
    for _ in $(seq 100); do
        grep -q "^Serving HTTP on 127\.0\.0\.1 port $evil_port " "$work/evil.log" && break 2
        kill -0 "$evil_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$evil_pid" 2>/dev/null
    wait "$evil_pid" 2>/dev/null
done
before=$(wc -l <"$log")
ff_extra=(--frames 2)
page=$(firefox_visit "http://127.0.0.1:$evil_port/" "" carol-issued)
ff_extra=()
kill "$evil_pid" 2>/dev/null
wait "$evil_pid" 2>/dev/null
# "frame 0: ADDRESS | TEXT": the frame holds a document that is not ours,
# with none of our words
framed=$(sed -n 's/^frame 0: //p' <<<"$page")
framed_text=${framed#* | }
if [[ $page == *"Win a prize"* ]] && grep -q "^frame 1: .*the other site's own frame" <<<"$page" &&
    [ -n "$framed" ] && [[ $framed != "$origin"* ]] &&
    [[ $framed_text != *Carol* && $framed_text != *Revoke* && $framed_text != *ertificate* ]]; then
    ok "Firefox: another site framing /certificates shows nothing of ours (the frame: ${framed:0:40}...)"
else
    fail "Firefox: another site framing /certificates shows nothing of ours" "got: ${page:0:500}"
fi
if tail -n +"$((before + 1))" "$log" | grep -q '"GET /certificates HTTP/1.1" 200'; then
    ok "  ... though Firefox did ask for it, with Carol's certificate (log): the answer's headers stopped it"
else
    fail "  ... Firefox asked for the framed page (log)" "$(tail -n +"$((before + 1))" "$log")"
fi

ff_extra=(--submit-form "$certs/carol-second.p12")
page=$(firefox_visit "$origin/enroll?code=$dcode" "")
ff_extra=()
account=$(sed -n 's/.*"POST \/enroll HTTP\/1.1" 200 enrolled account \([0-9A-F]*\) "Carol".*/\1/p' "$log" | sort -u)
second=$(openssl pkcs12 -in "$certs/carol-second.p12" -passin pass: -nokeys 2>/dev/null | openssl x509 -noout -serial 2>/dev/null | cut -d= -f2)
if [[ $page == *"submitted: download carol.p12"* ]] && [ -n "$second" ] && [ "$(wc -w <<<"$account")" = 1 ]; then
    ok "Firefox, as the new device: the link's form posted, a second .p12 ($second) in the same account ($account)"
else
    fail "Firefox: the second device's enrollment, same account" "got: ${page:0:300}" "accounts: $account" "log: $(tail -n 3 "$log")"
fi
new_browser with-second carol-second
page=$(chromium_in with-second --dump-dom "$origin/authenticate")
if [[ $page == *"$HELLO_CAROL"* ]]; then
    ok "Chromium with the second device's bundle: Hello Carol"
else
    fail "Chromium with the second device's bundle: Hello Carol" "got: ${page:0:300}"
fi
# the second device is lost: its Revoke button, pressed in Firefox on the first
ff_extra=(--submit-form "$work/revoked.html" --form "form:has(input[value=\"$second\"])")
page=$(firefox_visit "$origin/certificates" "" carol-issued)
ff_extra=()
if [[ $page == *"$second"* ]] && [[ $page == *"submitted: 200 text/html"* ]] &&
    grep -q "$second is revoked" "$work/revoked.html"; then
    ok "Firefox: /certificates lists both, and the second's Revoke button works: $(head -c 60 "$work/revoked.html")..."
else
    fail "Firefox: /certificates and its Revoke button" "got: ${page:0:400}" "answer: $(cat "$work/revoked.html" 2>&1)"
fi
REVOKED="Refused because it was revoked by its issuer."
page=$(chromium_in with-second --dump-dom "$origin/authenticate")
if [[ $page == *"Sorry Carol"* ]] && [[ $page == *"$REVOKED"* ]]; then
    ok "Chromium, the second device after the revocation: the 403 page, revoked by its issuer"
else
    fail "Chromium, after the revocation: the 403 page" "got: ${page:0:300}"
fi
firefox_shows "Firefox, the second device after the revocation: the 403 page, revoked by its issuer" "$REVOKED" \
    "$origin/authenticate" "" carol-second
page=$(chromium_in with-carol --dump-dom "$origin/authenticate")
if [[ $page == *"$HELLO_CAROL"* ]]; then
    ok "Chromium, the first device: still Hello Carol"
else
    fail "Chromium, the first device: still Hello Carol" "got: ${page:0:300}"
fi

finish
