"""The plain WSGI application the end-to-end suite serves (tests/e2e).

Routes (PATH_INFO):
  /echo...        JSON: the CGI environ keys, HTTP_* headers, wsgi.* flags, the body's size
                  and SHA-256 (read in 64 KiB pieces), the pid and the LISTEN_* variables of
                  the process environment. Any method; any path under /echo.
  /fixed          "hello, fixed\n" with a Content-Length (HEAD keeps it, sends no body).
  *               (OPTIONS *) 200 with an Allow header.
  /upload         reads the body in 64 KiB pieces from its result iterable; JSON size/sha256.
                  ?tag=T records "done T <size>" once the body was read to its end and
                  "close T <bytes read>" when the server calls close().
                  ?started=T creates "started-T" once the first piece was read.
  /download       ?size=N (default 10 MiB) bytes in 64 KiB chunks (block i is
                  sha256(str(i)) * 2048, cut to size); ?length=1 sends a Content-Length;
                  ?tag=T records "close T <chunks yielded>" on close().
  /slow           ?seconds=S (default 1): creates "started-T" (?tag=T), sleeps, answers 200.
  /str            the classic mistake: returns a str body.
  /raise-before   raises before start_response.
  /raise-mid      sends a first chunk, then raises.
  /no-start       returns a body without calling start_response.

Records go to the directory named by E2E_STATE_DIR (the test's temporary directory): the
suite reads them from the file system, which works however many processes serve.
"""

import hashlib
import json
import os
import time
from urllib.parse import parse_qs

CHUNK = 64 * 1024
STATE_DIR = os.environ.get("E2E_STATE_DIR", "")


def record(line):
    if STATE_DIR:
        with open(os.path.join(STATE_DIR, "records.log"), "a", encoding="utf-8") as f:
            f.write(line + "\n")


def touch(name):
    if STATE_DIR:
        with open(os.path.join(STATE_DIR, name), "w", encoding="utf-8"):
            pass


def block(i):
    return hashlib.sha256(str(i).encode()).digest() * (CHUNK // 32)


def params(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def read_body(environ, on_piece=None):
    """Reads wsgi.input in bounded pieces: by CONTENT_LENGTH, else to the end (chunked)."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    remaining = int(length) if length else None
    digest, size = hashlib.sha256(), 0
    while remaining is None or remaining > 0:
        piece = stream.read(CHUNK if remaining is None else min(CHUNK, remaining))
        if not piece:
            break
        digest.update(piece)
        size += len(piece)
        if remaining is not None:
            remaining -= len(piece)
        if on_piece:
            on_piece(size)
    return size, digest.hexdigest()


def json_response(start_response, data, status="200 OK"):
    body = json.dumps(data, sort_keys=True).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def echo(environ, start_response):
    size, sha = read_body(environ)
    keys = (
        "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE",
        "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR",
        "REMOTE_PORT", "RAW_URI",
    )
    data = {k: environ[k] for k in keys if k in environ}
    data["headers"] = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    data["wsgi"] = {
        "url_scheme": environ["wsgi.url_scheme"],
        "input_terminated": environ.get("wsgi.input_terminated", False),
        "version": list(environ["wsgi.version"]),
    }
    data["body"] = {"size": size, "sha256": sha}
    data["pid"] = os.getpid()
    # The process environment's systemd variables (socket activation hands them to the
    # supervisor only).
    data["listen_env"] = sorted(k for k in os.environ if k.startswith("LISTEN_"))
    return json_response(start_response, data)


class Upload:
    """Reads the request body while the server iterates it; records close()."""

    def __init__(self, environ, tag, started):
        self.environ, self.tag, self.started = environ, tag, started
        self.read = 0

    def _piece(self, size):
        self.read = size
        if self.started and size >= CHUNK:
            touch("started-" + self.started)
            self.started = None

    def __iter__(self):
        size, sha = read_body(self.environ, self._piece)
        if self.tag:
            record(f"done {self.tag} {size}")
        yield json.dumps({"size": size, "sha256": sha}).encode()

    def close(self):
        if self.tag:
            record(f"close {self.tag} {self.read}")


def upload(environ, start_response):
    p = params(environ)
    start_response("200 OK", [("Content-Type", "application/json")])
    return Upload(environ, p.get("tag"), p.get("started"))


class Download:
    def __init__(self, size, tag):
        self.size, self.tag, self.chunks = size, tag, 0

    def __iter__(self):
        sent, i = 0, 0
        while sent < self.size:
            chunk = block(i)[: self.size - sent]
            sent += len(chunk)
            i += 1
            self.chunks = i
            yield chunk

    def close(self):
        if self.tag:
            record(f"close {self.tag} {self.chunks}")


def download(environ, start_response):
    p = params(environ)
    size = int(p.get("size", 10 * 1024 * 1024))
    headers = [("Content-Type", "application/octet-stream")]
    if p.get("length"):
        headers.append(("Content-Length", str(size)))
    start_response("200 OK", headers)
    return Download(size, p.get("tag"))


def slow(environ, start_response):
    p = params(environ)
    if p.get("tag"):
        touch("started-" + p["tag"])
    time.sleep(float(p.get("seconds", "1")))
    body = b"slept\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def fixed(environ, start_response):
    body = b"hello, fixed\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def options_star(environ, start_response):
    start_response("200 OK", [("Allow", "GET, HEAD, POST, OPTIONS"), ("Content-Length", "0")])
    return []


def returns_str(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return "text"


def raise_before(environ, start_response):
    raise RuntimeError("e2e: boom before the head")


def raise_mid(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first chunk\n"
    raise RuntimeError("e2e: boom in the middle of the body")


def no_start(environ, start_response):
    return [b"no start_response\n"]


ROUTES = {
    "/fixed": fixed,
    "*": options_star,
    "/upload": upload,
    "/download": download,
    "/slow": slow,
    "/str": returns_str,
    "/raise-before": raise_before,
    "/raise-mid": raise_mid,
    "/no-start": no_start,
}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/echo"):
        return echo(environ, start_response)
    route = ROUTES.get(path)
    if route is None:
        return json_response(start_response, {"error": "not found", "path": path}, "404 Not Found")
    return route(environ, start_response)
