#!/usr/bin/env python3
"""Fetches what configures a mail program from the owner's page listener, as the
programs do, and reads it as they do. Only loopback; every request has a timeout.
Prints one JSON object.

  mail_setup.py autoconfig --port P --cafile F [--address A] [--host H] [--well-known]
      GET /mail/config-v1.1.xml?emailaddress=A (or the .well-known path), with Host: H;
      prints {"status", "body", "provider", "domains", "incoming": [...], "outgoing": [...],
      "thunderbird": {...}}: each server's fields, and the account Thunderbird would make
      for A (its first incoming server, %EMAILADDRESS% replaced).
  mail_setup.py autodiscover --port P --cafile F (--address A | --raw TEXT) [--pad N]
      POST /autodiscover/autodiscover.xml with the request Outlook sends for A (or TEXT,
      or the request padded with N bytes of comment); prints {"status", "body",
      "protocols": [{"Type", "Server", "Port", "SSL", "Encryption", "LoginName", ...}]}.
  mail_setup.py profile --file F --cafile C
      Checks a configuration profile's CMS signature against the certificate C with
      openssl, then reads the property list inside as a device would; prints {"verified",
      "error", "plist"} (the plist's mail payload, and its top level without it).
  mail_setup.py login --host H --port P --cafile F --tls ssl|starttls --protocol imap|smtp|pop3
                      --user U --password-stdin
      Logs in as a mail program would with those settings; prints {"ok", "error"}.
"""
import argparse
import http.client
import imaplib
import json
import poplib
import smtplib
import socket
import ssl
import sys
import urllib.parse
import xml.etree.ElementTree as ET

REQUEST = ("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
           "<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\">\n"
           "  <Request>\n    <EMailAddress>{address}</EMailAddress>\n"
           "    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>\n"
           "  </Request>\n</Autodiscover>\n")
OUTLOOK = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"


def context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False  # the test certificate names 127.0.0.1; the CA check stays on
    return ctx


def request(args, method, path, body=None, headers=None):
    conn = http.client.HTTPSConnection("127.0.0.1", args.port, context=context(args.cafile), timeout=10)
    if getattr(args, "pad", 0):
        # A small send buffer (no autotuning): a padded body cannot be buffered whole, so
        # the client is still writing when the server answers.
        conn.connect()
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read().decode("utf-8", "replace")
    conn.close()
    return r.status, data


def server(el):
    return {child.tag: (child.text or "") for child in el} | {"type": el.get("type")}


def autoconfig(args):
    path = "/.well-known/autoconfig/mail/config-v1.1.xml" if args.well_known else "/mail/config-v1.1.xml"
    if args.address is not None:
        path += "?" + urllib.parse.urlencode({"emailaddress": args.address})
    headers = {"Host": args.host} if args.host else {}
    status, body = request(args, "GET", path, headers=headers)
    out = {"status": status, "body": body}
    if status == 200:
        root = ET.fromstring(body)
        assert root.tag == "clientConfig" and root.get("version") == "1.1", body
        provider = root.find("emailProvider")
        incoming = [server(s) for s in provider.findall("incomingServer")]
        outgoing = [server(s) for s in provider.findall("outgoingServer")]
        out |= {"provider": provider.get("id"),
                "domains": [d.text for d in provider.findall("domain")],
                "display_name": provider.findtext("displayName"),
                "incoming": incoming, "outgoing": outgoing}
        # What Thunderbird makes of it (readFromXML + the account wizard): the first
        # incoming server is the default, placeholders replaced by the address typed.
        address = args.address or ""
        fill = lambda s: s.replace("%EMAILADDRESS%", address)
        if incoming and outgoing:
            i, o = incoming[0], outgoing[0]
            out["thunderbird"] = {
                "incoming": {"type": i["type"], "hostname": i["hostname"], "port": int(i["port"]),
                             "socketType": i["socketType"], "username": fill(i["username"])},
                "outgoing": {"hostname": o["hostname"], "port": int(o["port"]),
                             "socketType": o["socketType"], "username": fill(o["username"])},
            }
    print(json.dumps(out))


def autodiscover(args):
    if args.raw is not None:
        body = args.raw
    else:
        body = REQUEST.format(address=args.address)
        if args.pad:
            body = body.replace("<Request>", "<!--" + "x" * args.pad + "--><Request>")
    status, text = request(args, "POST", "/autodiscover/autodiscover.xml", body=body.encode(),
                           headers={"Content-Type": "text/xml; charset=utf-8",
                                    # Outlook sends the account's credentials along.
                                    "Authorization": "Basic dXNlcjpzZWNyZXQtbmV2ZXItbG9nZ2Vk"})
    out = {"status": status, "body": text}
    if status == 200:
        root = ET.fromstring(text)
        account = root.find(f"{OUTLOOK}Response/{OUTLOOK}Account")
        out["account_type"] = account.findtext(f"{OUTLOOK}AccountType")
        out["action"] = account.findtext(f"{OUTLOOK}Action")
        out["protocols"] = [{c.tag.replace(OUTLOOK, ""): (c.text or "") for c in p}
                            for p in account.findall(f"{OUTLOOK}Protocol")]
    print(json.dumps(out))


def login(args):
    password = sys.stdin.readline().rstrip("\n")
    ctx = context(args.cafile)
    try:
        if args.protocol == "imap":
            c = (imaplib.IMAP4_SSL(args.host, args.port, ssl_context=ctx, timeout=10)
                 if args.tls == "ssl" else imaplib.IMAP4(args.host, args.port, timeout=10))
            if args.tls == "starttls":
                c.starttls(ssl_context=ctx)
            c.login(args.user, password)
            c.logout()
        elif args.protocol == "pop3":
            c = (poplib.POP3_SSL(args.host, args.port, context=ctx, timeout=10)
                 if args.tls == "ssl" else poplib.POP3(args.host, args.port, timeout=10))
            if args.tls == "starttls":
                c.stls(context=ctx)
            c.user(args.user)
            c.pass_(password)
            c.quit()
        else:
            c = (smtplib.SMTP_SSL(args.host, args.port, context=ctx, timeout=10)
                 if args.tls == "ssl" else smtplib.SMTP(args.host, args.port, timeout=10))
            if args.tls == "starttls":
                c.starttls(context=ctx)
            c.login(args.user, password)
            c.quit()
        print(json.dumps({"ok": True, "error": None}))
    except Exception as e:  # the test reads what failed
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))


def profile(args):
    import plistlib
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        plain = f"{d}/plain.plist"
        r = subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in", args.file,
                            "-CAfile", args.cafile, "-purpose", "any", "-out", plain],
                           capture_output=True, text=True, timeout=30)
        out = {"verified": r.returncode == 0, "error": r.stderr.strip()}
        if r.returncode == 0:
            with open(plain, "rb") as f:
                top = plistlib.load(f)
            mail = top.pop("PayloadContent")[0]
            out["plist"] = {"top": top, "mail": mail}
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("autoconfig")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--cafile", required=True)
    a.add_argument("--address")
    a.add_argument("--host")
    a.add_argument("--well-known", action="store_true")
    d = sub.add_parser("autodiscover")
    d.add_argument("--port", type=int, required=True)
    d.add_argument("--cafile", required=True)
    d.add_argument("--address")
    d.add_argument("--raw")
    d.add_argument("--pad", type=int, default=0)
    f = sub.add_parser("profile")
    f.add_argument("--file", required=True)
    f.add_argument("--cafile", required=True)
    l = sub.add_parser("login")
    l.add_argument("--host", required=True)
    l.add_argument("--port", type=int, required=True)
    l.add_argument("--cafile", required=True)
    l.add_argument("--tls", choices=["ssl", "starttls"], required=True)
    l.add_argument("--protocol", choices=["imap", "pop3", "smtp"], required=True)
    l.add_argument("--user", required=True)
    l.add_argument("--password-stdin", action="store_true", required=True)
    args = ap.parse_args()
    {"autoconfig": autoconfig, "autodiscover": autodiscover, "profile": profile, "login": login}[args.cmd](args)


if __name__ == "__main__":
    main()
