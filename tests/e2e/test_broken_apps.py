"""Broken applications: a 500 (or an aborted response), one clear log line, the server lives."""

import requests

from support import LOG_LINE, TIMEOUT, HttpReader, log_entries, request_bytes


def still_serving(server):
    r = requests.get(server.url("/fixed"), timeout=TIMEOUT)
    assert r.status_code == 200 and r.content == b"hello, fixed\n"


def test_str_returning_app(served):
    r = requests.get(served.url("/str"), timeout=TIMEOUT)
    assert r.status_code == 500
    log = served.wait_error_log("GET /str", "application returned str", "'text'.encode()")
    entries = log_entries(log, "GET /str")
    assert entries, log
    # One line names the problem and the fix.
    line = entries[-1].partition("\n")[0]
    assert "application returned str" in line and "'text'.encode()" in line, line
    assert LOG_LINE.match(line) and "[ERROR]" in line, line
    still_serving(served)


def test_exception_before_the_head(served):
    r = requests.get(served.url("/raise-before"), timeout=TIMEOUT)
    assert r.status_code == 500
    assert r.content == b"Internal Server Error\n"
    log = served.wait_error_log("GET /raise-before", "RuntimeError: e2e: boom before the head")
    entries = log_entries(log, "GET /raise-before")
    assert entries, log
    entry = entries[-1]
    assert "[ERROR]" in entry.partition("\n")[0], entry
    assert "Traceback (most recent call last)" in entry, entry
    assert "conformance.py" in entry and "in raise_before" in entry, entry
    assert "RuntimeError: e2e: boom before the head" in entry, entry
    still_serving(served)


def test_exception_mid_body_aborts_the_connection(served):
    with served.connect() as s:
        s.sendall(request_bytes("GET", "/raise-mid"))
        reader = HttpReader(s)
        r = reader.read_response()
        assert r.status == 200  # the head was already out
        assert r.has_token("Transfer-Encoding", "chunked")
        assert not r.complete, "an aborted body must not end cleanly"
        assert b"first chunk\n" in r.body
        assert not r.body.endswith(b"0\r\n\r\n")
        assert reader.eof
    # A real client sees the broken body as an error, not as a complete response.
    try:
        requests.get(served.url("/raise-mid"), timeout=TIMEOUT).content
        raised = False
    except requests.exceptions.RequestException:
        raised = True
    assert raised, "requests read an aborted response as complete"
    log = served.wait_error_log("RuntimeError: e2e: boom in the middle of the body")
    entries = log_entries(log, "GET /raise-mid")
    assert entries, log
    assert "Traceback (most recent call last)" in entries[-1], entries[-1]
    assert "RuntimeError: e2e: boom in the middle of the body" in entries[-1], entries[-1]
    assert "connection aborted" in entries[-1], entries[-1]
    still_serving(served)


def test_app_that_never_calls_start_response(served):
    r = requests.get(served.url("/no-start"), timeout=TIMEOUT)
    assert r.status_code == 500
    log = served.wait_error_log("GET /no-start", "without calling start_response()")
    entries = log_entries(log, "GET /no-start")
    assert entries, log
    assert "without calling start_response()" in entries[-1], entries[-1]
    still_serving(served)


def test_server_survives_many_broken_requests(served):
    for path in ["/str", "/raise-before", "/no-start"] * 5:
        assert requests.get(served.url(path), timeout=TIMEOUT).status_code == 500
    still_serving(served)
