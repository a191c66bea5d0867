#!/usr/bin/env python3
"""An IMAPS login (Python's imaplib) that may start with a PROXY protocol header, as a
load balancer would send it — or as a forger would. For Sentinella's PROXY-protocol
tests. Prints one JSON object on stdout; every socket operation has a timeout; loopback
only.

  proxied.py --port P --cafile F --user U --password W [--source IP]
             [--header none|v1|v2|garbage] [--claim IP:PORT]

--source: the local address to connect from (a 127.x address);
--header: what to send before the TLS handshake (default none: a plain client, or one
          going through a real balancer);
--claim:  the client address the header claims (default 192.0.2.10:40000).

Output: {"connected": bool, "ok": bool, "text": ...}; connected is false when the proxy
closed the connection before the IMAP greeting (a refused header or source).
"""
import argparse
import imaplib
import ipaddress
import json
import socket
import ssl
import struct

TIMEOUT = 15
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def header(kind, claim, connected):
    if kind == "none":
        return b""
    if kind == "garbage":
        return b"HELLO I AM A BALANCER\r\n"
    (cip, cport), (dip, dport) = claim, connected
    c, d = ipaddress.ip_address(cip), ipaddress.ip_address(dip)
    if c.version != d.version:
        d = ipaddress.ip_address("::ffff:" + str(d)) if c.version == 6 else d
    if kind == "v1":
        family = "TCP4" if c.version == 4 else "TCP6"
        return f"PROXY {family} {c} {d} {cport} {dport}\r\n".encode()
    family = 0x11 if c.version == 4 else 0x21
    body = c.packed + d.packed + struct.pack(">HH", cport, dport)
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack(">H", len(body)) + body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--source", default=None)
    ap.add_argument("--header", choices=["none", "v1", "v2", "garbage"], default="none")
    ap.add_argument("--claim", default="192.0.2.10:40000")
    args = ap.parse_args()
    ip, port = args.claim.rsplit(":", 1)
    prefix = header(args.header, (ip.strip("[]"), int(port)), ("127.0.0.1", args.port))

    ctx = ssl.create_default_context(cafile=args.cafile)
    ctx.check_hostname = False  # the test certificate names localhost/127.0.0.1; the CA check stays

    class Client(imaplib.IMAP4_SSL):
        def _create_socket(self, timeout):
            source = (args.source, 0) if args.source else None
            sock = socket.create_connection((self.host, self.port), timeout, source)
            if prefix:
                sock.sendall(prefix)
            return self.ssl_context.wrap_socket(sock, server_hostname=self.host)

    out = {"connected": False, "ok": False}
    try:
        conn = Client("127.0.0.1", args.port, ssl_context=ctx, timeout=TIMEOUT)
    except (OSError, imaplib.IMAP4.abort, ssl.SSLError) as e:
        out["text"] = f"{type(e).__name__}: {e}"
        print(json.dumps(out))
        return
    out["connected"] = True
    try:
        typ, data = conn.login(args.user, args.password)
        out.update(ok=typ == "OK", text=data[0].decode(errors="replace"))
        conn.logout()
    except imaplib.IMAP4.error as e:
        out["text"] = str(e)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
