"""The server's life: graceful SIGTERM with a request in flight, and the access log."""

import re
import signal
import subprocess
import time
import uuid

import requests

from support import APPS, TIMEOUT, HttpReader, request_bytes, wait_until

COMBINED = re.compile(
    r'^(?P<host>\S+) - - \[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] '
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+|-) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)"$')


def refuses_connections(server):
    try:
        server.connect(timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


def test_sigterm_during_a_slow_request_lets_it_complete(start_server):
    server = start_server("sigterm", app="conformance:application", chdir=APPS, threads=2)
    tag = uuid.uuid4().hex[:8]
    with server.connect() as s:
        s.sendall(request_bytes("GET", f"/slow?seconds=1.5&tag={tag}"))
        assert server.started(tag), "the slow request never reached the app"
        sent = time.monotonic()
        server.signal(signal.SIGTERM)
        # While the request drains, a new connection is refused at once (the listening socket
        # is closed in every process), not queued unanswered until the exit and then reset.
        assert wait_until(lambda: refuses_connections(server), timeout=1.0), "still accepting during drain"
        assert time.monotonic() - sent < 1.5
        r = HttpReader(s).read_response()
        assert r.status == 200, r
        assert r.body == b"slept\n"
        # In flight during the shutdown: the response tells the client not to reuse it.
        assert r.has_token("Connection", "close")
        answered = time.monotonic()
    try:
        code = server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        raise AssertionError(f"the server did not exit after SIGTERM:\n{server.logs()}")
    assert code == 0, server.logs()
    # Once the request in flight is done, nothing holds the exit (--graceful-timeout is 20 s).
    exited = time.monotonic()
    assert exited - answered < 5, f"exited {exited - answered:.1f}s after the last response"
    assert answered - sent < 5
    # It stopped listening.
    try:
        server.connect(timeout=2).close()
        refused = False
    except OSError:
        refused = True
    assert refused


def test_sigterm_when_idle_exits_promptly(start_server):
    server = start_server("sigterm-idle", app="conformance:application", chdir=APPS)
    # A finished Connection: close exchange must not count as in flight.
    r = requests.get(server.url("/fixed"), headers={"Connection": "close"}, timeout=TIMEOUT)
    assert r.status_code == 200
    with requests.Session() as s:  # an idle keep-alive connection must not hold the exit
        assert s.get(server.url("/fixed"), timeout=TIMEOUT).status_code == 200
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.proc.wait(timeout=15) == 0, server.logs()
        assert time.monotonic() - started < 10


def test_access_log_combined_format(served):
    tag = uuid.uuid4().hex[:8]
    requests.get(served.url(f"/echo/log?tag={tag}"), timeout=TIMEOUT,
                 headers={"Referer": "http://ref.example/page", "User-Agent": "e2e-agent/1.0"})
    requests.post(served.url(f"/upload?tag={tag}x"), data=b"0123456789", timeout=TIMEOUT)
    served.exchange(request_bytes("GET", f"/no-such?tag={tag}", version="HTTP/1.0"))
    # A malformed body the app was reading: logged with the status the client got.
    served.exchange(request_bytes("POST", f"/upload?tag={tag}bad",
                                  [("Transfer-Encoding", "chunked")], b"zz\r\n\r\n"))

    def lines():
        found = [line for line in served.read_access_log().splitlines() if tag in line]
        return found if len(found) >= 4 else None

    found = wait_until(lines)
    assert found, served.read_access_log()[-2000:]
    parsed = []
    for line in found:
        m = COMBINED.match(line)
        assert m, f"not in the combined log format: {line!r}"
        parsed.append(m.groupdict())
    get = next(p for p in parsed if p["request"].startswith("GET /echo/log"))
    assert get["host"] == "127.0.0.1"
    assert get["request"] == f"GET /echo/log?tag={tag} HTTP/1.1"
    assert get["status"] == "200" and int(get["bytes"]) > 0
    assert get["referer"] == "http://ref.example/page"
    assert get["agent"] == "e2e-agent/1.0"
    post = next(p for p in parsed if p["request"].startswith("POST /upload"))
    assert post["status"] == "200" and post["referer"] == "-"
    assert post["agent"].startswith("python-requests/")
    missing = next(p for p in parsed if p["request"].startswith("GET /no-such"))
    assert missing["request"].endswith(" HTTP/1.0") and missing["status"] == "404"
    bad = next(p for p in parsed if p["request"].startswith(f"POST /upload?tag={tag}bad"))
    assert bad["status"] == "400"
