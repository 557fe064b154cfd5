"""--timeout: a worker whose application is stuck in one request longer is killed and replaced;
time spent waiting on a slow client does not count."""

import socket
import time
import uuid

import requests

from support import APPS, TIMEOUT, HttpReader, request_bytes, wait_until


def worker_pid(server):
    r = requests.get(server.url("/echo"), headers={"Connection": "close"}, timeout=TIMEOUT)
    assert r.status_code == 200
    return r.json()["pid"]


def test_a_request_stuck_in_the_app_past_the_timeout_replaces_the_worker(start_server):
    server = start_server("timeout-stuck", app="conformance:application", chdir=APPS,
                          threads=2, extra=["--timeout", "2"])
    pid = worker_pid(server)
    tag = uuid.uuid4().hex[:8]
    with server.connect(timeout=20) as s:
        s.sendall(request_bytes("GET", f"/slow?seconds=30&tag={tag}"))
        assert server.started(tag), server.logs()
        sent = time.monotonic()
        reader = HttpReader(s, timeout=20)
        try:
            r = reader.read_response()
            dropped = False
        except (EOFError, ConnectionResetError):
            dropped, r = True, None
        waited = time.monotonic() - sent
    # The client's connection is dropped (no response), after about --timeout, long before the
    # 30 s the app would have slept.
    assert dropped, r
    assert 1.5 <= waited < 10, waited
    log = server.wait_error_log(f"WORKER TIMEOUT (pid {pid}): GET /slow has run for")
    line = next(line for line in log.splitlines() if "WORKER TIMEOUT" in line)
    assert "[CRITICAL]" in line, line
    assert line.endswith("(--timeout 2); replacing the worker"), line
    assert f"worker {pid} exited (killed by signal 9); starting a replacement" in \
        server.wait_error_log(f"worker {pid} exited")
    # A new worker serves the next request.
    assert wait_until(lambda: worker_pid(server) != pid, TIMEOUT)
    r = requests.get(server.url("/fixed"), timeout=TIMEOUT)
    assert r.status_code == 200 and r.text == "hello, fixed\n"


def test_a_slow_reading_client_does_not_count_against_the_timeout(start_server):
    server = start_server("timeout-slow-client", app="conformance:application", chdir=APPS,
                          threads=2, extra=["--timeout", "2"])
    pid = worker_pid(server)
    size = 16 * 1024 * 1024
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small receive buffer: the server waits on this client rather than on the kernel.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.settimeout(TIMEOUT)
    s.connect(("127.0.0.1", server.port))
    started = time.monotonic()
    received = 0
    with s:
        s.sendall(request_bytes("GET", f"/download?size={size}&length=1",
                                [("Connection", "close")]))
        deadline = started + 60
        while time.monotonic() < deadline:
            data = s.recv(64 * 1024)
            if not data:
                break
            received += len(data)
            # A slow reader: at most 64 KiB per 20 ms, so 16 MiB take at least 256 sleeps
            # (5.1 s), well past --timeout whatever the machine's speed.
            time.sleep(0.02)
    took = time.monotonic() - started
    # The whole response (head + 16 MiB), over well past --timeout.
    assert received > size, (received, server.logs())
    assert took > 3, took
    assert "WORKER TIMEOUT" not in server.read_error_log(), server.read_error_log()
    assert worker_pid(server) == pid
