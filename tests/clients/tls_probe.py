#!/usr/bin/env python3
"""TLS handshake probe for the security tests: which versions and ALPN values a
listener accepts. Prints {"ok": bool, "version": ..., "alpn": ..., "error": ...}.

  tls_probe.py --port P --cafile F [--min TLSv1|TLSv1_1|TLSv1_2|TLSv1_3] [--max ...] [--alpn NAME ...]
"""
import argparse
import json
import socket
import ssl


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile")
    p.add_argument("--min")
    p.add_argument("--max")
    p.add_argument("--alpn", nargs="*")
    args = p.parse_args()
    ctx = ssl.create_default_context(cafile=args.cafile)
    ctx.check_hostname = False
    if args.min or args.max:
        # Let OpenSSL offer the old versions at all, so a refusal is the server's doing.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if args.min:
        ctx.minimum_version = getattr(ssl.TLSVersion, args.min)
    if args.max:
        ctx.maximum_version = getattr(ssl.TLSVersion, args.max)
    if args.alpn:
        ctx.set_alpn_protocols(args.alpn)
    out = {"ok": False}
    try:
        with socket.create_connection(("127.0.0.1", args.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                out.update(ok=True, version=tls.version(), alpn=tls.selected_alpn_protocol())
                tls.recv(64)
    except (ssl.SSLError, OSError) as e:
        out["error"] = str(e)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
