#!/usr/bin/env python3
"""tests/churn.py - a crowd that keeps coming: new connections, fast.

Not part of the lesson.  From --sources addresses (127.0.4.1 and on), one
after another, it opens TCP connections to 127.0.0.1:PORT at about --rate
a second; each sends nothing, or with --one-byte a single byte (the first
of a TLS record) once connected, and then nothing more.  A connection the
server closes is closed here too.  It keeps at most --max-open of its own
open, and runs for --seconds, or until SIGTERM.  Prints how many it opened
and how many the server closed.

    churn.py --port N [--rate 500] [--sources 100] [--seconds 5] [--max-open 500] [--one-byte]
"""
import argparse
import selectors
import signal
import socket
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--sources", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--max-open", type=int, default=500)
    parser.add_argument("--one-byte", action="store_true")
    args = parser.parse_args()

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
