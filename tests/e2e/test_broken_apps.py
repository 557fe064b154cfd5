"""Broken applications: a 500 (or an aborted response), one clear log line, the server lives.

The first tests use the conformance app's broken routes; the table below fails an application
at every stage of a WSGI exchange (apps/faults.py), and the last test fails it on import."""

import subprocess
import time

import pytest
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


# --- an application failing at every stage of the exchange (apps/faults.py) ---------------------

ERROR_PAGE = b"Internal Server Error\n"

# stage -> (what the client sees, the body it gets, a needle of the stage's error-log entry, whether
# the server calls the result's close()). "500": the head had not gone out, so a complete 500
# answers and the connection stays usable. "abort": the head (and `body`) had gone out, so the
# connection is cut: the body must not end cleanly. "complete": the response is whole.
STAGES = {
    "call": ("500", ERROR_PAGE, "RuntimeError: e2e: call fails", False),
    "start-response-bad-status": ("500", ERROR_PAGE, "status must be a three-digit code", False),
    "start-response-bad-header": ("500", ERROR_PAGE, "has a control character", False),
    "start-response-hop-by-hop": ("500", ERROR_PAGE, "is hop-by-hop", False),
    "start-response-not-a-list": ("500", ERROR_PAGE, "must be a list of (name, value) tuples",
                                  False),
    "start-response-twice": ("500", ERROR_PAGE, "called a second time without exc_info", False),
    "first-item": ("500", ERROR_PAGE, "RuntimeError: e2e: first-item fails", True),
    "generator-first": ("500", ERROR_PAGE, "RuntimeError: e2e: generator-first fails", False),
    "str-item": ("500", ERROR_PAGE, "application returned str", True),
    "returns-none": ("500", ERROR_PAGE, "returned NoneType, which is not iterable", False),
    "returns-int": ("500", ERROR_PAGE, "returned int, which is not iterable", False),
    "generator-without-start-response": ("500", ERROR_PAGE, "without calling start_response()",
                                         False),
    "write-str": ("500", ERROR_PAGE, "write() argument must be bytes, not str", False),
    "input-read-bad-argument": ("500", ERROR_PAGE,
                                "'str' object cannot be interpreted as an integer", False),
    "middle-item": ("abort", b"first\nsecond\n", "RuntimeError: e2e: middle-item fails", True),
    "middle-item-length": ("abort", b"x" * 40, "RuntimeError: e2e: middle-item-length fails",
                           True),
    "str-item-after-bytes": ("abort", b"bytes first\n", "application returned str", True),
    "write-then-raise": ("abort", b"written\n", "RuntimeError: e2e: write-then-raise fails",
                         False),
    "exc-info-after-head": ("abort", b"head is out\n",
                            "RuntimeError: e2e: exc-info-after-head fails", False),
    "input-raises-in-iterator": ("abort", b"reading\n",
                                 "'str' object cannot be interpreted as an integer", True),
    "short-body": ("abort", b"only ten\n\n",
                   "application sent 10 bytes of its Content-Length of 100; connection closed",
                   True),
    "close": ("complete", b"complete\n", "the result's close() raised an exception", True),
    # PEP 3333: the server sends no more than the Content-Length and stops iterating there.
    "long-body": ("complete", b"exact", None, True),
    "long-body-large": ("complete", b"a" * 16384 + b"b" * 3616, None, True),
}


def worker_pid(server):
    return requests.get(server.url("/echo/pid"), timeout=TIMEOUT).json()["pid"]


@pytest.fixture(scope="module")
def fault_worker(fault_server):
    """The fault server's worker pid before the stage tests: no failure may cost the worker."""
    return worker_pid(fault_server)


@pytest.mark.parametrize("stage", STAGES.keys())
def test_app_failing_at_stage(fault_server, fault_worker, stage):
    seen, body, needle, closes = STAGES[stage]
    with fault_server.connect() as s:
        s.sendall(request_bytes("GET", f"/fail/{stage}"))
        reader = HttpReader(s)
        r = reader.read_response()
        if seen == "abort":
            assert r.status == 200, r  # the head was out before the failure
            assert not r.complete, f"an aborted body ended cleanly: {r}"
            assert r.body == body, r
            assert reader.eof
        else:
            assert r.status == (500 if seen == "500" else 200), r
            assert r.complete and r.body == body, r
            # The connection is still usable, unless the server said it closes.
            if r.has_token("Connection", "close"):
                assert reader.closed()
            else:
                s.sendall(request_bytes("GET", "/fixed"))
                after = reader.read_response()
                assert after.status == 200 and after.body == b"hello, fixed\n", after
    if needle is not None:
        log = fault_server.wait_error_log(f"GET /fail/{stage} ", needle)
        entries = [e for e in log_entries(log, f"GET /fail/{stage} ") if needle in e]
        assert entries, f"no error-log entry for {stage} with {needle!r}:\n{log[-3000:]}"
        first_line = entries[-1].partition("\n")[0]
        assert LOG_LINE.match(first_line) and "[ERROR]" in first_line, first_line
        if seen == "abort" and stage != "short-body":
            assert "connection aborted" in entries[-1], entries[-1]
    else:
        # Nothing was wrong enough to log: no error-log entry names the request.
        time.sleep(0.2)
        assert not log_entries(fault_server.read_error_log(), f"GET /fail/{stage} ")
    if closes:
        assert fault_server.wait_record(f"close {stage}"), f"close() was not called for {stage}"
    assert worker_pid(fault_server) == fault_worker, "the failure cost the worker its life"
    still_serving(fault_server)


def test_app_failing_on_import_stops_startup_with_the_traceback(wsgi_serve_bin, runtime, tmp_path):
    (tmp_path / "broken_on_import.py").write_text(
        'raise RuntimeError("e2e: this module fails on import")\n', encoding="utf-8")
    out = subprocess.run(
        [str(wsgi_serve_bin), "broken_on_import:application", "--chdir", str(tmp_path),
         "--bind", "127.0.0.1:0", "--runtime", runtime, "--workers", "2"],
        capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    err = out.stderr.decode(errors="replace")
    assert out.returncode != 0, err
    assert 'importing "broken_on_import" failed' in err, err
    assert "RuntimeError: e2e: this module fails on import" in err, err
    assert "broken_on_import.py\", line 1" in err, err
    assert "a worker could not load the application" in err, err
