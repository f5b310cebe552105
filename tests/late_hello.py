#!/usr/bin/env python3
"""tests/late_hello.py - a client that connects first and says hello later.

It opens the TCP connection, prints "connected", and waits for a line on its
standard input before it starts the TLS handshake with the given certificate
and asks for PATH; then it prints the answer.  test.sh revokes the
certificate in between, to see that the server checks it against the CRL in
force when the certificate arrives, not when the connection was accepted.

    late_hello.py PORT CA CERT KEY PATH
"""
import socket
import ssl
import sys


def main():
    port, ca, cert, key, path = sys.argv[1:6]
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", int(port)), timeout=60)
    print("connected", flush=True)
    sys.stdin.readline()
    with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path).encode())
        answer = b""
        while True:
            chunk = tls.recv(4096)
            if not chunk:
                break
            answer += chunk
    print(answer.decode("utf-8", "replace"))


if __name__ == "__main__":
    main()
