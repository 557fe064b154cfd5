"""Real frameworks served by wsgi-serve: the Flask app and the Django project of
wsgi-core/tests/fixtures."""

import httpx
import requests

from support import TIMEOUT

DJANGO_HOST = {"Host": "localhost"}  # the project's ALLOWED_HOSTS


def test_flask_json_route(flask_server):
    with httpx.Client(base_url=flask_server.base, timeout=TIMEOUT) as client:
        r = client.get("/api/items/7")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"id": 7, "name": "item 7"}
        r = client.get("/search", params={"q": "café", "page": "2"})
        assert r.status_code == 200 and r.json() == {"q": "café", "page": 2}


def test_flask_form_post(flask_server):
    r = requests.post(flask_server.url("/form"), data={"name": "Zoë", "age": "42"},
                      timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.text == "hello Zoë, you are 42\n"


def test_flask_404(flask_server):
    r = requests.get(flask_server.url("/no/such/page"), timeout=TIMEOUT)
    assert r.status_code == 404
    assert b"Not Found" in r.content
    r = requests.post(flask_server.url("/api/items/7"), timeout=TIMEOUT)
    assert r.status_code == 405


def test_django_view(django_server):
    r = requests.get(django_server.url("/hello/"), params={"name": "e2e"},
                     headers=DJANGO_HOST, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.text == "hello from django, e2e\n"


def test_django_post(django_server):
    with httpx.Client(base_url=django_server.base, headers=DJANGO_HOST,
                      timeout=TIMEOUT) as client:
        r = client.post("/echo/", content="posted body ✓".encode())
        assert r.status_code == 200
        assert r.json() == {"length": len("posted body ✓".encode()), "body": "posted body ✓"}
        # Not exempt from CSRF: the middleware refuses a POST without a token.
        assert client.post("/protected/", content=b"x").status_code == 403


def test_django_404_and_disallowed_host(django_server):
    r = requests.get(django_server.url("/missing/"), headers=DJANGO_HOST, timeout=TIMEOUT)
    assert r.status_code == 404
    r = requests.get(django_server.url("/hello/"), headers={"Host": "evil.example"},
                     timeout=TIMEOUT)
    assert r.status_code == 400
