//! `wsgi.input` and `wsgi.errors`: io semantics checked against `io.BytesIO` over bodies that
//! arrive in pieces, never reading past the body, `100 Continue`, chunked request bodies, and
//! the error stream's log lines.

use wsgi_core::python::Level;

use crate::harness::{BOTH, Client, Raw, TestApp, Validated, body, chunked, response, show};

/// Each path reads the body one way, then the same way from `io.BytesIO(BODY)`; the response
/// holds `repr()` of both, one per line. `/after` answers the request pipelined after the body.
const READERS: &str = r#"
RECIPES = {
    "/read": lambda f: [f.read()],
    "/read-minus-one": lambda f: [f.read(-1)],
    "/read-none": lambda f: [f.read(None)],
    "/read-n": lambda f: [f.read(3), f.read(4), f.read(1000), f.read(1)],
    "/read-zero": lambda f: [f.read(0), f.read(1), f.read(0)],
    "/readline": lambda f: [f.readline() for _ in range(6)],
    "/readline-n": lambda f: [
        f.readline(2), f.readline(2), f.readline(100), f.readline(0), f.readline(-1), f.readline(1)
    ],
    "/readlines": lambda f: f.readlines(),
    "/readlines-hint": lambda f: [f.readlines(5), f.readlines(1), f.readlines(0), f.readlines()],
    "/iter": lambda f: list(f),
    "/mixed": lambda f: [
        f.read(2), f.readline(), f.read(5), f.readline(3), next(iter(f)), f.readline(), f.read(-1)
    ],
}


def app(environ, start_response):
    if environ["PATH_INFO"] == "/after":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"after"]
    recipe = RECIPES[environ["PATH_INFO"]]
    got = recipe(environ["wsgi.input"])
    expected = recipe(io.BytesIO(BODY))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [repr(got).encode() + b"\n" + repr(expected).encode()]
"#;

const BODY: &[u8] = b"line one\nline two\n\nfour: no newline at the end";

/// The request pipelined after each body: answered only if the reads stopped at the body's end.
const AFTER: &[u8] = b"GET /after HTTP/1.1\r\nHost: example.com\r\n\r\n";

/// `POST path` with [`BODY`] in pieces that split lines, framed by Content-Length or chunked;
/// [`AFTER`] arrives with the last piece.
fn post_in_pieces(path: &str, is_chunked: bool) -> Client {
    let splits = [0, 6, 13, 18, 19, 30, BODY.len()];
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    let framing = if is_chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {}", BODY.len())
    };
    pieces.push(format!("POST {path} HTTP/1.1\r\nHost: example.com\r\n{framing}\r\n\r\n").into());
    for w in splits.windows(2) {
        let part = &BODY[w[0]..w[1]];
        pieces.push(if is_chunked {
            [format!("{:x}\r\n", part.len()).as_bytes(), part, b"\r\n"].concat()
        } else {
            part.to_vec()
        });
    }
    let last = pieces.last_mut().unwrap();
    if is_chunked {
        last.extend_from_slice(b"0\r\n\r\n");
    }
    last.extend_from_slice(AFTER);
    let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
    Client::new(&refs)
}

#[test]
fn wsgi_input_reads_exactly_like_bytesio() {
    let app = TestApp::new("t_input_readers", READERS);
    app.set_bytes("BODY", BODY);
    // (path, the pieces the app read, as repr() prints them)
    let rows = [
        ("/read", "[b'line one\\nline two\\n\\nfour: no newline at the end']"),
        ("/read-minus-one", "[b'line one\\nline two\\n\\nfour: no newline at the end']"),
        ("/read-none", "[b'line one\\nline two\\n\\nfour: no newline at the end']"),
        ("/read-n", "[b'lin', b'e on', b'e\\nline two\\n\\nfour: no newline at the end', b'']"),
        ("/read-zero", "[b'', b'l', b'']"),
        (
            "/readline",
            "[b'line one\\n', b'line two\\n', b'\\n', b'four: no newline at the end', b'', b'']",
        ),
        ("/readline-n", "[b'li', b'ne', b' one\\n', b'', b'line two\\n', b'\\n']"),
        ("/readlines", "[b'line one\\n', b'line two\\n', b'\\n', b'four: no newline at the end']"),
        (
            "/readlines-hint",
            "[[b'line one\\n'], [b'line two\\n'], [b'\\n', b'four: no newline at the end'], []]",
        ),
        ("/iter", "[b'line one\\n', b'line two\\n', b'\\n', b'four: no newline at the end']"),
        (
            "/mixed",
            "[b'li', b'ne one\\n', b'line ', b'two', b'\\n', b'\\n', b'four: no newline at the end']",
        ),
    ];
    for (path, wanted) in rows {
        for is_chunked in [false, true] {
            for v in BOTH {
                let client = post_in_pieces(path, is_chunked);
                let served = app.serve(v, &client);
                let what = format!("{path} ({v:?}, chunked: {is_chunked})");
                if v == Validated && path == "/read" {
                    // wsgiref.validate insists on read(size); PEP 3333 servers allow read().
                    assert!(served.one_error().contains("assert_(len(args) == 1)"), "{what}");
                    continue;
                }
                served.assert_quiet();
                let text = String::from_utf8(body(&served.wire)).unwrap();
                let (got, expected) = text.split_once('\n').unwrap();
                assert_eq!(got, expected, "{what}: wsgi.input differs from io.BytesIO");
                assert_eq!(got, wanted, "{what}");
                // The pipelined request was not read as body: it is answered after.
                let after = match v {
                    Raw => response(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n",
                        b"after",
                    ),
                    Validated => response(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
                        &chunked(&[b"after"]),
                    ),
                };
                assert!(served.wire.ends_with(&after), "{what}: {}", show(&served.wire));
                assert_eq!(served.reads_after_end, 0, "{what}");
                if !["/read-zero", "/readline-n"].contains(&path) {
                    // Read to the end: pulled from the connection piece by piece, as the
                    // pieces arrived.
                    assert_eq!(served.body_events.len(), 6, "{what}: {:?}", served.body_events);
                }
            }
        }
    }
}

#[test]
fn a_large_body_streams_through_in_pieces() {
    let app = TestApp::new(
        "t_input_large",
        r#"
def app(environ, start_response):
    f = environ["wsgi.input"]
    blocks = []
    while block := f.read(8192):
        blocks.append(block)
    event("blocks", len(blocks))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [b"".join(blocks)]
"#,
    );
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let head = format!(
        "PUT /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: {}\r\n\r\n",
        data.len()
    );
    let mut pieces = vec![head.as_bytes()];
    pieces.extend(data.chunks(60_000));
    for v in BOTH {
        let served = app.serve(v, &Client::new(&pieces));
        served.assert_quiet();
        assert_eq!(served.body_events, [60_000; 5], "one Body event per piece");
        assert_eq!(served.events, [format!("blocks {}", 300_000usize.div_ceil(8192))]);
        let framing = match v {
            Raw => "Content-Length: 300000\r\n",
            Validated => "Transfer-Encoding: chunked\r\n",
        };
        let head =
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n{framing}");
        assert!(served.wire.starts_with(head.as_bytes()));
        assert!(body(&served.wire) == data, "the body echoed back differs");
    }
}

const CONTINUE: &str = r#"
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["PATH_INFO"] == "/ignore":
        return [b"ignored"]
    f = environ["wsgi.input"]
    first = f.read(0)
    event("after read(0)")
    return [first + f.read(2) + f.read(3) + f.read(1)]
"#;

#[test]
fn continue_is_sent_on_the_first_read_only_when_the_client_asked() {
    let app = TestApp::new("t_input_continue", CONTINUE);
    let expect = |path: &str, expect: bool| {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n{}\r\n",
            if expect { "Expect: 100-continue\r\n" } else { "" }
        );
        Client::new(&[head.as_bytes(), b"hello"])
    };
    let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    let ok_chunked = response(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
        &chunked(&[b"hello"]),
    );
    for v in BOTH {
        let ok: &[u8] = if v == Raw { ok } else { &ok_chunked };
        // Asked for: one `100 Continue`, before the body was read (read(0) reads nothing).
        let served = app.serve(v, &expect("/read", true));
        served.assert_wire(&[&b"HTTP/1.1 100 Continue\r\n\r\n"[..], ok].concat());
        served.assert_quiet();
        assert_eq!(served.events, ["after read(0)"]);

        // Not asked for: none.
        let served = app.serve(v, &expect("/read", false));
        served.assert_wire(ok);
        served.assert_quiet();

        // Asked for, but the app never reads: none, and the connection closes rather than wait
        // for a body it never invited.
        let served = app.serve(v, &expect("/ignore", true));
        served.assert_wire(&match v {
            Raw => response(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\
                 Connection: close\r\n",
                b"ignored",
            ),
            Validated => response(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\
                 Connection: close\r\n",
                &chunked(&[b"ignored"]),
            ),
        });
        assert!(served.closed);
        served.assert_quiet();
    }
}

#[test]
fn a_get_without_body_reads_empty() {
    let app = TestApp::new(
        "t_input_empty",
        r#"
def app(environ, start_response):
    f = environ["wsgi.input"]
    got = [f.read(10), f.readline(), f.readlines(), list(f), f.read(-1)]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [repr(got).encode()]
"#,
    );
    for v in BOTH {
        let served = app.serve(v, &Client::get("/"));
        served.assert_quiet();
        assert_eq!(body(&served.wire), b"[b'', b'', [], [], b'']");
        assert_eq!(served.reads_after_end, 0);
    }
}

#[test]
fn wsgi_errors_lines_go_to_the_log_tagged_with_the_request() {
    let app = TestApp::new(
        "t_errors",
        r#"
def app(environ, start_response):
    errors = environ["wsgi.errors"]
    errors.write("first line\nsecond ")
    errors.write("half\n")
    errors.writelines(["third\n", "fourth"])
    errors.flush()
    errors.write("unterminated")
    errors.flush()
    errors.flush()
    print("via print", file=errors)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"logged"]
"#,
    );
    for v in BOTH {
        let served = app.serve(v, &Client::post("/errors?verbose=1", b"x"));
        let tag = format!("POST /errors [t_errors:{}]: ", v.attr());
        let lines: Vec<(Level, String)> =
            ["first line", "second half", "third", "fourth", "unterminated", "via print"]
                .iter()
                .map(|l| (Level::Error, format!("{tag}{l}")))
                .collect();
        assert_eq!(served.log, lines);
        assert_eq!(body(&served.wire), b"logged");
    }
}

/// A client that vanishes mid-upload is the client's doing: one info line that says so, not an
/// error with the application's traceback (the app only saw the OSError its read raised, and a
/// later read returns b"").
#[test]
fn a_client_gone_mid_upload_is_logged_as_the_clients_doing() {
    let app = TestApp::new(
        "input_client_gone",
        r#"
def app(environ, start_response):
    stream = environ["wsgi.input"]
    try:
        body = stream.read(int(environ["CONTENT_LENGTH"]))
    except OSError:
        # The stream has ended: a read after the failure returns b"", it does not fail again.
        try:
            again = stream.read(4)
        except OSError:
            again = "raised"
        if again != b"":
            raise AssertionError(f"read after the failure: {again!r}")
        raise
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"#,
    );
    // Ten bytes announced, three sent, then the connection ends.
    let client = Client::new(&[b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"]);
    for v in BOTH {
        let served = app.serve(v, &client);
        let [(Level::Info, line)] = served.log.as_slice() else {
            panic!("{v:?}: wanted one info line, got {:#?}", served.log);
        };
        assert!(line.contains("client disconnected before the request body ended"), "{line}");
        assert!(!line.contains("Traceback"), "{line}");
        assert!(line.starts_with("POST /up"), "{line}");
    }
}
