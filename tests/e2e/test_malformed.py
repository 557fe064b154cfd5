"""Malformed requests over raw sockets: the right status, `Connection: close`, then close."""

import pytest

from support import HttpReader

CASES = {
    "missing-host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two-hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "bad-content-length": (b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 12a\r\n\r\n",
                           400),
    "differing-content-lengths": (b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                                  b"Content-Length: 4\r\n\r\nabcd", 400),
    "te-and-cl": (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    "bad-chunk-size": (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\nhello\r\n0\r\n\r\n", 400),
    "space-before-colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    "gzip-transfer-coding": (b"POST /upload HTTP/1.1\r\nHost: x\r\n"
                             b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    "http-2.0": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "long-target": (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "too-many-headers": (b"GET / HTTP/1.1\r\nHost: x\r\n"
                         + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n", 431),
    "huge-header": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n", 431),
}


@pytest.mark.parametrize("raw,status", CASES.values(), ids=CASES.keys())
def test_malformed_request(served, raw, status):
    with served.connect() as s:
        s.sendall(raw)
        reader = HttpReader(s)
        r = reader.read_response()
        assert r.status == status, r
        assert r.version == "HTTP/1.1"
        assert r.has_token("Connection", "close"), r
        # Whatever the client sends next is not read as a request: the connection closes.
        assert reader.closed(), "the connection stayed open after an error response"
    r = served.exchange(b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 200


def test_limit_request_body(start_server):
    from support import APPS
    server = start_server("body-limit", app="conformance:application", chdir=APPS,
                          extra=["--limit-request-body", "1000"])
    # Declared too large: 413 before the application reads anything.
    r = server.exchange(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
    assert r.status == 413 and r.has_token("Connection", "close"), r
    # Chunked past the limit: 413 once the limit is crossed.
    chunk = b"%x\r\n%s\r\n" % (600, b"a" * 600)
    r = server.exchange(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + chunk + chunk + b"0\r\n\r\n", timeout=10)
    assert r.status == 413 and r.has_token("Connection", "close"), r
    # At the limit: served.
    r = server.exchange(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
                        + b"a" * 1000)
    assert r.status == 200 and b'"size": 1000' in r.body, r
