"""Shared by the test clients: connect from a chosen loopback address (any 127.x works on
Linux without configuration), so a test can tell the client's address from the proxy's."""
import socket


def connect_from(source):
    """Makes every later socket.create_connection bind to `source` first."""
    if not source:
        return
    original = socket.create_connection

    def create_connection(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None, **kw):
        return original(address, timeout, (source, 0), **kw)

    socket.create_connection = create_connection
