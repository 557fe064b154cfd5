"""Pre-fork workers: --max-requests replaces a worker without failing a request. (A killed
worker's replacement and SIGHUP's are tested under counted load in test_signals.py.)"""

import time

import requests

from support import APPS, TIMEOUT, process_tree, wait_until


def workers_of(server):
    return [p for p in process_tree(server.proc.pid) if p != server.proc.pid]


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


def _worker_environ(server):
    worker = process_tree(server.proc.pid)[-1]
    with open(f"/proc/{worker}/environ", "rb") as f:
        return [v.decode(errors="replace") for v in f.read().split(b"\0")]


def test_workers_get_fixed_malloc_thresholds_unless_the_user_set_their_own(
        start_server, monkeypatch):
    # glibc's dynamic thresholds made a worker's upload speed depend on its start (13,000 or
    # 40,000 uploads/s for the same binary): the supervisor fixes them for its workers.
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    server = start_server("malloc-default", app="conformance:application", chdir=APPS)
    tunables = [v for v in _worker_environ(server) if v.startswith("GLIBC_TUNABLES=")]
    assert tunables and tunables[0].startswith(
        "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4194304"), tunables
    server.stop()
    # A user's own setting is left alone.
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=3")
    server = start_server("malloc-user", app="conformance:application", chdir=APPS)
    tunables = [v for v in _worker_environ(server) if v.startswith("GLIBC_TUNABLES=")]
    assert tunables == ["GLIBC_TUNABLES=glibc.malloc.arena_max=3"], tunables
