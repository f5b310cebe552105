#!/usr/bin/env python3
"""tests/churn.py - a crowd that keeps coming: new connections, fast.

Not part of the lesson.  From --sources addresses (127.0.4.1 and on), one
after another, it opens TCP connections to 127.0.0.1:PORT at about --rate
a second; each sends nothing, or with --one-byte a single byte (the first
of a TLS record) once connected, or with --handshake a whole TLS handshake,
and then nothing more.  A connection the
server closes is closed here too.  It keeps at most --max-open of its own
open, and runs for --seconds, or until SIGTERM.  Prints how many it opened
and how many the server closed.

    churn.py --port N [--rate 500] [--sources 100] [--seconds 5] [--max-open 500]
             [--one-byte | --handshake]
"""
import argparse
import selectors
import signal
import socket
import ssl
import threading
import time


def handshakes(args):
    """--handshake: a thread per connection, each a TLS handshake and then
    silence until the server closes."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE     # the server's identity is not the point here
    counts = {"opened": 0, "closed": 0}
    lock = threading.Lock()

    def one(source):
        try:
            sock = socket.create_connection(("127.0.0.1", args.port), timeout=60,
                                            source_address=(source, 0))
            with lock:
                counts["opened"] += 1
            tls = context.wrap_socket(sock, server_hostname="localhost")
            tls.recv(1)
        except (OSError, ssl.SSLError):
            pass
        with lock:
            counts["closed"] += 1

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < args.seconds and not stop:
        if n < int((time.monotonic() - start) * args.rate):
            threading.Thread(target=one, args=("127.0.4.%d" % (n % args.sources + 1),),
                             daemon=True).start()
            n += 1
        time.sleep(0.002)
    print("churn: %d opened, %d closed by the server" % (counts["opened"], counts["closed"]),
          flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--sources", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--max-open", type=int, default=500)
    parser.add_argument("--one-byte", action="store_true")
    parser.add_argument("--handshake", action="store_true",
                        help="finish a TLS handshake (no certificate), then stall")
    args = parser.parse_args()
    if args.handshake:
        return handshakes(args)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    sel = selectors.DefaultSelector()
    opened = closed = 0
    start = time.monotonic()
    while time.monotonic() - start < args.seconds and not stop:
        due = int((time.monotonic() - start) * args.rate)
        while opened < due and len(sel.get_map()) < args.max_open:
            sock = socket.socket()
            sock.setblocking(False)
            sock.bind(("127.0.4.%d" % (opened % args.sources + 1), 0))
            try:
                sock.connect(("127.0.0.1", args.port))
            except BlockingIOError:
                pass
            except OSError:
                sock.close()
                break
            # connected (writable): say the byte, if any; then wait for the close
            sel.register(sock, selectors.EVENT_WRITE if args.one_byte else selectors.EVENT_READ)
            opened += 1
        for key, events in sel.select(timeout=0.002):
            sock = key.fileobj
            if events & selectors.EVENT_WRITE:
                try:
                    sock.send(b"\x16")
                    sel.modify(sock, selectors.EVENT_READ)
                    continue
                except OSError:
                    pass
            sel.unregister(sock)
            sock.close()
            closed += 1
    print("churn: %d opened, %d closed by the server" % (opened, closed), flush=True)


if __name__ == "__main__":
    main()
