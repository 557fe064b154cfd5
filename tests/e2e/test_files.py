"""wsgi.file_wrapper over a real socket: exact bytes (the adapter may use sendfile)."""

import hashlib

import requests

from support import APPS, TIMEOUT, request_bytes

EXPECTED = bytes(range(256)) * 4096


def test_file_wrapper_sends_the_file_exactly(start_server):
    server = start_server("files", app="files_app:application", chdir=APPS)
    with requests.Session() as s:
        r = s.get(server.url("/"), timeout=TIMEOUT)
        assert r.status_code == 200
        assert r.headers["Content-Length"] == str(len(EXPECTED))
        assert hashlib.sha256(r.content).digest() == hashlib.sha256(EXPECTED).digest()
        # From the file's current position, on the same kept-alive connection.
        r = s.get(server.url("/offset"), timeout=TIMEOUT)
        assert r.content == EXPECTED[1000:]
        # HEAD: the length, no body; the connection stays usable.
        r = s.head(server.url("/"), timeout=TIMEOUT)
        assert r.headers["Content-Length"] == str(len(EXPECTED)) and r.content == b""
        assert s.get(server.url("/"), timeout=TIMEOUT).content == EXPECTED


def test_file_wrapper_over_http10_is_close_delimited(start_server):
    server = start_server("files10", app="files_app:application", chdir=APPS)
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", "/", version="HTTP/1.0"))
        data = b""
        while True:
            piece = sock.recv(1 << 16)
            if not piece:
                break
            data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK"), head
    assert body == EXPECTED
