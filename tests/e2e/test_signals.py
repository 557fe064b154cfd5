"""Signals under load, counted: SIGTERM and SIGHUP lose no request; SIGKILL of one worker fails
only requests that worker had in flight, and the service goes on.

A CountingLoad (load.py) runs 8 clients sending GET /id/<unique id> on keep-alive connections;
the app (apps/faults.py) records every id it executes with its pid. Once the load is over, each
request is one of:

- answered: the client got the complete answer;
- retried: the connection closed before a single response byte and the app never executed the
  request (a server closing a kept-alive connection as the client reuses it: clients retry
  these on a new connection, which the load does, with a new id);
- refused: a connection was refused (nothing sent; SIGTERM closes the listener);
- lost: everything else that was sent, in particular any request the app executed without the
  client getting the whole answer.

Counts are printed (pytest -s) and written to target/e2e-figures/signal-<name>-<runtime>.json.
"""

import os
import signal
import time

from load import CountingLoad, write_figures
from support import APPS, TIMEOUT, process_tree, wait_until

CLIENTS = 8
THREADS = 2


def workers_of(server):
    return [p for p in process_tree(server.proc.pid) if p != server.proc.pid]


def executed(server):
    """id -> pid of every request the app executed."""
    hits = {}
    for line in server.records():
        if line.startswith("hit "):
            _, request_id, pid = line.split()
            hits[request_id] = int(pid)
    return hits


def report(name, runtime, counts, **extra):
    figures = dict(counts, runtime=runtime, clients=CLIENTS, **extra)
    write_figures(f"signal-{name}-{runtime}", figures)
    print(f"\n{name} runtime={runtime}: sent {counts['sent']}, answered {counts['answered']}, "
          f"retried {counts['retried']}, refused {counts['refused']}, lost {counts['lost']} "
          f"({counts['lost_executed']} of them executed) {extra}")
    return figures


def start(start_server, name, workers):
    server = start_server(name, app="faults:application", chdir=APPS, threads=THREADS,
                          extra=["--workers", str(workers)])
    assert wait_until(lambda: len(workers_of(server)) == workers), server.logs()
    return server


def test_sigterm_under_load_loses_no_request(start_server, runtime):
    server = start(start_server, "signal-term", workers=1)
    load = CountingLoad(server.port, CLIENTS, ms=2, stop_when_refused=True).start()
    try:
        assert wait_until(lambda: load.answered() >= 200, TIMEOUT), server.logs()
        time.sleep(0.5)
        at_signal = load.answered()
        server.signal(signal.SIGTERM)
        code = server.proc.wait(timeout=30)
    finally:
        load.stop()
    counts = report("sigterm", runtime, load.counts(executed(server)), answered_at_signal=at_signal)
    assert code == 0, server.logs()
    assert counts["lost"] == 0, counts
    assert counts["answered"] >= at_signal > 0, counts


def test_sighup_under_load_loses_no_request(start_server, runtime):
    server = start(start_server, "signal-hup", workers=2)
    old = set(workers_of(server))
    load = CountingLoad(server.port, CLIENTS, ms=2).start()
    try:
        assert wait_until(lambda: load.answered() >= 200, TIMEOUT), server.logs()
        time.sleep(0.5)
        at_signal = load.answered()
        server.signal(signal.SIGHUP)
        renewed = wait_until(
            lambda: (lambda now: len(now) == 2 and not (now & old))(set(workers_of(server))),
            TIMEOUT)
        at_renewal = load.answered()
        time.sleep(1.0)
    finally:
        load.stop()
    counts = report("sighup", runtime, load.counts(executed(server)), answered_at_signal=at_signal,
                    answered_at_renewal=at_renewal)
    assert renewed, server.logs()
    assert "SIGHUP: starting new workers" in server.read_error_log()
    assert counts["lost"] == 0, counts
    assert counts["refused"] == 0, counts
    assert counts["answered"] > at_renewal, "no request answered by the new workers"
    assert server.stop() == 0, server.logs()


def test_sigkill_of_a_worker_under_load_fails_only_its_requests_in_flight(start_server, runtime):
    server = start(start_server, "signal-kill", workers=2)
    victim = sorted(workers_of(server))[0]
    # 20 ms per request: each worker's THREADS app threads are busy nearly all the time.
    load = CountingLoad(server.port, CLIENTS, ms=20).start()
    try:
        assert wait_until(lambda: load.answered() >= 100, TIMEOUT), server.logs()
        time.sleep(0.5)
        at_signal = load.answered()
        os.kill(victim, signal.SIGKILL)
        replaced = wait_until(
            lambda: len(workers_of(server)) == 2 and victim not in workers_of(server), TIMEOUT)
        at_replacement = load.answered()
        time.sleep(1.0)
    finally:
        load.stop()
    hits = executed(server)
    counts = report("sigkill", runtime, load.counts(hits), threads_per_worker=THREADS,
                    answered_at_signal=at_signal, answered_at_replacement=at_replacement)
    assert replaced, server.logs()
    log = server.wait_error_log(f"worker {victim} exited (killed by signal 9)")
    assert f"worker {victim} exited (killed by signal 9); starting a replacement" in log
    # Only the killed worker's requests in flight may fail: at most its app threads' worth, and
    # each one a request that worker executed.
    assert counts["lost"] <= THREADS, counts
    lost_ids = [d.split()[0] for d in counts["lost_detail"]]
    assert all(hits.get(i) == victim for i in lost_ids), (counts, {i: hits.get(i) for i in lost_ids})
    assert counts["refused"] == 0, counts
    assert counts["answered"] > at_replacement, "no request answered after the replacement"
    assert server.stop() == 0, server.logs()
