"""Load generators of the fault tests: a pipelining soak client and a counting load for the
signal tests. Raw sockets, every call with a timeout, every loop bounded in count and time.

Figures the tests print are also written as JSON under target/e2e-figures/ (FIGURES), from
which BENCHMARKS.md's fault-test section is written.
"""

import json
import socket
import threading
import time

from support import REPO, HttpReader

FIGURES = REPO / "target" / "e2e-figures"


def write_figures(name, data):
    """Writes `data` to target/e2e-figures/<name>.json; returns the path."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


# --- soak -------------------------------------------------------------------------------------

SOAK_BODY = b"x" * 256


def soak_request(i):
    """Request `i` of the soak: GETs, Content-Length POSTs and chunked POSTs in turn."""
    kind = i % 4
    if kind == 1:
        return (b"POST /soak HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n" % len(SOAK_BODY)
                + SOAK_BODY)
    if kind == 3:
        return (b"POST /soak HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"100\r\n" + SOAK_BODY + b"\r\n0\r\n\r\n")
    return b"GET /soak?i=%d HTTP/1.1\r\nHost: soak\r\nUser-Agent: e2e-soak\r\n\r\n" % i


SOAK_ANSWER_HEAD = b"HTTP/1.1 200 OK\r\n"
SOAK_ANSWER_BODY = b"soaked\n"


class SoakClient(threading.Thread):
    """Sends `total` soak requests over keep-alive connections, `depth` pipelined at a time, a
    fresh connection every `per_connection` requests; checks every answer."""

    def __init__(self, port, total, depth=8, per_connection=2_000, deadline=None):
        super().__init__(daemon=True)
        self.port, self.total, self.depth = port, total, depth
        self.per_connection = per_connection
        self.deadline = deadline or time.monotonic() + 120
        self.answered = 0
        self.connections = 0
        self.error = None

    def run(self):
        try:
            while self.answered < self.total:
                self._connection(min(self.per_connection, self.total - self.answered))
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def _connection(self, n):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            self.connections += 1
            buf, sent, got = b"", 0, 0
            while got < n:
                if time.monotonic() > self.deadline:
                    raise TimeoutError(f"soak client: {self.answered} answered before the deadline")
                if sent - got <= self.depth // 2 and sent < n:
                    k = min(self.depth, n - sent)
                    s.sendall(b"".join(soak_request(self.answered + sent + j) for j in range(k)))
                    sent += k
                data = s.recv(256 * 1024)
                if not data:
                    raise EOFError(f"soak client: the server closed after {got} of {n} answers")
                buf += data
                while True:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0 or len(buf) < end + 4 + len(SOAK_ANSWER_BODY):
                        break
                    head = buf[:end + 4]
                    if not head.startswith(SOAK_ANSWER_HEAD) or b"\r\nContent-Length: 7\r\n" \
                            not in head:
                        raise AssertionError(f"soak client: unexpected answer {head!r}")
                    body = buf[end + 4:end + 4 + len(SOAK_ANSWER_BODY)]
                    if body != SOAK_ANSWER_BODY:
                        raise AssertionError(f"soak client: unexpected body {body!r}")
                    buf = buf[end + 4 + len(SOAK_ANSWER_BODY):]
                    got += 1
                    self.answered += 1
            if buf:
                raise AssertionError(f"soak client: bytes after the last answer: {buf[:100]!r}")


# --- counting load ----------------------------------------------------------------------------

class Attempt:
    """One request on the wire: its id and what came of it."""

    __slots__ = ("id", "outcome", "detail")

    def __init__(self, request_id):
        self.id, self.outcome, self.detail = request_id, None, ""


class CountingLoad:
    """`clients` threads sending GET /id/<id>?ms=<ms> over keep-alive connections until `stop()`
    (or `seconds` pass), each id unique, recording every attempt's outcome:

    - "answered": a complete 200 carrying the id back;
    - "empty": the connection closed or reset before a single response byte (on a kept-alive
      connection, the usual race with a server closing it; the client retries on a new
      connection, with a new id);
    - "refused": connecting failed (nothing was sent; the client waits and tries again);
    - "failed": anything else (part of a response, a wrong status, a timeout).

    `counts(executed)` then sorts "empty" attempts by whether the app executed them: a request
    the app executed and the client got no complete answer for is lost."""

    def __init__(self, port, clients=8, ms=2, seconds=30, stop_when_refused=False):
        self.port, self.ms, self.stop_when_refused = port, ms, stop_when_refused
        self.deadline = time.monotonic() + seconds
        self.stopping = threading.Event()
        self.attempts = [[] for _ in range(clients)]
        self.refused = [0] * clients
        self.threads = [threading.Thread(target=self._client, args=(c,), daemon=True)
                        for c in range(clients)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self, timeout=30):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "a load client did not stop"

    def answered(self):
        return sum(1 for a in self._all() if a.outcome == "answered")

    def _all(self):
        return [a for attempts in self.attempts for a in attempts]

    def _client(self, c):
        sock, reader, seq = None, None, 0
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            if sock is None:
                try:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                except OSError:
                    self.refused[c] += 1
                    if self.stop_when_refused:
                        return
                    time.sleep(0.02)
                    continue
                reader = HttpReader(sock, timeout=10)
            seq += 1
            attempt = Attempt(f"c{c}-{seq}")
            self.attempts[c].append(attempt)
            reader.deadline = time.monotonic() + 10
            keep = False
            try:
                sock.sendall(b"GET /id/%s?ms=%d HTTP/1.1\r\nHost: load\r\n\r\n"
                             % (attempt.id.encode(), self.ms))
                r = reader.read_response()
                if r.status == 200 and r.complete and r.body == attempt.id.encode() + b"\n":
                    attempt.outcome = "answered"
                    keep = not r.has_token("Connection", "close")
                else:
                    attempt.outcome, attempt.detail = "failed", repr(r)
            except (EOFError, ConnectionResetError, BrokenPipeError) as e:
                if reader.buf:
                    attempt.outcome, attempt.detail = "failed", f"{e!r} after {reader.buf[:80]!r}"
                else:
                    attempt.outcome, attempt.detail = "empty", repr(e)
            except (OSError, ValueError) as e:
                attempt.outcome, attempt.detail = "failed", f"{e!r} after {reader.buf[:80]!r}"
            if not keep:
                sock.close()
                sock = None
        if sock is not None:
            sock.close()

    def counts(self, executed):
        """The outcome counts, given the ids the app executed (a set).

        sent: requests written to a connection; answered: complete answers; retried: closed
        before a response byte and never executed (the client retried on a new connection);
        refused: connections refused (nothing sent); lost: sent, not answered and not retried,
        which includes every request the app executed without the client getting the answer."""
        attempts = self._all()
        answered = [a for a in attempts if a.outcome == "answered"]
        empty = [a for a in attempts if a.outcome == "empty"]
        retried = {a.id for a in empty if a.id not in executed}
        lost = [a for a in attempts if a.outcome != "answered" and a.id not in retried]
        return {
            "sent": len(attempts),
            "answered": len(answered),
            "retried": len(retried),
            "refused": sum(self.refused),
            "lost": len(lost),
            "lost_executed": sum(1 for a in lost if a.id in executed),
            "lost_detail": [f"{a.id} {a.outcome} {a.detail}" for a in lost[:10]],
        }
