"""The in-process Flask rate: the Flask JSON app called directly, no server and no socket.

Each iteration does what a server minimally must per request: copies a prebuilt environ (the
request wrk sends: GET /json, Host only), gives it a fresh wsgi.input, calls the app with a
start_response that stores status and headers, joins the body and calls close(). Bounded:
RUNS runs of N iterations; prints one JSON line with the best and median runs' rates.

Usage: python bench/inprocess.py [N] [RUNS]   (run from the repo root, in .venv-bench)
"""

import io
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps"))
from flask_app import app  # noqa: E402

BASE = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/json",
    "QUERY_STRING": "",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8000",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "REMOTE_PORT": "40000",
    "HTTP_HOST": "127.0.0.1:8000",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}


def run(n):
    state = {}

    def start_response(status, headers, exc_info=None):
        state["status"] = status
        state["headers"] = headers

    base, wsgi_app, bytes_io, join = BASE, app, io.BytesIO, b"".join
    start = time.perf_counter()
    for _ in range(n):
        environ = base.copy()
        environ["wsgi.input"] = bytes_io(b"")
        result = wsgi_app(environ, start_response)
        try:
            join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    return n / (time.perf_counter() - start), state


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    _, state = run(1000)  # warm-up, and a check that the route answers
    if not state.get("status", "").startswith("200"):
        sys.exit(f"the Flask app answered {state.get('status')!r}, not 200")
    rates = [run(n)[0] for _ in range(runs)]
    print(json.dumps({
        "best": max(rates), "median": statistics.median(rates), "runs": runs, "n": n,
        "rates": rates,
    }))


if __name__ == "__main__":
    main()
