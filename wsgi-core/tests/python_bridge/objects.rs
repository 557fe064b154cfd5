//! An app thread keeps one request's Python objects (`wsgi.input`, `wsgi.errors`,
//! `start_response` and its `write()`) for its next request when the application let go of
//! them: the reuse happens, and an application that kept any of them never reaches another
//! request through it.

use wsgi_core::python::Level;

use crate::harness::{BOTH, Client, Raw, TestApp};

/// Each request records the identities of its objects (looking through wsgiref.validate's
/// wrappers), writes an unterminated line to `wsgi.errors` and answers its body. `/keep` stores
/// its input, errors, start_response and write; `/late` uses them.
const APP: &str = r#"
KEPT = []


def unwrapped(stream, attr):
    return getattr(stream, attr, stream)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    stream = unwrapped(environ["wsgi.input"], "input")
    errors = unwrapped(environ["wsgi.errors"], "errors")
    event(path, "input", id(stream), "errors", id(errors), "start_response", id(start_response))
    body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
    environ["wsgi.errors"].write("unterminated " + path)
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    if path == "/keep":
        KEPT.append((stream, errors, start_response, write))
    if path == "/late":
        old_input, old_errors, old_start_response, old_write = KEPT.pop()
        try:
            event("late read", old_input.read())
        except OSError as e:
            event("late read OSError")
        old_errors.write("late line\n")
        try:
            old_write(b"late write")
        except OSError as e:
            event("late write", e)
        try:
            old_start_response("200 OK", [])
        except Exception as e:
            event("late start_response", type(e).__name__)
    write(body)
    return [b"."]
"#;

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: example.com\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The `input`, `errors` and `start_response` ids a request's event recorded.
fn ids(events: &[String], path: &str) -> Vec<String> {
    let event = events.iter().find(|e| e.starts_with(&format!("{path} input "))).expect(path);
    event.split(' ').skip(1).skip(1).step_by(2).map(str::to_owned).collect()
}

#[test]
fn request_objects_are_reused_only_when_the_application_let_go_of_them() {
    let app = TestApp::new("t_objects_reuse", APP);
    let requests: String = [
        post("/one", "first"),
        post("/two", "second"),
        post("/keep", "third"),
        post("/late", "fourth"),
        post("/five", "fifth"),
    ]
    .concat();
    for v in BOTH {
        let served = app.serve(v, &Client::new(&[requests.as_bytes()]));
        let events = &served.events;
        // Each response is its own body and the app's final ".", nothing from another request.
        let text = String::from_utf8_lossy(&served.wire).into_owned();
        let bodies: Vec<&str> = text
            .split("HTTP/1.1 200 OK\r\n")
            .skip(1)
            .map(|r| {
                let at = r.find("\r\n\r\n").expect("a head") + 4;
                &r[at..]
            })
            .collect();
        assert_eq!(bodies.len(), 5, "{text}\n{:#?}", served.log);
        for (got, sent) in bodies.iter().zip(["first", "second", "third", "fourth", "fifth"]) {
            assert!(got.contains(sent) && got.contains('.'), "{got:?} should be {sent:?} and '.'");
            assert!(!got.contains("late"), "{got:?}");
        }
        // The late calls reached nothing of the request they were made in.
        assert!(events.contains(&"late read OSError".to_owned()), "{events:#?}");
        assert!(
            events.contains(&"late write the response has already ended".to_owned()),
            "{events:#?}"
        );
        // (wsgiref.validate's wrapper refuses the second call before it reaches the bridge.)
        let refused = if v == Raw { "RuntimeError" } else { "AssertionError" };
        assert!(events.contains(&format!("late start_response {refused}")), "{events:#?}");
        // Every request's unterminated line went out with its own label when the request
        // ended; /keep's stream stayed open with the app, which ended that line later, under
        // the label of the request it was written for.
        let tag = |path: &str| format!("POST {path} [t_objects_reuse:{}]: ", v.attr());
        let expected: Vec<(Level, String)> = [
            ("/one", "unterminated /one"),
            ("/two", "unterminated /two"),
            ("/keep", "unterminated /keeplate line"),
            ("/late", "unterminated /late"),
            ("/five", "unterminated /five"),
        ]
        .iter()
        .map(|(path, line)| (Level::Error, format!("{}{line}", tag(path))))
        .collect();
        assert_eq!(served.log, expected);
        if v == Raw {
            // The objects of /one served /two; /keep's were its own (those of /two, reused)
            // and stayed with the app, so /late got new ones, which /five reused.
            assert_eq!(ids(events, "/one"), ids(events, "/two"));
            assert_eq!(ids(events, "/two"), ids(events, "/keep"));
            let late = ids(events, "/late");
            for (new, kept) in late.iter().zip(ids(events, "/keep")) {
                assert_ne!(*new, kept, "{events:#?}");
            }
            assert_eq!(late, ids(events, "/five"));
        }
    }
}

/// Keeping only the `write()` callable, or only a bound method of a stream, keeps the whole set
/// away from the next request.
#[test]
fn keeping_one_object_keeps_the_set_from_the_next_request() {
    let app = TestApp::new(
        "t_objects_keep_one",
        r#"
KEPT = []


def app(environ, start_response):
    path = environ["PATH_INFO"]
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    if path == "/keep-write":
        KEPT.append(("write", write))
    if path == "/keep-read":
        KEPT.append(("read", environ["wsgi.input"].read))
    if path == "/late":
        for kind, late in KEPT:
            try:
                got = late(b"LEAK") if kind == "write" else late()
                event(kind, "returned", got)
            except OSError:
                event(kind, "raised OSError")
        KEPT.clear()
    return [path.encode()]
"#,
    );
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n");
    let requests = [get("/keep-write"), get("/keep-read"), get("/late")].concat();
    let served = app.serve(Raw, &Client::new(&[requests.as_bytes()]));
    let wire = String::from_utf8_lossy(&served.wire).into_owned();
    assert_eq!(wire.matches("HTTP/1.1 200 OK").count(), 3, "{wire}");
    assert!(!wire.contains("LEAK"), "{wire}");
    assert!(wire.ends_with("/late"), "{wire}");
    // The kept write() refuses (its response ended); the kept read() finds its body's end or
    // its connection gone: neither reaches /late's.
    assert_eq!(served.events[0], "write raised OSError", "{:#?}", served.events);
    assert!(
        ["read raised OSError", "read returned b''"].contains(&served.events[1].as_str()),
        "{:#?}",
        served.events
    );
    assert_eq!(served.events.len(), 2, "{:#?}", served.events);
}
