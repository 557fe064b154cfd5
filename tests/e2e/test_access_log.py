"""The access log: gunicorn's --access-logformat atoms, and --access-logfile - (stdout).

The combined (default) format is checked in test_lifecycle.py."""

import re
import subprocess
import uuid

import requests

from support import APPS, TIMEOUT, wait_until

CUSTOM = "%(s)s %(D)s %({x-req}i)s %({content-type}o)s %(m)s %(U)s %(q)s %(B)s %(p)s"


def lines_with(read, tag, count=1):
    def found():
        lines = [line for line in read().splitlines() if tag in line]
        return lines if len(lines) >= count else None
    return wait_until(found) or []


def test_custom_format_with_duration_and_header_values(start_server):
    server = start_server("access-custom", app="conformance:application", chdir=APPS,
                          extra=["--access-logformat", CUSTOM])
    tag = uuid.uuid4().hex[:8]
    r = requests.get(server.url(f"/slow?seconds=0.3&tag={tag}"), headers={"X-Req": f"r-{tag}"},
                     timeout=TIMEOUT)
    assert r.status_code == 200
    r = requests.get(server.url(f"/no-such?tag={tag}"), timeout=TIMEOUT)
    assert r.status_code == 404
    found = lines_with(server.read_access_log, tag, 2)
    assert len(found) == 2, server.read_access_log()[-2000:]
    slow = next(line for line in found if "/slow" in line)
    status, micros, req, ctype, method, path, query, size, pid = slow.split(" ")
    assert (status, req, ctype, method, path) == ("200", f"r-{tag}", "text/plain", "GET", "/slow")
    assert query == f"seconds=0.3&tag={tag}"
    assert size == str(len(b"slept\n"))
    # The app slept 0.3 s: the duration in microseconds covers it (and is not absurdly long).
    assert 300_000 <= int(micros) < 10_000_000, slow
    assert re.fullmatch(r"<\d+>", pid)
    missing = next(line for line in found if "/no-such" in line)
    # No X-Req header: '-'; the app's JSON error has its own content type.
    parts = missing.split(" ")
    assert (parts[0], parts[2], parts[3]) == ("404", "-", "application/json"), missing


def test_access_log_to_stdout(start_server):
    server = start_server("access-stdout", app="conformance:application", chdir=APPS,
                          extra=["--access-logfile", "-"])
    tag = uuid.uuid4().hex[:8]
    r = requests.get(server.url(f"/fixed?tag={tag}"), headers={"User-Agent": f"ua-{tag}"},
                     timeout=TIMEOUT)
    assert r.status_code == 200
    read = lambda: server.output.read_text(errors="replace")  # noqa: E731 - stdout goes there
    found = lines_with(read, tag)
    assert found, server.logs()
    assert re.match(rf'^127\.0\.0\.1 - - \[[^]]+\] "GET /fixed\?tag={tag} HTTP/1\.1" 200 13 "-" '
                    rf'"ua-{tag}"$', found[0]), found
    assert not server.access_log.exists()


def test_an_unknown_atom_is_refused_naming_it(wsgi_serve_bin):
    done = subprocess.run([str(wsgi_serve_bin), "--bind", "127.0.0.1:1",
                           "--access-logformat", "%(h)s %(bogus)s"],
                          capture_output=True, timeout=TIMEOUT, text=True)
    assert done.returncode != 0
    assert "unknown atom %(bogus)s" in done.stderr, done.stderr
