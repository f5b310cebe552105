#!/usr/bin/env python3
"""tests/stalled_log.py - a log reader that stops reading, then resumes.

Not part of the lesson.  Plays `./server 2>&1 | less` left on its first
screen: opens FIFO for reading, shrinks the pipe to two pages (8 KiB, so
that a few hundred log lines fill it), reads until the server says the port it
listens on, writes that port to PORT_FILE, and then reads nothing more.  On
SIGUSR1 it reads again, everything, into OUT_FILE, until the server closes
its end; once it has emptied the pipe it creates OUT_FILE.resumed.

    stalled_log.py FIFO PORT_FILE OUT_FILE
"""
import fcntl
import os
import re
import signal
import sys
import time

F_SETPIPE_SZ = 1031     # Linux, <fcntl.h>


def main():
    fifo, port_file, out_file = sys.argv[1:4]
    resume = []
    signal.signal(signal.SIGUSR1, lambda *_: resume.append(True))
    fd = os.open(fifo, os.O_RDONLY)
    fcntl.fcntl(fd, F_SETPIPE_SZ, 8192)
    seen = b""
    while True:
        chunk = os.read(fd, 1)
        if not chunk:
            return 1
        seen += chunk
        match = re.search(rb"listening on https://localhost:(\d+)/", seen)
        if match and seen.endswith(b"\n"):
            break
    with open(port_file, "w") as out:
        out.write(match.group(1).decode() + "\n")
    while not resume:
        time.sleep(0.1)
    with open(out_file, "wb") as out:
        out.write(seen)
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return 0
            out.write(chunk)
            out.flush()
            if not os.path.exists(out_file + ".resumed"):
                open(out_file + ".resumed", "w").close()    # the pipe has room again


if __name__ == "__main__":
    sys.exit(main())
