"""Request and response bodies: large uploads and downloads, chunked bodies, 100-continue."""

import hashlib
import subprocess
import threading
import time

import requests

from support import APPS, TIMEOUT, HttpReader, download_block, request_bytes

MIB = 1024 * 1024
SIZE = 10 * MIB


def payload(size):
    """`size` deterministic bytes, produced 64 KiB at a time."""
    block = hashlib.sha256(b"upload").digest() * 2048
    sent = 0
    while sent < size:
        piece = block[: size - sent]
        sent += len(piece)
        yield piece


class SizedPayload:
    """A streamed body of known size: requests sends it with a Content-Length, 64 KiB a time."""

    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __iter__(self):
        return payload(self.size)


def payload_sha256(size):
    digest = hashlib.sha256()
    for piece in payload(size):
        digest.update(piece)
    return digest.hexdigest()


def download_sha256(size):
    digest, left, i = hashlib.sha256(), size, 0
    while left > 0:
        piece = download_block(i)[:left]
        digest.update(piece)
        left -= len(piece)
        i += 1
    return digest.hexdigest()


class RssSampler:
    """Samples the server's resident memory every 10 ms while a transfer runs."""

    def __init__(self, server):
        self.server, self.peak, self.stop = server, 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.server.rss_kib())
            self.stop.wait(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)


def test_10mib_upload_is_streamed_with_bounded_memory(start_server, record_property):
    server = start_server("rss-upload", app="conformance:application", chdir=APPS, threads=2)
    with requests.Session() as s:
        # Warm up: the first requests load code and grow the allocator's pools.
        for _ in range(3):
            r = s.post(server.url("/upload"), data=b"x" * (2 * MIB), timeout=TIMEOUT)
            assert r.status_code == 200
        time.sleep(0.2)
        before = server.rss_kib()
        with RssSampler(server) as sampler:
            r = s.post(server.url("/upload"), data=SizedPayload(SIZE), timeout=60)
        time.sleep(0.2)
        after = server.rss_kib()
    assert r.status_code == 200
    assert r.json() == {"size": SIZE, "sha256": payload_sha256(SIZE)}
    peak = max(sampler.peak, after)
    figures = f"RSS KiB before={before} peak={peak} after={after} growth={peak - before}"
    print(figures)
    record_property("upload_rss", figures)
    assert before > 0
    assert peak - before < 6 * 1024, figures
    assert after - before < 6 * 1024, figures


def test_10mib_download_is_streamed(served, record_property):
    before = served.rss_kib()
    with RssSampler(served) as sampler, requests.get(
            served.url("/download"), stream=True, timeout=TIMEOUT) as r:
        assert r.status_code == 200
        assert r.headers["Transfer-Encoding"] == "chunked"
        digest, size = hashlib.sha256(), 0
        for piece in r.iter_content(64 * 1024):
            digest.update(piece)
            size += len(piece)
            assert size <= SIZE
    figures = f"RSS KiB before={before} peak={sampler.peak} growth={sampler.peak - before}"
    print(figures)
    record_property("download_rss", figures)
    assert size == SIZE
    assert digest.hexdigest() == download_sha256(SIZE)
    assert sampler.peak - before < 6 * 1024, figures


def test_10mib_download_with_content_length(served):
    with requests.get(served.url("/download?length=1&size=10485761"), stream=True,
                      timeout=TIMEOUT) as r:
        assert r.status_code == 200
        assert r.headers["Content-Length"] == "10485761"
        assert "Transfer-Encoding" not in r.headers
        digest, size = hashlib.sha256(), 0
        for piece in r.iter_content(64 * 1024):
            digest.update(piece)
            size += len(piece)
    assert size == 10485761
    assert digest.hexdigest() == download_sha256(10485761)


def test_chunked_request_body_from_a_generator(served):
    pieces = [b"first,", b"", b"second,", b"x" * 100_000, b"last"]
    body = b"".join(pieces)
    r = requests.post(served.url("/echo/chunked"), data=(p for p in pieces if p),
                      timeout=TIMEOUT)
    assert r.status_code == 200
    env = r.json()
    assert env["headers"]["HTTP_TRANSFER_ENCODING"] == "chunked"
    assert "CONTENT_LENGTH" not in env
    assert env["wsgi"]["input_terminated"] is True
    assert env["body"] == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_chunked_request_body_raw(served):
    body = (b"5\r\nhello\r\n"
            b"7;ext=1\r\n, world\r\n"
            b"A\r\n0123456789\r\n"
            b"0\r\nX-Trailer: t\r\n\r\n")
    r = served.exchange(request_bytes("POST", "/upload",
                                      [("Transfer-Encoding", "chunked")], body))
    assert r.status == 200
    expected = b"hello, world0123456789"
    assert r.body == (b'{"size": %d, "sha256": "%s"}'
                      % (len(expected), hashlib.sha256(expected).hexdigest().encode()))


def test_expect_100_continue_raw(served):
    body = b"z" * 5000
    with served.connect() as s:
        s.sendall(request_bytes("POST", "/upload", [("Content-Length", str(len(body))),
                                                    ("Expect", "100-continue")]))
        reader = HttpReader(s)
        interim = reader.read_response()
        # The body has not been sent: the server must ask for it.
        assert (interim.version, interim.status) == ("HTTP/1.1", 100)
        assert interim.reason == "Continue"
        s.sendall(body)
        final = reader.read_response()
    assert final.status == 200
    assert final.body == (b'{"size": 5000, "sha256": "%s"}'
                          % hashlib.sha256(body).hexdigest().encode())


def test_expect_100_continue_with_curl(served, tmp_path, curl):
    data = tmp_path / "body.bin"
    data.write_bytes(b"c" * 300_000)
    out = subprocess.run(
        [curl, "-sS", "-v", "--max-time", "10", "--expect100-timeout", "5",
         "-H", "Expect: 100-continue", "-H", "Content-Type: application/octet-stream",
         "--data-binary", f"@{data}", served.url("/upload")],
        capture_output=True, timeout=TIMEOUT + 5, check=True)
    assert b"< HTTP/1.1 100 Continue" in out.stderr
    assert b"< HTTP/1.1 200 OK" in out.stderr
    assert out.stdout == (b'{"size": 300000, "sha256": "%s"}'
                          % hashlib.sha256(b"c" * 300_000).hexdigest().encode())
