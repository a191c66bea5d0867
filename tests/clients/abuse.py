#!/usr/bin/env python3
"""An attacker (and the owner) against "Gestione account" and the mail listeners, as
plain HTTPS and IMAP clients: what the abuse model must stop. Prints one JSON object of
what it saw; the Rust tests assert on it. Loopback only (sources 127.0.0.0/8), every
loop bounded in count, every read under a timeout.

  abuse.py codes   --web PORT --user U --password P --secret B32 --rounds N
                       [--sources 127.0.0.1,127.0.0.2] --cafile F
      N rounds of: a fresh login (password step) from the next source, one wrong code;
      then (unless --no-right) a fresh login and the right code. Each round's result:
      wrong | blocked.
  abuse.py action  --web PORT --user U --password P --secret B32 --rounds N
                       --action disable|replace --cafile F
      A full login (password and code), then N wrong codes to the action, then the
      right one (the next time step's code).
  abuse.py flood   --web PORT --user U --password P [--secret B32] --requests N --cafile F
      A full login, then N cookie-less GET /login (keep-alive, 4 connections), then the
      logged-in session's /account again.
  abuse.py passwords --web PORT --user U --password P --rounds N [--sources S] --cafile F
      N wrong main passwords on the page from the first of the sources, then the right
      one: where each led.
  abuse.py imapline --imaps PORT --bytes N --cafile F
      The greeting, then N bytes without a line end: what came back, and how many of
      the bytes the server read before it closed (or 'open' if it did not).
  abuse.py imapid --imaps PORT --cafile F
      A maximal RFC 2971 ID command (30 pairs, 1,024-octet values) before login, then
      LOGOUT: the server's lines.
  abuse.py spray   --imaps PORT --rounds R --names K --good-user U --good-password P
                       --cafile F
      R rounds from one address of K wrong passwords on K different names, then one
      right login of another account: when the address was first refused.
"""
import argparse
import http.client
import imaplib
import json
import re
import socket
import ssl
import threading
import time
import urllib.parse

from otp import totp

TIMEOUT = 15


def wrong_codes(secret, n, skip=0):
    """n distinct codes (after the first `skip` of the same sequence) none of which the
    device shows within two minutes of now."""
    now = time.time()
    valid = {totp(secret, now + d) for d in range(-120, 121, 30)}
    out, i = [], skip
    while len(out) < n:
        c = f"{(i * 7919 + 13) % 1_000_000:06d}"
        if c not in valid:
            out.append(c)
        i += 1
    return out


def tls(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False  # the test certificate names 127.0.0.1/localhost; the CA check stays
    return ctx


class Browser:
    """One cookie jar, one keep-alive connection from one source address."""

    def __init__(self, port, cafile, source="127.0.0.1"):
        self.port, self.ctx, self.source = port, tls(cafile), source
        self.cookies = {}
        self.conn = None

    def _conn(self):
        if self.conn is None:
            self.conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, context=self.ctx, timeout=TIMEOUT, source_address=(self.source, 0)
            )
        return self.conn

    def request(self, method, path, form=None):
        headers = {"Accept-Language": "en"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in range(2):
            try:
                c = self._conn()
                c.request(method, path, body=body, headers=headers)
                r = c.getresponse()
                text = r.read().decode("utf-8", "replace")
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A keep-alive connection the server closed: one retry on a new one.
                self.conn = None
                if attempt:
                    raise
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                name, _, rest = v.partition("=")
                value = rest.split(";", 1)[0]
                if "Max-Age=0" in v:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = value
        return r.status, r.getheader("Location"), text

    def get_csrf(self, path):
        status, _, text = self.request("GET", path)
        m = re.search(r'name="csrf" value="([0-9a-zA-Z._-]*)"', text)
        return status, (m.group(1) if m else None), text


def flash(text):
    m = re.search(r'id="flash">([^<]*)<', text)
    return m.group(1) if m else None


def classify(text):
    f = flash(text) or ""
    if "Too many wrong codes" in f:
        return "blocked"
    if "Wrong or already used code" in f:
        return "wrong"
    return f"other: {f!r}"


def password_step(b, user, password):
    _, csrf, _ = b.get_csrf("/login")
    status, loc, _ = b.request("POST", "/login", {"csrf": csrf, "lang": "en", "login": user, "password": password})
    return loc


def code_step(b, code):
    _, csrf, _ = b.get_csrf("/login/code")
    status, loc, _ = b.request("POST", "/login/code", {"csrf": csrf, "code": code})
    if loc == "/account":
        return "accepted"
    _, _, text = b.request("GET", "/login/code")
    return classify(text)


def cmd_codes(a):
    sources = a.sources.split(",")
    rounds = []
    for i, code in enumerate(wrong_codes(a.secret, a.rounds, a.skip)):
        b = Browser(a.web, a.cafile, sources[i % len(sources)])
        loc = password_step(b, a.user, a.password)
        if loc != "/login/code":
            rounds.append({"source": b.source, "result": f"password step: {loc}"})
            continue
        rounds.append({"source": b.source, "result": code_step(b, code)})
    if a.no_right:
        return {"rounds": rounds}
    b = Browser(a.web, a.cafile, sources[-1])
    loc = password_step(b, a.user, a.password)
    right = code_step(b, totp(a.secret, time.time())) if loc == "/login/code" else f"password step: {loc}"
    return {"rounds": rounds, "right_code": right}


def full_login(b, user, password, secret):
    loc = password_step(b, user, password)
    if loc == "/login/code":
        return code_step(b, totp(secret, time.time()))
    return "accepted" if loc == "/account" else f"password step: {loc}"


def cmd_action(a):
    b = Browser(a.web, a.cafile)
    login = full_login(b, a.user, a.password, a.secret)
    path = f"/account/2fa/{a.action}"
    rounds = []

    def post(code):
        _, csrf, _ = b.get_csrf("/account/2fa")
        form = {"csrf": csrf, "code": code}
        if a.action == "disable":
            form["confirm"] = "yes"
        status, loc, text = b.request("POST", path, form)
        if loc == "/account":
            _, _, text = b.request("GET", "/account")
            return classify(text)
        if status == 200 and "otpauth" in text:
            return "accepted"
        return f"status {status} {loc}"

    for code in wrong_codes(a.secret, a.rounds):
        rounds.append(post(code))
    right = post(totp(a.secret, time.time() + 30))
    if right == "other: 'Done.'":
        right = "accepted"
    return {"login": login, "rounds": rounds, "right_code": right}


def cmd_flood(a):
    owner = Browser(a.web, a.cafile)
    login = full_login(owner, a.user, a.password, a.secret) if a.secret else None
    if not a.secret:
        loc = password_step(owner, a.user, a.password)
        login = "accepted" if loc == "/account" else f"password step: {loc}"
    before, _, text = owner.request("GET", "/account")
    errors = []
    done = [0] * 4

    def worker(i, n):
        b = Browser(a.web, a.cafile)
        for _ in range(n):
            b.cookies.clear()  # cookie-less, every time
            try:
                status, _, _ = b.request("GET", "/login")
            except OSError as e:
                errors.append(str(e))
                return
            if status != 200:
                errors.append(f"status {status}")
                return
            done[i] += 1

    per = a.requests // 4
    threads = [threading.Thread(target=worker, args=(i, per)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    after, loc, text = owner.request("GET", "/account")
    return {
        "login": login,
        "before": before,
        "requests": sum(done),
        "errors": errors[:5],
        "after": after,
        "after_location": loc,
        "address_shown": a.user in text,
    }


def cmd_passwords(a):
    source = a.sources.split(",")[0]
    results = []
    for i in range(a.rounds):
        b = Browser(a.web, a.cafile, source)
        results.append(password_step(b, a.user, f"wrong-{a.skip + i}-{a.password}"))
    if a.no_right:
        return {"wrong": results}
    b = Browser(a.web, a.cafile, source)
    return {"wrong": results, "right": password_step(b, a.user, a.password)}


def tls_socket(a):
    raw = socket.create_connection(("127.0.0.1", a.imaps), timeout=TIMEOUT)
    return tls(a.cafile).wrap_socket(raw, server_hostname="localhost")


def read_lines(s, deadline):
    data = b""
    while time.time() < deadline:
        try:
            chunk = s.recv(65536)
        except (socket.timeout, ssl.SSLError, OSError):
            break
        if not chunk:
            return data, True
        data += chunk
    return data, False


def cmd_imapline(a):
    s = tls_socket(a)
    greeting = s.recv(4096).decode()
    sent, closed = 0, False
    s.settimeout(0.2)
    chunk = b"a" * 1024
    received = b""
    while sent < a.bytes:
        try:
            s.sendall(chunk)
            sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            closed = True
            break
        try:
            got = s.recv(4096)
            if not got:
                closed = True
                break
            received += got
        except (socket.timeout, ssl.SSLWantReadError):
            pass
        except (ConnectionResetError, ssl.SSLError, OSError):
            closed = True
            break
    if not closed:
        more, closed = read_lines(s, time.time() + 5)
        received += more
    return {
        "greeting": greeting,
        "sent": sent,
        "received": received.decode("utf-8", "replace").splitlines(),
        "closed": closed,
    }


def cmd_imapid(a):
    s = tls_socket(a)
    greeting = s.recv(4096).decode()
    pairs = " ".join(f'"field{i:02d}" "{chr(97 + i % 26) * 1024}"' for i in range(30))
    command = f"i1 ID ({pairs})\r\ni2 LOGOUT\r\n".encode()
    s.sendall(command)
    data, _ = read_lines(s, time.time() + 10)
    return {"greeting": greeting, "bytes": len(command), "received": data.decode("utf-8", "replace").splitlines()}


def imap_try(a, user, password):
    """'ok', 'no' (authentication failed), or 'refused' (the connection was not served)."""
    try:
        c = imaplib.IMAP4_SSL("127.0.0.1", a.imaps, ssl_context=tls(a.cafile), timeout=TIMEOUT)
    except (OSError, imaplib.IMAP4.abort, ssl.SSLError):
        return "refused"
    try:
        c.login(user, password)
        c.logout()
        return "ok"
    except imaplib.IMAP4.error:
        return "no"
    except (OSError, imaplib.IMAP4.abort):
        return "refused"
    finally:
        try:
            c.shutdown()
        except Exception:
            pass


def cmd_spray(a):
    first_refused = None
    good = []
    for r in range(a.rounds):
        for k in range(a.names):
            got = imap_try(a, f"victim{r}-{k}@pec.example.it", "Summer2026!")
            if got == "refused" and first_refused is None:
                first_refused = [r, k]
        good.append(imap_try(a, a.good_user, a.good_password))
        if first_refused is not None:
            break
    return {"first_refused": first_refused, "good": good}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["codes", "action", "flood", "spray", "passwords", "imapline", "imapid"])
    p.add_argument("--web", type=int)
    p.add_argument("--imaps", type=int)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--secret")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--names", type=int, default=9)
    p.add_argument("--sources", default="127.0.0.1,127.0.0.2")
    p.add_argument("--action", choices=["disable", "replace"])
    p.add_argument("--requests", type=int, default=110_000)
    p.add_argument("--bytes", type=int, default=20 * 1024)
    p.add_argument("--no-right", action="store_true", help="codes, passwords: not the right one at the end")
    p.add_argument("--skip", type=int, default=0, help="codes, passwords: start further along the wrong ones")
    p.add_argument("--good-user")
    p.add_argument("--good-password")
    p.add_argument("--cafile", required=True)
    a = p.parse_args()
    socket.setdefaulttimeout(TIMEOUT)
    out = {
        "codes": cmd_codes,
        "action": cmd_action,
        "flood": cmd_flood,
        "spray": cmd_spray,
        "passwords": cmd_passwords,
        "imapline": cmd_imapline,
        "imapid": cmd_imapid,
    }[a.command](a)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
