"""Listeners: one server bound to IPv4, IPv6 and a Unix socket at once (repeated --bind)."""

import socket

from support import APPS, TIMEOUT, HttpReader, request_bytes


def free_port_v6():
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


def ask(sock, path):
    sock.settimeout(TIMEOUT)
    sock.sendall(request_bytes("GET", path))
    return HttpReader(sock, TIMEOUT).read_response()


def test_ipv4_ipv6_and_unix_listeners_serve_the_same_app(start_server, tmp_path):
    v6_port = free_port_v6()
    unix_path = tmp_path / "wsgi.sock"
    server = start_server("listeners", app="conformance:application", chdir=APPS,
                          extra=["--bind", f"[::1]:{v6_port}", "--bind", f"unix:{unix_path}"])
    with server.connect() as s:
        r = ask(s, "/fixed")
        assert r.status == 200
        v4_body = r.body
    with socket.create_connection(("::1", v6_port), timeout=TIMEOUT) as s:
        r = ask(s, "/fixed")
        assert r.status == 200
        assert r.body == v4_body
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT)
        s.connect(str(unix_path))
        r = ask(s, "/fixed")
        assert r.status == 200
        assert r.body == v4_body
    log = server.read_error_log()
    assert f"[::1]:{v6_port}" in log and f"unix:{unix_path}" in log, log
