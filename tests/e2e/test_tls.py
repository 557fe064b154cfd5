"""HTTPS: --certfile/--keyfile (and --ca-certs for client certificates), with a throw-away CA.

The test makes a CA, a certificate for 127.0.0.1/localhost and a client certificate (trustme),
starts wsgi-serve with them on a loopback port and talks to it with curl, requests and raw TLS
sockets.
"""

import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid

import pytest
import requests
import trustme

from support import (APPS, TIMEOUT, HttpReader, download_block, open_fds, process_tree,
                     request_bytes, steady_fds, wait_until)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The CA, the server's certificate and key, and a client's, as PEM files."""
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@example.org")
    other_ca = trustme.CA()
    stranger = other_ca.issue_cert("stranger@example.org")
    files = {
        "ca": d / "ca.pem",
        "cert": d / "server.pem",
        "key": d / "server.key",
        "client_cert": d / "client.pem",
        "client_key": d / "client.key",
        "stranger_cert": d / "stranger.pem",
        "stranger_key": d / "stranger.key",
        "other_key": d / "other.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    with open(files["cert"], "wb") as f:  # the leaf, then the chain (none here)
        for blob in server.cert_chain_pems:
            f.write(blob.bytes())
    client.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    client.private_key_pem.write_to_path(str(files["client_key"]))
    stranger.cert_chain_pems[0].write_to_path(str(files["stranger_cert"]))
    stranger.private_key_pem.write_to_path(str(files["stranger_key"]))
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(files["other_key"]))
    files["_ca"], files["_client"] = ca, client
    return files


def client_context(pki, with_cert=False):
    ctx = ssl.create_default_context()
    pki["_ca"].configure_trust(ctx)
    if with_cert:
        pki["_client"].configure_cert(ctx)
    return ctx


def tls_options(pki):
    return ["--certfile", str(pki["cert"]), "--keyfile", str(pki["key"])]


@pytest.fixture(scope="module")
def tls_server(start_server, pki):
    return start_server("tls", app="conformance:application", chdir=APPS, threads=4,
                        extra=tls_options(pki) + ["--header-timeout", "2"],
                        ssl_context=client_context(pki))


@pytest.fixture(scope="module")
def mtls_server(start_server, pki):
    return start_server("mtls", app="conformance:application", chdir=APPS, threads=2,
                        extra=tls_options(pki) + ["--ca-certs", str(pki["ca"])],
                        ssl_context=client_context(pki, with_cert=True))


@pytest.fixture
def https(tls_server):
    """The TLS server, checked to be alive after the test."""
    yield tls_server
    assert tls_server.proc.poll() is None, f"the server died:\n{tls_server.logs()}"


def run_curl(curl, *args):
    return subprocess.run([curl, "-sS", "--max-time", str(TIMEOUT), *args],
                          capture_output=True, timeout=TIMEOUT + 5, check=False)


def test_curl_gets_the_body_over_https(https, curl, pki):
    done = run_curl(curl, "--cacert", str(pki["ca"]), https.url("/fixed"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"hello, fixed\n"
    # The certificate names localhost too; curl checks the name.
    done = run_curl(curl, "--cacert", str(pki["ca"]), f"https://localhost:{https.port}/fixed")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"hello, fixed\n"
    assert "https://127.0.0.1:" in https.read_error_log()


def test_environ_says_https_and_the_client_address(https, pki):
    r = requests.get(https.url("/echo/env"), verify=str(pki["ca"]), timeout=TIMEOUT)
    assert r.status_code == 200
    env = r.json()
    assert env["wsgi"]["url_scheme"] == "https", env
    assert env["REMOTE_ADDR"] == "127.0.0.1", env
    assert 0 < int(env["REMOTE_PORT"]) < 65536, env
    assert env["SERVER_PORT"] == str(https.port), env


def test_plain_http_to_the_tls_port_fails_cleanly_and_the_server_keeps_serving(https, pki, curl):
    with socket.create_connection(("127.0.0.1", https.port), timeout=TIMEOUT) as s:
        s.sendall(request_bytes("GET", "/fixed"))
        reader = HttpReader(s, timeout=TIMEOUT)
        answer = reader.read_to_eof()  # the server ends the connection (a TLS alert at most)
    assert b"hello, fixed" not in answer and not answer.startswith(b"HTTP/1.1 200"), answer
    done = run_curl(curl, "--cacert", str(pki["ca"]), https.url("/fixed"))
    assert done.returncode == 0 and done.stdout == b"hello, fixed\n", done.stderr


def test_a_client_that_never_completes_the_handshake_is_dropped(https, pki, curl):
    with socket.create_connection(("127.0.0.1", https.port), timeout=TIMEOUT) as s:
        s.sendall(b"\x16\x03\x01")  # the start of a TLS record, then nothing
        started = time.monotonic()
        assert HttpReader(s, timeout=TIMEOUT).read_to_eof() == b""
        waited = time.monotonic() - started
    assert 1 <= waited < 6, f"dropped after {waited:.1f}s (--header-timeout 2)"
    done = run_curl(curl, "--cacert", str(pki["ca"]), https.url("/fixed"))
    assert done.returncode == 0 and done.stdout == b"hello, fixed\n", done.stderr


def test_keep_alive_over_tls(https, pki, curl):
    with https.connect() as s:
        reader = HttpReader(s)
        for i in range(3):
            s.sendall(request_bytes("GET", f"/echo/{i}"))
            r = reader.read_response()
            assert r.status == 200, r
            assert json.loads(r.body)["PATH_INFO"] == f"/echo/{i}"
    # curl reuses its connection for the second URL: one connect, then none.
    done = run_curl(curl, "--cacert", str(pki["ca"]), "-o", "/dev/null", "-o", "/dev/null",
                    "-w", "%{http_code} %{num_connects}\n", https.url("/fixed"), https.url("/fixed"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split("\n")[:2] == ["200 1", "200 0"], done.stdout


def test_a_client_that_stops_reading_is_dropped_after_the_timeout(start_server, pki):
    # The front's writes to the client are bounded by --timeout, as the HTTP drivers' are: a
    # client that never reads a large response does not hold its connection forever.
    server = start_server("tls-stalled-reader", app="conformance:application", chdir=APPS,
                          threads=2, extra=tls_options(pki) + ["--timeout", "2"],
                          ssl_context=client_context(pki))
    size = 256 * 1024 * 1024
    worker = process_tree(server.proc.pid)[-1]

    idle = steady_fds(worker)
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    with client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(request_bytes("GET", f"/download?size={size}", [("Connection", "close")]))
        assert wait_until(lambda: open_fds(worker) > idle, timeout=5), "the request never started"
        # Reading nothing: past --timeout 2 the worker lets go of the connection (its socket
        # and the front's link to the server), with the client still connected.
        assert wait_until(lambda: open_fds(worker) <= idle, timeout=12), (idle, open_fds(worker))
        received, deadline = 0, time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                data = s.recv(1 << 20)
                if not data:
                    break
                received += len(data)
        except (ssl.SSLError, ConnectionResetError):
            pass
    # What the buffers held, then the end: far from the whole response.
    assert received < size // 4, received
    done = requests.get(server.url("/fixed"), verify=str(pki["ca"]), timeout=TIMEOUT)
    assert done.status_code == 200


def test_relative_tls_paths_with_chdir(start_server, pki, curl):
    # Relative --certfile/--keyfile name files where wsgi-serve started, as the supervisor
    # checked them, even though each worker moves to --chdir before serving.
    relative = [os.path.relpath(pki["cert"]), os.path.relpath(pki["key"])]
    assert not os.path.isabs(relative[0])
    server = start_server("tls-relative", app="conformance:application", chdir=APPS,
                          extra=["--certfile", relative[0], "--keyfile", relative[1]],
                          ssl_context=client_context(pki))
    done = run_curl(curl, "--cacert", str(pki["ca"]), server.url("/fixed"))
    assert done.returncode == 0 and done.stdout == b"hello, fixed\n", done.stderr
    assert server.proc.poll() is None


def test_a_killed_workers_private_directory_is_removed(start_server, pki):
    # A worker killed by --timeout never runs its own cleanup: the supervisor removes the
    # private directory of its TLS front's internal socket.
    server = start_server("tls-killed", app="conformance:application", chdir=APPS, threads=2,
                          extra=tls_options(pki) + ["--timeout", "2"],
                          ssl_context=client_context(pki))
    worker = process_tree(server.proc.pid)[-1]
    tmp = tempfile.gettempdir()

    def leftovers():
        return [n for n in os.listdir(tmp) if n.startswith(f"wsgi-serve-tls.{worker}.")]

    assert len(leftovers()) == 1
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    with client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(request_bytes("GET", "/slow?seconds=30&tag=killed"))
        server.wait_error_log(f"worker {worker} exited (killed by signal 9)", timeout=15)
    assert wait_until(lambda: not leftovers(), timeout=5), leftovers()
    assert requests.get(server.url("/fixed"), verify=str(pki["ca"]), timeout=TIMEOUT).ok


def test_upload_and_large_download_over_tls(https, pki):
    body = hashlib.sha256(b"seed").digest() * (3 * 1024 * 1024 // 32 + 7)
    with requests.Session() as session:
        r = session.post(https.url("/upload"), data=body, verify=str(pki["ca"]), timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        assert r.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        size = 3 * 1024 * 1024 + 12345
        r = session.get(https.url(f"/download?size={size}"), verify=str(pki["ca"]),
                        timeout=TIMEOUT)
        assert r.status_code == 200
        want = b"".join(download_block(i) for i in range(size // (64 * 1024) + 1))[:size]
        assert len(r.content) == size
        assert r.content == want


def test_client_certificates_are_required_with_ca_certs(mtls_server, pki, curl):
    url = mtls_server.url("/fixed")
    done = run_curl(curl, "--cacert", str(pki["ca"]), url)
    assert done.returncode != 0, done.stdout
    done = run_curl(curl, "--cacert", str(pki["ca"]), "--cert", str(pki["stranger_cert"]),
                    "--key", str(pki["stranger_key"]), url)
    assert done.returncode != 0, done.stdout
    done = run_curl(curl, "--cacert", str(pki["ca"]), "--cert", str(pki["client_cert"]),
                    "--key", str(pki["client_key"]), url)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"hello, fixed\n"
    assert mtls_server.proc.poll() is None, mtls_server.logs()


def test_sigterm_lets_a_request_over_tls_finish(start_server, pki):
    server = start_server("tls-sigterm", app="conformance:application", chdir=APPS, threads=2,
                          extra=tls_options(pki), ssl_context=client_context(pki))
    tag = uuid.uuid4().hex[:8]
    with server.connect() as idle, server.connect() as s:
        idle.sendall(request_bytes("GET", "/fixed"))  # then idle, kept alive: must not hold
        idle_reader = HttpReader(idle)
        assert idle_reader.read_response().status == 200
        s.sendall(request_bytes("GET", f"/slow?seconds=1&tag={tag}"))
        assert server.started(tag), "the slow request never reached the app"
        server.signal(signal.SIGTERM)
        r = HttpReader(s).read_response()
        assert r.status == 200, r
        assert r.body == b"slept\n"
        answered = time.monotonic()
        # The idle connection is closed by the server, with a TLS close_notify.
        assert idle_reader.read_to_eof() == b""
    try:
        code = server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        raise AssertionError(f"the server did not exit after SIGTERM:\n{server.logs()}")
    assert code == 0, server.logs()
    assert time.monotonic() - answered < 5, server.logs()


@pytest.mark.parametrize("case", ["missing cert", "missing key", "key mismatch", "no cert",
                                  "cert without key", "with --proxy-protocol"])
def test_bad_tls_files_are_refused_at_startup(wsgi_serve_bin, pki, tmp_path, case):
    missing = tmp_path / "no-such.pem"
    args, needle = {
        "missing cert": (["--certfile", str(missing), "--keyfile", str(pki["key"])],
                         f"cannot read --certfile {missing}"),
        "missing key": (["--certfile", str(pki["cert"]), "--keyfile", str(missing)],
                        f"cannot read --keyfile {missing}"),
        "key mismatch": (["--certfile", str(pki["cert"]), "--keyfile", str(pki["other_key"])],
                         f"--keyfile {pki['other_key']} is not the private key"),
        "no cert": (["--certfile", str(pki["key"]), "--keyfile", str(pki["key"])],
                    f"--certfile {pki['key']} holds no PEM certificate"),
        "cert without key": (["--certfile", str(pki["cert"])], "needs --keyfile"),
        "with --proxy-protocol": (tls_options(pki) + ["--proxy-protocol"],
                                  "--proxy-protocol with --certfile"),
    }[case]
    done = subprocess.run([str(wsgi_serve_bin), "--bind", "127.0.0.1:0", *args],
                          capture_output=True, timeout=TIMEOUT, check=False)
    assert done.returncode != 0
    err = done.stderr.decode()
    assert needle in err, err
    assert "booting worker" not in err, err
