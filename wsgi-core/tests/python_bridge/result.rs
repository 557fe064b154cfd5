//! The result iterable: `close()` exactly once on every path, results that are not iterables of
//! bytes, bodies without `start_response`, and exceptions before and after the head.

use wsgi_core::python::Level;

use crate::harness::{BOTH, Client, ERROR_500, Raw, TestApp, Validated, chunked, response};

/// A result with `close()`, whose items come from the path: bytes are sent, exceptions raised.
const CLOSING: &str = r#"
class Body:
    def __init__(self, items, close_raises=False):
        self.items = items
        self.close_raises = close_raises

    def __iter__(self):
        for item in self.items:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self):
        event("close")
        if self.close_raises:
            raise OSError("close failed")


RECIPES = {
    "/normal": [b"a", b"b"],
    "/raise-first": [ValueError("before the head")],
    "/raise-mid": [b"a", ValueError("after the head")],
    "/str-first": ["a"],
    "/str-mid": [b"a", "b"],
    "/int-mid": [b"a", 7],
    "/disconnect": [b"a", b"b", b"c"],
}


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["PATH_INFO"] == "/close-raises":
        return Body([], close_raises=True)
    return Body(RECIPES[environ["PATH_INFO"]])
"#;

/// One path through [`CLOSING`]: the path, the client, the wire, whether the connection was
/// aborted, and what the one log line says (`None`: nothing logged).
type Row = (&'static str, Client, Vec<u8>, bool, Option<&'static str>);

const HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n";

#[test]
fn close_is_called_exactly_once_on_every_path() {
    let app = TestApp::new("t_close_paths", CLOSING);
    let partial = response(HEAD, b"1\r\na\r\n");
    let rows: Vec<Row> = vec![
        ("/normal", Client::get("/normal"), response(HEAD, &chunked(&[b"a", b"b"])), false, None),
        (
            "/raise-first",
            Client::get("/raise-first"),
            ERROR_500.to_vec(),
            false,
            Some("ValueError: before the head"),
        ),
        (
            "/raise-mid",
            Client::get("/raise-mid"),
            partial.clone(),
            true,
            Some("ValueError: after the head"),
        ),
        ("/str-first", Client::get("/str-first"), ERROR_500.to_vec(), false, Some("str")),
        ("/str-mid", Client::get("/str-mid"), partial.clone(), true, Some("str")),
        ("/int-mid", Client::get("/int-mid"), partial.clone(), true, Some("int")),
        // The client goes away at the second body write: the bridge stops iterating and
        // closes. The head and first chunk are written; the second chunk never is.
        (
            "/disconnect",
            Client::get("/disconnect").disconnecting_at_body(1),
            partial.clone(),
            false,
            None,
        ),
    ];
    for (path, client, wire, aborted, error) in rows {
        for v in BOTH {
            let served = app.serve(v, &client);
            served.assert_wire(&wire);
            assert_eq!(served.events, ["close"], "{path} ({v:?})");
            assert_eq!(served.aborted, aborted, "{path} ({v:?})");
            match error {
                Some(what) => {
                    let line = served.one_error();
                    assert!(line.contains(what), "{path} ({v:?}): {what:?} not in\n{line}");
                }
                None if path == "/disconnect" => assert_eq!(
                    served.log,
                    [(
                        Level::Info,
                        format!(
                            "GET /disconnect [t_close_paths:{}]: client went away before the \
                             response ended",
                            v.attr()
                        )
                    )]
                ),
                None => served.assert_quiet(),
            }
        }
    }
}

#[test]
fn close_that_raises_is_logged_after_a_complete_response() {
    let app = TestApp::new("t_close_raises", CLOSING);
    for v in BOTH {
        let served = app.serve(v, &Client::get("/close-raises"));
        // The iterable yields nothing: the head goes out at the end, and the response is
        // complete before close() runs.
        served.assert_wire(&response(HEAD, &chunked(&[])));
        assert_eq!(served.events, ["close"]);
        assert!(!served.aborted);
        let line = served.one_error();
        assert!(line.contains("the result's close() raised an exception"), "{line}");
        assert!(line.ends_with("OSError: close failed"), "{line}");
    }
}

#[test]
fn a_result_that_is_not_an_iterable_of_bytes_is_a_500() {
    let app = TestApp::new(
        "t_not_iterable",
        r#"
RESULTS = {"/none": None, "/int": 42, "/bytes": b"body", "/str": "body"}


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return RESULTS[environ["PATH_INFO"]]
"#,
    );
    let rows = [
        (
            "/none",
            "application returned NoneType, which is not iterable; a WSGI application returns \
             an iterable of bytes, e.g. [b'body']",
            "The application must return an iterator, if only an empty list",
        ),
        (
            "/int",
            "application returned int, which is not iterable; a WSGI application returns an \
             iterable of bytes, e.g. [b'body']",
            "TypeError: 'int' object is not iterable",
        ),
        (
            "/bytes",
            "application returned bytes, not an iterable of bytes: return [body]",
            "You should not return a string as your application iterator",
        ),
        (
            "/str",
            "application returned str, not an iterable of bytes: return ['text'.encode()]",
            "You should not return a string as your application iterator",
        ),
    ];
    for (path, bridge, validator) in rows {
        let served = app.serve(Raw, &Client::get(path));
        served.assert_wire(ERROR_500);
        let line = served.one_error();
        assert!(line.starts_with(&format!("GET {path} [t_not_iterable:app]: {bridge}")), "{line}");

        let served = app.serve(Validated, &Client::get(path));
        served.assert_wire(ERROR_500);
        let line = served.one_error();
        assert!(line.contains(validator), "{path}: {validator:?} not in\n{line}");
    }
}

#[test]
fn a_body_without_start_response_is_a_500() {
    let app = TestApp::new(
        "t_no_start",
        r#"
def app(environ, start_response):
    if environ["PATH_INFO"] == "/empty":
        return []
    return [b"body"]
"#,
    );
    for v in BOTH {
        let served = app.serve(v, &Client::get("/body"));
        served.assert_wire(ERROR_500);
        let line = served.one_error();
        let wanted = match v {
            Raw => "application produced a body without calling start_response()",
            Validated => "start_response has not yet been called",
        };
        assert!(line.contains(wanted), "{line}");

        let served = app.serve(v, &Client::get("/empty"));
        served.assert_wire(ERROR_500);
        assert_eq!(
            served.one_error(),
            format!(
                "GET /empty [t_no_start:{}]: application returned without calling \
                 start_response()",
                v.attr()
            )
        );
    }
}

#[test]
fn an_exception_before_the_head_is_a_500_with_the_traceback_logged() {
    let app = TestApp::new(
        "t_raise_early",
        r#"
def helper():
    raise ValueError("early")


def app(environ, start_response):
    helper()
"#,
    );
    for v in BOTH {
        let served = app.serve(v, &Client::get("/x"));
        served.assert_wire(ERROR_500);
        assert!(!served.closed, "a 500 keeps the connection");
        let line = served.one_error();
        let prefix = format!(
            "GET /x [t_raise_early:{}]: application raised an exception:\n\
             Traceback (most recent call last):\n",
            v.attr()
        );
        assert!(line.starts_with(&prefix), "{line}");
        assert!(line.contains("in helper\n    raise ValueError(\"early\")\n"), "{line}");
        assert!(line.ends_with("ValueError: early"), "{line}");
    }
}

#[test]
fn an_exception_after_the_head_aborts_the_connection() {
    let app = TestApp::new(
        "t_raise_late",
        r#"
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    yield b"half"
    raise ValueError("late")
"#,
    );
    for v in BOTH {
        let served = app.serve(v, &Client::get("/"));
        served.assert_wire(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nhalf",
        );
        assert!(served.aborted && served.closed);
        let line = served.one_error();
        assert!(line.contains("Traceback (most recent call last)"), "{line}");
        assert!(line.ends_with("ValueError: late (after the response head; connection aborted)"));
    }
}

/// Formatting the exception runs Python code (here its `__str__`) that sends the head: the
/// bridge decides between a 500 and an abort only after it, and aborts.
#[test]
fn an_exception_whose_message_sends_the_head_aborts_the_connection() {
    let app = TestApp::new(
        "t_raise_writes",
        r#"
class Sneaky(Exception):
    def __init__(self, write):
        self.write = write

    def __str__(self):
        self.write(b"partial")
        return "sneaky"


def app(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    raise Sneaky(write)
"#,
    );
    let served = app.serve(Raw, &Client::get("/"));
    assert!(served.aborted && served.closed, "{}", String::from_utf8_lossy(&served.wire));
    assert!(!String::from_utf8_lossy(&served.wire).contains("500"));
    let line = served.one_error();
    assert!(
        line.ends_with("Sneaky: sneaky (after the response head; connection aborted)"),
        "{line}"
    );
}

/// A `wsgi.errors` line without its newline, written before the app failed, is logged before
/// the bridge's line about the failure.
#[test]
fn the_apps_unterminated_error_line_comes_before_the_bridges() {
    let app = TestApp::new(
        "t_errors_order",
        r#"
def app(environ, start_response):
    environ["wsgi.errors"].write("about to fail")
    return [b"no start_response"]
"#,
    );
    for v in BOTH {
        let served = app.serve(v, &Client::get("/order"));
        served.assert_wire(ERROR_500);
        let tag = format!("GET /order [t_errors_order:{}]: ", v.attr());
        assert_eq!(served.log.len(), 2, "{:#?}", served.log);
        assert_eq!(served.log[0], (Level::Error, format!("{tag}about to fail")));
        assert!(served.log[1].1.starts_with(&tag), "{:#?}", served.log);
    }
}

#[test]
fn a_body_shorter_than_its_content_length_closes_the_connection() {
    let app = TestApp::new(
        "t_short_body",
        r#"
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return [b"half", b"!"]
"#,
    );
    for v in BOTH {
        let served = app.serve(v, &Client::get("/"));
        served.assert_wire(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nhalf!",
        );
        assert!(served.closed);
        assert!(
            served.one_error().ends_with(
                "application sent 5 bytes of its Content-Length of 10; connection closed"
            )
        );
    }
}

#[test]
fn nothing_past_the_content_length_is_sent() {
    let app = TestApp::new(
        "t_past_length",
        r#"
def app(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    if environ["PATH_INFO"] == "/write":
        write(b"abc")
        try:
            write(b"defgh")
        except ValueError as e:
            event("ValueError:", e)
        return []
    if environ["PATH_INFO"] == "/list":
        return [b"abcdefgh"]

    def body():
        yield b"abc"
        yield b"defgh"
        event("iterated past the Content-Length")
        yield b"ijk"
    return body()
"#,
    );
    let wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nabcde";
    for v in BOTH {
        // PEP 3333: the server stops iterating once the Content-Length is sent...
        for path in ["/iter", "/list"] {
            let served = app.serve(v, &Client::get(path));
            served.assert_wire(wire);
            served.assert_quiet();
            assert_eq!(served.events, Vec::<String>::new(), "{path} ({v:?})");
        }
        // ... and raises an error from a write() past it.
        let served = app.serve(v, &Client::get("/write"));
        served.assert_wire(wire);
        served.assert_quiet();
        assert_eq!(
            served.events,
            [
                "ValueError: write() past the response's Content-Length of 5; the excess was not sent"
            ]
        );
    }
}
