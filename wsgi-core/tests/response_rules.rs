#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The response side: what an application may pass to `start_response` (PEP 3333, RFC 9110),
//! when the head goes out, and how the body is framed on the wire (RFC 9112 §6). Each row names
//! the rule it checks; wire output is compared byte for byte.

use std::time::{Duration, Instant, UNIX_EPOCH};

use wsgi_core::ResponseError::{
    BadContentLength, BadHeaderName, BadHeaderValue, BadReason, BadStatus, HopByHop, NotLatin1,
    StatusOutOfRange,
};
use wsgi_core::{
    BodyEncoder, Config, Connection, Event, HttpDate, ResponseBody, ResponseError, ResponseHead,
    StartError, StartResponse, UsageError, Version, response_framing,
};

type Headers<'a> = &'a [(&'a str, &'a str)];

fn from_wsgi(status: &str, headers: Headers<'_>) -> Result<ResponseHead, ResponseError> {
    ResponseHead::from_wsgi(status, headers.iter().copied())
}

fn head(status: &str, headers: Headers<'_>) -> ResponseHead {
    from_wsgi(status, headers).unwrap()
}

/// A connection that has reported `request` whole (head and body), ready for its response.
fn ready(request: &[u8], config: Config, now: Instant) -> Connection {
    let mut conn = Connection::new(config, now);
    conn.handle_input(request, now);
    match conn.poll_event() {
        Ok(Some(Event::Request(_))) => {}
        other => panic!("no request in {:?}: {other:?}", String::from_utf8_lossy(request)),
    }
    loop {
        match conn.poll_event() {
            Ok(Some(Event::Body(_))) => {}
            Ok(Some(Event::EndOfBody)) => return conn,
            other => panic!("no end of body: {other:?}"),
        }
    }
}

/// Sends a whole response to `request`; returns the wire bytes and whether the connection
/// closed after it.
fn exchange(request: &[u8], status: &str, headers: Headers<'_>, body: &[&[u8]]) -> (Vec<u8>, bool) {
    let now = Instant::now();
    let mut conn = ready(request, Config::default(), now);
    let mut out = Vec::new();
    conn.send_head(&head(status, headers), &mut out).unwrap();
    for chunk in body {
        conn.send_body(chunk, &mut out).unwrap();
    }
    conn.send_end(now, &mut out).unwrap();
    (out, conn.is_closed())
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const GET11: &[u8] = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
const GET10: &[u8] = b"GET / HTTP/1.0\r\n\r\n";

// ---------------------------------------------------------------------------------------------
// ResponseHead::from_wsgi

#[test]
fn status_validation() {
    // (status, code or error)
    let rows: &[(&str, Result<u16, ResponseError>)] = &[
        // PEP 3333: "a status code and a reason phrase, separated by a single space".
        ("200 OK", Ok(200)),
        ("404 Not Found", Ok(404)),
        ("500 Internal Server Error", Ok(500)),
        ("599 Custom", Ok(599)),
        // RFC 9112 §4: the reason phrase may be empty (the space stays).
        ("200 ", Ok(200)),
        // RFC 9112 §4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ).
        ("200 OK\tgood", Ok(200)),
        ("201 Cr\u{E9}\u{E9}", Ok(201)),
        // Not "NNN reason": no space, wrong digit count, non-digits.
        ("200", Err(BadStatus)),
        ("20 OK", Err(BadStatus)),
        ("2000 OK", Err(BadStatus)),
        ("", Err(BadStatus)),
        (" 200 OK", Err(BadStatus)),
        ("200-OK", Err(BadStatus)),
        ("2x0 OK", Err(BadStatus)),
        ("OK 200", Err(BadStatus)),
        ("\u{662}00 OK", Err(BadStatus)), // an Arabic-Indic digit is not a DIGIT
        // RFC 9110 §15: final statuses are 200..=599; 1xx are the server's to send.
        ("099 x", Err(StatusOutOfRange)),
        ("000 x", Err(StatusOutOfRange)),
        ("100 Continue", Err(StatusOutOfRange)),
        ("101 Switching Protocols", Err(StatusOutOfRange)),
        ("199 x", Err(StatusOutOfRange)),
        ("600 X", Err(StatusOutOfRange)),
        ("999 X", Err(StatusOutOfRange)),
        // No CR, LF, NUL or other control byte in the reason (response splitting).
        ("200 OK\r\nSet-Cookie: evil=1", Err(BadReason)),
        ("200 OK\n", Err(BadReason)),
        ("200 OK\r", Err(BadReason)),
        ("200 O\0K", Err(BadReason)),
        ("200 OK\u{7f}", Err(BadReason)),
        ("200 OK\u{1}", Err(BadReason)),
        // PEP 3333: native strings hold latin-1 only.
        ("200 \u{20AC}", Err(BadReason)),
        ("200 ok\u{100}", Err(BadReason)),
    ];
    for (status, want) in rows {
        let got = ResponseHead::from_wsgi(status, [("A", "b")]).map(|h| h.status());
        assert_eq!(&got, want, "status {status:?}");
    }
    // The reason is kept as latin-1 bytes.
    assert_eq!(head("201 Cr\u{E9}\u{E9}", &[]).reason(), b"Cr\xE9\xE9");
    assert_eq!(head("200 ", &[]).reason(), b"");
    assert_eq!(head("404 Not Found", &[]).reason(), b"Not Found");
}

#[test]
fn header_name_validation() {
    // (headers, error); the index names the offending pair.
    let rows: &[(Headers<'_>, ResponseError)] = &[
        // RFC 9110 §5.1: field-name = token (1*tchar).
        (&[("", "v")], BadHeaderName { index: 0 }),
        (&[("A", "b"), ("X Y", "v")], BadHeaderName { index: 1 }),
        (&[("X:Y", "v")], BadHeaderName { index: 0 }),
        (&[("X-Y:", "v")], BadHeaderName { index: 0 }),
        (&[("X-Y ", "v")], BadHeaderName { index: 0 }),
        (&[("A", "1"), ("B", "2"), ("N\u{E1}m\u{E9}", "v")], BadHeaderName { index: 2 }),
        (&[("X\r\nInjected", "v")], BadHeaderName { index: 0 }),
        (&[("X\0", "v")], BadHeaderName { index: 0 }),
        (&[("(x)", "v")], BadHeaderName { index: 0 }),
        (&[("a/b", "v")], BadHeaderName { index: 0 }),
    ];
    for (headers, want) in rows {
        assert_eq!(from_wsgi("200 OK", headers), Err(*want), "{headers:?}");
    }
    // Every tchar is accepted, and names keep their case on the wire.
    let h = head("200 OK", &[("!#$%&'*+-.^_`|~09azAZ", "v"), ("x-lower", "1")]);
    let names: Vec<&[u8]> = h.headers().map(|(n, _)| n).collect();
    assert_eq!(names, [&b"!#$%&'*+-.^_`|~09azAZ"[..], b"x-lower"]);
}

#[test]
fn header_value_validation() {
    // (headers, error)
    let rows: &[(Headers<'_>, ResponseError)] = &[
        // RFC 9110 §5.5: no CR, LF, NUL (response splitting) or other control bytes.
        (&[("X-A", "a\rb")], BadHeaderValue { index: 0 }),
        (&[("X-A", "a\nb")], BadHeaderValue { index: 0 }),
        (&[("X-A", "a\r\nSet-Cookie: x=1")], BadHeaderValue { index: 0 }),
        (&[("A", "ok"), ("X-A", "a\0b")], BadHeaderValue { index: 1 }),
        (&[("X-A", "a\u{7f}")], BadHeaderValue { index: 0 }),
        (&[("X-A", "\u{1b}[31m")], BadHeaderValue { index: 0 }),
        // PEP 3333: header values are latin-1 native strings; above U+00FF is an error.
        (&[("X-A", "\u{100}")], NotLatin1 { index: 0 }),
        (&[("A", "ok"), ("X-A", "caf\u{E9} \u{20AC}")], NotLatin1 { index: 1 }),
        (&[("X-A", "\u{1F600}")], NotLatin1 { index: 0 }),
    ];
    for (headers, want) in rows {
        assert_eq!(from_wsgi("200 OK", headers), Err(*want), "{headers:?}");
    }
    // Accepted: HTAB, SP, VCHAR, obs-text (latin-1 above 0x7F), and the empty value.
    let rows: &[(&str, &[u8])] = &[
        ("plain", b"plain"),
        ("a\tb", b"a\tb"),
        ("", b""),
        ("caf\u{E9}", b"caf\xE9"), // é is the single byte 0xE9, not UTF-8
        ("\u{A0}\u{FF}", b"\xA0\xFF"),
    ];
    for &(value, wire) in rows {
        let h = head("200 OK", &[("X-A", value)]);
        let got: Vec<(&[u8], &[u8])> = h.headers().collect();
        assert_eq!(got, [(&b"X-A"[..], wire)], "{value:?}");
    }
}

#[test]
fn latin1_values_go_out_as_single_bytes() {
    // PEP 3333: the server encodes header strings as latin-1.
    let (out, _) =
        exchange(GET11, "200 OK", &[("X-Name", "caf\u{E9}"), ("Content-Length", "0")], &[]);
    assert_eq!(
        show(&out),
        show(b"HTTP/1.1 200 OK\r\nX-Name: caf\xE9\r\nContent-Length: 0\r\n\r\n")
    );
    assert_eq!(out, b"HTTP/1.1 200 OK\r\nX-Name: caf\xE9\r\nContent-Length: 0\r\n\r\n");
    let (out, _) = exchange(GET11, "200 D\u{E9}j\u{E0} vu", &[("Content-Length", "0")], &[]);
    assert_eq!(out, b"HTTP/1.1 200 D\xE9j\xE0 vu\r\nContent-Length: 0\r\n\r\n");
}

#[test]
fn hop_by_hop_headers_are_refused() {
    // PEP 3333: hop-by-hop headers are the server's business (wsgiref's list), in any case.
    let names = [
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailers",
        "Transfer-Encoding",
        "Upgrade",
    ];
    for name in names {
        for variant in [name.to_owned(), name.to_ascii_lowercase(), name.to_ascii_uppercase()] {
            let got = ResponseHead::from_wsgi("200 OK", [("A", "b"), (variant.as_str(), "x")]);
            assert_eq!(got, Err(HopByHop { index: 1 }), "{variant}");
        }
    }
    // Names that merely contain a hop-by-hop name are end-to-end.
    for name in ["X-Connection", "Connection-Id", "Upgrade-Insecure-Requests", "TEx"] {
        assert!(ResponseHead::from_wsgi("200 OK", [(name, "x")]).is_ok(), "{name}");
    }
}

#[test]
fn content_length_validation() {
    // (headers, declared length or error)
    let rows: &[(Headers<'_>, Result<Option<u64>, ResponseError>)] = &[
        (&[("Content-Type", "a/b")], Ok(None)),
        // RFC 9110 §8.6: Content-Length = 1*DIGIT.
        (&[("Content-Length", "0")], Ok(Some(0))),
        (&[("Content-Length", "5")], Ok(Some(5))),
        (&[("content-length", "007")], Ok(Some(7))),
        (&[("Content-Length", "9999999999999999999")], Ok(Some(9_999_999_999_999_999_999))),
        (&[("Content-Length", "")], Err(BadContentLength { index: 0 })),
        (&[("Content-Length", "abc")], Err(BadContentLength { index: 0 })),
        (&[("Content-Length", "-1")], Err(BadContentLength { index: 0 })),
        (&[("Content-Length", "+5")], Err(BadContentLength { index: 0 })),
        (&[("Content-Length", " 5")], Err(BadContentLength { index: 0 })),
        (&[("Content-Length", "5 ")], Err(BadContentLength { index: 0 })),
        (&[("Content-Length", "5,5")], Err(BadContentLength { index: 0 })),
        (&[("Content-Length", "0x10")], Err(BadContentLength { index: 0 })),
        (&[("Content-Length", "1.0")], Err(BadContentLength { index: 0 })),
        // Overflow-safe: more digits than any u64 is refused, not wrapped.
        (&[("Content-Length", "18446744073709551616")], Err(BadContentLength { index: 0 })),
        (&[("Content-Length", "99999999999999999999999")], Err(BadContentLength { index: 0 })),
        // RFC 9110 §8.6: differing values cannot both frame the body.
        (&[("Content-Length", "5"), ("Content-Length", "6")], Err(BadContentLength { index: 1 })),
        (
            &[("Content-Length", "5"), ("X", "y"), ("CONTENT-LENGTH", "05x")],
            Err(BadContentLength { index: 2 }),
        ),
        // Equal repeats are the same length.
        (&[("Content-Length", "5"), ("content-length", "5")], Ok(Some(5))),
    ];
    for (headers, want) in rows {
        let got = from_wsgi("200 OK", headers).map(|h| h.content_length());
        assert_eq!(&got, want, "{headers:?}");
    }
}

#[test]
fn equal_content_lengths_give_one_field_on_the_wire() {
    let h = head("200 OK", &[("Content-Length", "5"), ("X-A", "1"), ("content-length", "5")]);
    let got: Vec<(&[u8], &[u8])> = h.headers().collect();
    assert_eq!(got, [(&b"Content-Length"[..], &b"5"[..]), (b"X-A", b"1")]);
    let (out, _) = exchange(
        GET11,
        "200 OK",
        &[("Content-Length", "5"), ("X-A", "1"), ("content-length", "5")],
        &[b"hello"],
    );
    assert_eq!(show(&out), "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello");
}

#[test]
fn set_content_length_if_absent() {
    // Absent: the server adds the length it knows (a one-item result list).
    let mut h = head("200 OK", &[("Content-Type", "text/plain")]);
    h.set_content_length_if_absent(11);
    assert_eq!(h.content_length(), Some(11));
    let got: Vec<(&[u8], &[u8])> = h.headers().collect();
    assert_eq!(got, [(&b"Content-Type"[..], &b"text/plain"[..]), (b"Content-Length", b"11")]);
    // A second call changes nothing.
    h.set_content_length_if_absent(12);
    assert_eq!(h.content_length(), Some(11));
    assert_eq!(h.headers().count(), 2);
    // Present: the application's value is honoured, never replaced.
    let mut h = head("200 OK", &[("Content-Length", "3")]);
    h.set_content_length_if_absent(99);
    assert_eq!(h.content_length(), Some(3));
    let got: Vec<(&[u8], &[u8])> = h.headers().collect();
    assert_eq!(got, [(&b"Content-Length"[..], &b"3"[..])]);
    // On the wire: Content-Length instead of chunked.
    let now = Instant::now();
    let mut conn = ready(GET11, Config::default(), now);
    let mut h = head("200 OK", &[]);
    h.set_content_length_if_absent(5);
    let mut out = Vec::new();
    conn.send_head(&h, &mut out).unwrap();
    conn.send_body(b"hello", &mut out).unwrap();
    conn.send_end(now, &mut out).unwrap();
    assert_eq!(show(&out), "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
}

// ---------------------------------------------------------------------------------------------
// StartResponse

#[test]
fn start_response_bookkeeping() {
    let ok = || head("200 OK", &[("X-Which", "first")]);
    let err = || head("500 Internal Server Error", &[("X-Which", "error")]);

    // Nothing before start_response: PEP 3333 requires it before any body byte.
    let mut sr = StartResponse::new();
    assert!(!sr.is_called());
    assert_eq!(sr.before_body(b"x"), Err(StartError::NotCalled));
    assert_eq!(sr.before_body(b""), Err(StartError::NotCalled));
    assert_eq!(sr.before_end(), Err(StartError::NotCalled));
    assert!(sr.pending_head().is_none());

    // A second call without exc_info is an error; the first head stands.
    sr.start(ok(), false).unwrap();
    assert!(sr.is_called() && !sr.is_sent());
    assert_eq!(sr.start(err(), false), Err(StartError::AlreadyCalled));
    assert_eq!(sr.pending_head().unwrap().status(), 200);

    // With exc_info before the head is sent: the new head replaces the old.
    sr.start(err(), true).unwrap();
    assert_eq!(sr.pending_head().unwrap().status(), 500);

    // PEP 3333: the head goes out with the first non-empty chunk; empty ones do not send it.
    assert_eq!(sr.before_body(b""), Ok(None));
    assert!(!sr.is_sent());
    let sent = sr.before_body(b"x").unwrap().unwrap();
    assert_eq!(sent.status(), 500);
    assert_eq!(sent.headers().collect::<Vec<_>>(), [(&b"X-Which"[..], &b"error"[..])]);
    assert!(sr.is_sent());
    assert!(sr.pending_head().is_none());
    // Only once.
    assert_eq!(sr.before_body(b"y"), Ok(None));
    assert_eq!(sr.before_body(b""), Ok(None));
    assert_eq!(sr.before_end(), Ok(None));

    // After the head went out: with exc_info the server must re-raise; without, still an error.
    assert_eq!(sr.start(ok(), true), Err(StartError::HeadAlreadySent));
    assert_eq!(sr.start(ok(), false), Err(StartError::AlreadyCalled));
}

#[test]
fn start_response_head_at_the_end() {
    // An empty body (or only empty chunks): the head goes out at the end.
    let mut sr = StartResponse::new();
    sr.start(head("204 No Content", &[]), false).unwrap();
    assert_eq!(sr.before_body(b""), Ok(None));
    let h = sr.before_end().unwrap().unwrap();
    assert_eq!(h.status(), 204);
    assert!(sr.is_sent());
    assert_eq!(sr.before_end(), Ok(None));

    // exc_info on the first call is a plain first call.
    let mut sr = StartResponse::new();
    sr.start(head("500 Oops", &[]), true).unwrap();
    assert_eq!(sr.before_end().unwrap().unwrap().status(), 500);

    // The pending head can be adjusted before it goes out.
    let mut sr = StartResponse::new();
    sr.start(head("200 OK", &[]), false).unwrap();
    sr.pending_head().unwrap().set_content_length_if_absent(4);
    assert_eq!(sr.before_body(b"data").unwrap().unwrap().content_length(), Some(4));
}

#[test]
fn start_error_messages_are_lowercase_and_name_the_rule() {
    for (e, needle) in [
        (StartError::AlreadyCalled, "without exc_info"),
        (StartError::HeadAlreadySent, "after the response head was sent"),
        (StartError::NotCalled, "without calling start_response()"),
    ] {
        assert!(e.to_string().contains(needle), "{e}");
    }
    assert_eq!(
        HopByHop { index: 3 }.to_string(),
        "response header #3 is hop-by-hop, which PEP 3333 reserves for the server"
    );
}

// ---------------------------------------------------------------------------------------------
// Response framing on the wire

#[test]
fn response_framing_on_the_wire() {
    // (request, status, headers, body chunks, exact wire bytes, closed after the end)
    type Row<'a> = (&'a [u8], &'a str, Headers<'a>, &'a [&'a [u8]], &'a [u8], bool);
    let rows: &[Row<'_>] = &[
        // RFC 9112 §6.3: HTTP/1.1 without Content-Length is chunked; the connection stays.
        (
            GET11, "200 OK", &[("Content-Type", "text/plain")], &[b"hello"],
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            false,
        ),
        // RFC 9112 §7.1: an empty chunk would end the body, so it is not written.
        (
            GET11, "200 OK", &[], &[b"he", b"", b"llo"],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
            false,
        ),
        // No body at all: just the last chunk.
        (
            GET11, "200 OK", &[], &[],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            false,
        ),
        // Chunk sizes are hex (RFC 9112 §7.1).
        (
            GET11, "200 OK", &[], &[b"0123456789abcdef"],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n",
            false,
        ),
        // The application's Content-Length frames the body (RFC 9112 §6.3 rule 6).
        (
            GET11, "200 OK", &[("Content-Length", "5")], &[b"hel", b"lo"],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            false,
        ),
        // RFC 9112 §9.6: the client's `Connection: close` is answered with one, then close.
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", "200 OK", &[], &[b"hello"],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            true,
        ),
        // HTTP/1.0 without Content-Length: close-delimited (RFC 9112 §6.3 rule 8).
        (
            GET10, "200 OK", &[], &[b"hello"],
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello",
            true,
        ),
        // ...even when the client asked for keep-alive: only the close can end the body.
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "200 OK", &[], &[b"hello"],
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello",
            true,
        ),
        // HTTP/1.0 with Content-Length and keep-alive asked: kept alive, and said so.
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "200 OK", &[("Content-Length", "5")], &[b"hello"],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
            false,
        ),
        // HTTP/1.0 with Content-Length, no keep-alive: closed (RFC 9112 §9.3).
        (
            GET10, "200 OK", &[("Content-Length", "5")], &[b"hello"],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            true,
        ),
        // HEAD: no body bytes (RFC 9110 §9.3.2), but the application's Content-Length stays.
        (
            b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", "200 OK", &[("Content-Length", "5")], &[b"hello"],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            false,
        ),
        // HEAD without Content-Length: no body and no chunked framing either.
        (
            b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", "200 OK", &[("Content-Type", "a/b")], &[b"hello"],
            b"HTTP/1.1 200 OK\r\nContent-Type: a/b\r\n\r\n",
            false,
        ),
        // HEAD on HTTP/1.0 with keep-alive: no close needed to end an empty body.
        (
            b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "200 OK", &[], &[b"hello"],
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n",
            false,
        ),
        // 204: no body, and RFC 9110 §8.6 forbids its Content-Length, so it is left off the wire.
        (
            GET11, "204 No Content", &[("Content-Length", "0"), ("X-A", "1")], &[],
            b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
            false,
        ),
        (
            GET11, "204 No Content", &[], &[b"ignored"],
            b"HTTP/1.1 204 No Content\r\n\r\n",
            false,
        ),
        // 304: no body (RFC 9110 §15.4.5); its Content-Length (the selected representation's)
        // is allowed and kept.
        (
            GET11, "304 Not Modified", &[("ETag", "\"x\""), ("Content-Length", "5")], &[b"hello"],
            b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 5\r\n\r\n",
            false,
        ),
        (
            GET11, "304 Not Modified", &[], &[],
            b"HTTP/1.1 304 Not Modified\r\n\r\n",
            false,
        ),
        // Headers go out in the order given, names in the case given.
        (
            GET11, "404 Not Found", &[("x-b", "2"), ("X-A", "1"), ("Content-Length", "0")], &[],
            b"HTTP/1.1 404 Not Found\r\nx-b: 2\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n",
            false,
        ),
    ];
    for &(request, status, headers, body, want, closed) in rows {
        let (out, is_closed) = exchange(request, status, headers, body);
        let what = format!("{} → {status} {headers:?}", show(request));
        assert_eq!(show(&out), show(want), "{what}");
        assert_eq!(out, want, "{what}");
        assert_eq!(is_closed, closed, "{what}");
    }
}

#[test]
fn content_length_is_never_exceeded() {
    let now = Instant::now();
    let mut conn = ready(GET11, Config::default(), now);
    let mut out = Vec::new();
    conn.send_head(&head("200 OK", &[("Content-Length", "3")]), &mut out).unwrap();
    // DESIGN.md: never more bytes than declared; the excess is dropped.
    assert_eq!(conn.send_body(b"hello", &mut out), Err(UsageError::BodyTooLong { declared: 3 }));
    assert_eq!(conn.send_body(b"!", &mut out), Err(UsageError::BodyTooLong { declared: 3 }));
    assert_eq!(show(&out), "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhel");
    // The declared bytes were all sent: the message is complete and the connection stays.
    conn.send_end(now, &mut out).unwrap();
    assert_eq!(show(&out), "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhel");
    assert!(!conn.is_closed());
}

#[test]
fn short_body_closes_the_connection() {
    let now = Instant::now();
    let mut conn = ready(GET11, Config::default(), now);
    let mut out = Vec::new();
    conn.send_head(&head("200 OK", &[("Content-Length", "5")]), &mut out).unwrap();
    conn.send_body(b"hel", &mut out).unwrap();
    // RFC 9112 §6.3: the client would wait for the rest; only a close tells it the truth.
    assert_eq!(
        conn.send_end(now, &mut out),
        Err(UsageError::BodyTooShort { declared: 5, sent: 3 })
    );
    assert!(conn.is_closed());
    assert_eq!(show(&out), "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel");
    assert_eq!(conn.send_head(&head("200 OK", &[]), &mut out), Err(UsageError::Closed));
}

#[test]
fn close_delimited_body_on_http10() {
    let now = Instant::now();
    let mut conn = ready(GET10, Config::default(), now);
    let mut out = Vec::new();
    conn.send_head(&head("200 OK", &[("Content-Type", "text/plain")]), &mut out).unwrap();
    conn.send_body(b"hel", &mut out).unwrap();
    conn.send_body(b"lo", &mut out).unwrap();
    assert!(!conn.is_closed());
    conn.send_end(now, &mut out).unwrap();
    // RFC 9112 §6.3 rule 8: the close is the end of the body.
    assert!(conn.is_closed());
    assert_eq!(
        show(&out),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nhello"
    );
}

#[test]
fn date_header() {
    let date = HttpDate::from(UNIX_EPOCH + Duration::from_secs(784_111_777));
    // (app headers, exact head)
    let rows: &[(Headers<'_>, &str)] = &[
        // RFC 9110 §6.6.1: an origin server with a clock sends Date.
        (
            &[("Content-Length", "0")],
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
        ),
        // The application's own Date is kept and not duplicated, whatever its case.
        (
            &[("Date", "Mon, 01 Jan 2001 00:00:00 GMT"), ("Content-Length", "0")],
            "HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            &[("date", "x"), ("Content-Length", "0")],
            "HTTP/1.1 200 OK\r\ndate: x\r\nContent-Length: 0\r\n\r\n",
        ),
    ];
    for (headers, want) in rows {
        let now = Instant::now();
        let mut conn = ready(GET11, Config::default(), now);
        conn.set_date(date);
        let mut out = Vec::new();
        conn.send_head(&head("200 OK", headers), &mut out).unwrap();
        assert_eq!(show(&out), *want, "{headers:?}");
    }
    // No date set (the core reads no clock): no Date header.
    let (out, _) = exchange(GET11, "200 OK", &[("Content-Length", "0")], &[]);
    assert_eq!(show(&out), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
}

#[test]
fn http_date_format() {
    // (seconds since the epoch, IMF-fixdate of RFC 9110 §5.6.7)
    let rows: &[(u64, &str)] = &[
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 GMT"),
        // Clamped: a wrong clock never fails a response.
        (253_402_300_800, "Fri, 31 Dec 9999 23:59:59 GMT"),
        (u64::MAX / 4, "Fri, 31 Dec 9999 23:59:59 GMT"),
    ];
    for &(secs, want) in rows {
        let date = HttpDate::from(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(show(date.as_bytes()), want, "{secs}");
        assert_eq!(format!("{date:?}"), want);
    }
    // Before the epoch: clamped to it.
    let date = HttpDate::from(UNIX_EPOCH - Duration::from_secs(1));
    assert_eq!(date.as_bytes(), b"Thu, 01 Jan 1970 00:00:00 GMT");
}

#[test]
fn server_header() {
    let mut config = Config::default();
    config.set_server_header(Some("wsgi-rs/0.1")).unwrap();
    assert_eq!(config.server_header(), Some(&b"wsgi-rs/0.1"[..]));
    let date = HttpDate::from(UNIX_EPOCH + Duration::from_secs(784_111_777));
    // (app headers, with a date, exact head)
    let rows: &[(Headers<'_>, bool, &str)] = &[
        // RFC 9110 §10.2.4: Server, from the configuration.
        (
            &[("Content-Length", "0")],
            false,
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nServer: wsgi-rs/0.1\r\n\r\n",
        ),
        // Date before Server.
        (
            &[("Content-Length", "0")],
            true,
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: wsgi-rs/0.1\r\n\r\n",
        ),
        // The application's own Server wins and is not duplicated.
        (
            &[("Server", "my-app"), ("Content-Length", "0")],
            false,
            "HTTP/1.1 200 OK\r\nServer: my-app\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            &[("SERVER", "my-app"), ("Content-Length", "0")],
            false,
            "HTTP/1.1 200 OK\r\nSERVER: my-app\r\nContent-Length: 0\r\n\r\n",
        ),
    ];
    for &(headers, with_date, want) in rows {
        let now = Instant::now();
        let mut conn = ready(GET11, config.clone(), now);
        if with_date {
            conn.set_date(date);
        }
        let mut out = Vec::new();
        conn.send_head(&head("200 OK", headers), &mut out).unwrap();
        assert_eq!(show(&out), want, "{headers:?}");
    }
    // Unset again: no Server header.
    config.set_server_header(None).unwrap();
    assert_eq!(config.server_header(), None);
    let now = Instant::now();
    let mut conn = ready(GET11, config.clone(), now);
    let mut out = Vec::new();
    conn.send_head(&head("200 OK", &[("Content-Length", "0")]), &mut out).unwrap();
    assert_eq!(show(&out), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    // A value that could split the response is refused, and the old one kept.
    config.set_server_header(Some("ok")).unwrap();
    for bad in ["a\r\nX-Injected: 1", "a\nb", "a\0", "a\u{7f}"] {
        assert_eq!(
            config.set_server_header(Some(bad)),
            Err(BadHeaderValue { index: 0 }),
            "{bad:?}"
        );
        assert_eq!(config.server_header(), Some(&b"ok"[..]));
    }
}

#[test]
fn usage_errors_in_order() {
    let now = Instant::now();
    let ok = || head("200 OK", &[("Content-Length", "2")]);
    let mut out = Vec::new();

    // No request yet: nothing to answer.
    let mut conn = Connection::new(Config::default(), now);
    assert_eq!(conn.send_head(&ok(), &mut out), Err(UsageError::NoRequest));
    assert_eq!(conn.send_body(b"x", &mut out), Err(UsageError::NoRequest));
    assert_eq!(conn.send_end(now, &mut out), Err(UsageError::NoRequest));
    assert!(out.is_empty());

    // A request: the body and the end need the head first.
    let mut conn = ready(GET11, Config::default(), now);
    assert_eq!(conn.send_body(b"hi", &mut out), Err(UsageError::HeadNotSent));
    assert_eq!(conn.send_end(now, &mut out), Err(UsageError::HeadNotSent));
    assert!(out.is_empty());
    // The head once only.
    conn.send_head(&ok(), &mut out).unwrap();
    let after_head = out.len();
    assert_eq!(conn.send_head(&ok(), &mut out), Err(UsageError::HeadAlreadySent));
    assert_eq!(out.len(), after_head);
    conn.send_body(b"hi", &mut out).unwrap();
    conn.send_end(now, &mut out).unwrap();
    assert_eq!(show(&out), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
    // Kept alive, between requests: nothing to answer again.
    assert!(!conn.is_closed());
    assert_eq!(conn.send_body(b"x", &mut out), Err(UsageError::NoRequest));
    assert_eq!(conn.send_head(&ok(), &mut out), Err(UsageError::NoRequest));

    // The response ended while the request body is still being read (and drained).
    let mut conn = Connection::new(Config::default(), now);
    conn.handle_input(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n", now);
    assert!(matches!(conn.poll_event(), Ok(Some(Event::Request(_)))));
    let mut out = Vec::new();
    conn.send_head(&ok(), &mut out).unwrap();
    conn.send_body(b"hi", &mut out).unwrap();
    conn.send_end(now, &mut out).unwrap();
    assert_eq!(conn.send_body(b"x", &mut out), Err(UsageError::ResponseEnded));
    assert_eq!(conn.send_end(now, &mut out), Err(UsageError::ResponseEnded));
    assert_eq!(conn.send_head(&ok(), &mut out), Err(UsageError::HeadAlreadySent));

    // After the close, every command says so.
    let mut conn = ready(GET10, Config::default(), now);
    let mut out = Vec::new();
    conn.send_head(&ok(), &mut out).unwrap();
    conn.send_body(b"hi", &mut out).unwrap();
    conn.send_end(now, &mut out).unwrap();
    assert!(conn.is_closed());
    let len = out.len();
    assert_eq!(conn.send_head(&ok(), &mut out), Err(UsageError::Closed));
    assert_eq!(conn.send_body(b"x", &mut out), Err(UsageError::Closed));
    assert_eq!(conn.send_end(now, &mut out), Err(UsageError::Closed));
    assert_eq!(conn.send_continue(&mut out), Err(UsageError::Closed));
    assert_eq!(out.len(), len);

    // Aborted by the driver (the app failed after its head): closed too.
    let mut conn = ready(GET11, Config::default(), now);
    let mut out = Vec::new();
    conn.send_head(&ok(), &mut out).unwrap();
    conn.abort();
    assert!(conn.is_closed());
    assert_eq!(conn.send_body(b"hi", &mut out), Err(UsageError::Closed));
}

// ---------------------------------------------------------------------------------------------
// The pure pieces: response_framing and BodyEncoder

#[test]
fn response_framing_table() {
    use ResponseBody::{Chunked, CloseDelimited, Empty, Length};
    use Version::{Http10, Http11};
    // (version, HEAD request, status, app Content-Length, framing)
    let rows: &[(Version, bool, u16, Option<u64>, ResponseBody)] = &[
        // RFC 9112 §6.3 rule 1: HEAD, 1xx, 204 and 304 never carry body bytes.
        (Http11, true, 200, Some(5), Empty),
        (Http11, true, 200, None, Empty),
        (Http10, true, 200, None, Empty),
        (Http11, false, 100, None, Empty),
        (Http11, false, 101, None, Empty),
        (Http11, false, 199, Some(3), Empty),
        (Http11, false, 204, Some(0), Empty),
        (Http11, false, 204, None, Empty),
        (Http10, false, 204, None, Empty),
        (Http11, false, 304, Some(10), Empty),
        (Http10, false, 304, None, Empty),
        // Rule 6: the application's Content-Length, on either version.
        (Http11, false, 200, Some(5), Length(5)),
        (Http11, false, 200, Some(0), Length(0)),
        (Http10, false, 200, Some(5), Length(5)),
        (Http11, false, 404, Some(9), Length(9)),
        (Http11, false, 205, Some(0), Length(0)),
        // Otherwise chunked on HTTP/1.1 (RFC 9112 §6.1) ...
        (Http11, false, 200, None, Chunked),
        (Http11, false, 500, None, Chunked),
        (Http11, false, 303, None, Chunked),
        // ... and close-delimited on HTTP/1.0, which has no chunked coding (rule 8).
        (Http10, false, 200, None, CloseDelimited),
        (Http10, false, 599, None, CloseDelimited),
    ];
    for &(version, head_request, status, cl, want) in rows {
        assert_eq!(
            response_framing(version, head_request, status, cl),
            want,
            "{version:?} head={head_request} {status} {cl:?}"
        );
    }
}

#[test]
fn body_encoder_table() {
    // (framing, chunks, exact output after finish, body_bytes)
    type Row<'a> = (ResponseBody, &'a [&'a [u8]], &'a [u8], u64);
    let rows: &[Row<'_>] = &[
        // RFC 9112 §7.1: size in lowercase hex, CRLF, data, CRLF; last-chunk `0` and CRLF.
        (ResponseBody::Chunked, &[b"hello"], b"5\r\nhello\r\n0\r\n\r\n", 5),
        (ResponseBody::Chunked, &[b"foo bar"], b"7\r\nfoo bar\r\n0\r\n\r\n", 7),
        (ResponseBody::Chunked, &[], b"0\r\n\r\n", 0),
        (ResponseBody::Chunked, &[b"", b"a", b""], b"1\r\na\r\n0\r\n\r\n", 1),
        (ResponseBody::Chunked, &[b"ab", b"c"], b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n", 3),
        (ResponseBody::Chunked, &[&[b'x'; 10]], b"a\r\nxxxxxxxxxx\r\n0\r\n\r\n", 10),
        // Length: the bytes as they are.
        (ResponseBody::Length(5), &[b"hel", b"lo"], b"hello", 5),
        (ResponseBody::Length(0), &[], b"", 0),
        (ResponseBody::Length(0), &[b""], b"", 0),
        // Close-delimited: the bytes as they are; the close ends them.
        (ResponseBody::CloseDelimited, &[b"hel", b"lo"], b"hello", 5),
        (ResponseBody::CloseDelimited, &[], b"", 0),
        // Empty (HEAD, 204, 304): counted, never written.
        (ResponseBody::Empty, &[b"hello"], b"", 5),
        (ResponseBody::Empty, &[], b"", 0),
    ];
    for &(framing, chunks, want, sent) in rows {
        let mut encoder = BodyEncoder::new(framing);
        let mut out = Vec::new();
        for chunk in chunks {
            encoder.encode(chunk, &mut out).unwrap();
        }
        encoder.finish(&mut out).unwrap();
        assert_eq!(show(&out), show(want), "{framing:?} {chunks:?}");
        assert_eq!(encoder.body_bytes(), sent, "{framing:?} {chunks:?}");
        assert_eq!(encoder.is_close_delimited(), framing == ResponseBody::CloseDelimited);
        // Once finished, nothing more.
        assert_eq!(encoder.encode(b"x", &mut out), Err(UsageError::ResponseEnded));
        assert_eq!(encoder.finish(&mut out), Err(UsageError::ResponseEnded));
        assert_eq!(out, want);
    }
    // Large chunk sizes in hex.
    let mut out = Vec::new();
    let mut encoder = BodyEncoder::new(ResponseBody::Chunked);
    encoder.encode(&[0u8; 0x1234], &mut out).unwrap();
    assert!(out.starts_with(b"1234\r\n\0"), "{:?}", &out[..8]);
    assert!(out.ends_with(b"\0\r\n"));
    assert_eq!(out.len(), 6 + 0x1234 + 2);
}

#[test]
fn body_encoder_length_limits() {
    // Too long: the declared bytes go out, the rest is dropped and reported.
    let mut encoder = BodyEncoder::new(ResponseBody::Length(4));
    let mut out = Vec::new();
    encoder.encode(b"ab", &mut out).unwrap();
    assert_eq!(encoder.encode(b"cdef", &mut out), Err(UsageError::BodyTooLong { declared: 4 }));
    assert_eq!(out, b"abcd");
    assert_eq!(encoder.body_bytes(), 4);
    assert_eq!(encoder.encode(b"g", &mut out), Err(UsageError::BodyTooLong { declared: 4 }));
    assert_eq!(out, b"abcd");
    assert_eq!(encoder.finish(&mut out), Ok(()));

    // Too short: the end is refused (the message cannot be completed).
    let mut encoder = BodyEncoder::new(ResponseBody::Length(4));
    let mut out = Vec::new();
    encoder.encode(b"ab", &mut out).unwrap();
    assert_eq!(encoder.finish(&mut out), Err(UsageError::BodyTooShort { declared: 4, sent: 2 }));
    assert_eq!(out, b"ab");
    // An empty chunk is never too long.
    let mut encoder = BodyEncoder::new(ResponseBody::Length(0));
    assert_eq!(encoder.encode(b"", &mut out), Ok(()));
    assert_eq!(encoder.encode(b"x", &mut out), Err(UsageError::BodyTooLong { declared: 0 }));
    assert_eq!(out, b"ab");
}

/// Body bytes a driver sends itself (sendfile): the framing around them, per framing.
#[test]
fn external_body_framing() {
    use wsgi_core::ExternalBody;
    #[rustfmt::skip]
    let rows: &[(ResponseBody, u64, &[u8], ExternalBody)] = &[
        // RFC 9112 §7.1: a chunk of the file's length, its CRLF after the data.
        (ResponseBody::Chunked, 4096, b"1000\r\n", ExternalBody { send: 4096, suffix: b"\r\n", error: None }),
        // Content-Length: never more than declared (10 here), no framing bytes; past it, the
        // error `encode` returns, for the caller to report.
        (ResponseBody::Length(10), 4, b"", ExternalBody { send: 4, suffix: b"", error: None }),
        (ResponseBody::Length(10), 10, b"", ExternalBody { send: 10, suffix: b"", error: None }),
        (ResponseBody::Length(10), 25, b"", ExternalBody { send: 10, suffix: b"", error: Some(UsageError::BodyTooLong { declared: 10 }) }),
        // HEAD, 204, 304: nothing is sent at all, and that is no error.
        (ResponseBody::Empty, 4096, b"", ExternalBody { send: 0, suffix: b"", error: None }),
        // HTTP/1.0 without a length: the bytes as they are.
        (ResponseBody::CloseDelimited, 7, b"", ExternalBody { send: 7, suffix: b"", error: None }),
        // Zero bytes: nothing, not even an (ending) empty chunk.
        (ResponseBody::Chunked, 0, b"", ExternalBody { send: 0, suffix: b"", error: None }),
    ];
    for &(framing, len, prefix, expected) in rows {
        let mut encoder = BodyEncoder::new(framing);
        let mut out = Vec::new();
        assert_eq!(encoder.encode_external(len, &mut out), Ok(expected), "{framing:?} {len}");
        assert_eq!(out, prefix, "{framing:?} {len}");
    }
    // The bytes count toward the Content-Length: the body is then complete.
    let mut encoder = BodyEncoder::new(ResponseBody::Length(10));
    let mut out = Vec::new();
    let _ = encoder.encode_external(10, &mut out).unwrap();
    assert_eq!(encoder.finish(&mut out), Ok(()));
    assert_eq!(encoder.encode_external(1, &mut out), Err(UsageError::ResponseEnded));
    // Once the Content-Length is used up, any more bytes are all excess.
    let mut encoder = BodyEncoder::new(ResponseBody::Length(10));
    let _ = encoder.encode_external(6, &mut out).unwrap();
    let excess = encoder.encode_external(6, &mut out).unwrap();
    assert_eq!((excess.send, excess.error), (4, Some(UsageError::BodyTooLong { declared: 10 })));
    let after = encoder.encode_external(3, &mut out).unwrap();
    assert_eq!((after.send, after.error), (0, Some(UsageError::BodyTooLong { declared: 10 })));
    assert_eq!(encoder.finish(&mut out), Ok(()));
}

/// `response_body` gives the body's encoder while a response is sent, and it says when the body
/// can take no more bytes (so that a driver may end the response early): after the head, after
/// each chunk; no encoder before the head or after the end. A complete body's end writes
/// nothing, and the copy answers a later chunk as the connection would.
#[test]
fn response_body_completes_with_the_framing() {
    const HEAD11: &[u8] = b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n";
    // rule, request, status, headers, complete after the head, chunks with complete after each
    type Row<'a> = (&'a str, &'a [u8], &'a str, Headers<'a>, bool, &'a [(&'a [u8], bool)]);
    #[rustfmt::skip]
    let rows: &[Row<'_>] = &[
        ("Content-Length: complete once reached", GET11, "200 OK", &[("Content-Length", "5")], false, &[(b"hel", false), (b"lo", true)]),
        ("Content-Length 0: complete at once", GET11, "200 OK", &[("Content-Length", "0")], true, &[]),
        ("past the Content-Length: complete", GET11, "200 OK", &[("Content-Length", "2")], false, &[(b"hello", true)]),
        ("chunked: the end writes the last chunk", GET11, "200 OK", &[], false, &[(b"hello", false)]),
        ("close-delimited (HTTP/1.0): only the close ends it", GET10, "200 OK", &[], false, &[(b"hello", false)]),
        ("HEAD: no body bytes go", HEAD11, "200 OK", &[("Content-Length", "5")], true, &[(b"hello", true)]),
        ("204: no body", GET11, "204 No Content", &[], true, &[]),
        ("304: no body", GET11, "304 Not Modified", &[], true, &[]),
    ];
    for &(rule, request, status, headers, at_head, chunks) in rows {
        let now = Instant::now();
        let mut conn = ready(request, Config::default(), now);
        let mut out = Vec::new();
        let complete = |conn: &Connection| conn.response_body().map(|b| b.is_complete());
        assert_eq!(complete(&conn), None, "{rule}: before the head");
        conn.send_head(&head(status, headers), &mut out).unwrap();
        assert_eq!(complete(&conn), Some(at_head), "{rule}: after the head");
        for &(chunk, done) in chunks {
            let _ = conn.send_body(chunk, &mut out);
            assert_eq!(complete(&conn), Some(done), "{rule}: after {:?}", show(chunk));
        }
        let mut copy = conn.response_body().unwrap();
        let before_end = out.len();
        let late = conn.send_body(b"x", &mut out);
        out.truncate(before_end);
        if copy.is_complete() {
            assert_eq!(copy.encode(b"x", &mut Vec::new()), late, "{rule}: a late chunk");
        }
        conn.send_end(now, &mut out).unwrap();
        if copy.is_complete() {
            assert_eq!(out.len(), before_end, "{rule}: a complete body's end wrote bytes");
        }
        assert_eq!(complete(&conn), None, "{rule}: after the end");
    }
}
