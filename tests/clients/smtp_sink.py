#!/usr/bin/env python3
"""A real SMTP sink for the tests (aiosmtpd on loopback): every message it receives is
written to DIR/NNNN.eml byte for byte, with DIR/NNNN.json holding the envelope.

  smtp_sink.py --port P --dir DIR        runs until SIGTERM
      [--starttls CERT KEY]               offers STARTTLS and requires it before MAIL
      [--auth USER PASSWORD]              requires AUTH (PLAIN/LOGIN, after STARTTLS)

The envelope file also says whether the message came over TLS and which user logged in.

A recipient whose local part starts with "reject" is refused for good (550), as a relay
refuses an address it will never deliver to.
"""
import argparse
import asyncio
import json
import os
import signal
import ssl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Save:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().startswith("reject"):
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.directory, f"{self.count:04d}")
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        with open(base + ".json", "w") as f:
            json.dump(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "tls": session.ssl is not None,
                    "auth": session.auth_data if isinstance(session.auth_data, str) else None,
                },
                f,
            )
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 Saved"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--auth", nargs=2, metavar=("USER", "PASSWORD"))
    args = p.parse_args()
    options = {}
    if args.starttls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*args.starttls)
        options.update(tls_context=context, require_starttls=True)
    if args.auth:
        user, password = args.auth

        def check(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

        options.update(authenticator=check, auth_required=True, auth_require_tls=bool(args.starttls))
    controller = Controller(
        Save(args.dir), hostname="127.0.0.1", port=args.port, data_size_limit=50_000_000, **options
    )
    controller.start()
    loop = asyncio.new_event_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    loop.add_signal_handler(signal.SIGINT, stop.set_result, None)
    loop.run_until_complete(stop)
    controller.stop()


if __name__ == "__main__":
    main()
