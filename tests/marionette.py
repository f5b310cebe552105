#!/usr/bin/env python3
"""tests/marionette.py - visit one page in headless Firefox and print what it shows.

Not part of the lesson.  tests/browser.sh starts Firefox ESR with
--marionette (Firefox's own remote-control protocol, which geckodriver speaks
for WebDriver) on a port of its choosing; this script, with nothing but
Python's standard library, opens a session, goes to URL, and prints the
address the tab ended on, the error code of a certificate error page, and the
page's text, so that a test can assert on them: an error page is
about:neterror?e=nssFailure2&... or about:certerror?...  With
--screenshot FILE it also saves a PNG of the tab.  With --submit-form FILE
it then submits the page's first form (or the first that --form SELECTOR
picks, a CSS selector) as its button does (requestSubmit), and waits for
the answer: a download (saved by the profile in --downloads DIR) is copied
to FILE; a new page is saved to FILE, and its status and type printed: how
the Part 2 test enrolls and revokes in a real browser.  With --frames N it
prints, for each of the page's first N frames, its address and text as read
from inside the frame: how the framing test sees what a framed page shows.
With --eval SCRIPT it then prints what SCRIPT (the body of a function)
returns, run in the page: how tests/browser.sh measures /handshake's arrows.
--window WxH sets the window's size (with --screenshot, 640x160 unless
told), --full-page takes the screenshot of the whole page, not only of what
the window shows.

    marionette.py --port N URL [--screenshot FILE [--full-page]] [--window WxH]
                  [--submit-form FILE [--form SELECTOR] [--downloads DIR]]
                  [--frames N] [--eval SCRIPT] [--wait SECONDS]

Exit status: 0 when the page was read, 2 when Firefox could not be reached.
"""
import argparse
import base64
import json
import os
import shutil
import socket
import sys
import time


class Marionette:
    """Marionette frames are "LENGTH:JSON"; a command is [0, id, name, params]
    and its answer [1, id, error, result]."""

    def __init__(self, port, wait):
        deadline = time.monotonic() + wait
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.buf = b""
        self.next_id = 0
        self.read()                     # the greeting: {"applicationType": "gecko", ...}

    def read(self):
        while b":" not in self.buf:
            self.fill()
        length, _, self.buf = self.buf.partition(b":")
        while len(self.buf) < int(length):
            self.fill()
        frame, self.buf = self.buf[:int(length)], self.buf[int(length):]
        return json.loads(frame)

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("Firefox closed the Marionette connection")
        self.buf += chunk

    def call(self, name, params=None):
        self.next_id += 1
        data = json.dumps([0, self.next_id, name, params or {}]).encode()
        self.sock.sendall(str(len(data)).encode() + b":" + data)
        while True:
            answer = self.read()
            if answer[0] == 1 and answer[1] == self.next_id:
                return answer[2], answer[3]


def submit(ff, form, keep, downloads):
    """Press the form's button (requestSubmit: what a click does), then wait
    for what Firefox does with the answer: a download (the bundle, saved in
    DOWNLOADS by the profile's preferences) or a new page.  Print
    "submitted: download NAME" or "submitted: STATUS TYPE", and keep the
    file or the page's HTML in KEEP."""
    before = set(os.listdir(downloads)) if downloads else set()
    _, result = ff.call("WebDriver:ExecuteScript", {
        "script": "var f = document.querySelector(arguments[0]);"
                  "if (!f) return false;"
                  "window.submittedFromHere = true; f.requestSubmit(); return true;",
        "args": [form]})
    if not result or not result.get("value"):
        print("submitted: no form")
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if downloads:
            names = sorted(set(os.listdir(downloads)) - before)
            done = [n for n in names if not n.endswith(".part")
                    and n + ".part" not in names and os.path.getsize(os.path.join(downloads, n))]
            if done:
                shutil.copyfile(os.path.join(downloads, done[0]), keep)
                print("submitted: download %s" % done[0])
                return
        error, result = ff.call("WebDriver:ExecuteScript", {
            "script": "var nav = performance.getEntriesByType('navigation')[0];"
                      "return [window.submittedFromHere === true, document.readyState,"
                      "        nav ? nav.responseStatus : 0, document.contentType,"
                      "        document.documentElement.outerHTML];",
            "args": []})
        if error or not result:
            continue                    # between two pages
        stayed, state, status, ctype, html = result["value"]
        if not stayed and state == "complete":
            with open(keep, "w") as out:
                out.write(html)
            print("submitted: %s %s" % (status, ctype))
            return
    print("submitted: nothing came within 20 s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--screenshot")
    parser.add_argument("--full-page", action="store_true",
                        help="the screenshot holds the whole page")
    parser.add_argument("--window", help="the window's size, WIDTHxHEIGHT")
    parser.add_argument("--eval", help="print what this script (a function's body) returns")
    parser.add_argument("--submit-form")
    parser.add_argument("--form", default="form", help="CSS selector of the form to submit")
    parser.add_argument("--wait", type=float, default=30, help="seconds to wait for Firefox")
    parser.add_argument("--downloads", help="where the profile saves downloads (--submit-form)")
    parser.add_argument("--frames", type=int, default=0,
                        help="also print what the page's first N frames show")
    args = parser.parse_args()
    try:
        ff = Marionette(args.port, args.wait)
    except OSError as err:
        print("marionette.py: Firefox not reachable on port %d: %s" % (args.port, err),
              file=sys.stderr)
        return 2
    error, _ = ff.call("WebDriver:NewSession", {"capabilities": {}})
    if error:
        print("marionette.py: no session: %s" % error, file=sys.stderr)
        return 2
    # An error page makes Navigate answer with an error ("insecure
    # certificate", "unknown error"); the tab shows the error page all the
    # same, and that is what we print.
    if args.screenshot or args.window:  # a small window: the page is one line
        width, height = (args.window or "640x160").split("x")
        ff.call("WebDriver:SetWindowRect", {"width": int(width), "height": int(height)})
    error, _ = ff.call("WebDriver:Navigate", {"url": args.url})
    # On an error page, the page itself can ask Firefox for the error's code
    # (what "Advanced..." shows): MOZILLA_PKIX_ERROR_CA_CERT_USED_AS_END_ENTITY
    # on a certificate error page, SSL_ERROR_... on a "Secure Connection
    # Failed" page.
    _, result = ff.call("WebDriver:ExecuteScript", {
        "script": "var code = '';"
                  "try { code = document.getFailedCertSecurityInfo().errorCodeString; }"
                  "catch (e) {"
                  "  try { code = document.getNetErrorInfo().errorCodeString; } catch (e) {}"
                  "}"
                  "return [document.documentURI, code,"
                  "        document.body ? document.body.innerText : ''];",
        "args": []})
    uri, code, text = result["value"]
    print("url: %s" % uri)
    if error:
        print("navigate: %s" % error.get("error", error))
    if code:
        print("error code: %s" % code)
    print(text)
    # What each frame shows, read from inside it (WebDriver may enter a
    # frame of another origin, which the framing page itself may not)
    for i in range(args.frames):
        error, _ = ff.call("WebDriver:SwitchToFrame", {"id": i})
        if error:
            print("frame %d: cannot enter: %s" % (i, error.get("error", error)))
            continue
        _, result = ff.call("WebDriver:ExecuteScript", {
            "script": "return [document.documentURI,"
                      "        document.body ? document.body.innerText : ''];",
            "args": []})
        value = result["value"] if result else ["?", ""]
        print("frame %d: %s | %s" % (i, value[0], " ".join(value[1].split())))
        ff.call("WebDriver:SwitchToParentFrame")
    if args.eval:
        error, result = ff.call("WebDriver:ExecuteScript", {"script": args.eval, "args": []})
        print(("eval: %s" % error.get("message", error)) if error else result["value"])
    if args.submit_form:
        submit(ff, args.form, args.submit_form, args.downloads)
    if args.screenshot:
        _, shot = ff.call("WebDriver:TakeScreenshot", {"full": args.full_page})
        with open(args.screenshot, "wb") as out:
            out.write(base64.b64decode(shot["value"]))
    ff.call("Marionette:Quit", {"flags": ["eForceQuit"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
