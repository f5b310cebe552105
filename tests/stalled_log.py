#!/usr/bin/env python3
"""tests/stalled_log.py - a log reader that stops reading, then resumes.

Not part of the lesson.  Plays `./server 2>&1 | less` left on its first
screen: opens FIFO for reading, shrinks the pipe to two pages (8 KiB, so
that a few hundred log lines fill it), reads until the server says the port it
listens on, writes that port to PORT_FILE, and then reads nothing more.  On
SIGUSR1 it reads again, everything, into OUT_FILE, until the server closes
its end; once it has emptied the pipe it creates OUT_FILE.resumed.

    stalled_log.py FIFO PORT_FILE OUT_FILE
    stalled_log.py --pty PORT_FILE OUT_FILE -- SERVER-COMMAND...

With --pty it plays a frozen terminal instead: it starts the server with
its stderr on a pseudo-terminal (stdout in OUT_FILE.stdout), and writes
"PORT PID" to PORT_FILE.
"""
import fcntl
import os
import re
import signal
import subprocess
import sys
import time
import tty

F_SETPIPE_SZ = 1031     # Linux, <fcntl.h>


def main():
    resume = []
    signal.signal(signal.SIGUSR1, lambda *_: resume.append(True))
    if sys.argv[1] == "--pty":
        # a terminal: the server's stderr is a pty whose other side we hold
        port_file, out_file, command = sys.argv[2], sys.argv[3], sys.argv[5:]
        fd, tty_fd = os.openpty()
        tty.setraw(tty_fd)                      # lines as written, no \r added
        with open(out_file + ".stdout", "wb") as stdout:
            server = subprocess.Popen(command, stderr=tty_fd, stdout=stdout)
        os.close(tty_fd)
        pid = " %d" % server.pid
    else:
        fifo, port_file, out_file = sys.argv[1:4]
        fd = os.open(fifo, os.O_RDONLY)
        fcntl.fcntl(fd, F_SETPIPE_SZ, 8192)
        pid = ""
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
        out.write(match.group(1).decode() + pid + "\n")
    while not resume:
        time.sleep(0.1)
    with open(out_file, "wb") as out:
        out.write(seen)
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:                     # a pty whose other side closed
                chunk = b""
            if not chunk:
                return 0
            out.write(chunk)
            out.flush()
            if not os.path.exists(out_file + ".resumed"):
                open(out_file + ".resumed", "w").close()    # the pipe has room again


if __name__ == "__main__":
    sys.exit(main())
