"""Configurable request limits from the command line (beside the fixed corpus of
test_smuggling.py, which runs with the defaults)."""

from support import APPS


def test_limit_request_body(start_server):
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
