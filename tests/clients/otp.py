"""Shared by the test clients: the code an RFC 6238 authenticator app shows (SHA-1, 6
digits, 30-second steps), as the owner's phone would compute it."""
import base64
import hashlib
import hmac
import struct


def totp(secret_b32, at):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    msg = struct.pack(">Q", int(at) // 30)
    h = hmac.new(key, msg, hashlib.sha1).digest()
    o = h[-1] & 0x0F
    n = (struct.unpack(">I", h[o : o + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{n:06d}"
