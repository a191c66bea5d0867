#!/usr/bin/env python3
"""A real SMTP submission client (Python's smtplib) for Sentinella's integration tests.

Prints one JSON object. Loopback only, every operation under a timeout.

  smtp_client.py send --port P --mode ssl|starttls --cafile F --user U --password W
                      [--mech plain|login] [--ehlo NAME] --from A --to B --file MESSAGE
  smtp_client.py raw  --port P --mode ssl|starttls|plain --cafile F [--inject-after-starttls L] LINE...
"""
import argparse
from loopback import connect_from
import json
import smtplib
import socket
import ssl
import sys

TIMEOUT = 15


def context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    return ctx


def cmd_send(args):
    if args.mode == "ssl":
        conn = smtplib.SMTP_SSL("127.0.0.1", args.port, context=context(args.cafile), timeout=TIMEOUT)
    else:
        conn = smtplib.SMTP("127.0.0.1", args.port, timeout=TIMEOUT)
    out = {}
    conn.ehlo(args.ehlo)
    out["ehlo_before"] = conn.ehlo_resp.decode().split("\n")
    if args.mode == "starttls":
        conn.starttls(context=context(args.cafile))
        conn.ehlo(args.ehlo)
    out["ehlo"] = conn.ehlo_resp.decode().split("\n")
    try:
        conn.user, conn.password = args.user, args.password
        mech = {"plain": conn.auth_plain, "login": conn.auth_login}[args.mech]
        code, text = conn.auth(args.mech.upper(), mech)
        out.update(auth_code=code, auth_text=text.decode())
    except smtplib.SMTPAuthenticationError as e:
        out.update(ok=False, auth_code=e.smtp_code, auth_text=e.smtp_error.decode())
        conn.close()
        print(json.dumps(out))
        return
    except smtplib.SMTPException as e:
        out.update(ok=False, auth_code=getattr(e, "smtp_code", None), auth_text=str(e))
        conn.close()
        print(json.dumps(out))
        return
    if not args.file:
        # Only logging in.
        out.update(ok=True)
        conn.quit()
        print(json.dumps(out))
        return
    with open(args.file, "rb") as f:
        message = f.read()
    refused = conn.sendmail(args.sender, [args.to], message)
    out.update(ok=not refused, refused=list(refused))
    conn.quit()
    print(json.dumps(out))


def read_reply(f):
    lines = []
    while True:
        got = f.readline()
        if not got:
            lines.append("<closed>")
            return lines
        text = got.decode(errors="replace").rstrip("\r\n")
        lines.append(text)
        if len(text) < 4 or text[3] != "-":
            return lines


def cmd_raw(args):
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=TIMEOUT)
    if args.mode == "ssl":
        sock = context(args.cafile).wrap_socket(sock, server_hostname="localhost")
    f = sock.makefile("rb")
    received = read_reply(f)
    if args.mode == "starttls":
        sock.sendall(b"EHLO client.example\r\n")
        received += read_reply(f)
        injected = (args.inject_after_starttls or "").encode()
        sock.sendall(b"STARTTLS\r\n" + (injected + b"\r\n" if injected else b""))
        received += read_reply(f)
        sock = context(args.cafile).wrap_socket(sock, server_hostname="localhost")
        f = sock.makefile("rb")
    for line in args.lines:
        try:
            sock.sendall(line.encode() + b"\r\n")
            reply = read_reply(f)
        except (ssl.SSLError, OSError):
            reply = []
        received += reply
        if not reply or reply[-1] == "<closed>":
            if not reply:
                received.append("<closed>")
            break
    print(json.dumps({"received": received}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["send", "raw"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["ssl", "starttls", "plain"], default="ssl")
    p.add_argument("--cafile")
    p.add_argument("--source", help="connect from this local address (loopback: any 127.x)")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--mech", choices=["plain", "login"], default="plain")
    p.add_argument("--from", dest="sender")
    p.add_argument("--ehlo", default="client.example", help="send: the name given in EHLO")
    p.add_argument("--to")
    p.add_argument("--file")
    p.add_argument("--inject-after-starttls")
    p.add_argument("lines", nargs="*")
    args = p.parse_intermixed_args()
    connect_from(args.source)
    {"send": cmd_send, "raw": cmd_raw}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
