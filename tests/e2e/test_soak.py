"""Soak: 100,000 requests on keep-alive connections against one worker; its memory must not
grow (less than 10 % from the end of the warm-up to the end).

Four clients pipeline GETs, Content-Length POSTs and chunked POSTs 8 at a time, each on a fresh
connection every 2,000 requests; the worker's VmRSS is sampled about every 5,000 answers. The
curve is printed (pytest -s) and written to target/e2e-figures/soak-<runtime>.json.
"""

import time

from load import SoakClient, write_figures
from support import APPS, process_tree, vm_rss_kib, wait_until

TOTAL = 100_000
CLIENTS = 4
WARM_UP = 10_000
SAMPLE_EVERY = 5_000
MAX_GROWTH = 0.10


def test_soak_100k_requests_rss_flat_after_warm_up(start_server, runtime):
    server = start_server("soak", app="faults:application", chdir=APPS, threads=2,
                          extra=["--workers", "1"])
    workers = wait_until(lambda: [p for p in process_tree(server.proc.pid)
                                  if p != server.proc.pid])
    assert len(workers) == 1, server.logs()
    worker = workers[0]
    started = time.monotonic()
    deadline = started + 100
    clients = [SoakClient(server.port, TOTAL // CLIENTS, deadline=deadline)
               for _ in range(CLIENTS)]
    curve = [(0, vm_rss_kib(worker))]
    for c in clients:
        c.start()
    next_sample = SAMPLE_EVERY
    while any(c.is_alive() for c in clients) and time.monotonic() < deadline:
        answered = sum(c.answered for c in clients)
        if answered >= next_sample:
            curve.append((answered, vm_rss_kib(worker)))
            next_sample = (answered // SAMPLE_EVERY + 1) * SAMPLE_EVERY
        time.sleep(0.005)
    for c in clients:
        c.join(timeout=10)
    elapsed = time.monotonic() - started
    errors = [c.error for c in clients if c.error]
    assert not errors, f"{errors}\n{server.logs()}"
    answered = sum(c.answered for c in clients)
    assert answered == TOTAL, answered
    curve.append((answered, vm_rss_kib(worker)))
    assert worker in process_tree(server.proc.pid), "the worker was replaced during the soak"

    warm = next(rss for n, rss in curve if n >= WARM_UP)
    end = curve[-1][1]
    growth = (end - warm) / warm
    figures = {
        "runtime": runtime, "requests": answered, "clients": CLIENTS,
        "connections": sum(c.connections for c in clients), "seconds": round(elapsed, 1),
        "rss_kib_curve": curve, "rss_kib_after_warm_up": warm, "rss_kib_end": end,
        "growth_percent": round(100 * growth, 2),
    }
    write_figures(f"soak-{runtime}", figures)
    print(f"\nsoak runtime={runtime} {answered} requests in {elapsed:.1f}s over "
          f"{figures['connections']} connections; worker VmRSS KiB by requests answered: "
          + ", ".join(f"{n}:{rss}" for n, rss in curve)
          + f"; growth after warm-up ({WARM_UP}) {100 * growth:.2f} %")
    assert growth < MAX_GROWTH, figures
    assert server.stop() == 0, server.logs()
