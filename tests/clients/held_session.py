#!/usr/bin/env python3
"""A logged-in session held open, for Sentinella's revocation tests: real imaplib /
poplib / smtplib log in over implicit TLS, then the session waits (IMAP in IDLE, POP3
after STAT, SMTP after EHLO and AUTH) reading whatever the server sends, until it closes
the connection or --hold seconds pass.

  held_session.py imap|pop3|smtp --port P --cafile F --user U --password W [--hold S]
                  [--noop-after S] [--upload BYTES]

Prints {"ready": true} on its own line once logged in and waiting, then at the end one
JSON object: the lines the server sent while waiting, whether it closed the connection,
and (with --noop-after) the answer to a NOOP sent that many seconds after login (the
session still works). Loopback only, bounded by --hold.
"""
import argparse
import imaplib
import json
import poplib
import smtplib
import socket
import ssl
import sys
import time


def context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    return ctx


def ready():
    print(json.dumps({"ready": True}), flush=True)


def read_until_closed(sock, hold, noop=None, noop_after=None):
    """Reads from the socket itself (not a buffered file, which a timeout would spoil)
    until the server closes or `hold` passes; returns (lines, closed, noop answer)."""
    buf, closed, noop_sent = b"", False, None
    deadline = time.monotonic() + hold
    noop_at = time.monotonic() + noop_after if noop_after is not None else None
    sock.settimeout(0.1)
    while time.monotonic() < deadline:
        if noop_at is not None and time.monotonic() >= noop_at:
            noop_sent = noop()
            noop_at = None
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        except (OSError, EOFError):
            closed = True
            break
        if not data:
            closed = True
            break
        buf += data
    lines = [l.decode(errors="replace") for l in buf.split(b"\r\n") if l]
    return lines, closed, noop_sent


def upload(conn, args):
    """An APPEND of --upload bytes under way: its first 32 KB sent, the client waits for
    the server's next line (the revocation's BYE), then sends the rest as a client whose
    write was already queued would — through a small send buffer, so it cannot sit whole
    in the kernel — and reads until the server closes."""
    sock = conn.sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    sock.sendall(f"u1 APPEND INBOX {{{args.upload}}}\r\n".encode())
    cont = conn.readline().decode().rstrip("\r\n")
    if not cont.startswith("+"):
        return {"error": f"APPEND refused: {cont}"}
    first = min(32 * 1024, args.upload)
    sock.sendall(b"x" * first)
    ready()
    heard = conn.readline().decode(errors="replace").rstrip("\r\n")
    try:
        sock.sendall(b"x" * (args.upload - first))
        sent = "all"
    except (ssl.SSLError, OSError) as e:
        sent = f"failed: {e}"
    lines, closed, _ = read_until_closed(sock, args.hold)
    return {"heard": heard, "rest_of_upload": sent, "lines": lines, "closed": closed}


def imap(args):
    conn = imaplib.IMAP4_SSL("127.0.0.1", args.port, ssl_context=context(args.cafile), timeout=15)
    conn.login(args.user, args.password)
    conn.select("INBOX")
    if args.upload:
        return upload(conn, args)
    tag = conn._new_tag().decode()
    conn.send(f"{tag} IDLE\r\n".encode())
    first = conn.readline().decode().rstrip("\r\n")
    if not first.startswith("+"):
        return {"error": f"IDLE refused: {first}"}
    ready()

    def noop():
        # Ends IDLE and asks NOOP: the session is alive if both complete.
        conn.sock.sendall(b"DONE\r\nn1 NOOP\r\n")
        return "sent"

    lines, closed, noop_sent = read_until_closed(conn.sock, args.hold, noop, args.noop_after)
    return {"idle": first, "lines": lines, "closed": closed, "noop": noop_sent}


def pop3(args):
    conn = poplib.POP3_SSL("127.0.0.1", args.port, context=context(args.cafile), timeout=15)
    conn.user(args.user)
    conn.pass_(args.password)
    stat = conn.stat()
    ready()

    def noop():
        conn.sock.sendall(b"NOOP\r\n")
        return "sent"

    lines, closed, noop_sent = read_until_closed(conn.sock, args.hold, noop, args.noop_after)
    return {"stat": list(stat), "lines": lines, "closed": closed, "noop": noop_sent}


def smtp(args):
    conn = smtplib.SMTP_SSL("127.0.0.1", args.port, context=context(args.cafile), timeout=15)
    conn.ehlo("held.example")
    conn.login(args.user, args.password)
    ready()

    def noop():
        conn.sock.sendall(b"NOOP\r\n")
        return "sent"

    lines, closed, noop_sent = read_until_closed(conn.sock, args.hold, noop, args.noop_after)
    return {"lines": lines, "closed": closed, "noop": noop_sent}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("protocol", choices=["imap", "pop3", "smtp"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--hold", type=float, default=10)
    p.add_argument("--noop-after", type=float)
    p.add_argument("--upload", type=int, default=0,
                   help="imap: wait in the middle of an APPEND of this many bytes")
    args = p.parse_args()
    out = {"imap": imap, "pop3": pop3, "smtp": smtp}[args.protocol](args)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
