#!/usr/bin/env python3
"""A real POP3 client (Python's poplib) for Sentinella's integration tests.

Prints one JSON object. Loopback only, every operation under a timeout.

  pop3_client.py login --port P --mode ssl|stls --cafile F --user U --password W [--mech user|plain|login]
  pop3_client.py retr  (same options)        log in, STAT, RETR the last message, QUIT
  pop3_client.py raw   --port P --mode ssl|stls|plain --cafile F [--inject-after-stls L] LINE...
"""
import argparse
from loopback import connect_from
import base64
import json
import poplib
import socket
import ssl
import sys

TIMEOUT = 15


def context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    return ctx


def connect(args):
    if args.mode == "ssl":
        return poplib.POP3_SSL("127.0.0.1", args.port, context=context(args.cafile), timeout=TIMEOUT)
    conn = poplib.POP3("127.0.0.1", args.port, timeout=TIMEOUT)
    if args.mode == "stls":
        conn.stls(context=context(args.cafile))
    return conn


def b64(s):
    return base64.b64encode(s.encode()).decode()


def login(conn, args):
    if args.master:
        return conn._shortcmd("AUTH PLAIN " + b64(f"{args.user}\0{args.master}\0{args.password}"))
    if args.mech == "plain":
        return conn._shortcmd("AUTH PLAIN " + b64(f"\0{args.user}\0{args.password}"))
    if args.mech == "login":
        r = conn._shortcmd("AUTH LOGIN")
        r = conn._shortcmd(b64(args.user))
        return conn._shortcmd(b64(args.password))
    conn.user(args.user)
    return conn.pass_(args.password)


def cmd_login(args, retr=False):
    conn = connect(args)
    out = {"capa": sorted(conn.capa().keys())}
    try:
        out["text"] = login(conn, args).decode()
        out["ok"] = True
        count, size = conn.stat()
        out["stat"] = [count, size]
        if retr and count:
            _, lines, _ = conn.retr(count)
            out["message"] = b"\r\n".join(lines).decode(errors="replace")
        conn.quit()
    except poplib.error_proto as e:
        out.update(ok=False, text=str(e.args[0].decode(errors="replace") if isinstance(e.args[0], bytes) else e))
        conn.close()
    print(json.dumps(out))


def cmd_raw(args):
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=TIMEOUT)
    if args.mode == "ssl":
        sock = context(args.cafile).wrap_socket(sock, server_hostname="localhost")
    f = sock.makefile("rb")
    received = [f.readline().decode(errors="replace").rstrip("\r\n")]
    if args.mode == "stls":
        injected = (args.inject_after_stls or "").encode()
        sock.sendall(b"STLS\r\n" + (injected + b"\r\n" if injected else b""))
        received.append(f.readline().decode().rstrip("\r\n"))
        sock = context(args.cafile).wrap_socket(sock, server_hostname="localhost")
        f = sock.makefile("rb")
    closed = False
    for line in args.lines:
        if closed:
            break
        try:
            sock.sendall(line.encode() + b"\r\n")
        except (ssl.SSLError, OSError):
            received.append("<closed>")
            break
        multi = line.upper() == "CAPA"
        while True:
            try:
                got = f.readline()
            except (ssl.SSLError, OSError):
                got = b""
            if not got:
                received.append("<closed>")
                closed = True
                break
            text = got.decode(errors="replace").rstrip("\r\n")
            received.append(text)
            if not multi or text == "." or text.startswith("-ERR"):
                break
    print(json.dumps({"received": received}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["login", "retr", "raw"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["ssl", "stls", "plain"], default="ssl")
    p.add_argument("--cafile")
    p.add_argument("--source", help="connect from this local address (loopback: any 127.x)")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--mech", choices=["user", "plain", "login"], default="user")
    p.add_argument("--master", help="log in as this master user on behalf of --user")
    p.add_argument("--inject-after-stls")
    p.add_argument("lines", nargs="*")
    args = p.parse_intermixed_args()
    connect_from(args.source)
    if args.command == "raw":
        cmd_raw(args)
    else:
        cmd_login(args, retr=args.command == "retr")


if __name__ == "__main__":
    sys.exit(main())
