#!/usr/bin/env python3
"""tests/tls_probes.py - malformed and unacceptable TLS handshakes, from raw bytes.

Not part of the lesson.  Each probe writes a ClientHello (or, for the last
ones, a whole TLS 1.2 client flight up to a broken Certificate message) byte
by byte with nothing but the standard library, then reads the first record
the server sends back.  RFC 8446 section 6 and RFC 5246 section 7.2 say a
server that finds such an error MUST answer with an alert; a bare close is a
failure.

    tls_probes.py --port N [--host H] [--only NAME] [--list]

Prints one line per probe, "ok   NAME: alert DESCRIPTION" or "FAIL ...",
then "N passed, N failed".  Exit status 0 when every probe got the alert
it expects.  Used by test.sh against ./server and against gnutls-serv (the
same library's own server, as a reference).
"""
import argparse
import os
import socket
import struct
import sys
import time

ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
          22: "record_overflow", 40: "handshake_failure", 42: "bad_certificate",
          43: "unsupported_certificate", 46: "certificate_unknown", 47: "illegal_parameter",
          48: "unknown_ca", 50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
          71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback",
          109: "missing_extension", 110: "unsupported_extension", 116: "certificate_required"}

# cipher suites (RFC 8446 B.4, RFC 5289)
TLS13_SUITES = [0x1301, 0x1302, 0x1303]
TLS12_SUITES = [0xC02F, 0xC030, 0xC02B, 0xC02C, 0x009C, 0x009D]
# signature schemes (RFC 8446 4.2.3)
SIG_ALGS = [0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0403, 0x0503]


def u8(n):
    return struct.pack("!B", n)


def u16(n):
    return struct.pack("!H", n)


def u24(n):
    return struct.pack("!I", n)[1:]


def vec8(b):
    return u8(len(b)) + b


def vec16(b):
    return u16(len(b)) + b


def ext(kind, body):
    return u16(kind) + vec16(body)


def extensions(version=0x0303, sig_algs=None, tls13=False):
    """A browser-like set of ClientHello extensions."""
    sig = sig_algs if sig_algs is not None else SIG_ALGS
    out = [
        ext(0x000a, vec16(u16(0x001d) + u16(0x0017))),           # groups: x25519, secp256r1
        ext(0x000b, vec8(b"\x00")),                              # ec_point_formats
        ext(0x000d, vec16(b"".join(u16(a) for a in sig))),       # signature_algorithms
        ext(0x0017, b""),                                        # extended_master_secret
        ext(0xff01, b"\x00"),                                    # renegotiation_info
    ]
    if tls13:
        out.append(ext(0x002b, vec8(u16(0x0304) + u16(0x0303))))  # supported_versions
        share = u16(0x001d) + vec16(os.urandom(32))               # any 32 bytes will do
        out.append(ext(0x0033, vec16(share)))                     # key_share
    return b"".join(out)


def client_hello(version=0x0303, suites=None, session_id=b"", exts=None,
                 suites_len=None, session_len=None, exts_len=None, cut=None):
    """The ClientHello body; the *_len arguments make a length field lie."""
    suites = TLS12_SUITES if suites is None else suites
    exts = extensions() if exts is None else exts
    suite_bytes = b"".join(u16(s) for s in suites)
    body = (u16(version) + os.urandom(32)
            + u8(len(session_id) if session_len is None else session_len) + session_id
            + u16(len(suite_bytes) if suites_len is None else suites_len) + suite_bytes
            + vec8(b"\x00")
            + u16(len(exts) if exts_len is None else exts_len) + exts)
    if cut is not None:
        body = body[:cut]
    return body


def handshake(kind, body):
    return u8(kind) + u24(len(body)) + body


def record(content_type, body, version=0x0301):
    return u8(content_type) + u16(version) + u16(len(body)) + body


def hello_record(record_version=0x0301, **kw):
    return record(22, handshake(1, client_hello(**kw)), record_version)


class Closed(Exception):
    pass


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise Closed("the server closed the connection" +
                         (" mid-record" if data else " without an alert"))
        data += chunk
    return data


def read_record(sock):
    head = read_exact(sock, 5)
    kind, _version, length = struct.unpack("!BHH", head)
    return kind, read_exact(sock, length)


def describe(kind, body):
    if kind == 21 and len(body) == 2:
        level = {1: "warning", 2: "fatal"}.get(body[0], str(body[0]))
        return "alert %s (%s)" % (ALERTS.get(body[1], str(body[1])), level)
    return {20: "change_cipher_spec", 22: "handshake", 23: "application_data"}.get(
        kind, "record type %d" % kind) + " record"


def first_answer(sock, data):
    """Send data; describe the first record that comes back."""
    sock.sendall(data)
    return describe(*read_record(sock))


def broken_certificate(sock, certificate_body):
    """A TLS 1.2 handshake up to the server's ServerHelloDone, then our
    Certificate message with certificate_body in it.  Describes the first
    record the server sends after that."""
    sock.sendall(hello_record(suites=[0xC02F, 0xC02B]))
    buffered = b""
    while True:                         # the server's first flight, up to ServerHelloDone
        kind, body = read_record(sock)
        if kind != 22:
            return "%s before ServerHelloDone" % describe(kind, body)
        buffered += body
        done = False
        while len(buffered) >= 4:
            length = int.from_bytes(buffered[1:4], "big")
            if len(buffered) < 4 + length:
                break
            done = done or buffered[0] == 14     # ServerHelloDone
            buffered = buffered[4 + length:]
        if done:
            break
    return first_answer(sock, record(22, handshake(11, certificate_body), 0x0303))


def garbage_certificate():
    cert = b"\x30\x03\x02\x01\x01"      # a DER SEQUENCE holding one INTEGER: not a certificate
    return vec24(vec24(cert))


def lying_certificate_list():
    cert = b"\x30\x03\x02\x01\x01"
    return u24(200) + u24(len(cert)) + cert     # says 200 bytes, holds 8


def vec24(b):
    return u24(len(b)) + b


# name: (what is wrong, bytes to send or a function of the socket, the alerts
# that are right for it).  Where RFC 8446 names one alert, only that one.
PROBES = {
    "tls1.0-only": ("a TLS 1.0 ClientHello",
                    hello_record(version=0x0301), ["protocol_version"]),
    "tls1.1-only": ("a TLS 1.1 ClientHello",
                    hello_record(version=0x0302), ["protocol_version"]),
    "ssl3-only": ("an SSL 3.0 ClientHello in an SSL 3.0 record",
                  hello_record(record_version=0x0300, version=0x0300), ["protocol_version"]),
    "truncated-hello": ("a ClientHello that ends inside its cipher suites",
                        hello_record(cut=2 + 32 + 1 + 2 + 3), ["decode_error"]),
    "suites-length-long": ("cipher suites' length says more bytes than follow",
                           hello_record(suites_len=0x0400), ["decode_error"]),
    "suites-length-short": ("cipher suites' length cuts the list short (odd)",
                            hello_record(suites_len=3), ["decode_error"]),
    "extensions-length-long": ("extensions' length says more bytes than follow",
                               hello_record(exts_len=0x0800), ["decode_error"]),
    "extensions-length-short": ("extensions' length cuts an extension in two",
                                hello_record(exts_len=7), ["decode_error"]),
    "session-id-length-long": ("session id's length says 33, over the limit of 32",
                               hello_record(session_len=33), ["decode_error", "illegal_parameter"]),
    "session-id-length-short": ("session id's length says 0 while 32 bytes follow",
                                hello_record(session_id=os.urandom(32), session_len=0),
                                ["decode_error"]),
    "no-common-suite": ("only cipher suites the server does not have",
                        hello_record(suites=[0x000A, 0x0005]), ["handshake_failure"]),
    "no-common-suite-tls13": ("TLS 1.3 with only a cipher suite the server does not have",
                              hello_record(suites=[0x1305], exts=extensions(tls13=True)),
                              ["handshake_failure"]),
    "no-common-signature": ("ECDHE suites, and only signature algorithms the server cannot use",
                            hello_record(suites=[0xC02F, 0xC030, 0xC02B, 0xC02C],
                                         exts=extensions(sig_algs=[0xFEFE])),
                            ["handshake_failure"]),
    "no-common-signature-tls13": ("TLS 1.3 with only signature algorithms the server cannot use",
                                  hello_record(suites=TLS13_SUITES,
                                               exts=extensions(sig_algs=[0xFEFE], tls13=True)),
                                  ["handshake_failure"]),
    "certificate-garbage": ("TLS 1.2: a Certificate message whose certificate is not X.509",
                            lambda s: broken_certificate(s, garbage_certificate()),
                            ["bad_certificate", "decode_error"]),
    "certificate-length-lies": ("TLS 1.2: a Certificate message whose list length lies",
                                lambda s: broken_certificate(s, lying_certificate_list()),
                                ["decode_error"]),
    "not-a-handshake": ("application data before any handshake",
                        record(23, b"hello", 0x0303), ["unexpected_message"]),
}


def run(host, port, name):
    what, send, expected = PROBES[name]
    try:
        with socket.create_connection((host, port), timeout=10) as sock:
            got = send(sock) if callable(send) else first_answer(sock, send)
    except (Closed, OSError) as err:
        got = str(err) or type(err).__name__
    ok = any(got.startswith("alert %s " % e) for e in expected)
    print("%s %s: %s -> %s%s" % ("ok  " if ok else "FAIL", name, what, got,
                                  "" if ok else " (wanted alert %s)" % " or ".join(expected)))
    sys.stdout.flush()
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--only", action="append", help="run this probe (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the probes")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds between probes (for a server that needs them)")
    args = parser.parse_args()
    if args.list:
        for name, (what, _send, expected) in PROBES.items():
            print("%-26s %s -> %s" % (name, what, " or ".join(expected)))
        return 0
    if args.port is None:
        parser.error("--port is required")
    names = args.only or list(PROBES)
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        parser.error("no probe named %s (see --list)" % ", ".join(unknown))
    passed = 0
    for name in names:
        passed += run(args.host, args.port, name)
        time.sleep(args.pause)
    print("%d passed, %d failed" % (passed, len(names) - passed))
    return 0 if passed == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
