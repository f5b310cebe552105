#!/usr/bin/env python3
"""tests/flood.py - many slow visitors from one address, held open for a while.

Not part of the lesson.  Plays the mischievous student of issue "many
visitors at once": from --source (an address of the loopback range, e.g.
127.0.0.2, so that the server sees another client than the test's own
127.0.0.1; or an IPv6 address of this machine, to ::1), it opens --idle TCP connections that never say a word and
--dribble TLS connections that finish the handshake and then send a request
one byte a second, interleaved, and holds them for --hold seconds.

    flood.py --port N --source 127.0.0.2 [--idle 100] [--dribble 20] [--hold 6]
             [--ready-file FILE] [--settle 0.5]

Prints, once every connection has been tried (and writes the same line to
--ready-file, so that a test can wait for it):
    ready: N opened, K closed at once by the server
("closed at once": ended by the server within --settle seconds, 0.5 unless
told, before it could have timed out; a test that does not look at the count
gives --settle 0).  Then holds, and exits 0.  Only addresses on this machine.
"""
import argparse
import select
import socket
import ssl
import sys
import threading
import time


def connect(source, port):
    """A TCP connection from source: 127.x.y.z to 127.0.0.1, IPv6 to ::1."""
    family, target = (socket.AF_INET6, "::1") if ":" in source else (socket.AF_INET, "127.0.0.1")
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect((target, port))
    return sock


def closed_by_server(sock):
    """True if the server has closed (or reset) the connection already."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def dribble(sock, until):
    """Handshake, then a request a byte a second until `until` or the close."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE     # the server's identity is not the point here
    sock.settimeout(60)                     # a slow server (valgrind) still finishes
    try:
        tls = context.wrap_socket(sock, server_hostname="localhost")
        for byte in b"GET /authenticate HTTP/1.1\r\nHost: localhost\r\n":
            if time.monotonic() >= until:
                return
            tls.send(bytes([byte]))
            time.sleep(1)
    except (OSError, ssl.SSLError):
        pass                                # cut off: what the server should do


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", default="127.0.0.2")
    parser.add_argument("--idle", type=int, default=100)
    parser.add_argument("--dribble", type=int, default=20)
    parser.add_argument("--hold", type=float, default=6)
    parser.add_argument("--ready-file")
    parser.add_argument("--settle", type=float, default=0.5)
    args = parser.parse_args()
    if not args.source.startswith("127.") and ":" not in args.source:
        parser.error("--source must be a loopback address (127.x.y.z) or an IPv6 address "
                     "of this machine (::1, or one tests/netns.sh gives it)")

    until = time.monotonic() + args.hold
    idle, threads = [], []
    for i in range(max(args.idle, args.dribble)):
        if i < args.dribble:
            try:
                sock = connect(args.source, args.port)
                thread = threading.Thread(target=dribble, args=(sock, until), daemon=True)
                thread.start()
                threads.append((sock, thread))
            except OSError:
                pass
        if i < args.idle:
            try:
                idle.append(connect(args.source, args.port))
            except OSError:
                pass
    time.sleep(args.settle)
    closed = sum(closed_by_server(s) for s in idle)
    closed += sum(not t.is_alive() for _, t in threads)
    line = "ready: %d opened, %d closed at once by the server" % (len(idle) + len(threads), closed)
    print(line)
    sys.stdout.flush()
    if args.ready_file:
        with open(args.ready_file, "w") as out:
            out.write(line + "\n")
    while time.monotonic() < until:
        time.sleep(0.1)
    for sock in idle:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
