#!/usr/bin/env python3
"""Hostile and ordinary clients of the owner's page (HTTPS) for the security tests.
Every socket operation has a timeout; only loopback. Prints one JSON object a line.

  web_probe.py flood --port P --cafile F --count N [--source A]
      N TLS connections at once from A (default 127.0.0.1), each left idle after its
      handshake; prints {"held", "refused", "timed_out"}, then holds the ones that got in
      until its standard input closes.
  web_probe.py h2 --port P --cafile F
      TLS without ALPN, then the HTTP/2 connection preface and an empty SETTINGS frame;
      prints what came back within 10 s: {"alpn", "received", "h2_settings", "closed"}.
  web_probe.py idle --port P --cafile F [--wait S]
      TLS, then nothing; prints {"closed", "after"}: whether (and when) the server closed
      the connection within S seconds.
  web_probe.py get --port P --cafile F [--source A] [--path /login]
      One HTTPS GET from A; prints {"status"}.
"""
import argparse
import asyncio
import http.client
import json
import resource
import socket
import ssl
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False  # the test certificate names 127.0.0.1; the CA check stays on
    return ctx


async def flood(args):
    # Room for every socket of the flood, whatever this shell's soft limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.count + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    ctx = context(args.cafile)
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(200)
    held, outcome = [], {"held": 0, "refused": 0, "timed_out": 0}

    async def one():
        async with gate:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.bind((args.source, 0))
            try:
                await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", args.port)), 5)
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(sock=sock, ssl=ctx, server_hostname="localhost"), 5)
                held.append(writer)
                outcome["held"] += 1
            except asyncio.TimeoutError:
                sock.close()
                outcome["timed_out"] += 1
            except (OSError, ssl.SSLError, EOFError, asyncio.IncompleteReadError):
                sock.close()
                outcome["refused"] += 1

    await asyncio.gather(*(one() for _ in range(args.count)))
    print(json.dumps(outcome), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    for w in held:
        w.transport.abort()


def h2(args):
    out = {"received": "", "h2_settings": False, "closed": False}
    with socket.create_connection(("127.0.0.1", args.port), timeout=10) as raw:
        with context(args.cafile).wrap_socket(raw, server_hostname="localhost") as tls:
            out["alpn"] = tls.selected_alpn_protocol()
            tls.sendall(PREFACE + SETTINGS)
            got = b""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    chunk = tls.recv(4096)
                except socket.timeout:
                    break
                except (ssl.SSLError, OSError):
                    out["closed"] = True
                    break
                if not chunk:
                    out["closed"] = True
                    break
                got += chunk
            # A server speaking HTTP/2 starts with its own SETTINGS frame.
            out["h2_settings"] = len(got) >= 9 and got[3] == 4 and got[5:9] == b"\x00\x00\x00\x00"
            out["received"] = got[:200].decode("latin-1")
    print(json.dumps(out))


def idle(args):
    out = {"closed": False}
    with socket.create_connection(("127.0.0.1", args.port), timeout=10) as raw:
        with context(args.cafile).wrap_socket(raw, server_hostname="localhost") as tls:
            start = time.monotonic()
            tls.settimeout(args.wait)
            try:
                out["closed"] = tls.recv(1) == b""
            except socket.timeout:
                pass
            except (ssl.SSLError, OSError):
                out["closed"] = True
            out["after"] = time.monotonic() - start
    print(json.dumps(out))


def get(args):
    conn = http.client.HTTPSConnection("127.0.0.1", args.port, context=context(args.cafile),
                                       timeout=10, source_address=(args.source, 0))
    conn.request("GET", args.path)
    print(json.dumps({"status": conn.getresponse().status}))
    conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["flood", "h2", "idle", "get"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile")
    p.add_argument("--count", type=int, default=1100)
    p.add_argument("--source", default="127.0.0.1")
    p.add_argument("--wait", type=float, default=20)
    p.add_argument("--path", default="/login")
    args = p.parse_args()
    if args.command == "flood":
        asyncio.run(flood(args))
    else:
        {"h2": h2, "idle": idle, "get": get}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
