#!/usr/bin/env python3
"""Writes src/api/openapi.json, the operator API's OpenAPI 3.1 document. Edit this file,
run it, commit both; tests/api.rs checks the document against the running API (every
path answered, every response valid against its schema) and src/api/mod.rs's ENDPOINTS.

  python3 scripts/openapi.py
"""
import json
import os

S = lambda t, **kw: {"type": t, **kw}
STR, BOOL, INT = S("string"), S("boolean"), S("integer")
TIME = S("string", format="date-time")
NTIME = {"type": ["string", "null"], "format": "date-time"}
NSTR = {"type": ["string", "null"]}
PROTOS = S("array", items=S("string", enum=["imap", "pop3", "smtp"]))


def obj(required, **props):
    return {"type": "object", "required": list(required), "properties": props}


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


schemas = {
    "Error": obj(["error", "message"], error=STR, message=STR),
    "LastUse": obj(["at", "client", "protocol", "listener"], at=TIME, client=STR, protocol=STR, listener=STR),
    "AppPassword": {
        "type": "object",
        "required": ["state"],
        "properties": {
            "state": S("string", enum=["none", "active", "expired"]),
            "name": STR, "scope": PROTOS, "limited": BOOL, "created_at": TIME, "expires_at": TIME,
            "postponed": INT, "postpone_opens_at": TIME, "postpone_allowed": BOOL,
            "last_used": {"oneOf": [{"type": "null"}, ref("LastUse")]},
            "networks": S("array", items=STR),
        },
    },
    "TwoFactor": obj(["enabled", "associated_at", "pending", "recovery_codes_left", "device_kind"], enabled=BOOL,
                     associated_at=NTIME,
                     pending={"oneOf": [{"type": "null"}, obj(["purpose", "since"], purpose=STR, since=TIME)]},
                     recovery_codes_left=INT,
                     device_kind={"type": ["string", "null"], "enum": ["app", "passkey", None]}),
    "Mailbox": obj(["address", "plan", "archive", "contact", "protocols", "migration", "version", "two_factor",
                    "app_password", "app_passwords", "deactivated", "users"],
                   address=STR, plan=S("string", enum=["standard", "pro", "premium"]), archive=BOOL, contact=NSTR,
                   protocols=PROTOS, migration=BOOL, version=INT, two_factor=ref("TwoFactor"),
                   app_password=ref("AppPassword"), app_passwords=S("array", items=ref("AppPassword")),
                   deactivated=S("array", items=obj(["name", "at"], name=STR, at=TIME)),
                   users=S("array", items=STR)),
    "MailboxList": obj(["mailboxes"], mailboxes=S("array", items=ref("Mailbox"))),
    "Removed": obj(["address", "removed"], address=STR, removed=BOOL),
    "PasswordChanged": obj(["login", "changed"], login=STR, changed=BOOL, two_factor=BOOL),
    "UpstreamSecretSet": obj(["address"], address=STR),
    "Protocols": obj(["address", "protocols"], address=STR, protocols=PROTOS,
                     narrowed=S("array", items=obj(["name", "scope"], name=STR, scope=PROTOS))),
    "UserChanged": obj(["address", "login"], address=STR, login=STR),
    "Migration": obj(["address", "migration"], address=STR, migration=BOOL),
    "NewDevice": obj(["address", "purpose", "otpauth_uri"], address=STR, purpose=STR,
                     otpauth_uri=S("string", pattern="^otpauth://totp/")),
    "DeviceConfirmed": obj(["address", "two_factor", "result"], address=STR, two_factor=STR,
                           result=S("string", enum=["enabled", "replaced"])),
    "TwoFactorDisabled": obj(["address", "two_factor", "app_password"], address=STR, two_factor=STR, app_password=STR),
    "NewAppPassword": obj(["address", "name", "scope", "created_at", "expires_at", "password"], address=STR, name=STR,
                          scope=PROTOS, created_at=TIME, expires_at=TIME,
                          password=S("string", pattern="^[a-z0-9]{4}(-[a-z0-9]{4}){5}$")),
    "AppPasswordList": obj(["address", "two_factor", "limit", "app_passwords"], address=STR, two_factor=BOOL,
                           limit=INT, app_passwords=S("array", items=ref("AppPassword"))),
    "AppPasswordStatus": {"allOf": [obj(["address", "two_factor", "protocols"], address=STR, two_factor=BOOL,
                                         protocols=PROTOS), ref("AppPassword")]},
    "Pinned": obj(["address", "name", "networks"], address=STR, name=STR, networks=S("array", items=STR)),
    "Postponed": obj(["address", "name", "expires_at", "postponed"], address=STR, name=STR, expires_at=TIME,
                     postponed=INT),
    "Deactivated": obj(["address", "deactivated", "app_password"], address=STR, deactivated=S("array", items=STR),
                       app_password=STR),
    "AccessRecord": obj(["at", "listener", "protocol", "client", "login", "credential", "result"], at=TIME,
                        listener=STR, protocol=S("string", enum=["imap", "pop3", "smtp", "web"]), client=STR,
                        login=STR, address=NSTR, credential=STR, result=STR, reason=NSTR),
    "History": obj(["address", "history"], address=STR, history=S("array", items=ref("AccessRecord"))),
    "Notice": obj(["at", "kind", "message", "deliveries"], at=TIME, kind=STR, message=STR,
                  deliveries=S("array", items=obj(["recipient", "state", "attempts"], recipient=STR,
                                                   state=S("string", enum=["pending", "sent", "failed"]),
                                                   attempts=INT, error=NSTR))),
    "Notices": obj(["address", "notices"], address=STR, notices=S("array", items=ref("Notice"))),
    "Event": obj(["at", "actor", "action", "detail"], at=TIME, actor=STR, action=STR, detail=NSTR),
    "Events": obj(["address", "events"], address=STR, events=S("array", items=ref("Event"))),
    "RemindersSent": obj(["written", "mailboxes"], written=INT, mailboxes=INT),
}


def body(required, **props):
    return {"required": True, "content": {"application/json": {"schema": {**obj(required, **props),
                                                                           "additionalProperties": False}}}}


def resp(ok_status, schema, *errors):
    r = {str(ok_status): {"description": "done", "content": {"application/json": {"schema": ref(schema)}}}}
    for e in ("401",) + errors:
        r[e] = {"$ref": f"#/components/responses/E{e}"}
    return r


A = [{"$ref": "#/components/parameters/address"}]
N = A + [{"$ref": "#/components/parameters/name"}]
U = A + [{"name": "user", "in": "path", "required": True, "schema": STR}]


def op(summary, responses, params=None, request=None):
    o = {"summary": summary, "responses": responses}
    if params:
        o["parameters"] = params
    if request:
        o["requestBody"] = request
    return o


mb = "/api/v1/mailboxes/{address}"
paths = {
    "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [],
                                     "responses": {"200": {"description": "the document"}}}},
    "/api/v1/mailboxes": {
        "get": op("Every mailbox", resp(200, "MailboxList", "503")),
        "post": op("Add a mailbox", resp(201, "Mailbox", "400", "409", "503"),
                   request=body(["address", "password"], address=STR, password=STR, plan=STR, contact=STR)),
    },
    mb: {
        "get": op("One mailbox", resp(200, "Mailbox", "400", "404"), A),
        "delete": op("Remove a mailbox (its history stays)", resp(200, "Removed", "400", "404"), A),
    },
    f"{mb}/password": {"put": op("Set the main password (or a multi-user account's)",
                                 resp(200, "PasswordChanged", "400", "404", "409"), A,
                                 body(["password"], password=STR, user=STR))},
    f"{mb}/plan": {"put": op("Set the plan", resp(200, "Mailbox", "400", "404"), A, body(["plan"], plan=STR))},
    f"{mb}/contact": {"put": op("Set the contact e-mail for notices", resp(200, "Mailbox", "400", "404"), A,
                                body(["email"], email=STR))},
    f"{mb}/protocols": {
        "get": op("The enabled protocols", resp(200, "Protocols", "400", "404"), A),
        "post": op("Enable and disable protocols", resp(200, "Protocols", "400", "404", "409"), A,
                   body([], enable=PROTOS, disable=PROTOS)),
    },
    f"{mb}/upstream-secret": {"put": op("Set the secret the proxy logs in upstream with",
                                        resp(200, "UpstreamSecretSet", "400", "404"), A, body(["secret"], secret=STR))},
    f"{mb}/users": {"post": op("Add a multi-user account", resp(201, "UserChanged", "400", "404", "409"), A,
                               body(["user", "password"], user=STR, password=STR))},
    f"{mb}/users/{{user}}": {"delete": op("Remove a multi-user account", resp(200, "UserChanged", "400", "404"), U)},
    f"{mb}/migration": {"post": op("Start or finish a migration", resp(200, "Migration", "400", "404", "409"), A,
                                   body(["step"], step=S("string", enum=["start", "finish"])))},
    f"{mb}/2fa/enable": {"post": op("Start turning 2FA on: the device's otpauth URI, shown once",
                                    resp(200, "NewDevice", "400", "404", "409"), A)},
    f"{mb}/2fa/confirm": {"post": op("Confirm the new device with a code",
                                     resp(200, "DeviceConfirmed", "400", "404", "409", "429"), A, body(["code"], code=STR))},
    f"{mb}/2fa/disable": {"post": op("Turn 2FA off with a code from the device (app passwords revoked)",
                                     resp(200, "TwoFactorDisabled", "400", "404", "409", "429"), A, body(["code"], code=STR))},
    f"{mb}/2fa/replace": {"post": op("Start replacing the device: a code from the current one, or none (operator override, told to the owner)",
                                     resp(200, "NewDevice", "400", "404", "409", "429"), A, body([], code=STR))},
    f"{mb}/app-passwords": {
        "get": op("The app passwords (never the passwords)", resp(200, "AppPasswordList", "400", "404"), A),
        "post": op("Generate an app password, shown once", resp(201, "NewAppPassword", "400", "404", "409"), A,
                   body([], name=STR, protocols=PROTOS)),
    },
    f"{mb}/app-passwords/{{name}}": {
        "get": op("One app password's state", resp(200, "AppPasswordStatus", "400", "404", "409"), N),
        "delete": op("Deactivate it: mail programs using it lose access at once",
                     resp(200, "Deactivated", "400", "404", "409"), N),
    },
    f"{mb}/app-passwords/{{name}}/regenerate": {"post": op("A new password in its place, shown once",
                                                           resp(200, "NewAppPassword", "400", "404", "409"), N)},
    f"{mb}/app-passwords/{{name}}/postpone": {"post": op("Postpone its expiry (from the postpone window)",
                                                         resp(200, "Postponed", "400", "404", "409"), N)},
    f"{mb}/app-passwords/{{name}}/networks": {"put": op(
        "Limit it to networks (CIDRs; none: anywhere): elsewhere it is refused",
        resp(200, "Pinned", "400", "404", "409"), N,
        body(["networks"], networks=S("array", items=STR)))},
    f"{mb}/history": {"get": op("The access history, newest first", resp(200, "History", "400"),
                                A + [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}}])},
    f"{mb}/notices": {"get": op("The notices, newest first", resp(200, "Notices", "400"), A)},
    f"{mb}/events": {"get": op("Every management action, oldest first, with who did it", resp(200, "Events", "400"), A)},
    "/api/v1/notices/run": {"post": op("One pass of the expiry-reminder job", resp(200, "RemindersSent", "503"))},
}

err = lambda d: {"description": d, "content": {"application/json": {"schema": ref("Error")}}}
doc = {
    "openapi": "3.1.0",
    "info": {"title": "Sentinella operator API", "version": "1",
             "description": "Every management action of the CLI, as JSON. Authenticate with "
                            "`Authorization: Bearer TOKEN` (`sentinella api-token create NAME`); every call is "
                            "recorded in the mailbox's events as operator:api:NAME. The call is the confirmation: "
                            "actions that ask a person to confirm go ahead. Errors carry the CLI's stable codes."},
    "servers": [{"url": "https://127.0.0.1:8443"}],
    "security": [{"bearer": []}],
    "paths": paths,
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "parameters": {
            "address": {"name": "address", "in": "path", "required": True, "schema": STR},
            "name": {"name": "name", "in": "path", "required": True, "schema": STR},
        },
        "responses": {
            "E400": err("bad input (malformed JSON, address, plan, protocol, password)"),
            "E401": err("no token, or an unknown one"),
            "E404": err("no such mailbox or login"),
            "E409": err("refused by a rule (its words in message), or a conflict"),
            "E429": err("too many wrong 2FA codes for this mailbox (from any door): codes are refused, the right "
                        "one too, for the seconds in Retry-After"),
            "E503": err("the store is unavailable"),
        },
        "schemas": schemas,
    },
}
out = os.path.join(os.path.dirname(__file__), "..", "src", "api", "openapi.json")
with open(out, "w") as f:
    json.dump(doc, f, indent=1, sort_keys=True)
    f.write("\n")
