"""Methods, request targets and the environ a real client's requests produce."""

import hashlib
import json
import subprocess

import httpx
import requests

from support import TIMEOUT, HttpReader, request_bytes


def test_get_with_requests(served):
    r = requests.get(served.url("/echo/get"), headers={"X-Custom": "yes"}, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    env = r.json()
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/echo/get"
    assert env["SCRIPT_NAME"] == ""
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["headers"]["HTTP_X_CUSTOM"] == "yes"
    assert env["wsgi"]["url_scheme"] == "http"
    assert env["wsgi"]["version"] == [1, 0]
    assert "CONTENT_LENGTH" not in env and env["body"]["size"] == 0


def test_get_with_curl(served, curl):
    out = subprocess.run(
        [curl, "-sS", "--max-time", "10", "-i", served.url("/fixed")],
        capture_output=True, timeout=TIMEOUT + 5, check=True)
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nContent-Length: 13" in head
    assert body == b"hello, fixed\n"


def test_post_form_body(served):
    r = requests.post(served.url("/echo/post"), data={"a": "1", "b": "zwei"}, timeout=TIMEOUT)
    assert r.status_code == 200
    env = r.json()
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["CONTENT_LENGTH"] == "10"
    assert env["body"]["size"] == 10
    assert env["body"]["sha256"] == hashlib.sha256(b"a=1&b=zwei").hexdigest()


def test_post_with_httpx(served):
    payload = b"\x00\x01binary\xffpayload" * 100
    r = httpx.post(served.url("/upload"), content=payload, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.json() == {"size": len(payload),
                        "sha256": hashlib.sha256(payload).hexdigest()}


def test_head_has_no_body_and_keeps_content_length(served):
    get = served.exchange(request_bytes("GET", "/fixed"))
    with served.connect() as s:
        # HEAD then GET on one connection: a HEAD body would corrupt the second response.
        s.sendall(request_bytes("HEAD", "/fixed") + request_bytes("GET", "/fixed"))
        reader = HttpReader(s)
        head = reader.read_response("HEAD")
        after = reader.read_response("GET")
    assert head.status == 200
    assert head.header("Content-Length") == "13" == get.header("Content-Length")
    assert head.body == b""
    assert after.status == 200 and after.body == b"hello, fixed\n"
    # And with a real client.
    r = requests.head(served.url("/fixed"), timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["Content-Length"] == "13" and r.content == b""


def test_head_of_a_streamed_response(served):
    r = requests.head(served.url("/download?size=200000"), timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.content == b""
    # 64 KiB chunks, which a server may write from the app's buffer: still none of them for a
    # HEAD, with or without a Content-Length, and the connection stays in step.
    for target in ("/download?size=200000", "/download?size=200000&length=1"):
        with served.connect() as s:
            s.sendall(request_bytes("HEAD", target) + request_bytes("GET", "/fixed"))
            reader = HttpReader(s)
            head = reader.read_response("HEAD")
            after = reader.read_response("GET")
        assert head.status == 200 and head.body == b"", (target, head)
        assert after.status == 200 and after.body == b"hello, fixed\n", (target, after)


def test_options(served):
    r = requests.options(served.url("/echo/opt"), timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.json()["REQUEST_METHOD"] == "OPTIONS"


def test_options_asterisk(served):
    r = served.exchange(request_bytes("OPTIONS", "*"))
    assert r.status == 200
    assert r.header("Allow") == "GET, HEAD, POST, OPTIONS"
    assert r.header("Content-Length") == "0"


def test_query_string_is_raw(served):
    r = requests.get(served.url("/echo/q?a=1&b=caf%C3%A9&a=2&empty=&flag&sp=x+y%20z"),
                     timeout=TIMEOUT)
    env = r.json()
    assert env["PATH_INFO"] == "/echo/q"
    assert env["QUERY_STRING"] == "a=1&b=caf%C3%A9&a=2&empty=&flag&sp=x+y%20z"


def test_percent_encoded_path_is_decoded(served):
    r = served.exchange(request_bytes("GET", "/echo/a%20b/%7Euser/100%25/x%2Fy?k=%20"))
    assert r.status == 200
    env = json.loads(r.body)
    assert env["PATH_INFO"] == "/echo/a b/~user/100%/x/y"
    assert env["QUERY_STRING"] == "k=%20"
    assert env["RAW_URI"] == "/echo/a%20b/%7Euser/100%25/x%2Fy?k=%20"


def test_non_ascii_path_is_latin1_per_pep3333(served):
    # requests percent-encodes the UTF-8 bytes; PATH_INFO holds those bytes read as latin-1.
    r = requests.get(served.url("/echo/café/日本"), timeout=TIMEOUT)
    assert r.status_code == 200
    path = r.json()["PATH_INFO"]
    assert path == "/echo/cafÃ©/æ\x97¥æ\x9c¬"
    assert path.encode("latin-1").decode("utf-8") == "/echo/café/日本"
    # Raw (not percent-encoded) UTF-8 bytes in the target: the same bytes, the same rule.
    r = served.exchange(b"GET /echo/caf\xc3\xa9?q=\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n")
    env = json.loads(r.body)
    assert env["PATH_INFO"].encode("latin-1") == "/echo/café".encode()
    assert env["QUERY_STRING"].encode("latin-1") == "q=é".encode()
    # A latin-1 byte that is not UTF-8 arrives as that one code point.
    r = served.exchange(request_bytes("GET", "/echo/%E9t%E9"))
    assert json.loads(r.body)["PATH_INFO"] == "/echo/été"


def test_unknown_path_is_the_apps_404(served):
    r = requests.get(served.url("/no/such/route"), timeout=TIMEOUT)
    assert r.status_code == 404
    assert r.json() == {"error": "not found", "path": "/no/such/route"}


def test_request_headers_in_the_environ(served):
    r = served.exchange(request_bytes("GET", "/echo/h", [
        ("X-Forwarded-For", "10.0.0.1"), ("X_Forwarded_For", "forged"),
        ("Cookie", "a=1"), ("Cookie", "b=2"), ("Accept", "text/plain"), ("Accept", "*/*"),
        ("Content-Type", "text/x-empty")]))
    env = json.loads(r.body)
    headers = env["headers"]
    # A header name with "_" is dropped: it cannot pose as one spelled with "-".
    assert headers["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"
    assert headers["HTTP_COOKIE"] == "a=1; b=2"
    assert headers["HTTP_ACCEPT"] == "text/plain,*/*"
    assert headers["HTTP_HOST"] == "localhost"
    assert env["CONTENT_TYPE"] == "text/x-empty" and "HTTP_CONTENT_TYPE" not in headers
    assert env["SERVER_NAME"] == "localhost"
