//! The response side of PEP 3333 through the bridge: the seed app and its `str` mistake, body
//! items, `start_response` (late, twice, with `exc_info`, with bad arguments) and `write()`.

use crate::harness::{BOTH, Client, ERROR_500, Raw, TestApp, Validated, chunked, response};

/// The seed's hello app, verbatim.
const HELLO: &str = r#"
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["Hello WSGI World!\n".encode()]
"#;

#[test]
fn seed_hello_app_gets_a_content_length_and_keeps_the_connection() {
    let app = TestApp::new("t_hello", HELLO);
    let get = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let two = [&get[..], &get[..]].concat();
    // PEP 3333 ("Handling the Content-Length Header"): a one-item list is the whole body, so
    // the server knows its length; two pipelined requests, both answered on one connection.
    let served = app.serve(Raw, &Client::new(&[&two]));
    let one = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 18\r\n\r\n\
        Hello WSGI World!\n";
    served.assert_wire(&[&one[..], &one[..]].concat());
    served.assert_quiet();
    assert!(!served.aborted && !served.closed);

    // The validator hands back its own iterator, not the list: the length is unknown, so the
    // body is chunked.
    let served = app.serve(Validated, &Client::get("/"));
    served.assert_wire(&response(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
        &chunked(&[b"Hello WSGI World!\n"]),
    ));
    served.assert_quiet();
}

#[test]
fn head_request_gets_the_head_without_the_body() {
    let app = TestApp::new("t_hello_head", HELLO);
    let client = Client::new(&[b"HEAD / HTTP/1.1\r\nHost: example.com\r\n\r\n"]);
    let served = app.serve(Raw, &client);
    served
        .assert_wire(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 18\r\n\r\n");
    served.assert_quiet();
    let served = app.serve(Validated, &client);
    served.assert_wire(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
    served.assert_quiet();
}

/// The seed's mistake: a `str` body. The same app serves `/ok` correctly.
const STR_BODY: &str = r#"
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["PATH_INFO"] == "/str":
        return ["Hello WSGI World!\n"]
    return [b"still serving\n"]
"#;

#[test]
fn str_body_is_a_500_with_one_log_line_and_the_app_serves_on() {
    let app = TestApp::new("t_str_body", STR_BODY);
    let requests = b"GET /str HTTP/1.1\r\nHost: example.com\r\n\r\n\
                     GET /ok HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let served = app.serve(Raw, &Client::new(&[requests]));
    let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\n\
        still serving\n";
    served.assert_wire(&[ERROR_500, &ok[..]].concat());
    assert_eq!(
        served.one_error(),
        "GET /str [t_str_body:app]: application returned str in its response body; \
         WSGI bodies are bytes: use 'text'.encode()"
    );

    // The validator catches the same mistake first, with its own words.
    let served = app.serve(Validated, &Client::new(&[requests]));
    let ok = response(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
        &chunked(&[b"still serving\n"]),
    );
    served.assert_wire(&[ERROR_500, &ok[..]].concat());
    let line = served.one_error();
    assert!(line.starts_with("GET /str [t_str_body:validated]: "), "{line}");
    assert!(line.contains("AssertionError: Iterator yielded non-bytestring ('Hello"), "{line}");
}

#[test]
fn str_after_the_head_aborts_the_connection() {
    let app = TestApp::new(
        "t_str_late",
        r#"
class Body:
    def __iter__(self):
        yield b"a"
        yield "b"

    def close(self):
        event("close")


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Body()
"#,
    );
    for v in BOTH {
        let served = app.serve(v, &Client::get("/"));
        // The head and the first chunk went out; no last chunk, so the client cannot take the
        // truncated body for a whole one.
        served.assert_wire(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
              1\r\na\r\n",
        );
        assert!(served.aborted && served.closed);
        assert_eq!(served.events, ["close"]);
        let line = served.one_error();
        let why = match v {
            Raw => {
                "application returned str in its response body; WSGI bodies are bytes: \
                    use 'text'.encode()"
            }
            Validated => "AssertionError: Iterator yielded non-bytestring ('b')",
        };
        assert!(line.contains(why), "{line}");
        assert!(line.ends_with("(after the response head; connection aborted)"), "{line}");
    }
}

#[test]
fn bytearray_and_memoryview_items_are_sent_as_bytes() {
    let app = TestApp::new(
        "t_byte_likes",
        r#"
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [bytearray(b"byte"), memoryview(b"array and "), memoryview(b"..view..")[2:6], b"!"]
"#,
    );
    let served = app.serve(Raw, &Client::get("/"));
    served.assert_wire(&response(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
        &chunked(&[b"byte", b"array and ", b"view", b"!"]),
    ));
    served.assert_quiet();
    // wsgiref.validate is stricter than the bridge: only `bytes` itself.
    let served = app.serve(Validated, &Client::get("/"));
    served.assert_wire(ERROR_500);
    assert!(served.one_error().contains("non-bytestring (bytearray(b'byte'))"));
}

#[test]
fn empty_items_wait_for_the_first_non_empty_one() {
    let app = TestApp::new(
        "t_empty_items",
        r#"
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["PATH_INFO"] == "/empty-list":
        return [b""]
    if environ["PATH_INFO"] == "/nothing":
        return []

    def body():
        yield b""
        yield b"late"
        yield b""
    return body()
"#,
    );
    let chunked_head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n";
    for v in BOTH {
        let served = app.serve(v, &Client::get("/gen"));
        served.assert_wire(&response(chunked_head, &chunked(&[b"late"])));
        served.assert_quiet();

        let served = app.serve(v, &Client::get("/nothing"));
        served.assert_wire(&response(chunked_head, &chunked(&[])));
        served.assert_quiet();

        let served = app.serve(v, &Client::get("/empty-list"));
        match v {
            Raw => served.assert_wire(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
            ),
            Validated => served.assert_wire(&response(chunked_head, &chunked(&[]))),
        }
        served.assert_quiet();
    }
}

#[test]
fn start_response_called_late_inside_a_generator_sets_the_status() {
    let app = TestApp::new(
        "t_late_start",
        r#"
def app(environ, start_response):
    def body():
        start_response("201 Created", [("Content-Type", "text/plain"), ("X-Late", "yes")])
        yield b"made"
    return body()
"#,
    );
    for v in BOTH {
        let served = app.serve(v, &Client::get("/"));
        served.assert_wire(&response(
            "HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-Late: yes\r\n\
             Transfer-Encoding: chunked\r\n",
            &chunked(&[b"made"]),
        ));
        served.assert_quiet();
    }
}

#[test]
fn exc_info_before_the_head_replaces_it() {
    let app = TestApp::new(
        "t_exc_info_early",
        r#"
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Old", "1")])
    try:
        raise ValueError("caught")
    except ValueError:
        start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"sorry\n"]
"#,
    );
    let served = app.serve(Raw, &Client::get("/"));
    served.assert_wire(
        b"HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nsorry\n",
    );
    served.assert_quiet();
    let served = app.serve(Validated, &Client::get("/"));
    served.assert_wire(&response(
        "HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
        &chunked(&[b"sorry\n"]),
    ));
    served.assert_quiet();
}

#[test]
fn exc_info_after_the_head_is_reraised_and_the_connection_aborted() {
    let app = TestApp::new(
        "t_exc_info_late",
        r#"
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b"partial"
        try:
            raise ValueError("late failure")
        except ValueError:
            try:
                start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
            except ValueError as e:
                event("re-raised:", e)
                raise
            event("not re-raised")
            yield b"error page"
    return body()
"#,
    );
    for v in BOTH {
        let served = app.serve(v, &Client::get("/"));
        served.assert_wire(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
              7\r\npartial\r\n",
        );
        assert!(served.aborted && served.closed);
        assert_eq!(served.events, ["re-raised: late failure"]);
        let line = served.one_error();
        assert!(line.contains("Traceback (most recent call last)"), "{line}");
        assert!(line.contains("ValueError: late failure"), "{line}");
        assert!(line.ends_with("(after the response head; connection aborted)"), "{line}");
    }
}

#[test]
fn second_start_response_without_exc_info_raises() {
    let app = TestApp::new(
        "t_start_twice",
        r#"
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
    except Exception as e:
        event(type(e).__name__, e)
        raise
    return [b"unreachable"]
"#,
    );
    for v in BOTH {
        let served = app.serve(v, &Client::get("/"));
        served.assert_wire(ERROR_500);
        let message = "start_response() called a second time without exc_info";
        assert_eq!(served.events, [format!("RuntimeError {message}")]);
        assert!(served.one_error().ends_with(&format!("RuntimeError: {message}")));
    }
}

#[test]
fn write_sends_the_head_then_its_bytes_then_the_iterable() {
    let app = TestApp::new(
        "t_write",
        r#"
def app(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"one,")
    write(b"")
    write(b"two,")
    if environ["PATH_INFO"] == "/fail":
        raise ValueError("after write")
    return [b"three"]
"#,
    );
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n";
    for v in BOTH {
        let served = app.serve(v, &Client::get("/"));
        served.assert_wire(&response(head, &chunked(&[b"one,", b"two,", b"three"])));
        served.assert_quiet();

        // write() sends at once: the bytes are on the wire before the app goes on (and fails).
        let served = app.serve(v, &Client::get("/fail"));
        served.assert_wire(&response(head, b"4\r\none,\r\n4\r\ntwo,\r\n"));
        assert!(served.aborted);
        assert!(served.one_error().contains("ValueError: after write"));
    }
}

#[test]
fn write_of_str_is_a_type_error_naming_the_fix() {
    let app = TestApp::new(
        "t_write_str",
        r#"
def app(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write("text")
    return []
"#,
    );
    let served = app.serve(Raw, &Client::get("/"));
    served.assert_wire(ERROR_500);
    assert!(served.one_error().ends_with(
        "TypeError: write() argument must be bytes, not str; WSGI bodies are bytes: \
         use 'text'.encode()"
    ));
    let served = app.serve(Validated, &Client::get("/"));
    served.assert_wire(ERROR_500);
    assert!(served.one_error().contains("AssertionError"));
}

/// Each path passes one bad `(status, headers)` to `start_response`.
const BAD_START: &str = r#"
H = [("Content-Type", "text/plain")]
CASES = {
    "/status-bytes": (b"200 OK", H),
    "/status-int": (200, H),
    "/status-no-reason": ("200", H),
    "/status-1xx": ("103 Early Hints", H),
    "/headers-tuple": ("200 OK", tuple(H)),
    "/headers-dict": ("200 OK", dict(H)),
    "/pair-of-three": ("200 OK", [("Content-Type", "text/plain", "x")]),
    "/pair-as-list": ("200 OK", [["Content-Type", "text/plain"]]),
    "/name-bytes": ("200 OK", H + [(b"X-A", "b")]),
    "/value-int": ("200 OK", H + [("X-A", 1)]),
    "/value-not-latin1": ("200 OK", H + [("X-A", "snow \u2603")]),
    "/value-crlf": ("200 OK", H + [("X-A", "a\r\nSet-Cookie: x=1")]),
    "/name-space": ("200 OK", H + [("X A", "b")]),
    "/hop-by-hop": ("200 OK", H + [("Connection", "close")]),
}


def app(environ, start_response):
    status, headers = CASES[environ["PATH_INFO"]]
    start_response(status, headers)
    return [b"unreachable"]
"#;

#[test]
fn start_response_rejects_bad_arguments_with_clear_messages() {
    let app = TestApp::new("t_bad_start", BAD_START);
    // (path, the last line of the traceback the bridge logs, what the validator says if it
    // catches the mistake first)
    let rows: &[(&str, &str, Option<&str>)] = &[
        (
            "/status-bytes",
            "TypeError: start_response() status must be a str such as '200 OK', not bytes",
            Some("Status must be of type str"),
        ),
        (
            "/status-int",
            "TypeError: start_response() status must be a str such as '200 OK', not int",
            Some("Status must be of type str"),
        ),
        (
            "/status-no-reason",
            "ValueError: start_response(): status must be a three-digit code, a space and a \
             reason, e.g. '200 OK' (status \"200\")",
            Some("WSGIWarning"),
        ),
        (
            "/status-1xx",
            "ValueError: start_response(): status code must be between 200 and 599 \
             (status \"103 Early Hints\")",
            None,
        ),
        (
            "/headers-tuple",
            "TypeError: start_response() response_headers must be a list of (name, value) \
             tuples, not tuple",
            Some("Headers (("),
        ),
        (
            "/headers-dict",
            "TypeError: start_response() response_headers must be a list of (name, value) \
             tuples, not dict",
            Some("Headers ({"),
        ),
        (
            "/pair-of-three",
            "TypeError: start_response() header #0 must be a (name, value) tuple of two str, \
             not a tuple of 3",
            Some("AssertionError"),
        ),
        (
            "/pair-as-list",
            "TypeError: start_response() header #0 must be a (name, value) tuple of two str, \
             not list",
            Some("Individual headers ("),
        ),
        (
            "/name-bytes",
            "TypeError: start_response() header #1 must be two str, not (bytes, str)",
            Some("AssertionError: Header name must be of type str (got b'X-A')"),
        ),
        (
            "/value-int",
            "TypeError: start_response() header #1 must be two str, not (str, int)",
            Some("AssertionError: Header value must be of type str (got 1)"),
        ),
        (
            "/value-not-latin1",
            "ValueError: start_response(): response header #1 has a character outside latin-1 \
             in its value (\"X-A\": \"snow ☃\")",
            None,
        ),
        (
            "/value-crlf",
            "ValueError: start_response(): response header #1 has a control character (CR, LF, \
             NUL, …) in its value (\"X-A\": \"a\\r\\nSet-Cookie: x=1\")",
            Some("Bad header value"),
        ),
        (
            "/name-space",
            "ValueError: start_response(): response header #1 has an invalid name \
             (\"X A\": \"b\")",
            Some("Bad header name"),
        ),
        (
            "/hop-by-hop",
            "ValueError: start_response(): response header #1 is hop-by-hop, which PEP 3333 \
             reserves for the server (\"Connection\": \"close\")",
            None,
        ),
    ];
    for &(path, bridge, validator) in rows {
        for v in BOTH {
            let served = app.serve(v, &Client::get(path));
            served.assert_wire(ERROR_500);
            let line = served.one_error();
            assert!(line.starts_with(&format!("GET {path} [t_bad_start:")), "{line}");
            let wanted = match (v, validator) {
                (Validated, Some(validator)) => validator,
                _ => bridge,
            };
            assert!(line.contains(wanted), "{path} ({v:?}): wanted {wanted:?} in\n{line}");
        }
    }
}

#[test]
fn status_and_headers_go_out_as_given() {
    let app = TestApp::new(
        "t_headers_as_given",
        r#"
def app(environ, start_response):
    start_response("404 Nicht Gefunden \xe9", [
        ("Content-Type", "text/plain; charset=latin-1"),
        ("X-Latin-1", "caf\xe9"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ])
    return [b"gone"]
"#,
    );
    for v in BOTH {
        let served = app.serve(v, &Client::get("/"));
        let head =
            b"HTTP/1.1 404 Nicht Gefunden \xe9\r\nContent-Type: text/plain; charset=latin-1\r\n\
            X-Latin-1: caf\xe9\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n";
        let framing: &[u8] = match v {
            Raw => b"Content-Length: 4\r\n\r\ngone",
            Validated => b"Transfer-Encoding: chunked\r\n\r\n4\r\ngone\r\n0\r\n\r\n",
        };
        served.assert_wire(&[&head[..], framing].concat());
        served.assert_quiet();
    }
}

/// The same constant status and header objects on every request (the bridge remembers the head
/// it made of them), then the same list holding other tuples: each request gets its own head,
/// and a bad header is still refused.
const REUSED_OBJECTS: &str = r#"
HEADERS = [("Content-Type", "text/plain")]
OTHER = ("X-Other", "2")
def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/swap":
        HEADERS[0] = OTHER
    elif path == "/bad":
        HEADERS[0] = ("Connection", "close")
    start_response("200 OK", HEADERS)
    return [b"x"]
"#;

#[test]
fn a_head_made_of_the_same_objects_is_reused_and_changed_objects_are_checked_again() {
    let app = TestApp::new("t_reused_objects", REUSED_OBJECTS);
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n");
    let requests = [get("/"), get("/"), get("/swap"), get("/"), get("/bad")].concat();
    let served = app.serve(Raw, &Client::new(&[requests.as_bytes()]));
    let plain = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\nx";
    let other = b"HTTP/1.1 200 OK\r\nX-Other: 2\r\nContent-Length: 1\r\n\r\nx";
    served.assert_wire(&[&plain[..], plain, other, other, ERROR_500].concat());
    assert!(served.one_error().contains("hop-by-hop"), "{}", served.one_error());
}
