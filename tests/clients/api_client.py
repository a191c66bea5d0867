#!/usr/bin/env python3
"""A real HTTP client (urllib over TLS) for the operator API's tests: calls every
endpoint of the OpenAPI document the server serves, in an order that makes each one
succeed once, plus every error class, and checks every response against the document
(status listed for the operation, body valid against its schema, with jsonschema).
Prints one JSON object; loopback only; every call has a timeout.

  api_client.py --base https://127.0.0.1:P --cafile F --token T --address A
"""
import argparse
import base64
import hashlib
import hmac
import json
import re
import ssl
import struct
import time
import urllib.error
import urllib.parse
import urllib.request

import jsonschema

TIMEOUT = 15


def totp(secret_b32, at):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    h = hmac.new(key, struct.pack(">Q", int(at) // 30), hashlib.sha1).digest()
    o = h[-1] & 0x0F
    return f"{(struct.unpack('>I', h[o:o + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


class Client:
    def __init__(self, args):
        self.base = args.base
        self.ctx = ssl.create_default_context(cafile=args.cafile)
        self.ctx.check_hostname = False  # the test certificate names 127.0.0.1; the CA check stays
        self.token = args.token
        self.doc = None
        self.calls = []
        self.errors = []
        self.seen = set()

    def raw(self, method, path, body=None, token="default", raw_body=None):
        headers = {"Accept": "application/json"}
        tok = self.token if token == "default" else token
        if tok is not None:
            headers["Authorization"] = f"Bearer {tok}"
        data = None
        if raw_body is not None:
            data = raw_body
            headers["Content-Type"] = "application/json"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=TIMEOUT) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def operation(self, method, path):
        """The document's operation for a concrete path."""
        for template, ops in self.doc["paths"].items():
            pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
            if re.match(pattern, path.split("?")[0]) and method.lower() in ops:
                return template, ops[method.lower()]
        return None, None

    def call(self, method, path, body=None, expect=None, **kw):
        status, raw, headers = self.raw(method, path, body, **kw)
        doc_body = json.loads(raw) if raw else None
        template, op = self.operation(method, urllib.parse.quote(path, safe="/?=&@"))
        self.calls.append({"method": method, "path": template or path, "status": status})
        if expect is not None and status != expect:
            self.errors.append(f"{method} {path}: status {status}, expected {expect}: {doc_body}")
        if op is None:
            self.errors.append(f"{method} {path}: not in the OpenAPI document")
            return status, doc_body
        self.seen.add((method.lower(), template))
        responses = op["responses"]
        if str(status) not in responses:
            self.errors.append(f"{method} {template}: status {status} not documented ({sorted(responses)})")
            return status, doc_body
        spec = responses[str(status)]
        if "$ref" in spec:
            spec = self.doc["components"]["responses"][spec["$ref"].split("/")[-1]]
        schema = spec.get("content", {}).get("application/json", {}).get("schema")
        if schema is not None:
            root = {"components": self.doc["components"], **schema}
            try:
                jsonschema.validate(doc_body, root, cls=jsonschema.Draft202012Validator)
            except jsonschema.ValidationError as e:
                self.errors.append(f"{method} {template} {status}: {e.message} in {doc_body}")
        if status >= 400 and not (isinstance(doc_body, dict) and "error" in doc_body):
            self.errors.append(f"{method} {template} {status}: not a JSON error: {doc_body}")
        return status, doc_body


def main():
    p = argparse.ArgumentParser()
    for name in ["--base", "--cafile", "--token", "--address"]:
        p.add_argument(name, required=True)
    args = p.parse_args()
    c = Client(args)
    out = {}
    status, raw, _ = c.raw("GET", "/api/v1/openapi.json", token=None)
    out["openapi_status"] = status
    c.doc = json.loads(raw)
    c.seen.add(("get", "/api/v1/openapi.json"))
    a = urllib.parse.quote(args.address, safe="@")
    mb = f"/api/v1/mailboxes/{a}"

    # 401: no token, an unknown token.
    out["no_token"] = c.call("GET", "/api/v1/mailboxes", token=None, expect=401)[1]
    out["unknown_token"] = c.call("GET", "/api/v1/mailboxes", token="snt_" + "A" * 43, expect=401)[1]
    # 400: malformed JSON, a bad address, a weak password.
    out["bad_json"] = c.call("POST", "/api/v1/mailboxes", raw_body=b"{nope", expect=400)[1]
    out["bad_address"] = c.call("POST", "/api/v1/mailboxes", {"address": "bad", "password": "Long-enough-1"},
                                expect=400)[1]
    out["unknown_field"] = c.call("POST", "/api/v1/mailboxes", {"address": args.address, "password": "x" * 12,
                                                                 "colour": "blue"}, expect=400)[1]
    # The whole lifecycle, each endpoint once.
    out["added"] = c.call("POST", "/api/v1/mailboxes", {"address": args.address, "password": "Anna-passw0rd!",
                                                        "plan": "pro", "contact": "anna@example.com"},
                          expect=201)[1]
    out["conflict"] = c.call("POST", "/api/v1/mailboxes", {"address": args.address, "password": "Anna-passw0rd!"},
                             expect=409)[1]
    c.call("GET", "/api/v1/mailboxes", expect=200)
    c.call("GET", mb, expect=200)
    out["missing"] = c.call("GET", "/api/v1/mailboxes/nobody@pec.example.it", expect=404)[1]
    c.call("PUT", f"{mb}/password", {"password": "Anna-new-passw0rd!"}, expect=200)
    c.call("PUT", f"{mb}/plan", {"plan": "premium"}, expect=200)
    c.call("PUT", f"{mb}/contact", {"email": "anna.bianchi@example.com"}, expect=200)
    c.call("GET", f"{mb}/protocols", expect=200)
    c.call("POST", f"{mb}/protocols", {"disable": ["pop3"]}, expect=200)
    c.call("PUT", f"{mb}/upstream-secret", {"secret": "upstream-secret-1"}, expect=200)
    c.call("POST", f"{mb}/users", {"user": "segreteria", "password": "Segreteria-pw1"}, expect=201)
    c.call("DELETE", f"{mb}/users/segreteria", expect=200)
    out["refused_by_rule"] = c.call("POST", f"{mb}/app-passwords", {}, expect=409)[1]
    _, device = c.call("POST", f"{mb}/2fa/enable", expect=200)
    secret = urllib.parse.parse_qs(urllib.parse.urlparse(device["otpauth_uri"]).query)["secret"][0]
    c.call("POST", f"{mb}/2fa/confirm", {"code": totp(secret, time.time() - 30)}, expect=200)
    _, new = c.call("POST", f"{mb}/app-passwords", {"name": "fatture", "protocols": ["smtp"]}, expect=201)
    out["password_shape"] = bool(re.match(r"^[a-z0-9]{4}(-[a-z0-9]{4}){5}$", new.get("password", "")))
    c.call("GET", f"{mb}/app-passwords", expect=200)
    c.call("GET", f"{mb}/app-passwords/fatture", expect=200)
    out["postpone_too_early"] = c.call("POST", f"{mb}/app-passwords/fatture/postpone", expect=409)[1]
    _, pinned = c.call("PUT", f"{mb}/app-passwords/fatture/networks",
                       {"networks": ["192.0.2.0/24", "2001:db8::/32"]}, expect=200)
    out["pinned"] = pinned.get("networks")
    out["bad_network"] = c.call("PUT", f"{mb}/app-passwords/fatture/networks",
                                {"networks": ["192.0.2.0/33"]}, expect=409)[1]
    _, again = c.call("POST", f"{mb}/app-passwords/fatture/regenerate", expect=200)
    out["regenerated_differs"] = again.get("password") != new.get("password")
    c.call("DELETE", f"{mb}/app-passwords/fatture", expect=200)
    _, replace = c.call("POST", f"{mb}/2fa/replace", {"code": totp(secret, time.time())}, expect=200)
    new_secret = urllib.parse.parse_qs(urllib.parse.urlparse(replace["otpauth_uri"]).query)["secret"][0]
    c.call("POST", f"{mb}/2fa/confirm", {"code": totp(new_secret, time.time() - 30)}, expect=200)
    c.call("POST", f"{mb}/2fa/disable", {"code": totp(new_secret, time.time())}, expect=200)
    c.call("POST", f"{mb}/migration", {"step": "start"}, expect=200)
    c.call("POST", f"{mb}/migration", {"step": "finish"}, expect=200)
    out["bad_limit"] = c.call("GET", f"{mb}/history?limit=abc", expect=400)[1]
    c.call("GET", f"{mb}/history?limit=10", expect=200)
    c.call("GET", f"{mb}/notices", expect=200)
    _, events = c.call("GET", f"{mb}/events", expect=200)
    out["actors"] = sorted({e["actor"] for e in events["events"]})
    c.call("POST", "/api/v1/notices/run", expect=200)
    c.call("DELETE", mb, expect=200)
    out["removed_then"] = c.call("GET", mb, expect=404)[1]
    # A path the API does not have: a JSON 404.
    out["no_endpoint"] = c.raw("GET", "/api/v1/nothing")[0]

    documented = {(m, t) for t, ops in c.doc["paths"].items() for m in ops}
    out["undocumented_or_uncalled"] = sorted(f"{m} {t}" for m, t in documented - c.seen)
    out["errors"] = c.errors
    out["calls"] = len(c.calls)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
