"""Helpers of the end-to-end suite: starting wsgi-serve, raw HTTP/1.1 over sockets, RSS.

Everything here is bounded in time: each socket call has a timeout and each loop a deadline.
"""

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
APPS = HERE / "apps"
FIXTURES = REPO / "wsgi-core" / "tests" / "fixtures"

# Default bound for one socket operation or one client call.
TIMEOUT = 10.0


def free_port():
    """A port free on 127.0.0.1 right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=TIMEOUT, interval=0.02):
    """Polls `predicate` until it returns a true value or `timeout` passes; returns the value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class Server:
    """One wsgi-serve process on 127.0.0.1, with its logs in `workdir`.

    With `ssl_context` (an `ssl.SSLContext` trusting the server's certificate; pass the TLS
    options in `extra`) the server speaks HTTPS: `connect()` returns a TLS socket and `base` an
    https URL, so the helpers work unchanged."""

    def __init__(self, binary, runtime, workdir, app=None, chdir=None, threads=4, extra=(),
                 ssl_context=None):
        self.binary, self.runtime, self.app, self.chdir = binary, runtime, app, chdir
        self.threads, self.extra = threads, list(extra)
        self.ssl_context = ssl_context
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.workdir / "state"
        self.state_dir.mkdir(exist_ok=True)
        self.error_log = self.workdir / "error.log"
        self.access_log = self.workdir / "access.log"
        self.output = self.workdir / "output.log"
        self.proc = None
        self.port = None

    # --- life cycle -------------------------------------------------------------------------

    def start(self, ready_timeout=60.0):
        """Starts the server and waits until it answers HTTP; retries if the port was taken."""
        for _ in range(3):
            self.port = free_port()
            args = [str(self.binary)]
            if self.app:
                args.append(self.app)
            args += ["--bind", f"127.0.0.1:{self.port}", "--runtime", self.runtime,
                     "--threads", str(self.threads), "--error-logfile", str(self.error_log),
                     "--graceful-timeout", "20"]
            if "--access-logfile" not in self.extra:
                args += ["--access-logfile", str(self.access_log)]
            if self.chdir:
                args += ["--chdir", str(self.chdir)]
            args += self.extra
            env = dict(os.environ)
            env["E2E_STATE_DIR"] = str(self.state_dir)
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            if sys.prefix != sys.base_prefix:  # the test virtualenv: Flask and Django live there
                env["VIRTUAL_ENV"] = sys.prefix
            with open(self.output, "ab") as out:
                self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=env)
            if self._wait_ready(ready_timeout):
                return self
            if self.proc.poll() is None:
                self.kill()
                break
        raise RuntimeError(f"wsgi-serve did not start: {' '.join(args)}\n{self.logs()}")

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with self.connect(timeout=2.0) as s:
                    s.sendall(b"GET /__ready HTTP/1.1\r\nHost: localhost\r\n"
                              b"Connection: close\r\n\r\n")
                    if HttpReader(s, timeout=5.0).read_response().status:
                        return True
            except OSError:
                time.sleep(0.05)
        return False

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30.0):
        """SIGTERM, then waits; kills it if it does not stop. Returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self):
        for pid in reversed(process_tree(self.proc.pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            pass

    # --- talking to it ----------------------------------------------------------------------

    @property
    def base(self):
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url(self, path):
        return self.base + path

    def connect(self, timeout=TIMEOUT):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s.settimeout(timeout)
        if self.ssl_context:
            try:
                s = self.ssl_context.wrap_socket(s, server_hostname="127.0.0.1")
            except BaseException:
                s.close()
                raise
        return s

    def exchange(self, raw, method="GET", timeout=TIMEOUT):
        """Sends `raw` bytes on a new connection and reads one response."""
        with self.connect(timeout) as s:
            s.sendall(raw)
            return HttpReader(s, timeout).read_response(method)

    # --- what it wrote ----------------------------------------------------------------------

    def records(self):
        path = self.state_dir / "records.log"
        return path.read_text(encoding="utf-8").splitlines() if path.exists() else []

    def wait_record(self, prefix, timeout=TIMEOUT):
        """Waits for a line of the app's records starting with `prefix`; returns it or None."""
        return wait_until(
            lambda: next((r for r in self.records() if r.startswith(prefix)), None), timeout)

    def started(self, tag, timeout=TIMEOUT):
        return wait_until(lambda: (self.state_dir / f"started-{tag}").exists(), timeout)

    def read_error_log(self):
        return self.error_log.read_text(encoding="utf-8", errors="replace") \
            if self.error_log.exists() else ""

    def read_access_log(self):
        return self.access_log.read_text(encoding="utf-8", errors="replace") \
            if self.access_log.exists() else ""

    def wait_error_log(self, *needles, timeout=TIMEOUT):
        """Waits until the error log contains every needle; returns the log."""
        log = wait_until(
            lambda: (lambda t: t if all(n in t for n in needles) else "")(self.read_error_log()),
            timeout)
        return log or self.read_error_log()

    def logs(self):
        out = self.output.read_text(errors="replace") if self.output.exists() else ""
        return f"--- output ---\n{out}\n--- error log ---\n{self.read_error_log()}"

    def rss_kib(self):
        """Resident memory of the server: its process and any worker processes, in KiB."""
        return sum(vm_rss_kib(pid) for pid in process_tree(self.proc.pid))


def process_tree(pid):
    """`pid` and its descendants (from /proc/<pid>/task/*/children)."""
    pids, todo = [], [pid]
    while todo and len(pids) < 1000:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children", encoding="ascii") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def open_fds(pid):
    """How many file descriptors process `pid` holds, or -1 when it is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def steady_fds(pid, quiet=0.5, timeout=5.0):
    """`open_fds(pid)` once it has not changed for `quiet` seconds (at most `timeout`).

    A server answers the readiness probe and the client closes at once, but the server lets go of
    its side a moment later: a count taken right after start can still include that connection."""
    deadline = time.monotonic() + timeout
    count, since = open_fds(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = open_fds(pid)
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return count


def vm_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


LOG_LINE = re.compile(r"^\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}\] \[\d+\] \[[A-Z]+\] ")


def log_entries(log, needle):
    """The error-log entries (a line and its traceback lines) whose first line has `needle`."""
    entries = []
    for line in log.splitlines():
        if LOG_LINE.match(line):
            entries.append(line)
        elif entries:
            entries[-1] += "\n" + line
    return [e for e in entries if needle in e.partition("\n")[0]]


class Response:
    def __init__(self, version, status, reason, headers, body, complete=True):
        self.version, self.status, self.reason = version, status, reason
        self.headers, self.body, self.complete = headers, body, complete

    def header(self, name):
        """The value of the header `name` (case-insensitive), joined with ", " if repeated."""
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def has_token(self, name, token):
        value = self.header(name) or ""
        return token.lower() in [t.strip().lower() for t in value.split(",")]

    def __repr__(self):
        return f"<Response {self.version} {self.status} {self.reason} {self.headers} " \
               f"{self.body[:200]!r}>"


class HttpReader:
    """Reads HTTP/1.x responses from a socket, keeping what follows for the next one."""

    def __init__(self, sock, timeout=TIMEOUT, max_size=64 * 1024 * 1024):
        self.sock, self.timeout, self.max_size = sock, timeout, max_size
        self.buf = b""
        self.eof = False
        self.deadline = time.monotonic() + timeout

    def _fill(self):
        if self.eof:
            raise EOFError("connection closed")
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("response not read in time")
        self.sock.settimeout(remaining)
        data = self.sock.recv(256 * 1024)
        if not data:
            self.eof = True
            raise EOFError("connection closed")
        self.buf += data
        if len(self.buf) > self.max_size:
            raise ValueError("response too large")

    def _take_until(self, marker):
        while marker not in self.buf:
            self._fill()
        i = self.buf.index(marker) + len(marker)
        data, self.buf = self.buf[:i], self.buf[i:]
        return data

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_head(self):
        head = self._take_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        version, status, *reason = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers.append((name, value.strip()))
        return Response(version, int(status), reason[0] if reason else "", headers, b"")

    def read_response(self, method="GET"):
        """One response; `complete` is False if the body ended before its framing said."""
        r = self.read_head()
        if method == "HEAD" or r.status < 200 or r.status in (204, 304):
            return r
        try:
            if r.has_token("Transfer-Encoding", "chunked"):
                body = b""
                while True:
                    size = int(self._take_until(b"\r\n").split(b";")[0].strip(), 16)
                    if size == 0:
                        while self._take_until(b"\r\n") != b"\r\n":  # trailers
                            pass
                        break
                    body += self._take(size)
                    self._take(2)
                    r.body = body
                r.body = body
            elif r.header("Content-Length") is not None:
                r.body = self._take(int(r.header("Content-Length")))
            else:
                r.body = self.read_to_eof()
        except EOFError:
            r.complete = False
            r.body = r.body or self.buf
        return r

    def read_at_least(self, n):
        """Buffers at least `n` bytes (of a body being streamed) without parsing them."""
        while len(self.buf) < n:
            self._fill()

    def read_to_eof(self):
        """Everything until the peer closes (bounded by the deadline and max_size)."""
        while True:
            try:
                self._fill()
            except EOFError:
                break
        data, self.buf = self.buf, b""
        return data

    def closed(self, timeout=5.0):
        """True if the peer closes with nothing more to read within `timeout`."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def request_bytes(method, target, headers=(), body=b"", version="HTTP/1.1", host="localhost"):
    """A raw request: the request line, Host (unless `host` is None), `headers`, `body`."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def download_block(i):
    """Block `i` of the app's /download body (apps/conformance.py's block()): 64 KiB."""
    return hashlib.sha256(str(i).encode()).digest() * 2048
