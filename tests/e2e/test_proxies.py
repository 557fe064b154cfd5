"""Behind real proxies (issue 6, item 1): nginx as an HTTP reverse proxy over TCP and over a Unix
socket (X-Forwarded-* from a trusted peer), nginx's stream module and HAProxy sending the PROXY
protocol (v1 and v2) to `--proxy-protocol`, and untrusted peers whose proxy headers are ignored.

The client connects from 127.0.0.2, so the address the application sees tells whether it came
from the proxy's headers (127.0.0.2) or from the socket (127.0.0.1, the proxy itself).
nginx and haproxy are Debian packages that scripts/test installs; each test starts its own.
"""

import json
import shutil
import socket
import subprocess
import time

import pytest

from support import APPS, HttpReader, free_port, wait_until

CLIENT_IP = "127.0.0.2"

# What the nginx configuration below sets (its /shop/ location sets -Host and -Prefix too).
BELIEVE_ALL_NGINX_SETS = ["--forwarded-headers",
                          "x-forwarded-for,x-forwarded-proto,x-forwarded-host,x-forwarded-prefix"]


def tool(name):
    path = shutil.which(name) or shutil.which(f"/usr/sbin/{name}")
    if not path:
        pytest.fail(f"{name} is not installed: scripts/test installs it "
                    f"(apt-get install nginx-light libnginx-mod-stream haproxy)", pytrace=False)
    return path


class Proxy:
    """One nginx or haproxy process with a generated configuration, stopped at the end."""

    def __init__(self, argv, workdir, log):
        self.workdir, self.log = workdir, log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=workdir)

    def wait_listening(self, port):
        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited: {self.log.read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        assert wait_until(up, timeout=15), self.log.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def proxies():
    started = []
    yield started
    for p in started:
        p.stop()


def nginx(proxies, tmp_path, body):
    """Starts nginx (foreground, one process, as the current user) with `body` in its config."""
    binary = tool("nginx")
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process off;
worker_processes 1;
user root;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx-error.log info;
events {{ worker_connections 64; }}
{body}
""")
    p = Proxy([binary, "-p", str(tmp_path), "-c", str(conf)], tmp_path, tmp_path / "nginx.out")
    proxies.append(p)
    return p


def http_block(tmp_path, listen, upstream, extra=""):
    return f"""
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
        location /shop/ {{
            proxy_pass {upstream.rstrip('/')}/;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host shop.example:8443;
            proxy_set_header X-Forwarded-Prefix /shop;
        }}
        {extra}
    }}
}}
"""


def get_json(port, path, headers=(), source=CLIENT_IP):
    """GET over a connection from `source` (a loopback address); the JSON body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as s:
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close", *headers]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = HttpReader(s, 10).read_response()
    assert response.status == 200, (response.status, response.body[:300])
    return json.loads(response.body)


def curl_json(curl, port, path):
    out = subprocess.run([curl, "-sS", "--max-time", "10", "--interface", CLIENT_IP,
                          f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, timeout=20, check=True)
    return json.loads(out.stdout)


def test_nginx_reverse_proxy_over_tcp(start_server, proxies, tmp_path, curl):
    server = start_server("behind-nginx", app="conformance:application", chdir=APPS,
                          extra=BELIEVE_ALL_NGINX_SETS)
    listen = free_port()
    proxy = nginx(proxies, tmp_path, http_block(tmp_path, listen,
                                                f"http://127.0.0.1:{server.port}/"))
    proxy.wait_listening(listen)

    # The client's address and scheme come through X-Forwarded-For/-Proto from the trusted
    # peer (nginx on 127.0.0.1, in the default --forwarded-allow-ips).
    data = curl_json(curl, listen, "/echo/a?b=1")
    assert data["REMOTE_ADDR"] == CLIENT_IP, data
    assert "REMOTE_PORT" not in data  # X-Forwarded-For carries no port
    assert data["wsgi"]["url_scheme"] == "http"
    assert data["headers"]["HTTP_X_FORWARDED_FOR"] == CLIENT_IP
    assert (data["PATH_INFO"], data["QUERY_STRING"]) == ("/echo/a", "b=1")

    # A client cannot pass itself off as someone else: it may prepend to X-Forwarded-For, but
    # the address nginx appended (the last untrusted hop) is the one believed.
    data = get_json(listen, "/echo", ["X-Forwarded-For: 203.0.113.66"])
    assert data["REMOTE_ADDR"] == CLIENT_IP, data

    # Proto, host and a stripped prefix set by the proxy.
    data = curl_json(curl, listen, "/shop/echo")
    assert data["wsgi"]["url_scheme"] == "https"
    assert (data["SERVER_NAME"], data["SERVER_PORT"]) == ("shop.example", "8443")
    assert data["headers"]["HTTP_HOST"] == "shop.example:8443"
    assert (data["SCRIPT_NAME"], data["PATH_INFO"]) == ("/shop", "/echo")
    assert data["REMOTE_ADDR"] == CLIENT_IP

    # Straight to the server from an untrusted peer: its proxy headers change nothing.
    data = get_json(server.port, "/echo",
                    ["X-Forwarded-For: 203.0.113.66", "X-Forwarded-Proto: https",
                     "X-Forwarded-Host: evil.example", "X-Forwarded-Prefix: /evil"])
    assert data["REMOTE_ADDR"] == CLIENT_IP
    assert data["wsgi"]["url_scheme"] == "http"
    assert data["SERVER_NAME"] == "127.0.0.1"
    assert data["SCRIPT_NAME"] == ""


def test_nginx_reverse_proxy_over_a_unix_socket(start_server, proxies, tmp_path, curl):
    sock = tmp_path / "app.sock"
    start_server("behind-nginx-unix", app="conformance:application", chdir=APPS,
                 extra=["--bind", f"unix:{sock}", *BELIEVE_ALL_NGINX_SETS])
    listen = free_port()
    proxy = nginx(proxies, tmp_path, http_block(tmp_path, listen, f"http://unix:{sock}:/"))
    proxy.wait_listening(listen)
    # A Unix-socket peer is trusted: only processes the socket's permissions admit reach it.
    data = curl_json(curl, listen, "/echo")
    assert data["REMOTE_ADDR"] == CLIENT_IP, data
    data = curl_json(curl, listen, "/shop/echo")
    assert (data["wsgi"]["url_scheme"], data["SCRIPT_NAME"]) == ("https", "/shop")
    # Upload through the proxy: the body arrives whole.
    out = subprocess.run([curl, "-sS", "--max-time", "10", "--data-binary", "@-",
                          f"http://127.0.0.1:{listen}/echo"],
                         input=b"x" * 100_000, capture_output=True, timeout=20, check=True)
    assert json.loads(out.stdout)["body"]["size"] == 100_000


def test_by_default_only_the_headers_nginx_sets_are_believed(start_server, proxies, tmp_path):
    # The default --forwarded-headers: X-Forwarded-For and -Proto, which the usual nginx
    # configuration sets. A client's own Forwarded, X-Forwarded-Host, -Port and -Prefix go
    # through nginx untouched; believing them would let it choose its address and host.
    server = start_server("nginx-defaults", app="conformance:application", chdir=APPS)
    listen = free_port()
    proxy = nginx(proxies, tmp_path, http_block(tmp_path, listen,
                                                f"http://127.0.0.1:{server.port}/"))
    proxy.wait_listening(listen)
    data = get_json(listen, "/echo", [
        "Forwarded: for=1.2.3.4;proto=https;host=evil.example",
        "X-Forwarded-Host: evil.example", "X-Forwarded-Port: 1", "X-Forwarded-Prefix: /evil",
        "X-Forwarded-Proto: https",  # replaced by nginx's $scheme
    ])
    assert data["REMOTE_ADDR"] == CLIENT_IP, data
    assert data["wsgi"]["url_scheme"] == "http"
    assert (data["SERVER_NAME"], data["SERVER_PORT"]) == ("127.0.0.1", str(listen)), data
    assert data["headers"]["HTTP_HOST"] == f"127.0.0.1:{listen}"
    assert data["SCRIPT_NAME"] == ""
    # The application still sees the headers themselves.
    assert data["headers"]["HTTP_X_FORWARDED_HOST"] == "evil.example"


def test_bad_forwarded_headers_fails_at_start(wsgi_serve_bin):
    out = subprocess.run([str(wsgi_serve_bin), "--bind", f"127.0.0.1:{free_port()}",
                          "--forwarded-headers", "x-forwarded-for,x-real-ip"],
                         capture_output=True, timeout=30)
    assert out.returncode != 0
    err = out.stderr.decode()
    assert "--forwarded-headers" in err and '"x-real-ip"' in err and "forwarded," in err, err


def test_empty_forwarded_allow_ips_trusts_no_one(start_server, proxies, tmp_path, curl):
    sock = tmp_path / "app.sock"
    start_server("trust-no-one", app="conformance:application", chdir=APPS,
                 extra=["--bind", f"unix:{sock}", "--forwarded-allow-ips", ""])
    listen = free_port()
    proxy = nginx(proxies, tmp_path, http_block(tmp_path, listen, f"http://unix:{sock}:/"))
    proxy.wait_listening(listen)
    data = curl_json(curl, listen, "/echo")
    assert data["REMOTE_ADDR"] == "", data  # the Unix peer, whose headers are not believed


def test_bad_forwarded_allow_ips_fails_at_start(wsgi_serve_bin):
    out = subprocess.run([str(wsgi_serve_bin), "--bind", f"127.0.0.1:{free_port()}",
                          "--forwarded-allow-ips", "127.0.0.1,localhost"],
                         capture_output=True, timeout=30)
    assert out.returncode != 0
    err = out.stderr.decode()
    assert "--forwarded-allow-ips" in err and '"localhost"' in err and "10.0.0.0/8" in err, err


def test_nginx_stream_sends_proxy_protocol_v1(start_server, proxies, tmp_path, curl):
    server = start_server("proxy-v1", app="conformance:application", chdir=APPS,
                          extra=["--proxy-protocol"])
    listen = free_port()
    proxy = nginx(proxies, tmp_path, f"""
stream {{
    server {{
        listen 127.0.0.1:{listen};
        proxy_pass 127.0.0.1:{server.port};
        proxy_protocol on;
    }}
}}
""")
    proxy.wait_listening(listen)
    data = curl_json(curl, listen, "/echo")
    assert data["REMOTE_ADDR"] == CLIENT_IP, data
    assert int(data["REMOTE_PORT"]) > 0
    assert data["wsgi"]["url_scheme"] == "http"
    # Keep-alive through the stream proxy: the header is read once, both requests served.
    out = subprocess.run([curl, "-sS", "--max-time", "10", f"http://127.0.0.1:{listen}/echo",
                          f"http://127.0.0.1:{listen}/echo"], capture_output=True, timeout=20)
    assert out.returncode == 0 and out.stdout.count(b'"REMOTE_ADDR"') == 2, out
    # A client that skips the proxy is refused: no header, no request.
    with server.connect() as s:
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
        response = HttpReader(s, 10).read_response()
    assert response.status == 400 and b"PROXY protocol" in response.body


def haproxy(proxies, tmp_path, listen, server_port, send_proxy):
    binary = tool("haproxy")
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(f"""
global
    log stdout format raw local0 info
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend web
    bind 127.0.0.1:{listen}
    default_backend app
backend app
    server app1 127.0.0.1:{server_port} {send_proxy}
""")
    p = Proxy([binary, "-db", "-f", str(conf)], tmp_path, tmp_path / "haproxy.out")
    proxies.append(p)
    return p


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_haproxy_sends_proxy_protocol(start_server, proxies, tmp_path, curl, send_proxy):
    server = start_server("haproxy", app="conformance:application", chdir=APPS,
                          extra=["--proxy-protocol"])
    listen = free_port()
    proxy = haproxy(proxies, tmp_path, listen, server.port, send_proxy)
    proxy.wait_listening(listen)
    started = time.monotonic()
    data = wait_until(lambda: _try_json(curl, listen), timeout=10)
    assert data, f"no answer through haproxy after {time.monotonic() - started:.1f}s"
    assert data["REMOTE_ADDR"] == CLIENT_IP, data
    assert int(data["REMOTE_PORT"]) > 0
    # The access log names the client, not the proxy.
    assert wait_until(lambda: CLIENT_IP in server.read_access_log(), timeout=5), \
        server.read_access_log()


def _try_json(curl, port):
    try:
        return curl_json(curl, port, "/echo")
    except (subprocess.CalledProcessError, json.JSONDecodeError):
        return None
