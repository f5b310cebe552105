#!/usr/bin/env bash
# tests/wire.sh - GET /handshake against the wire: the page tells the truth
# about the very connection that fetched it (make test-wire).
#
# Its own server, with SSLKEYLOGFILE set (GnuTLS then writes each session's
# secrets there); tshark captures loopback on the server's port while curl
# fetches /handshake four times: Alice over TLS 1.3, Alice over TLS 1.2, Bob,
# and nobody.  Then tshark decrypts the capture with those secrets, and for
# each visit, found in the capture by curl's own port:
#   - tshark saw a Finished each way: the capture was decrypted (in TLS 1.3
#     all but the two hellos are encrypted; in both versions the Finished);
#   - the version on the wire is the one asked for, and the page says it;
#   - the page's messages are tshark's handshake messages: the same names,
#     in the same order, in the same directions (ChangeCipherSpec is none);
#   - the page's CA names are the Distinguished Names in the
#     CertificateRequest, and its certificate lines the subjects and issuers
#     of the certificates in the server's and the client's Certificate (or
#     "empty"), decoded here from the DER bytes tshark shows and written as
#     RFC 4514 says and GnuTLS does (the last RDN first: O=...,CN=localhost);
#   - the verdict: Alice's 200, Bob's 403, nobody's 401.
# The capture is known to be running when a first connection (a GET /) shows
# in it, and to hold every visit when a last one does.
#
# It fails when the page lies.  PAGE_FILTER=COMMAND passes each page through
# COMMAND before the checks.  Checked with (FAILs out of 40):
#   PAGE_FILTER='sed /Finished/d'                          a message dropped (4)
#   PAGE_FILTER='sed s/ServerHello$/EncryptedExtensions/'  a name changed (8)
#   PAGE_FILTER='sed "s/^client -> server  CertificateVerify/server -> client  CertificateVerify/"'
#                                                          a direction turned (3)
#   PAGE_FILTER='sed "/^server -> client  EncryptedExtensions$/{h;d};/^server -> client  CertificateRequest$/G"'
#                                                          two messages swapped (6)
#   PAGE_FILTER='sed s/CN=Alice$/CN=Bob/'                  another subject (2)
#   PAGE_FILTER='sed "s/O=Client Certificate Demo,//"'     the DNs cut (10)
#   PAGE_FILTER='sed s/TLS1.2/TLS1.3/'                     another version (1)
#   PAGE_FILTER='sed s/200:/403:/'                         another verdict (2)
# and, by hand, tshark without the keys (-o tls.keylog_file:/dev/null): no
# Finished either way, in TLS 1.2 as in TLS 1.3.
# KEEP_WORK=1 keeps the capture (wire.pcapng), the keys (keys.log), the
# pages and what tshark read (tshark/) in the work folder.
set -u
cd "$(dirname "$0")/.." || exit 1

# shellcheck source=tests/lib.sh
. tests/lib.sh
need tshark curl python3
PAGE_FILTER=${PAGE_FILTER:-cat}

make_certs
# --timeout 10: tshark, starting up and capturing, shares the cores with the visits
SSLKEYLOGFILE=$work/keys.log start_server --timeout 10
if grep -q '^server: SSLKEYLOGFILE is set: .*never on a real server$' "$log"; then
    ok "the server says, as it starts, that SSLKEYLOGFILE is set"
else
    fail "the server says, as it starts, that SSLKEYLOGFILE is set" "$(cat "$log")"
fi
ca=$certs/server_cert.pem
url=https://localhost:$port

# The capture.  -P also names each packet on captured.txt (its source and
# destination port) once it is in wire.pcapng: a packet named there is in the
# file.
capture_pid=
stop_capture() {
    if [ -n "$capture_pid" ]; then
        kill -INT "$capture_pid" 2>/dev/null
        wait "$capture_pid" 2>/dev/null
    fi
    capture_pid=
}
trap 'stop_capture; cleanup' EXIT
tshark -i lo -f "tcp port $port" -w "$work/wire.pcapng" -P -l -T fields -e tcp.srcport -e tcp.dstport \
    >"$work/captured.txt" 2>"$work/tshark.log" &
capture_pid=$!

# canary: a GET / from curl; prints curl's port
canary() {
    curl -s -o /dev/null --max-time 10 --cacert "$ca" -w '%{local_port}' "$url/"
}
# captured PORT: the capture holds a packet from PORT
captured() { grep -q "^$1	" "$work/captured.txt"; }
# wait_for WHAT COMMAND...: run COMMAND every 0.1 s until it succeeds (at most
# 30 s, then stop the test: the capture never showed WHAT)
wait_for() {
    local what=$1
    shift
    for _ in $(seq 300); do
        "$@" && return 0
        kill -0 "$capture_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "${0##*/}: the capture never showed $what; tshark said:" >&2
    cat "$work/tshark.log" >&2
    exit 1
}
# The capture starts a second or so after tshark does: a connection at a
# time until one shows.
canary_captured() { canary >/dev/null; [ -s "$work/captured.txt" ]; }
wait_for "a first connection" canary_captured

# visit NAME CURL-ARGS...: GET /handshake as NAME into $work/NAME.page, and
# note curl's port in ports[NAME]
declare -A ports
visit() {
    local name=$1 out
    shift
    out=$(curl -sS --max-time 20 --cacert "$ca" "$@" -o "$work/$name.raw" \
               -w '%{local_port} %{http_code}' "$url/handshake") ||
        { fail "$name: GET /handshake" "curl: $out"; return; }
    ports[$name]=${out% *}
    echo "# $name: curl from port ${ports[$name]}, HTTP ${out#* }"
    sh -c "$PAGE_FILTER" <"$work/$name.raw" >"$work/$name.page"
}
ALICE=(--cert "$certs/alice.p12" --cert-type p12)
BOB=(--cert "$certs/bob.p12" --cert-type p12)
visit alice-tls1.3 --tlsv1.3 "${ALICE[@]}"
visit alice-tls1.2 --tls-max 1.2 "${ALICE[@]}"
visit bob "${BOB[@]}"
visit nobody

# a last connection: once it shows, every visit is in the file
last=$(canary)
wait_for "the last connection (from port $last)" captured "$last"
stop_capture

# Decrypt, and write what tshark read of each TCP stream into tshark/PORT.*
# (PORT: the client's), in the page's words: .messages, .version (the one
# the ServerHello chose), .ca_names, .server_certificate and
# .client_certificate (each certificate's subject and issuer, or "empty").
mkdir "$work/tshark"
tshark -r "$work/wire.pcapng" -o "tls.keylog_file:$work/keys.log" -Y tls.handshake -T pdml \
    >"$work/wire.pdml" 2>"$work/tshark-read.log" ||
    { cat "$work/tshark-read.log" >&2; echo "${0##*/}: tshark could not read the capture" >&2; exit 1; }
python3 - "$work/wire.pdml" "$port" "$work/tshark" <<'PY' || exit 1
import collections, sys, xml.etree.ElementTree as ET

pdml, server_port, out = sys.argv[1], sys.argv[2], sys.argv[3]
NAMES = {1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket", 5: "EndOfEarlyData",
         8: "EncryptedExtensions", 11: "Certificate", 12: "ServerKeyExchange",
         13: "CertificateRequest", 14: "ServerHelloDone", 15: "CertificateVerify",
         16: "ClientKeyExchange", 20: "Finished", 22: "CertificateStatus", 24: "KeyUpdate"}
# RFC 8446, 4.1.3: a ServerHello with this random is a HelloRetryRequest
HRR_RANDOM = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
VERSIONS = {"0x0304": "TLS 1.3", "0x0303": "TLS 1.2", "0x0302": "TLS 1.1", "0x0301": "TLS 1.0"}
# attribute types by the short names GnuTLS writes
SHORT = {"2.5.4.3": "CN", "2.5.4.4": "SN", "2.5.4.5": "serialNumber", "2.5.4.6": "C",
         "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.9": "STREET", "2.5.4.10": "O",
         "2.5.4.11": "OU", "2.5.4.12": "title", "2.5.4.42": "GN",
         "0.9.2342.19200300.100.1.1": "UID", "0.9.2342.19200300.100.1.25": "DC",
         "1.2.840.113549.1.9.1": "EMAIL"}
STRINGS = {0x0C: "utf-8", 0x13: "latin-1", 0x14: "latin-1", 0x16: "latin-1",
           0x1E: "utf-16-be", 0x1C: "utf-32-be"}

def tlvs(der):
    """The DER elements in der, one after the other: (tag, contents, whole)."""
    i = 0
    while i < len(der):
        start, tag, n = i, der[i], der[i + 1]
        i += 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(der[i:i + k], "big")
            i += k
        yield tag, der[i:i + n], der[start:i + n]
        i += n

def oid(der):
    arcs, v = [], 0
    for c in der:
        v = v << 7 | c & 0x7F
        if not c & 0x80:
            arcs.append(v)
            v = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, [first, arcs[0] - 40 * first] + arcs[1:]))

def escape(s):
    """RFC 4514, 2.4"""
    s = "".join("\\" + c if c in ',+"\\<>;' else c for c in s)
    if s[:1] in ("#", " "):
        s = "\\" + s
    if s.endswith(" ") and not s.endswith("\\ "):
        s = s[:-1] + "\\ "
    return s

def dn(rdn_items):
    """A Distinguished Name in RFC 4514's words, from tshark's RDNSequence
    items (each one RDN: the contents of its SET), last RDN first."""
    rdns = []
    for item in rdn_items:
        der = bytes.fromhex(item.get("value"))
        if der[:1] == b"\x31":          # the whole SET, not its contents
            der = next(tlvs(der))[1]
        avas = []
        for _, ava, _ in tlvs(der):
            (_, t, _), (vtag, v, whole) = list(tlvs(ava))[:2]
            t = oid(t)
            if t in SHORT and vtag in STRINGS:
                avas.append(SHORT[t] + "=" + escape(v.decode(STRINGS[vtag])))
            else:
                avas.append(t + "=#" + whole.hex())
        rdns.append("+".join(avas))
    return ",".join(reversed(rdns))

def items(el):
    return [f for f in el.iter("field") if f.get("name") == "x509if.RDNSequence_item"]

def first(el, name):
    return next((f for f in el.iter("field") if f.get("name") == name), None)

streams = collections.OrderedDict()
for packet in ET.parse(pdml).getroot().iter("packet"):
    fields = {f.get("name"): f.get("show") for f in packet.iter("field")
              if f.get("name") in ("tcp.stream", "tcp.srcport", "tcp.dstport")}
    from_server = fields["tcp.srcport"] == server_port
    client_port = fields["tcp.dstport"] if from_server else fields["tcp.srcport"]
    s = streams.setdefault(fields["tcp.stream"], {
        "port": client_port, "messages": [], "ca_names": [], "server_certificate": None,
        "client_certificate": None, "version": "none"})
    for hs in (f for f in packet.iter("field") if f.get("name") == "tls.handshake"):
        t = first(hs, "tls.handshake.type")
        if t is None:                   # not decrypted
            s["messages"].append("%s  (an encrypted handshake message)" %
                                 ("server -> client" if from_server else "client -> server"))
            continue
        t = int(t.get("show"))
        name = NAMES.get(t, "type %d" % t)
        if t == 2:
            random = first(hs, "tls.handshake.random")
            if random is not None and random.get("value") == HRR_RANDOM:
                name = "HelloRetryRequest"
            else:
                chosen = first(hs, "tls.handshake.extensions.supported_version")
                if chosen is None:      # no supported_versions: TLS 1.2 or older
                    chosen = first(hs, "tls.handshake.version")
                s["version"] = VERSIONS.get(chosen.get("show"), chosen.get("show"))
        if t == 13 and from_server:
            s["ca_names"] += [dn(items(d)) for d in hs.iter("field")
                              if d.get("name") == "tls.handshake.dname"]
        if t == 11:
            lines = []
            certs = [c for c in hs.iter("field") if c.get("name") == "tls.handshake.certificate"]
            for n, c in enumerate(certs, 1):
                lines.append("certificate %d subject: %s" % (n, dn(items(first(c, "x509af.subject")))))
                lines.append("certificate %d issuer: %s" % (n, dn(items(first(c, "x509af.issuer")))))
            s["server_certificate" if from_server else "client_certificate"] = lines or ["empty"]
        s["messages"].append("%s  %s" % ("server -> client" if from_server else "client -> server", name))

seen = set()
for s in streams.values():
    if s["port"] in seen:
        sys.exit("wire.sh: two TLS connections came from port %s" % s["port"])
    seen.add(s["port"])
    for what in ("messages", "version", "ca_names", "server_certificate", "client_certificate"):
        value = s[what] if s[what] is not None else ["empty"]   # no Certificate at all
        with open("%s/%s.%s" % (out, s["port"], what), "w") as f:
            f.write("".join(v + "\n" for v in ([value] if isinstance(value, str) else value)))
PY

# The page's words.  Lines under a message are indented by four spaces.
# page_messages PAGE: its message lines
page_messages() { grep -E '^(client -> server|server -> client)  ' "$1"; }
# page_under PAGE MESSAGE: the lines under MESSAGE (a message line), unindented
page_under() { awk -v m="$2" '/^[^ ]/ {under = ($0 == m)} under && /^    / {print substr($0, 5)}' "$1"; }
page_ca_names() { page_under "$1" "server -> client  CertificateRequest" | sed -n 's/^CA name: //p'; }
page_version() { page_under "$1" "server -> client  ServerHello" | sed -n -E 's/^version agreed: TLS ?([0-9.]+).*/TLS \1/p'; }
# page_certificate PAGE DIRECTION: the subjects and issuers of the
# certificates in that Certificate message ("client -> server"), or "empty"
page_certificate() {
    page_under "$1" "$2  Certificate" |
        sed -n -E -e '/^certificate [0-9]+ (subject|issuer): /p' -e 's/^empty:.*/empty/p'
    grep -qx "$2  Certificate" "$1" || echo empty
}

# agree NAME WIRE PAGE: ok when what tshark read and what the page says are the same
agree() {
    if [ "$2" = "$3" ]; then
        ok "$1"
    else
        fail "$1" "tshark: ${2//$'\n'/ | }" "page:   ${3//$'\n'/ | }"
    fi
}
# is NAME WANT GOT: ok when GOT is WANT
is() {
    if [ "$2" = "$3" ]; then ok "$1"; else fail "$1" "wanted: $2" "got:    $3"; fi
}

# check NAME VERSION SUBJECT AUTHORIZED ANSWER: one visit's page against the wire
check() {
    local name=$1 want_version=$2 subject=$3 authorized=$4 answer=$5 page=$work/$1.page
    local wire=$work/tshark/${ports[$1]:-none}
    echo "# $name (from port ${ports[$1]:-none})"
    [ -f "$wire.messages" ] || { fail "$name: the connection is in the capture"; return; }
    if grep -qx "server -> client  Finished" "$wire.messages" &&
       grep -qx "client -> server  Finished" "$wire.messages"; then
        ok "$name: decrypted (tshark sees a Finished each way)"
    else
        fail "$name: decrypted (tshark sees a Finished each way)" "tshark: $(paste -sd '|' "$wire.messages")"
    fi
    is "$name: $want_version on the wire" "$want_version" "$(cat "$wire.version")"
    agree "$name: the version agreed" "$(cat "$wire.version")" "$(page_version "$page")"
    agree "$name: the messages, in order and direction ($(wc -l <"$wire.messages") of them)" \
        "$(cat "$wire.messages")" "$(page_messages "$page")"
    agree "$name: the CA names the server asked for" "$(cat "$wire.ca_names")" "$(page_ca_names "$page")"
    [ -s "$wire.ca_names" ] || fail "$name: tshark read no CA name"
    agree "$name: the server's certificate" "$(cat "$wire.server_certificate")" \
        "$(page_certificate "$page" "server -> client")"
    agree "$name: the client's certificate ($subject)" "$(cat "$wire.client_certificate")" \
        "$(page_certificate "$page" "client -> server")"
    if [ "$subject" = empty ]; then
        is "$name: tshark: no certificate came" "empty" "$(cat "$wire.client_certificate")"
    else
        is "$name: tshark: the first certificate is $subject" "certificate 1 subject: $subject" \
            "$(head -n 1 "$wire.client_certificate")"
    fi
    is "$name: authorized: $authorized" "$authorized" "$(sed -n 's/^authorized: //p' "$page")"
    is "$name: /authenticate would answer $answer" "$answer" \
        "$(sed -n -E 's|^/authenticate would answer: ([0-9]+).*|\1|p' "$page")"
}
check alice-tls1.3 "TLS 1.3" CN=Alice true 200
check alice-tls1.2 "TLS 1.2" CN=Alice true 200
check bob "TLS 1.3" CN=Bob false 403
check nobody "TLS 1.3" empty false 401

finish
