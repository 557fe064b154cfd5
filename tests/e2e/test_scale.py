"""Scale and hostile-client tests: many idle connections, slow-header clients, a client that
never reads. Each is bounded in count and time; none asserts a speed.
"""

import resource
import selectors
import socket
import time

import requests

from support import APPS, TIMEOUT, HttpReader, wait_until

IDLE_CONNECTIONS = 10_000
SLOW_CLIENTS = 1_000


def raise_open_files(needed):
    """Lets this process hold `needed` sockets; fails clearly if the machine does not allow it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise AssertionError(f"this test needs {needed} open files; the hard limit is {hard} "
                                 "(raise it: ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def fixed_request(close=False):
    return (b"GET /fixed HTTP/1.1\r\nHost: localhost\r\n"
            + (b"Connection: close\r\n" if close else b"") + b"\r\n")


def test_10k_idle_keepalive_connections_do_not_stop_service(start_server, record_property):
    raise_open_files(IDLE_CONNECTIONS + 1_000)
    server = start_server("idle-10k", app="conformance:application", chdir=APPS, threads=2,
                          extra=["--keep-alive", "300"])
    with requests.Session() as s:
        for _ in range(20):  # warm up
            assert s.get(server.url("/fixed"), timeout=TIMEOUT).status_code == 200
    time.sleep(0.3)
    before = server.rss_kib()
    idle = []
    try:
        deadline = time.monotonic() + 120
        # Connect them all, then one request each: every connection becomes an idle kept-alive
        # connection that has served a request.
        for _ in range(IDLE_CONNECTIONS):
            assert time.monotonic() < deadline, f"only {len(idle)} connected in time"
            idle.append(server.connect(timeout=TIMEOUT))
        for s in idle:
            s.sendall(fixed_request())
        for i, s in enumerate(idle):
            response = HttpReader(s, TIMEOUT).read_response()
            assert response.status == 200 and response.body == b"hello, fixed\n", (i, response)
        time.sleep(0.5)
        held = server.rss_kib()
        per_connection = (held - before) * 1024 / IDLE_CONNECTIONS
        figures = (f"runtime={server.runtime} RSS KiB before={before} with {IDLE_CONNECTIONS} idle="
                   f"{held}; {per_connection:.0f} bytes per idle connection")
        print(figures)
        record_property("idle_rss", figures)

        # While they are held, other clients are served.
        with requests.Session() as s:
            for i in range(200):
                r = s.get(server.url(f"/echo/while-idle/{i}"), timeout=TIMEOUT)
                assert r.status_code == 200 and r.json()["PATH_INFO"] == f"/echo/while-idle/{i}"
        for i in range(50):
            r = requests.get(server.url("/fixed"), headers={"Connection": "close"},
                             timeout=TIMEOUT)
            assert r.status_code == 200, i
        # And the idle ones are still open and serve their next request.
        for s in idle[::100]:
            s.sendall(fixed_request())
            assert HttpReader(s, TIMEOUT).read_response().status == 200
    finally:
        for s in idle:
            s.close()
    assert held > 0


def test_1000_slow_header_clients_are_cut_at_the_head_deadline(start_server):
    raise_open_files(SLOW_CLIENTS + 1_000)
    server = start_server("slowloris", app="conformance:application", chdir=APPS, threads=2,
                          extra=["--header-timeout", "3"])
    head = b"GET /fixed HTTP/1.1\r\nHost: localhost\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
    opened = time.monotonic()
    slow = [server.connect(timeout=TIMEOUT) for _ in range(SLOW_CLIENTS)]
    poller = selectors.DefaultSelector()
    for i, s in enumerate(slow):
        poller.register(s, selectors.EVENT_READ, i)
    cut = {}  # socket index -> (seconds after opening, what it received)
    received = {i: b"" for i in range(SLOW_CLIENTS)}
    served = 0
    try:
        sent = 0
        while len(cut) < SLOW_CLIENTS and time.monotonic() - opened < 15:
            # One more header byte on every connection still open, once a second.
            for i, s in enumerate(slow):
                if i not in cut:
                    try:
                        s.sendall(head[sent:sent + 1])
                    except OSError:
                        cut[i] = (time.monotonic() - opened, received[i])
            sent += 1
            # Meanwhile, the service goes on.
            r = requests.get(server.url("/fixed"), timeout=TIMEOUT)
            assert r.status_code == 200
            served += 1
            second_ends = opened + sent
            while time.monotonic() < second_ends and len(cut) < SLOW_CLIENTS:
                for key, _ in poller.select(0.1):
                    i = key.data
                    try:
                        data = key.fileobj.recv(4096)
                    except OSError:
                        data = b""
                    received[i] += data
                    if not data:
                        cut[i] = (time.monotonic() - opened, received[i])
                        poller.unregister(key.fileobj)
    finally:
        poller.close()
        for s in slow:
            s.close()
    assert len(cut) == SLOW_CLIENTS, f"{SLOW_CLIENTS - len(cut)} slow clients were never cut"
    times = sorted(t for t, _ in cut.values())
    # Cut at the 3 s head deadline: not before it, and not long after it.
    assert times[0] >= 2.5 and times[-1] < 10, (times[0], times[-1])
    answered = sum(1 for _, data in cut.values() if data.startswith(b"HTTP/1.1 408 "))
    assert answered == SLOW_CLIENTS, f"{answered} of {SLOW_CLIENTS} got a 408"
    assert served >= 3


def test_a_client_that_never_reads_a_1gib_response_does_not_grow_memory(start_server):
    server = start_server("never-reads", app="conformance:application", chdir=APPS, threads=2,
                          extra=["--timeout", "3"])
    with requests.Session() as s:
        for _ in range(3):  # warm up, with a 1 MiB download
            r = s.get(server.url("/download?size=1048576"), timeout=TIMEOUT)
            assert r.status_code == 200 and len(r.content) == 1048576
    time.sleep(0.3)
    before = server.rss_kib()
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    stalled.settimeout(TIMEOUT)
    stalled.connect(("127.0.0.1", server.port))
    try:
        stalled.sendall(b"GET /download?size=1073741824&tag=big HTTP/1.1\r\nHost: x\r\n\r\n")
        peak = before
        sampling_ends = time.monotonic() + 2.5
        while time.monotonic() < sampling_ends:
            peak = max(peak, server.rss_kib())
            time.sleep(0.02)
        # The server gives up on the client after --timeout and calls close() on the body.
        record = server.wait_record("close big ", timeout=15)
        assert record, server.logs()
        chunks = int(record.split()[-1])
        # Only what the socket buffers and the bounded channel hold was produced: far from 1 GiB
        # (16,384 chunks of 64 KiB).
        assert chunks < 1000, record
        # Memory stayed flat while the client stalled.
        assert peak - before < 16 * 1024, f"RSS KiB before={before} peak={peak}"
    finally:
        stalled.close()
    # And the server goes on serving.
    assert wait_until(lambda: requests.get(server.url("/fixed"), timeout=TIMEOUT).ok, TIMEOUT)
