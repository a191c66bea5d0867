#!/usr/bin/env python3
"""A real IMAP client (Python's imaplib) for Sentinella's integration tests.

Prints one JSON object on stdout. Every socket operation has a timeout; only loopback.

  imap_client.py login   --port P --mode ssl|starttls --cafile F --user U --password W [--mech login|plain|login-cmd]
                         [--id NAME VERSION]  (RFC 2971 ID before the login, as Thunderbird sends it)
  imap_client.py session --port P --mode ssl|starttls|plain --cafile F --user U --password W [--master M]
  imap_client.py raw     --port P --mode ssl|starttls|plain --cafile F LINE [LINE ...]
"""
import argparse
from loopback import connect_from
import base64
import imaplib
import json
import socket
import ssl
import sys

TIMEOUT = 15


def context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False  # the test certificate names localhost/127.0.0.1; the CA check stays on
    return ctx


def connect(args):
    if args.mode == "ssl":
        return imaplib.IMAP4_SSL("127.0.0.1", args.port, ssl_context=context(args.cafile), timeout=TIMEOUT)
    conn = imaplib.IMAP4("127.0.0.1", args.port, timeout=TIMEOUT)
    if args.mode == "starttls":
        conn.starttls(ssl_context=context(args.cafile))
    return conn


def login(conn, args):
    if getattr(args, "master", None):
        blob = f"{args.user}\0{args.master}\0{args.password}".encode()
        return conn.authenticate("PLAIN", lambda _: blob)
    mech = getattr(args, "mech", "login-cmd")
    if mech == "plain":
        return conn.authenticate("PLAIN", lambda _: f"\0{args.user}\0{args.password}".encode())
    if mech == "login":
        answers = iter([args.user.encode(), args.password.encode()])
        return conn.authenticate("LOGIN", lambda _: next(answers))
    return conn.login(args.user, args.password)


def send_id(conn, name, version):
    """RFC 2971 ID, which imaplib does not know: registered, then sent as is."""
    imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED"))
    typ, data = conn._simple_command("ID", f'("name" "{name}" "version" "{version}")')
    return typ, conn._untagged_response(typ, data, "ID")[1]


def cmd_login(args):
    conn = connect(args)
    out = {"preauth_caps": list(conn.capabilities)}
    if args.id:
        typ, data = send_id(conn, *args.id)
        out["id"] = [typ, data[0].decode(errors="replace") if data and data[0] else None]
    try:
        typ, data = login(conn, args)
        out.update(ok=typ == "OK", text=data[0].decode(errors="replace"))
        # The tagged OK carried the upstream's capabilities: imaplib stores the response code.
        code = conn.untagged_responses.get("CAPABILITY", [b""])[-1]
        out["caps_after_login"] = code.decode().split() if code else []
        conn.logout()
    except imaplib.IMAP4.error as e:
        out.update(ok=False, text=str(e))
        try:
            conn.shutdown()
        except OSError:
            pass
    print(json.dumps(out))


def idle(conn):
    """RFC 2177 IDLE by hand (imaplib has no idle() before Python 3.14)."""
    tag = conn._new_tag()
    conn.send(tag + b" IDLE\r\n")
    first = conn.readline()
    conn.send(b"DONE\r\n")
    while True:
        line = conn.readline()
        if line.startswith(tag):
            return first.decode().strip(), line.decode().strip()


def cmd_session(args):
    conn = connect(args)
    typ, _ = login(conn, args)
    assert typ == "OK"
    out = {}
    typ, data = conn.select("INBOX")
    out["exists_before"] = int(data[0])
    message = (
        "From: mario@pec.example.it\r\nTo: anna@pec.example.it\r\nSubject: prova\r\n\r\n"
        "Fattura n. 1 \u00e8 allegata.\r\n"
    ).encode()
    typ, data = conn.append("INBOX", "(\\Seen)", None, message)
    out["append"] = typ
    typ, data = conn.select("INBOX")
    out["exists_after"] = int(data[0])
    n = out["exists_after"]
    typ, data = conn.fetch(str(n), "(FLAGS RFC822)")
    out["fetched"] = data[0][1].decode()
    out["flags"] = data[0][0].decode()
    out["idle"] = idle(conn)
    typ, data = conn.logout()
    out["logout"] = typ
    print(json.dumps(out))


def cmd_append(args):
    """Puts the message in --file into INBOX (a delivery, when run against Dovecot)."""
    conn = connect(args)
    typ, _ = login(conn, args)
    assert typ == "OK"
    with open(args.file, "rb") as f:
        typ, _ = conn.append("INBOX", None, None, f.read())
    conn.logout()
    print(json.dumps({"append": typ}))


def cmd_subjects(args):
    """Logs in, reads the Subject of every message in INBOX."""
    conn = connect(args)
    try:
        typ, _ = login(conn, args)
    except imaplib.IMAP4.error as e:
        print(json.dumps({"ok": False, "text": str(e)}))
        return
    typ, data = conn.select("INBOX", readonly=True)
    subjects = []
    for n in range(1, int(data[0]) + 1):
        typ, msg = conn.fetch(str(n), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        subjects.append(msg[0][1].decode().strip())
    conn.logout()
    print(json.dumps({"ok": True, "subjects": subjects}))


def cmd_raw(args):
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=TIMEOUT)
    if args.sndbuf:
        # A small send buffer (no autotuning): a long line cannot be buffered whole, so
        # the client is still writing when the server answers and closes.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, args.sndbuf)
    if args.mode == "ssl":
        sock = context(args.cafile).wrap_socket(sock, server_hostname="localhost")
    f = sock.makefile("rb")
    received = [f.readline().decode(errors="replace").rstrip("\r\n")]
    if args.mode == "starttls":
        injected = (args.inject_after_starttls or "").encode()
        sock.sendall(b"T0 STARTTLS\r\n" + (injected + b"\r\n" if injected else b""))
        received.append(f.readline().decode().rstrip("\r\n"))
        sock = context(args.cafile).wrap_socket(sock, server_hostname="localhost")
        f = sock.makefile("rb")
    if args.together:
        # Everything in one write (pipelining / injection tests); read until the last tag.
        sock.sendall(b"".join(l.encode("utf-8", "surrogateescape") + b"\r\n" for l in args.lines))
        last = args.lines[-1].split(" ", 1)[0].encode()
        while True:
            got = f.readline()
            if not got:
                received.append("<closed>")
                break
            received.append(got.decode(errors="replace").rstrip("\r\n"))
            if got.startswith(last + b" "):
                break
        print(json.dumps({"received": received}))
        return
    closed = False
    for line in args.lines:
        if closed:
            break
        tag = line.split(" ", 1)[0].encode()
        try:
            sock.sendall(line.encode("utf-8", "surrogateescape") + b"\r\n")
        except (ssl.SSLError, OSError):
            received.append("<closed>")
            break
        while True:
            try:
                got = f.readline()
            except (ssl.SSLError, OSError):
                got = b""
            if not got:
                received.append("<closed>")
                closed = True
                break
            received.append(got.decode(errors="replace").rstrip("\r\n"))
            if got.startswith(tag + b" ") or got.startswith(b"+"):
                break
    print(json.dumps({"received": received}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["login", "session", "raw", "append", "subjects"])
    p.add_argument("--file", help="append: the message")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["ssl", "starttls", "plain"], default="ssl")
    p.add_argument("--cafile")
    p.add_argument("--source", help="connect from this local address (loopback: any 127.x)")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--master")
    p.add_argument("--id", nargs=2, metavar=("NAME", "VERSION"), help="login: send ID first")
    p.add_argument("--mech", choices=["login-cmd", "plain", "login"], default="login-cmd")
    p.add_argument("--together", action="store_true", help="raw: send all lines in one write")
    p.add_argument("--inject-after-starttls", help="raw: plaintext sent in the same write as STARTTLS")
    p.add_argument("--pad", type=int, default=0,
                   help="raw: this many 'x' appended to the first line (beyond argv's limits)")
    p.add_argument("--sndbuf", type=int, default=0, help="raw: the socket's send buffer")
    p.add_argument("lines", nargs="*")
    args = p.parse_intermixed_args()
    if args.pad and args.lines:
        args.lines[0] += "x" * args.pad
    connect_from(args.source)
    commands = {"login": cmd_login, "session": cmd_session, "raw": cmd_raw,
                "append": cmd_append, "subjects": cmd_subjects}
    commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
