"""RSS per idle keep-alive connection: one wsgi-serve worker holding N kept-alive connections.

Usage: python bench/idle_rss.py BINARY RUNTIME [N]

Starts BINARY (wsgi-serve) with the hello app on a free 127.0.0.1 port with `--runtime RUNTIME`
and a 300 s keep-alive, opens N connections (default 10,000), sends one request on each and
reads its response, so that each is an idle kept-alive connection that has served a request;
then reads the resident memory of the server's processes. Prints one JSON line:
{"runtime", "connections", "before_kib", "held_kib", "per_connection_bytes"}. Bounded: 120 s.
"""

import json
import os
import resource
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))

from support import HttpReader, free_port, process_tree, vm_rss_kib  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def main():
    binary, runtime = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n + 1000, hard), hard))
    port = free_port()
    proc = subprocess.Popen([binary, "--bind", f"127.0.0.1:{port}", "--runtime", runtime,
                             "--keep-alive", "300", "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socks = []
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(REQUEST)
                    HttpReader(s, 5).read_response()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        time.sleep(0.5)
        rss = lambda: sum(vm_rss_kib(p) for p in process_tree(proc.pid))  # noqa: E731
        before = rss()
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(socks)} connections in 120 s")
        for s in socks:
            s.sendall(REQUEST)
        for s in socks:
            response = HttpReader(s, 10).read_response()
            if response.status != 200:
                raise RuntimeError(f"unexpected response {response!r}")
        time.sleep(1.0)
        held = rss()
        print(json.dumps({"runtime": runtime, "connections": n, "before_kib": before,
                          "held_kib": held,
                          "per_connection_bytes": round((held - before) * 1024 / n)}))
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
