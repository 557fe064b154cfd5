//! Real frameworks through the bridge: a Flask app (`tests/fixtures/flask_app.py`) and a Django
//! project (`tests/fixtures/django_project`), each also wrapped in `wsgiref.validate`. The
//! frameworks come from the virtualenv `scripts/python-env` makes, named by `WSGI_TEST_VENV`.

use std::path::{Path, PathBuf};

use pyo3::Python;
use wsgi_core::python::{AppSpec, PyOptions};

use crate::harness::{BOTH, Client, Loaded, Variant, load_with};

/// The test virtualenv's site-packages. Without `WSGI_TEST_VENV` the tests fail: skipping them
/// silently would let a broken framework integration pass.
fn site_packages() -> PathBuf {
    let Some(venv) = std::env::var_os("WSGI_TEST_VENV") else {
        panic!(
            "WSGI_TEST_VENV is not set: the Flask and Django tests need the test virtualenv. \
             Run scripts/python-env (it creates .venv and prints its path), then \
             WSGI_TEST_VENV=$PWD/.venv cargo test -p wsgi-core --features python \
             (scripts/test does both)"
        );
    };
    Python::initialize();
    let version = Python::attach(|py| {
        let v = py.version_info();
        format!("python{}.{}", v.major, v.minor)
    });
    let dir = Path::new(&venv).join("lib").join(version).join("site-packages");
    assert!(
        dir.is_dir(),
        "{} does not exist: run scripts/python-env to (re)create the test virtualenv",
        dir.display()
    );
    dir
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

/// Loads `module:app` and `module:validated` from `dir` with the venv on `sys.path`.
fn load_both(dir: &Path, module: &str, app: &str) -> [(Variant, Loaded); 2] {
    let site = site_packages();
    BOTH.map(|v| {
        let attr = if v == Variant::Raw { app } else { "validated" };
        let spec =
            AppSpec::new(&format!("{module}:{attr}")).with_chdir(dir).with_python_path(&site);
        let loaded = load_with(&spec, PyOptions::default())
            .unwrap_or_else(|e| panic!("loading {module}:{attr}: {e}"));
        (v, loaded)
    })
}

fn request(method: &str, target: &str, host: &str, extra: &str, body: &[u8]) -> Client {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n{extra}");
    if !body.is_empty() || method == "POST" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    Client::new(&[&bytes])
}

#[test]
fn flask_app_serves_json_forms_queries_and_404() {
    for (v, app) in load_both(&fixtures(), "flask_app", "app") {
        let served = app.serve(&request("GET", "/api/items/7", "localhost", "", b""));
        served.assert_quiet();
        served.assert_wire(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 25\r\n\r\n\
              {\"id\":7,\"name\":\"item 7\"}\n",
        );

        let served = app.serve(&request("GET", "/search?q=caf%C3%A9&page=2", "localhost", "", b""));
        served.assert_quiet();
        served.assert_wire(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n\
              {\"page\":2,\"q\":\"caf\\u00e9\"}\n",
        );

        let form = b"name=Ada+Lovelace&age=36";
        let client = request(
            "POST",
            "/form",
            "localhost",
            "Content-Type: application/x-www-form-urlencoded\r\n",
            form,
        );
        let served = app.serve(&client);
        served.assert_quiet();
        served.assert_wire(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Content-Length: 31\r\n\r\nhello Ada Lovelace, you are 36\n",
        );

        let served = app.serve(&request("GET", "/missing", "localhost", "", b""));
        served.assert_quiet();
        let text = served.text();
        assert!(
            text.starts_with(
                "HTTP/1.1 404 NOT FOUND\r\nContent-Type: text/html; charset=utf-8\r\n\
                 Content-Length: 207\r\n\r\n<!doctype html>\n"
            ),
            "{v:?}: {text}"
        );
        assert!(text.contains("<title>404 Not Found</title>"), "{text}");
    }
}

#[test]
fn django_project_serves_views_and_keeps_its_protections() {
    let dir = fixtures().join("django_project");
    for (v, app) in load_both(&dir, "bridge_site.wsgi", "application") {
        let served = app.serve(&request("GET", "/hello/?name=bridge", "localhost", "", b""));
        served.assert_quiet();
        served.assert_wire(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Content-Length: 26\r\n\r\nhello from django, bridge\n",
        );

        let body = b"payload=1&more=\xc3\xa9";
        let client = request("POST", "/echo/", "localhost", "Content-Type: text/plain\r\n", body);
        let served = app.serve(&client);
        served.assert_quiet();
        served.assert_wire(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 47\r\n\r\n\
              {\"length\": 17, \"body\": \"payload=1&more=\\u00e9\"}",
        );

        // The CSRF middleware guards the view that is not exempt.
        let client = request("POST", "/protected/", "localhost", "", b"x=1");
        let served = app.serve(&client);
        served.assert_quiet();
        assert!(
            served.text().starts_with("HTTP/1.1 403 Forbidden\r\n"),
            "{v:?}: {}",
            served.text()
        );

        // ALLOWED_HOSTS: another Host is refused.
        let served = app.serve(&request("GET", "/hello/", "evil.example", "", b""));
        served.assert_quiet();
        assert!(served.text().starts_with("HTTP/1.1 400 Bad Request\r\n"), "{}", served.text());

        let served = app.serve(&request("GET", "/nope/", "localhost", "", b""));
        served.assert_quiet();
        assert!(served.text().starts_with("HTTP/1.1 404 Not Found\r\n"), "{}", served.text());
    }
}
