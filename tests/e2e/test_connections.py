"""Connection management: keep-alive, pipelining, HTTP/1.0, Connection: close, slow clients,
and clients that go away mid-request."""

import concurrent.futures
import json
import os
import random
import socket
import struct
import subprocess
import time
import uuid

import httpx
import pytest
import requests

from support import APPS, TIMEOUT, HttpReader, open_fds, request_bytes, steady_fds, wait_until

MIB = 1024 * 1024


def still_serving(server):
    r = requests.get(server.url("/fixed"), timeout=TIMEOUT)
    assert r.status_code == 200 and r.content == b"hello, fixed\n"


def test_keep_alive_reuse_with_requests_session(served):
    with requests.Session() as s:
        ports = {s.get(served.url(f"/echo/{i}"), timeout=TIMEOUT).json()["REMOTE_PORT"]
                 for i in range(5)}
        r = s.post(served.url("/echo/post"), data=b"body", timeout=TIMEOUT)
        ports.add(r.json()["REMOTE_PORT"])
    assert len(ports) == 1, ports


def test_keep_alive_reuse_with_httpx_client(served):
    with httpx.Client(base_url=served.base, timeout=TIMEOUT) as client:
        first = client.get("/echo/a")
        second = client.get("/echo/b")
        third = client.head("/fixed")
        fourth = client.get("/echo/c")
    assert first.status_code == second.status_code == third.status_code == 200
    assert first.headers.get("connection", "").lower() != "close"
    ports = {first.json()["REMOTE_PORT"], second.json()["REMOTE_PORT"],
             fourth.json()["REMOTE_PORT"]}
    assert len(ports) == 1, ports


def test_keep_alive_on_a_raw_socket(served):
    with served.connect() as s:
        reader = HttpReader(s)
        ports = set()
        for i in range(3):
            s.sendall(request_bytes("GET", f"/echo/{i}"))
            r = reader.read_response()
            assert r.status == 200
            assert not r.has_token("Connection", "close")
            ports.add(json.loads(r.body)["REMOTE_PORT"])
        local_port = str(s.getsockname()[1])
    assert ports == {local_port}


def test_keep_alive_after_an_unread_request_body(served):
    with served.connect() as s:
        reader = HttpReader(s)
        # /fixed does not read the body: the server must skip it, not parse it as a request.
        body = b"GET /echo/smuggled HTTP/1.1\r\nHost: x\r\n\r\n" + b"p" * 10_000
        s.sendall(request_bytes("POST", "/fixed", [("Content-Length", str(len(body)))], body))
        first = reader.read_response()
        assert first.status == 200 and first.body == b"hello, fixed\n"
        if first.has_token("Connection", "close"):
            assert reader.closed()
            return
        s.sendall(request_bytes("GET", "/echo/next"))
        second = reader.read_response()
        assert second.status == 200
        assert json.loads(second.body)["PATH_INFO"] == "/echo/next"


def test_pipelining_three_requests_in_one_send(served):
    with served.connect() as s:
        s.sendall(request_bytes("GET", "/echo/one?n=1")
                  + request_bytes("POST", "/echo/two?n=2", [("Content-Length", "3")], b"abc")
                  + request_bytes("GET", "/echo/three?n=3"))
        reader = HttpReader(s)
        responses = [reader.read_response() for _ in range(3)]
        local_port = str(s.getsockname()[1])
    envs = [json.loads(r.body) for r in responses]
    assert [r.status for r in responses] == [200, 200, 200]
    assert [e["PATH_INFO"] for e in envs] == ["/echo/one", "/echo/two", "/echo/three"]
    assert [e["QUERY_STRING"] for e in envs] == ["n=1", "n=2", "n=3"]
    assert envs[1]["body"]["size"] == 3
    assert {e["REMOTE_PORT"] for e in envs} == {local_port}


def test_http10_with_curl(served, curl):
    out = subprocess.run(
        [curl, "-sS", "-v", "--http1.0", "--max-time", "10", served.url("/echo/ten")],
        capture_output=True, timeout=TIMEOUT + 5, check=True)
    assert b"> GET /echo/ten HTTP/1.0" in out.stderr
    assert json.loads(out.stdout)["SERVER_PROTOCOL"] == "HTTP/1.0"
    # A streamed body without Content-Length is close-delimited on HTTP/1.0.
    out = subprocess.run(
        [curl, "-sS", "-i", "--http1.0", "--max-time", "10",
         served.url("/download?size=300000")],
        capture_output=True, timeout=TIMEOUT + 5, check=True)
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
    assert len(body) == 300000


def test_http10_closes_unless_keep_alive(served):
    with served.connect() as s:
        s.sendall(request_bytes("GET", "/fixed", version="HTTP/1.0", host=None))
        reader = HttpReader(s)
        r = reader.read_response()
        assert r.status == 200 and r.body == b"hello, fixed\n"
        assert not r.has_token("Connection", "keep-alive")
        assert reader.closed(), "HTTP/1.0 without keep-alive must close"
    with served.connect() as s:
        reader = HttpReader(s)
        for _ in range(2):
            s.sendall(request_bytes("GET", "/fixed", [("Connection", "keep-alive")],
                                    version="HTTP/1.0"))
            r = reader.read_response()
            assert r.status == 200 and r.body == b"hello, fixed\n"
            assert r.has_token("Connection", "keep-alive")
        s.sendall(request_bytes("GET", "/fixed", version="HTTP/1.0"))
        assert reader.read_response().status == 200
        assert reader.closed()


def test_connection_close(served):
    with served.connect() as s:
        s.sendall(request_bytes("GET", "/echo/close", [("Connection", "close")]))
        reader = HttpReader(s)
        r = reader.read_response()
        assert r.status == 200
        assert r.has_token("Connection", "close")
        assert reader.closed()
    r = requests.get(served.url("/fixed"), headers={"Connection": "close"}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["Connection"].lower() == "close"


def test_head_sent_one_byte_at_a_time(served):
    raw = request_bytes("GET", "/echo/slowly?x=1", [("User-Agent", "byte-by-byte"),
                                                   ("X-Slow", "yes")])
    assert len(raw) < 200  # bounded: at most ~2 s of sleeps
    # More slow clients than app threads: a client dribbling its head must not pin a thread.
    conns = [served.connect() for _ in range(served.threads + 2)]
    try:
        for i in range(len(raw)):
            for s in conns:
                s.sendall(raw[i:i + 1])
            if i == len(raw) // 2:
                # Meanwhile, another client is served at once.
                started = time.monotonic()
                still_serving(served)
                assert time.monotonic() - started < 5
            time.sleep(0.005)
        for s in conns:
            r = HttpReader(s).read_response()
            assert r.status == 200
            env = json.loads(r.body)
            assert env["PATH_INFO"] == "/echo/slowly" and env["QUERY_STRING"] == "x=1"
            assert env["headers"]["HTTP_X_SLOW"] == "yes"
    finally:
        for s in conns:
            s.close()


def abort(sock):
    """Closes with a reset (SO_LINGER 0), as a crashed or impatient client does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_disconnects_mid_upload(served, how):
    tag = f"up-{how}-{uuid.uuid4().hex[:8]}"
    s = served.connect()
    s.sendall(request_bytes("POST", f"/upload?tag={tag}&started={tag}",
                            [("Content-Length", str(10 * MIB))]))
    s.sendall(b"u" * MIB)
    assert served.started(tag), "the app never started reading the body"
    if how == "reset":
        abort(s)
    else:
        s.shutdown(socket.SHUT_WR)
        s.close()
    closed = served.wait_record(f"close {tag} ")
    assert closed, f"close() was not called after the client left ({how})"
    assert int(closed.split()[2]) < 10 * MIB
    # The app saw an error, not a short body that looks complete.
    assert not any(r.startswith(f"done {tag} ") for r in served.records()), \
        served.records()
    still_serving(served)


@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_disconnects_mid_download(served, how):
    tag = f"down-{how}-{uuid.uuid4().hex[:8]}"
    s = served.connect()
    s.sendall(request_bytes("GET", f"/download?size={200 * MIB}&tag={tag}"))
    reader = HttpReader(s)
    r = reader.read_head()
    assert r.status == 200
    reader.read_at_least(MIB)  # some of the body, far from all of it
    if how == "reset":
        abort(s)
    else:
        s.close()
    closed = served.wait_record(f"close {tag} ", timeout=30)
    assert closed, f"close() was not called after the client left ({how})"
    chunks = int(closed.split()[2])
    assert 0 < chunks < 200 * MIB // (64 * 1024), closed
    still_serving(served)


def thread_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return -1


RESET_ROUNDS = 30


def test_reset_storm_at_every_stage(start_server):
    """RESET_ROUNDS rounds of clients resetting (SO_LINGER 0) mid-head, mid-body (Content-Length
    and chunked), while the app runs, mid-response (chunked and Content-Length) and between
    pipelined responses: the worker lives, close() is called on every response it started,
    no body is ever read as complete, and its sockets and threads go back to where they were."""
    server = start_server("reset-storm", app="faults:application", chdir=APPS, threads=4)
    worker = requests.get(server.url("/echo/pid"), timeout=TIMEOUT).json()["pid"]
    fds, threads = steady_fds(worker), thread_count(worker)
    rng = random.Random(6)
    downloads = []
    for i in range(RESET_ROUNDS):
        # Mid-head: part of the request line or the fields, then a reset.
        head = request_bytes("GET", f"/echo/cut-{i}", [("X-Pad", "p" * 200)])
        s = server.connect()
        s.sendall(head[:rng.randrange(1, len(head) - 1)])
        abort(s)
        # Mid-body, Content-Length and chunked: the app is reading when the client resets.
        s = server.connect()
        s.sendall(request_bytes("POST", f"/called/upload?tag=storm-up-{i}",
                                [("Content-Length", str(MIB))]) + b"u" * rng.randrange(0, 65536))
        abort(s)
        s = server.connect()
        s.sendall(request_bytes("POST", f"/called/upload?tag=storm-chunked-{i}",
                                [("Transfer-Encoding", "chunked")])
                  + b"1000\r\n" + b"c" * rng.randrange(0, 4096))
        abort(s)
        # While the app runs, before any response byte.
        s = server.connect()
        s.sendall(request_bytes("GET", f"/id/storm-{i}?ms=20"))
        time.sleep(0.005)
        abort(s)
        # Mid-response: a streamed body (chunked, or with a Content-Length) partly read.
        tag = f"storm-down-{i}"
        s = server.connect()
        s.sendall(request_bytes("GET", f"/called/download?size={8 * MIB}&tag={tag}"
                                       + ("&length=1" if i % 2 else "")))
        reader = HttpReader(s)
        assert reader.read_head().status == 200
        reader.read_at_least(rng.randrange(1, 256 * 1024))
        abort(s)
        downloads.append(tag)
        # Between pipelined responses: the first answered, the second cut.
        s = server.connect()
        s.sendall(request_bytes("GET", "/fixed") + request_bytes("GET", f"/download?size={MIB}"))
        assert HttpReader(s).read_response().status == 200
        abort(s)
    # close() for every download the app started, with fewer chunks than the whole body.
    for tag in downloads:
        record = server.wait_record(f"close {tag} ", timeout=TIMEOUT)
        assert record, f"close() was not called for {tag}"
        assert int(record.split()[2]) < 8 * MIB // (64 * 1024), record
    # No upload was ever seen as complete; every response the app started was closed.
    records = server.records()
    assert not [r for r in records if r.startswith("done storm-")], records

    def calls_and_closes():
        records = server.records()
        return ({r.split()[1] for r in records if r.startswith("called storm-")},
                {r.split()[1] for r in records if r.startswith("close storm-")})

    assert wait_until(lambda: (lambda c: c[0] == c[1])(calls_and_closes())), \
        f"close() missing for {sorted(calls_and_closes()[0] - calls_and_closes()[1])}"
    called = calls_and_closes()[0]
    # The service goes on, on the same worker, which let go of every socket and thread.
    still_serving(server)
    assert requests.get(server.url("/echo/pid"), timeout=TIMEOUT).json()["pid"] == worker
    settled = wait_until(lambda: open_fds(worker) <= fds and thread_count(worker) <= threads,
                         timeout=TIMEOUT)
    assert settled, (f"fds {fds} -> {open_fds(worker)}, threads {threads} -> "
                     f"{thread_count(worker)}")
    print(f"\nreset storm: {6 * RESET_ROUNDS} connections reset; the app was called for "
          f"{len(called)} uploads and downloads and close() for each; worker fds {fds} -> {open_fds(worker)}, threads {threads} -> "
          f"{thread_count(worker)}")
    assert server.stop() == 0, server.logs()


def test_requests_that_block_run_on_the_other_app_threads(start_server):
    """One thread takes requests while they finish promptly (the GIL is not handed around on
    every request); when requests block, the other app threads take the waiting ones. (A
    server without that gate passes too: this guards the gate's escalation, not its benefit,
    which BENCHMARKS.md measures.)"""
    server = start_server("blocking", app="conformance:application", chdir=APPS, threads=4)

    def slow(seconds):
        return requests.get(server.url(f"/slow?seconds={seconds}"), timeout=TIMEOUT).status_code

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(slow, [0.6] * 4))
        assert statuses == [200] * 4
    # One thread at a time would take 2.4 s.
    elapsed = time.monotonic() - started
    assert elapsed < 1.8, elapsed
    # Three slow requests hold three threads; a quick one still goes through at once.
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        pending = [pool.submit(slow, 1.0) for _ in range(3)]
        time.sleep(0.2)
        quick = time.monotonic()
        assert requests.get(server.url("/fixed"), timeout=TIMEOUT).status_code == 200
        # Waiting for a thread would take 0.8 s more.
        assert time.monotonic() - quick < 0.6, time.monotonic() - quick
        assert [p.result() for p in pending] == [200] * 3
    server.stop()
