"""Pre-fork workers: a killed worker is replaced and service goes on; SIGHUP replaces workers
without refusing a connection."""

import os
import signal
import threading
import time

import requests

from support import APPS, TIMEOUT, process_tree, wait_until


def workers_of(server):
    return [p for p in process_tree(server.proc.pid) if p != server.proc.pid]


def load(server, stop, results):
    """Sends requests on fresh connections until `stop` is set; records each outcome."""
    deadline = time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            r = requests.get(server.url("/fixed"), headers={"Connection": "close"}, timeout=5)
            results.append(r.status_code)
        except requests.RequestException as e:
            results.append(repr(e))


def test_a_killed_worker_is_replaced_and_service_continues(start_server):
    server = start_server("workers-kill", app="conformance:application", chdir=APPS,
                          extra=["--workers", "2"])
    assert wait_until(lambda: len(workers_of(server)) == 2), server.logs()
    before = set(workers_of(server))
    victim = sorted(before)[0]
    os.kill(victim, signal.SIGKILL)
    replaced = wait_until(
        lambda: len(workers_of(server)) == 2 and victim not in workers_of(server), TIMEOUT)
    assert replaced, server.logs()
    log = server.wait_error_log(f"worker {victim} exited (killed by signal 9)")
    assert f"worker {victim} exited (killed by signal 9); starting a replacement" in log
    # Every request after the replacement is answered (requests on the killed worker's own
    # connections at the moment of the kill are the only ones that may fail).
    for _ in range(20):
        r = requests.get(server.url("/fixed"), headers={"Connection": "close"}, timeout=TIMEOUT)
        assert r.status_code == 200
    assert server.stop() == 0


def test_sighup_replaces_the_workers_without_refusing_a_connection(start_server):
    server = start_server("workers-hup", app="conformance:application", chdir=APPS,
                          extra=["--workers", "2"])
    assert wait_until(lambda: len(workers_of(server)) == 2), server.logs()
    old = set(workers_of(server))
    stop, results = threading.Event(), []
    clients = [threading.Thread(target=load, args=(server, stop, results)) for _ in range(4)]
    for c in clients:
        c.start()
    try:
        time.sleep(0.5)
        server.signal(signal.SIGHUP)
        renewed = wait_until(
            lambda: (lambda now: len(now) == 2 and not (now & old))(set(workers_of(server))),
            TIMEOUT)
        time.sleep(0.5)
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=TIMEOUT)
    assert renewed, server.logs()
    failures = [r for r in results if r != 200]
    assert results and not failures, f"{len(failures)} of {len(results)} failed: {failures[:3]}"
    assert "SIGHUP: starting new workers" in server.read_error_log()
    assert server.stop() == 0


def test_max_requests_replaces_the_worker_without_failing_a_request(start_server):
    server = start_server("max-requests", app="conformance:application", chdir=APPS,
                          extra=["--workers", "1", "--max-requests", "10",
                                 "--max-requests-jitter", "5"])
    assert wait_until(lambda: len(workers_of(server)) == 1), server.logs()
    seen = set(workers_of(server))
    statuses = []
    deadline = time.monotonic() + 60
    # Enough requests for at least two restarts (each worker serves 10 to 15; the first also
    # served the readiness probe).
    for _ in range(40):
        assert time.monotonic() < deadline
        r = requests.get(server.url("/fixed"), headers={"Connection": "close"}, timeout=TIMEOUT)
        statuses.append(r.status_code)
        seen.update(workers_of(server))
    assert statuses == [200] * 40
    log = server.wait_error_log("(--max-requests): restarting")
    restarts = log.count("(--max-requests): restarting")
    assert restarts >= 2, log
    assert wait_until(lambda: len(workers_of(server)) == 1), server.logs()
    assert len(seen) >= 3, (seen, log)
