#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The request side of RFC 9112 / RFC 9110 as table tests: exact bytes in, events and exact
//! bytes out, one row per rule, each row commented with the section it checks.
//!
//! Most rows go through [`serve`], a tiny in-memory driver: it feeds the bytes, drains events,
//! answers each complete request with `200 OK` + `ok`, answers each protocol error with
//! `send_error`, and records what it saw. Status lines and messages of error answers are spelled
//! out in [`wire_error`], independently of the code under test.

use std::time::{Duration, Instant};

use wsgi_core::{Config, Connection, Event, ProtocolError, ResponseHead};

/// What the driver saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    /// A request head: `METHOD target VERSION`.
    Req(String),
    Body(Vec<u8>),
    End,
    Closed,
    Err(ProtocolError),
}

fn req(line: &str) -> Ev {
    Ev::Req(line.to_owned())
}

fn body(b: &[u8]) -> Ev {
    Ev::Body(b.to_vec())
}

/// The events of one whole request: its head, its body pieces, its end.
fn served(line: &str, pieces: &[&[u8]]) -> Vec<Ev> {
    let mut events = vec![req(line)];
    events.extend(pieces.iter().map(|p| body(p)));
    events.push(Ev::End);
    events
}

/// `GET / HTTP/1.1`, `Host: a`, then `fields` (each ending in CRLF) and the empty line.
fn get(fields: &[u8]) -> Vec<u8> {
    [b"GET / HTTP/1.1\r\nHost: a\r\n", fields, b"\r\n"].concat()
}

/// `GET / HTTP/1.0`, then `fields` and the empty line.
fn get10(fields: &[u8]) -> Vec<u8> {
    [b"GET / HTTP/1.0\r\n", fields, b"\r\n"].concat()
}

/// `POST / HTTP/1.1`, `Host: a`, `fields`, the empty line, then `body`.
fn post(fields: &[u8], body: &[u8]) -> Vec<u8> {
    [b"POST / HTTP/1.1\r\nHost: a\r\n", fields, b"\r\n", body].concat()
}

/// A chunked POST whose body bytes are `chunks`.
fn chunked(chunks: &[u8]) -> Vec<u8> {
    post(b"Transfer-Encoding: chunked\r\n", chunks)
}

/// A request line, then `Host: a` and the empty line.
fn line(request_line: &[u8]) -> Vec<u8> {
    [request_line, b"\r\nHost: a\r\n\r\n"].concat()
}

/// The request line of `input`, for naming its head event.
fn first_line(input: &[u8]) -> String {
    let end = input.windows(2).position(|w| w == b"\r\n").unwrap();
    String::from_utf8(input[..end].to_vec()).unwrap()
}

/// The driver's answer to every complete request.
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
/// The same answer when the connection will not be reused.
const OK_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
/// The same answer to a kept-alive HTTP/1.0 request.
const OK_KEEP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";
/// The interim response of RFC 9110 §15.2.1.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Everything one conversation produced.
#[derive(Debug, Default)]
struct Outcome {
    events: Vec<Ev>,
    out: Vec<u8>,
    closed: bool,
}

/// Input bytes, the events and wire bytes they must produce, and whether the connection ends.
type Conversation = (Vec<u8>, Vec<Ev>, Vec<u8>, bool);

fn config(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    f(&mut c);
    c
}

fn ok_head() -> ResponseHead {
    ResponseHead::from_wsgi("200 OK", [("Content-Length", "2")]).unwrap()
}

fn respond(conn: &mut Connection, now: Instant, out: &mut Vec<u8>) {
    conn.send_head(&ok_head(), out).unwrap();
    conn.send_body(b"ok", out).unwrap();
    conn.send_end(now, out).unwrap();
}

fn describe(event: Event) -> Ev {
    match event {
        Event::Request(head) => Ev::Req(format!(
            "{} {} {}",
            head.method(),
            String::from_utf8_lossy(head.target()),
            head.version().as_str()
        )),
        Event::Body(b) => {
            assert!(!b.is_empty(), "Event::Body is never empty");
            Ev::Body(b.to_vec())
        }
        Event::EndOfBody => Ev::End,
        Event::Closed => Ev::Closed,
    }
}

/// Drains `conn` the way a driver does, answering requests and errors into `o.out`.
fn drive(conn: &mut Connection, now: Instant, o: &mut Outcome) {
    loop {
        match conn.poll_event() {
            Ok(None) => break,
            Ok(Some(event)) => {
                let ev = describe(event);
                o.events.push(ev.clone());
                match ev {
                    Ev::End => {
                        // RFC 9112 §9.3.2: a pipelined request waits until this response ends.
                        assert!(matches!(conn.poll_event(), Ok(None)), "next head surfaced early");
                        respond(conn, now, &mut o.out);
                    }
                    Ev::Closed => assert!(conn.is_closed()),
                    _ => {}
                }
            }
            Err(e) => {
                o.events.push(Ev::Err(e));
                conn.send_error(&e, &mut o.out);
                // Errors are sticky.
                assert!(matches!(conn.poll_event(), Err(again) if again == e));
                break;
            }
        }
    }
    o.closed = conn.is_closed();
}

fn serve_with(config: Config, input: &[u8], eof: bool) -> Outcome {
    let now = Instant::now();
    let mut conn = Connection::new(config, now);
    let mut o = Outcome::default();
    conn.handle_input(input, now);
    if eof {
        conn.handle_eof(now);
    }
    drive(&mut conn, now, &mut o);
    o
}

fn serve(input: &[u8]) -> Outcome {
    serve_with(Config::default(), input, false)
}

/// The bytes `send_error` must write for `e`: status and message spelled out here.
fn wire_error(e: ProtocolError) -> Vec<u8> {
    use ProtocolError::*;
    let (status, message) = match e {
        BadRequestLine => ("400 Bad Request", "malformed request line"),
        BadTarget => ("400 Bad Request", "malformed request target"),
        TargetTooLong => ("414 URI Too Long", "request line too long"),
        HeadTooLarge => ("431 Request Header Fields Too Large", "request head too large"),
        TooManyFields => ("431 Request Header Fields Too Large", "too many header fields"),
        FieldTooLarge => ("431 Request Header Fields Too Large", "header field line too long"),
        BadFieldName => ("400 Bad Request", "invalid header field name"),
        BadFieldValue => ("400 Bad Request", "invalid byte in header field value"),
        ObsoleteLineFolding => ("400 Bad Request", "obsolete line folding in header field"),
        WhitespaceBeforeColon => {
            ("400 Bad Request", "whitespace between header field name and colon")
        }
        BareLineEnding => ("400 Bad Request", "line not terminated by CRLF"),
        MissingHost => ("400 Bad Request", "HTTP/1.1 request without Host"),
        MultipleHost => ("400 Bad Request", "more than one Host header field"),
        BadHost => ("400 Bad Request", "invalid Host"),
        BadContentLength => ("400 Bad Request", "invalid Content-Length"),
        ConflictingContentLength => ("400 Bad Request", "conflicting Content-Length values"),
        TransferEncodingWithContentLength => {
            ("400 Bad Request", "both Transfer-Encoding and Content-Length")
        }
        TransferEncodingOnHttp10 => ("400 Bad Request", "Transfer-Encoding in an HTTP/1.0 request"),
        BadTransferEncoding => {
            ("400 Bad Request", "Transfer-Encoding must end in a single chunked")
        }
        UnsupportedTransferCoding => ("501 Not Implemented", "unsupported transfer coding"),
        BadChunkSize => ("400 Bad Request", "invalid chunk size"),
        BadChunkExtension => ("400 Bad Request", "invalid chunk extension"),
        ChunkLineTooLong => ("400 Bad Request", "chunk size line too long"),
        BadChunkDelimiter => ("400 Bad Request", "chunk data not followed by CRLF"),
        BadTrailer => ("400 Bad Request", "invalid trailer section"),
        BodyTooLarge => ("413 Content Too Large", "request body too large"),
        UnsupportedVersion => ("505 HTTP Version Not Supported", "unsupported HTTP version"),
        UnsupportedMethod => ("501 Not Implemented", "unsupported method"),
        IncompleteHead => ("400 Bad Request", "connection closed during the request head"),
        IncompleteBody => ("400 Bad Request", "connection closed during the request body"),
        HeadTimeout => ("408 Request Timeout", "request head not received in time"),
        BadProxyHeader => ("400 Bad Request", "invalid or missing PROXY protocol header"),
        other => panic!("no expected wire form for {other:?}"),
    };
    assert_eq!(e.status().to_string(), status[..3], "{e:?}");
    let text = format!("{}: {message}\n", &status[4..]);
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{text}",
        text.len()
    )
    .into_bytes()
}

/// Checks a conversation's events, exact output and end state.
fn check(row: &str, o: &Outcome, events: &[Ev], out: &[u8], closed: bool) {
    assert_eq!(o.events, events, "events of {row}");
    assert_eq!(o.out.escape_ascii().to_string(), out.escape_ascii().to_string(), "{row}");
    assert_eq!(o.closed, closed, "is_closed() after {row}");
}

/// Checks a rejection: `events`, then the error answered with its exact bytes (status line,
/// `Connection: close`), and the connection closed.
fn check_rejected(row: &str, o: &Outcome, events: &[Ev], e: ProtocolError) {
    let mut expected = events.to_vec();
    expected.push(Ev::Err(e));
    check(row, o, &expected, &wire_error(e), true);
}

fn name(input: &[u8]) -> String {
    input.escape_ascii().to_string()
}

// ---------------------------------------------------------------------------------------------
// Versions and keep-alive (RFC 9112 §9.3, §9.6)
// ---------------------------------------------------------------------------------------------

#[test]
fn versions_and_keep_alive() {
    #[rustfmt::skip]
    let rows: Vec<(Vec<u8>, &[u8], bool)> = vec![
        // RFC 9112 §9.3: HTTP/1.1 connections persist by default.
        (get(b""), OK, false),
        // RFC 9112 §9.3: HTTP/1.0 without keep-alive closes after the response.
        (get10(b""), OK_CLOSE, true),
        // RFC 9112 §9.3, Appendix C.2.2: 1.0 persists with `keep-alive`, and the answer says so.
        (get10(b"Connection: keep-alive\r\n"), OK_KEEP, false),
        // RFC 9110 §7.6.1: connection options are case-insensitive.
        (get10(b"Connection: Keep-Alive\r\n"), OK_KEEP, false),
        // RFC 9112 §9.6: `close` wins over `keep-alive`.
        (get10(b"Connection: keep-alive, close\r\n"), OK_CLOSE, true),
        // RFC 9112 §9.6: `Connection: close` from the client closes after the response.
        (get(b"Connection: close\r\n"), OK_CLOSE, true),
        // RFC 9110 §7.6.1: `close` among other options, any case.
        (get(b"Connection: te, CLOSE\r\n"), OK_CLOSE, true),
        // RFC 9110 §5.3: two Connection fields are one list.
        (get(b"Connection: keep-alive\r\nConnection: close\r\n"), OK_CLOSE, true),
        // RFC 9112 §9.3: `keep-alive` on 1.1 changes nothing; no Connection header is sent.
        (get(b"Connection: keep-alive\r\n"), OK, false),
        // RFC 9110 §7.6.1: `closed` is not the `close` option.
        (get(b"Connection: closed\r\n"), OK, false),
        // RFC 9112 §2.2: an empty line before the request line is ignored.
        ([b"\r\n".as_slice(), &get(b"")].concat(), OK, false),
    ];
    for (input, out, closed) in rows {
        let events = served(&first_line(input.trim_ascii_start()), &[]);
        check(&name(&input), &serve(&input), &events, out, closed);
    }
}

/// RFC 9112 §9.3, §6.3 rule 8: an HTTP/1.0 keep-alive request whose response has no
/// Content-Length gets a close-delimited body, so the connection cannot persist.
#[test]
fn http10_keep_alive_without_response_length_closes() {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), now);
    conn.handle_input(&get10(b"Connection: keep-alive\r\n"), now);
    assert!(matches!(conn.poll_event(), Ok(Some(Event::Request(_)))));
    assert!(matches!(conn.poll_event(), Ok(Some(Event::EndOfBody))));
    let mut out = Vec::new();
    let head = ResponseHead::from_wsgi("200 OK", [("Content-Type", "text/plain")]).unwrap();
    conn.send_head(&head, &mut out).unwrap();
    conn.send_body(b"hi", &mut out).unwrap();
    conn.send_end(now, &mut out).unwrap();
    assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nhi");
    assert!(conn.is_closed());
}

// ---------------------------------------------------------------------------------------------
// Pipelining (RFC 9112 §9.3.2)
// ---------------------------------------------------------------------------------------------

#[test]
fn pipelining_in_order() {
    #[rustfmt::skip]
    let rows: Vec<Conversation> = vec![
        // RFC 9112 §9.3.2: two requests in one read are answered in order.
        (
            [line(b"GET /1 HTTP/1.1"), line(b"GET /2 HTTP/1.1")].concat(),
            [
                served("GET /1 HTTP/1.1", &[]),
                served("GET /2 HTTP/1.1", &[]),
            ]
            .concat(),
            [OK, OK].concat(),
            false,
        ),
        // RFC 9112 §9.3.2: three, with a Content-Length body and a chunked body between.
        (
            [
                post(b"Content-Length: 3\r\n", b"abc"),
                chunked(b"2\r\nde\r\n0\r\n\r\n"),
                get(b""),
            ]
            .concat(),
            [
                served("POST / HTTP/1.1", &[b"abc"]),
                served("POST / HTTP/1.1", &[b"de"]),
                served("GET / HTTP/1.1", &[]),
            ]
            .concat(),
            [OK, OK, OK].concat(),
            false,
        ),
        // RFC 9112 §9.6: nothing after a request with `Connection: close` is served.
        (
            [get(b"Connection: close\r\n"), get(b"")].concat(),
            served("GET / HTTP/1.1", &[]),
            OK_CLOSE.to_vec(),
            true,
        ),
        // RFC 9112 §9.3: a 1.0 keep-alive request, then a plain 1.0 one that ends the connection.
        (
            [get10(b"Connection: keep-alive\r\n"), get10(b""), get(b"")].concat(),
            [served("GET / HTTP/1.0", &[]), served("GET / HTTP/1.0", &[])].concat(),
            [OK_KEEP, OK_CLOSE].concat(),
            true,
        ),
        // RFC 9112 §9.3.2: a bad request after a good one: the good one is answered first.
        (
            [get(b""), b"GET / HTTP/1.1\r\n\r\n".to_vec()].concat(),
            [
                served("GET / HTTP/1.1", &[]),
                vec![Ev::Err(ProtocolError::MissingHost)],
            ]
            .concat(),
            [OK, &wire_error(ProtocolError::MissingHost)].concat(),
            true,
        ),
    ];
    for (input, events, out, closed) in rows {
        check(&name(&input), &serve(&input), &events, &out, closed);
    }
}

/// RFC 9112 §9.3.2: the next head is not surfaced before the current response's `send_end`,
/// not even while its head or body is being written.
#[test]
fn pipelined_head_waits_for_send_end() {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), now);
    conn.handle_input(
        &[line(b"GET /1 HTTP/1.1"), line(b"GET /2 HTTP/1.1"), line(b"GET /3 HTTP/1.1")].concat(),
        now,
    );
    for n in 1..=3 {
        let Ok(Some(Event::Request(head))) = conn.poll_event() else { panic!("request {n}") };
        assert_eq!(head.target(), format!("/{n}").as_bytes());
        assert!(matches!(conn.poll_event(), Ok(Some(Event::EndOfBody))));
        let mut out = Vec::new();
        assert!(matches!(conn.poll_event(), Ok(None)), "before send_head of {n}");
        conn.send_head(&ok_head(), &mut out).unwrap();
        assert!(matches!(conn.poll_event(), Ok(None)), "before send_body of {n}");
        conn.send_body(b"ok", &mut out).unwrap();
        assert!(matches!(conn.poll_event(), Ok(None)), "before send_end of {n}");
        conn.send_end(now, &mut out).unwrap();
        assert_eq!(out, OK);
    }
    assert!(matches!(conn.poll_event(), Ok(None)));
    assert!(!conn.is_closed());
}

// ---------------------------------------------------------------------------------------------
// Request framing (RFC 9112 §6)
// ---------------------------------------------------------------------------------------------

#[test]
fn framing_accepted() {
    let hello = || served("POST / HTTP/1.1", &[b"hello"]);
    #[rustfmt::skip]
    let rows: Vec<(Vec<u8>, Vec<Ev>)> = vec![
        // RFC 9112 §6.3 rule 6: Content-Length delimits the body.
        (post(b"Content-Length: 5\r\n", b"hello"), hello()),
        // RFC 9110 §8.6: Content-Length 0 is an empty body.
        (post(b"Content-Length: 0\r\n", b""), served("POST / HTTP/1.1", &[])),
        // RFC 9110 §8.6: 1*DIGIT, leading zeros included.
        (post(b"Content-Length: 005\r\n", b"hello"), hello()),
        // RFC 9112 §5.1: whitespace around a field value is not part of it.
        (post(b"Content-Length:   5  \r\n", b"hello"), hello()),
        // RFC 9110 §8.6: equal duplicate fields are one value...
        (post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), hello()),
        // ...and so is an equal list.
        (post(b"Content-Length: 5, 5\r\n", b"hello"), hello()),
        // RFC 9112 §6.3: framing never looks at the method: a GET body is read.
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            served("GET / HTTP/1.1", &[b"hello"]),
        ),
        // RFC 9112 §6.3 rule 7: neither header: no body, even for POST.
        (post(b"", b""), served("POST / HTTP/1.1", &[])),
        // RFC 9112 §6.3 rule 4: a final `chunked` delimits the body.
        (chunked(b"5\r\nhello\r\n0\r\n\r\n"), hello()),
        // RFC 9112 §7: transfer-coding names are case-insensitive.
        (post(b"Transfer-Encoding: Chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"), hello()),
    ];
    for (input, events) in rows {
        check(&name(&input), &serve(&input), &events, OK, false);
    }
}

#[test]
fn framing_rejected() {
    use ProtocolError::*;
    #[rustfmt::skip]
    let rows: Vec<(Vec<u8>, ProtocolError)> = vec![
        // RFC 9110 §8.6: Content-Length = 1*DIGIT: no sign, suffix, blank, minus, hex, space.
        (post(b"Content-Length: +5\r\n", b"hello"), BadContentLength),
        (post(b"Content-Length: 5a\r\n", b"hello"), BadContentLength),
        (post(b"Content-Length:  \r\n", b"hello"), BadContentLength),
        (post(b"Content-Length: -1\r\n", b"hello"), BadContentLength),
        (post(b"Content-Length: 0x5\r\n", b"hello"), BadContentLength),
        (post(b"Content-Length: 5 5\r\n", b"hello"), BadContentLength),
        (post(b"Content-Length: 5.0\r\n", b"hello"), BadContentLength),
        // RFC 9110 §8.6, §15.5.14: over the configured maximum (1 GiB by default) is 413 at
        // once, no body byte awaited: one past it, 18 digits, 25 digits (past u64).
        (post(b"Content-Length: 1073741825\r\n", b""), BodyTooLarge),
        (post(b"Content-Length: 999999999999999999\r\n", b""), BodyTooLarge),
        (post(b"Content-Length: 1234567890123456789012345\r\n", b""), BodyTooLarge),
        // RFC 9112 §6.3 rule 5: differing values are an unrecoverable framing error.
        (post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b""), ConflictingContentLength),
        (post(b"Content-Length: 5, 6\r\n", b"hello"), ConflictingContentLength),
        (post(b"Content-Length: 5\r\nContent-Length: 5, 6\r\n", b""), ConflictingContentLength),
        // RFC 9112 §6.1: a coding other than chunked is not implemented (501)...
        (post(b"Transfer-Encoding: gzip, chunked\r\n", b""), UnsupportedTransferCoding),
        // ...also when split over two fields (RFC 9110 §5.3: one list).
        (
            post(
                b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                b"",
            ),
            UnsupportedTransferCoding,
        ),
        // RFC 9112 §6.3 rule 4: in a request, chunked must be the final coding (400).
        (post(b"Transfer-Encoding: chunked, gzip\r\n", b""), BadTransferEncoding),
        (post(b"Transfer-Encoding: gzip\r\n", b""), BadTransferEncoding),
        (post(b"Transfer-Encoding: \r\n", b""), BadTransferEncoding),
        // RFC 9112 §6.1: chunked must not be applied more than once.
        (post(b"Transfer-Encoding: chunked, chunked\r\n", b""), BadTransferEncoding),
        (
            post(
                b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                b"",
            ),
            BadTransferEncoding,
        ),
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing.
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            TransferEncodingOnHttp10,
        ),
        // RFC 9112 §6.1, §6.3 rule 3: TE with CL (request smuggling), either order; then close.
        (
            post(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b""),
            TransferEncodingWithContentLength,
        ),
        (
            post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b""),
            TransferEncodingWithContentLength,
        ),
    ];
    for (input, e) in rows {
        check_rejected(&name(&input), &serve(&input), &[], e);
    }
}

/// RFC 9110 §15.5.14: the maximum is configurable; at it is fine, past it is 413.
#[test]
fn content_length_against_configured_maximum() {
    let small = || config(|c| c.max_body_size = 10);
    let input = post(b"Content-Length: 10\r\n", b"0123456789");
    let events = served("POST / HTTP/1.1", &[b"0123456789"]);
    check("at max", &serve_with(small(), &input, false), &events, OK, false);
    let input = post(b"Content-Length: 11\r\n", b"");
    check_rejected(
        "over max",
        &serve_with(small(), &input, false),
        &[],
        ProtocolError::BodyTooLarge,
    );
}

// ---------------------------------------------------------------------------------------------
// Chunked bodies (RFC 9112 §7.1) through the Connection
// ---------------------------------------------------------------------------------------------

/// Runs a chunked request whose body bytes are `chunks`; `events` come after its head. A final
/// `Ev::Err` is a rejection; otherwise the request is answered `OK`.
fn check_chunked(cfg: Config, chunks: &[u8], events: &[Ev]) {
    let o = serve_with(cfg, &chunked(chunks), false);
    let mut expected = vec![req("POST / HTTP/1.1")];
    expected.extend_from_slice(events);
    match events.last() {
        Some(Ev::Err(e)) => check_rejected(&name(chunks), &o, &expected[..expected.len() - 1], *e),
        _ => check(&name(chunks), &o, &expected, OK, false),
    }
}

#[test]
fn chunked_bodies() {
    use Ev::{End, Err};
    use ProtocolError::*;
    let hello = || body(b"hello");
    #[rustfmt::skip]
    let rows: Vec<(&[u8], Vec<Ev>)> = vec![
        // RFC 9112 §7.1: chunks, then the last chunk and an empty trailer section.
        (b"5\r\nhello\r\n0\r\n\r\n", vec![hello(), End]),
        (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", vec![hello(), body(b" world"), End]),
        (b"0\r\n\r\n", vec![End]),
        // RFC 9112 §7.1: chunk-size is 1*HEXDIG, either case, leading zeros allowed.
        (b"A\r\n0123456789\r\n0\r\n\r\n", vec![body(b"0123456789"), End]),
        (b"a\r\n0123456789\r\n0\r\n\r\n", vec![body(b"0123456789"), End]),
        (b"0005\r\nhello\r\n000\r\n\r\n", vec![hello(), End]),
        // RFC 9112 §7.1.1: extensions `;name=token`, `;name="quoted string"`, `;name`, with BWS,
        // a quoted-pair, several, and on the last chunk; all ignored.
        (b"5;a=b\r\nhello\r\n0\r\n\r\n", vec![hello(), End]),
        (b"5;a=\"q s\"\r\nhello\r\n0\r\n\r\n", vec![hello(), End]),
        (b"5;a\r\nhello\r\n0\r\n\r\n", vec![hello(), End]),
        (b"5 ; a = b\r\nhello\r\n0\r\n\r\n", vec![hello(), End]),
        (b"5;a=\"x\\\"y\";b;c=d\r\nhello\r\n0\r\n\r\n", vec![hello(), End]),
        (b"5\r\nhello\r\n0;last=1\r\n\r\n", vec![hello(), End]),
        // RFC 9112 §7.1.2: trailer fields are parsed and discarded.
        (b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n", vec![hello(), End]),
        // RFC 9112 §7.1.1: malformed extensions.
        (b"5;\r\nhello\r\n0\r\n\r\n", vec![Err(BadChunkExtension)]),
        (b"5;a=\r\nhello\r\n0\r\n\r\n", vec![Err(BadChunkExtension)]),
        (b"5;a=\"x\r\nhello\r\n0\r\n\r\n", vec![Err(BadChunkExtension)]),
        (b"5;a b\r\nhello\r\n0\r\n\r\n", vec![Err(BadChunkExtension)]),
        (b"5;a=b c\r\nhello\r\n0\r\n\r\n", vec![Err(BadChunkExtension)]),
        // RFC 9112 §2.2, §7.1: strict CRLF; a bare LF or bare CR is refused, never guessed at.
        (b"5\nhello\r\n0\r\n\r\n", vec![Err(BareLineEnding)]),
        (b"5\r\r\nhello\r\n0\r\n\r\n", vec![Err(BareLineEnding)]),
        (b"5\r\nhello\r\n0\n\n", vec![hello(), Err(BareLineEnding)]),
        (b"5\r\nhello\r\n0\r\n\n", vec![hello(), Err(BareLineEnding)]),
        (b"5\r\nhello\r\n0\r\nX: 1\n\r\n", vec![hello(), Err(BareLineEnding)]),
        // RFC 9112 §7.1: chunk-size is hex digits only.
        (b"g\r\nhello\r\n0\r\n\r\n", vec![Err(BadChunkSize)]),
        (b"0x5\r\nhello\r\n0\r\n\r\n", vec![Err(BadChunkSize)]),
        (b"-5\r\nhello\r\n0\r\n\r\n", vec![Err(BadChunkSize)]),
        (b"+5\r\nhello\r\n0\r\n\r\n", vec![Err(BadChunkSize)]),
        (b" 5\r\nhello\r\n0\r\n\r\n", vec![Err(BadChunkSize)]),
        (b"5x\r\nhello\r\n0\r\n\r\n", vec![Err(BadChunkSize)]),
        (b"\r\nhello\r\n0\r\n\r\n", vec![Err(BadChunkSize)]),
        // RFC 9112 §7.1: "prevent parsing errors due to integer conversion overflows": 18 f's
        // and 2^64 overflow u64.
        (b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n", vec![Err(BadChunkSize)]),
        (b"10000000000000000\r\nhello\r\n0\r\n\r\n", vec![Err(BadChunkSize)]),
        // RFC 9110 §15.5.14: a chunk larger than the body maximum (1 GiB by default) is 413.
        (b"ffffffffffffffff\r\nhello\r\n0\r\n\r\n", vec![Err(BodyTooLarge)]),
        (b"40000001\r\nhello\r\n0\r\n\r\n", vec![Err(BodyTooLarge)]),
        // RFC 9112 §7.1: chunk-data is followed by exactly CRLF.
        (b"5\r\nhelloX\r\n0\r\n\r\n", vec![hello(), Err(BadChunkDelimiter)]),
        (b"5\r\nhello\n0\r\n\r\n", vec![hello(), Err(BadChunkDelimiter)]),
        (b"5\r\nhello\r0\r\n\r\n", vec![hello(), Err(BadChunkDelimiter)]),
        (b"3\r\nhello\r\n0\r\n\r\n", vec![body(b"hel"), Err(BadChunkDelimiter)]),
        // RFC 9112 §7.1.2, §5: a trailer field is `name: value` like any field.
        (b"0\r\nbad\r\n\r\n", vec![Err(BadTrailer)]),
        (b"0\r\nX : v\r\n\r\n", vec![Err(BadTrailer)]),
        (b"0\r\nX: a\x01b\r\n\r\n", vec![Err(BadTrailer)]),
        (b"0\r\n folded\r\n\r\n", vec![Err(BadTrailer)]),
    ];
    for (chunks, events) in rows {
        check_chunked(Config::default(), chunks, &events);
    }
}

#[test]
fn chunked_bodies_against_configured_limits() {
    use Ev::{End, Err};
    use ProtocolError::*;
    let line8 = || config(|c| c.max_chunk_line = 8);
    let body8 = || config(|c| c.max_body_size = 8);
    let fields2 = || config(|c| c.max_header_count = 2);
    #[rustfmt::skip]
    let rows: Vec<(Config, &[u8], Vec<Ev>)> = vec![
        // RFC 9112 §7.1.1: a server limits chunk extensions: the size line is bounded...
        (line8(), b"5;abcdef\r\nhello\r\n0\r\n\r\n", vec![body(b"hello"), End]),
        (line8(), b"5;abcdefg\r\nhello\r\n0\r\n\r\n", vec![Err(ChunkLineTooLong)]),
        (line8(), b"0000000005\r\nhello\r\n0\r\n\r\n", vec![Err(ChunkLineTooLong)]),
        // ...and refused before the line ends.
        (line8(), b"5;abcdefghijklmnop", vec![Err(ChunkLineTooLong)]),
        // RFC 9110 §15.5.14: the whole chunked body is bounded by max_body_size (413).
        (body8(), b"8\r\n12345678\r\n0\r\n\r\n", vec![body(b"12345678"), End]),
        (body8(), b"9\r\n123456789\r\n0\r\n\r\n", vec![Err(BodyTooLarge)]),
        (body8(), b"5\r\nhello\r\n4\r\nabcd\r\n0\r\n\r\n", vec![body(b"hello"), Err(BodyTooLarge)]),
        // RFC 9112 §7.1.2: the trailer section is bounded like a head (which here has two
        // fields: Host and Transfer-Encoding).
        (fields2(), b"0\r\nA: 1\r\nB: 2\r\n\r\n", vec![End]),
        (fields2(), b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", vec![Err(BadTrailer)]),
    ];
    for (cfg, chunks, events) in rows {
        check_chunked(cfg, chunks, &events);
    }
}

// ---------------------------------------------------------------------------------------------
// Head rejections, each answered with its status and `Connection: close`
// ---------------------------------------------------------------------------------------------

/// One answer written out by hand, so `wire_error` itself is checked against literal bytes.
#[test]
fn send_error_bytes_literal() {
    let o = serve(&post(b"Content-Length: 5a\r\n", b""));
    assert_eq!(o.events, [Ev::Err(ProtocolError::BadContentLength)]);
    assert_eq!(
        o.out,
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
          Content-Length: 36\r\nConnection: close\r\n\r\nBad Request: invalid Content-Length\n"
    );
    assert_eq!(o.out, wire_error(ProtocolError::BadContentLength));
    assert!(o.closed);
}

#[test]
fn head_rejected() {
    use ProtocolError::*;
    #[rustfmt::skip]
    let rows: Vec<(Vec<u8>, ProtocolError)> = vec![
        // RFC 9112 §3: request-line = method SP request-target SP HTTP-version, and nothing else.
        (b"GET\r\n\r\n".to_vec(), BadRequestLine),
        (b"GET /\r\n\r\n".to_vec(), BadRequestLine),
        (line(b"G@T / HTTP/1.1"), BadRequestLine),
        (line(b" GET / HTTP/1.1"), BadRequestLine),
        (line(b"GET  / HTTP/1.1"), BadRequestLine),
        (line(b"GET / HTTP/1.1 "), BadRequestLine),
        (line(b"GET / HTTP/1.1 extra"), BadRequestLine),
        (line(b"GET / HTTP/1.1.1"), BadRequestLine),
        // RFC 9112 §3: a target holds no whitespace (and is not misread as a bad version).
        (line(b"GET /a b HTTP/1.1"), BadRequestLine),
        (line(b"GET http://a b/ HTTP/1.1"), BadRequestLine),
        // RFC 9112 §2.3: HTTP-name is case-sensitive.
        (line(b"GET / http/1.1"), BadRequestLine),
        // RFC 9112 §2.2: a bare LF ends no line.
        (b"GET / HTTP/1.1\nHost: a\r\n\r\n".to_vec(), BareLineEnding),
        (b"GET / HTTP/1.1\r\nHost: a\n\r\n".to_vec(), BareLineEnding),
        // RFC 9112 §3.2: origin, absolute, authority (CONNECT) or asterisk form only.
        (line(b"GET a HTTP/1.1"), BadTarget),
        (line(b"GET ftp://a/ HTTP/1.1"), BadTarget),
        (line(b"GET /\x7f HTTP/1.1"), BadTarget),
        // RFC 9110 §4.2.5: a fragment is never sent in a target.
        (line(b"GET /a#f HTTP/1.1"), BadTarget),
        // RFC 9112 §3.2.4: `*` only with OPTIONS.
        (line(b"GET * HTTP/1.1"), BadTarget),
        // RFC 9112 §3.2.2: the authority of an absolute-form target must be valid.
        (line(b"GET http:///x HTTP/1.1"), BadHost),
        // RFC 9110 §9.3.6: CONNECT (authority form) is not implemented (501).
        (line(b"CONNECT a:443 HTTP/1.1"), UnsupportedMethod),
        // RFC 9110 §15.6.6: another major version, or a 1.x this server does not know: 505.
        (line(b"GET / HTTP/2.0"), UnsupportedVersion),
        (line(b"GET / HTTP/1.2"), UnsupportedVersion),
        (line(b"GET / HTTP/0.9"), UnsupportedVersion),
        // RFC 9112 §5.2: obs-fold is refused (400).
        (get(b"X: a\r\n b\r\n"), ObsoleteLineFolding),
        (get(b"X: a\r\n\tb\r\n"), ObsoleteLineFolding),
        // RFC 9112 §5.1: no whitespace between a field name and its colon (400).
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n".to_vec(), WhitespaceBeforeColon),
        (get(b"X\t: b\r\n"), WhitespaceBeforeColon),
        // RFC 9110 §5.1: field-name = token.
        (get(b": b\r\n"), BadFieldName),
        (get(b"X Y: b\r\n"), BadFieldName),
        (get(b"NoColon\r\n"), BadFieldName),
        // RFC 9110 §5.5: CR, LF, NUL and other controls in a value are refused. A CR or LF
        // inside a value is a line ending that is not CRLF (RFC 9112 §2.2).
        (get(b"X: a\rb\r\n"), BareLineEnding),
        (get(b"X: a\nb\r\n"), BareLineEnding),
        (get(b"X: a\x00b\r\n"), BadFieldValue),
        (get(b"X: a\x01b\r\n"), BadFieldValue),
        (get(b"X: a\x1bb\r\n"), BadFieldValue),
        (get(b"X: a\x7fb\r\n"), BadFieldValue),
        // RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host...
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), MissingHost),
        (get(b"Host: a\r\n"), MultipleHost),
        (get(b"host: b\r\n"), MultipleHost),
        (get10(b"Host: a\r\nHost: b\r\n"), MultipleHost),
        // ...and it is valid: RFC 9110 §7.2, Host = uri-host [ ":" port ].
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n".to_vec(), BadHost),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n".to_vec(), BadHost),
        (b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n".to_vec(), BadHost),
        (b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n".to_vec(), BadHost),
        (b"GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n".to_vec(), BadHost),
        (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n".to_vec(), BadHost),
        (b"GET / HTTP/1.1\r\nHost: []\r\n\r\n".to_vec(), BadHost),
        (b"GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n".to_vec(), BadHost),
        (b"GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n".to_vec(), BadHost),
        (b"GET / HTTP/1.1\r\nHost: [a]b]\r\n\r\n".to_vec(), BadHost),
        (b"GET / HTTP/1.1\r\nHost: [::1]:99999\r\n\r\n".to_vec(), BadHost),
    ];
    for (input, e) in rows {
        check_rejected(&name(&input), &serve(&input), &[], e);
    }
}

#[test]
fn head_accepted() {
    #[rustfmt::skip]
    let rows: Vec<Vec<u8>> = vec![
        // RFC 9112 §3.2: HTTP/1.0 may omit Host.
        get10(b"Connection: keep-alive\r\n"),
        // RFC 9112 §3.2: an empty Host is valid (a target without authority).
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: \r\n\r\n".to_vec(),
        // RFC 9110 §7.2, RFC 3986 §3.2.2-3: an IP literal, a port, an empty port.
        b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: [::1]:\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: A.Example:80\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: a:\r\n\r\n".to_vec(),
        // RFC 9112 §3.2.2: absolute form; its authority overrides Host.
        line(b"GET http://b/x?y HTTP/1.1"),
        // RFC 9112 §3.2.4: `OPTIONS *`.
        line(b"OPTIONS * HTTP/1.1"),
        // RFC 9110 §5.5: HTAB, SP and obs-text are allowed in a value.
        get(b"X: a\tb c\xe9\r\n"),
        // RFC 9110 §5.1, §9.1: field names are tokens, any case; methods are case-sensitive.
        b"GET / HTTP/1.1\r\nhOsT: a\r\nX-!#$%&'*+.^_`|~: 1\r\n\r\n".to_vec(),
        line(b"get / HTTP/1.1"),
    ];
    for input in rows {
        let line = first_line(&input);
        let out = if line.ends_with("HTTP/1.0") { OK_KEEP } else { OK };
        check(&name(&input), &serve(&input), &served(&line, &[]), out, false);
    }
}

#[test]
fn head_limits() {
    use ProtocolError::*;
    let line16 = || config(|c| c.max_request_line = 16);
    let head64 = || config(|c| c.max_head_size = 64);
    let fields2 = || config(|c| c.max_header_count = 2);
    let field16 = || config(|c| c.max_field_size = 16);
    #[rustfmt::skip]
    let rows: Vec<(Config, Vec<u8>, Option<ProtocolError>)> = vec![
        // RFC 9112 §3, RFC 9110 §15.5.15: a request line at the limit is fine, longer is 414...
        (line16(), line(b"GET /aa HTTP/1.1"), None),
        (line16(), line(b"GET /aaa HTTP/1.1"), Some(TargetTooLong)),
        // ...refused before the line is complete.
        (line16(), b"GET /aaaaaaaaaaaaaaaaaaaaaa".to_vec(), Some(TargetTooLong)),
        // RFC 6585 §5 (431): the head as a whole is bounded (57 and 66 bytes here)...
        (head64(), get(b"A: 0123456789\r\nB: 0123456789\r\n"), None),
        (head64(), get(b"A: 0123456789\r\nB: 0123456789\r\nC: 0123\r\n"), Some(HeadTooLarge)),
        (
            head64(),
            get(b"A: 0123456789012345678901234567890123456789")[..66].to_vec(),
            Some(HeadTooLarge),
        ),
        // ...so is the number of fields...
        (fields2(), get(b"A: 1\r\n"), None),
        (fields2(), get(b"A: 1\r\nB: 2\r\n"), Some(TooManyFields)),
        // ...and each field line.
        (field16(), get(b"X: 0123456789abc\r\n"), None),
        (field16(), get(b"X: 0123456789abcd\r\n"), Some(FieldTooLarge)),
        (field16(), get(b"X: 0123456789abcdefghij")[..45].to_vec(), Some(FieldTooLarge)),
    ];
    for (cfg, input, e) in rows {
        let o = serve_with(cfg, &input, false);
        match e {
            Some(e) => check_rejected(&name(&input), &o, &[], e),
            None => check(&name(&input), &o, &served(&first_line(&input), &[]), OK, false),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Expect: 100-continue (RFC 9110 §10.1.1)
// ---------------------------------------------------------------------------------------------

#[test]
fn expect_continue_written_once_before_the_body() {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), now);
    conn.handle_input(&post(b"Expect: 100-continue\r\nContent-Length: 5\r\n", b""), now);
    let Ok(Some(Event::Request(head))) = conn.poll_event() else { panic!("request") };
    assert!(head.expects_continue());
    assert!(matches!(conn.poll_event(), Ok(None)), "body not sent yet");
    let mut out = Vec::new();
    conn.send_continue(&mut out).unwrap();
    assert_eq!(out, CONTINUE);
    // Once only.
    conn.send_continue(&mut out).unwrap();
    assert_eq!(out, CONTINUE);
    conn.handle_input(b"hello", now);
    assert!(matches!(conn.poll_event(), Ok(Some(Event::Body(b))) if b == "hello"));
    assert!(matches!(conn.poll_event(), Ok(Some(Event::EndOfBody))));
    out.clear();
    respond(&mut conn, now, &mut out);
    assert_eq!(out, OK);
    assert!(!conn.is_closed());
}

/// RFC 9110 §15.2: an interim response never follows the final response's head.
#[test]
fn expect_continue_never_after_send_head() {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), now);
    conn.handle_input(&post(b"Expect: 100-continue\r\nContent-Length: 5\r\n", b""), now);
    let Ok(Some(Event::Request(head))) = conn.poll_event() else { panic!("request") };
    assert!(head.expects_continue());
    let mut out = Vec::new();
    conn.send_head(&ok_head(), &mut out).unwrap();
    // RFC 9110 §10.1.1: the client may or may not send the body now: not reusable.
    assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n");
    out.clear();
    conn.send_continue(&mut out).unwrap();
    assert_eq!(out, b"", "100 Continue after the final head");
    conn.send_body(b"ok", &mut out).unwrap();
    conn.send_continue(&mut out).unwrap();
    assert_eq!(out, b"ok");
    conn.send_end(now, &mut out).unwrap();
    assert!(conn.is_closed());
}

#[test]
fn expect_continue_rows() {
    #[rustfmt::skip]
    let rows: Vec<(Vec<u8>, bool, &[u8])> = vec![
        // RFC 9110 §10.1.1: the expectation is case-insensitive.
        (post(b"Expect: 100-Continue\r\nContent-Length: 1\r\n", b""), true, CONTINUE),
        // RFC 9110 §10.1.1: no expectation: send_continue does nothing.
        (post(b"Content-Length: 1\r\n", b""), false, b""),
        // RFC 9110 §10.1.1: another expectation is not 100-continue.
        (post(b"Expect: 200-ok\r\nContent-Length: 1\r\n", b""), false, b""),
        // RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an HTTP/1.0
        // request MUST ignore that expectation."
        (
            b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n".to_vec(),
            false,
            b"",
        ),
    ];
    for (input, expects, written) in rows {
        let now = Instant::now();
        let mut conn = Connection::new(Config::default(), now);
        conn.handle_input(&input, now);
        let Ok(Some(Event::Request(head))) = conn.poll_event() else { panic!("{}", name(&input)) };
        assert_eq!(head.expects_continue(), expects, "{}", name(&input));
        let mut out = Vec::new();
        conn.send_continue(&mut out).unwrap();
        assert_eq!(out, written, "{}", name(&input));
    }
}

/// RFC 9110 §10.1.1: once the whole body has arrived there is nothing to continue.
#[test]
fn expect_continue_noop_after_body_received() {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), now);
    conn.handle_input(&post(b"Expect: 100-continue\r\nContent-Length: 2\r\n", b"hi"), now);
    assert!(matches!(conn.poll_event(), Ok(Some(Event::Request(h))) if h.expects_continue()));
    assert!(matches!(conn.poll_event(), Ok(Some(Event::Body(_)))));
    assert!(matches!(conn.poll_event(), Ok(Some(Event::EndOfBody))));
    let mut out = Vec::new();
    conn.send_continue(&mut out).unwrap();
    assert_eq!(out, b"");
    respond(&mut conn, now, &mut out);
    assert_eq!(out, OK);
    assert!(!conn.is_closed());
}

// ---------------------------------------------------------------------------------------------
// Deadlines, with time passed in (no sleeping)
// ---------------------------------------------------------------------------------------------

fn timed() -> Config {
    config(|c| {
        c.head_timeout = Duration::from_secs(10);
        c.keep_alive_timeout = Duration::from_secs(3);
    })
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// RFC 9110 §15.5.9 (408): a partial first head past `head_timeout`, counted from the open.
#[test]
fn head_deadline_partial_head_is_408() {
    let t = Instant::now();
    let mut conn = Connection::new(timed(), t);
    assert_eq!(conn.poll_timeout(), Some(t + secs(10.0)));
    conn.handle_input(b"GET / HTTP/1.1\r\nHo", t + secs(1.0));
    assert!(matches!(conn.poll_event(), Ok(None)));
    assert_eq!(conn.poll_timeout(), Some(t + secs(10.0)));
    conn.handle_timeout(t + secs(9.999));
    assert!(matches!(conn.poll_event(), Ok(None)));
    conn.handle_timeout(t + secs(10.0));
    assert!(matches!(conn.poll_event(), Err(ProtocolError::HeadTimeout)));
    assert_eq!(conn.poll_timeout(), None);
    let mut out = Vec::new();
    conn.send_error(&ProtocolError::HeadTimeout, &mut out);
    assert_eq!(
        out,
        b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n\
          Content-Length: 51\r\nConnection: close\r\n\r\n\
          Request Timeout: request head not received in time\n"
    );
    assert_eq!(out, wire_error(ProtocolError::HeadTimeout));
    assert!(conn.is_closed());
}

/// RFC 9112 §9.5: a connection that sent nothing is closed quietly (no 408).
#[test]
fn head_deadline_silent_connection_closes_quietly() {
    let t = Instant::now();
    let mut conn = Connection::new(timed(), t);
    conn.handle_timeout(t + secs(9.5));
    assert!(matches!(conn.poll_event(), Ok(None)));
    conn.handle_timeout(t + secs(10.0));
    assert!(matches!(conn.poll_event(), Ok(Some(Event::Closed))));
    assert!(conn.is_closed());
    assert!(matches!(conn.poll_event(), Ok(None)));
    assert_eq!(conn.poll_timeout(), None);
    let mut out = Vec::new();
    conn.send_error(&ProtocolError::HeadTimeout, &mut out);
    assert_eq!(out, b"", "nothing is written on a closed connection");
}

/// RFC 9112 §9.5: idle time between requests is bounded by `keep_alive_timeout`, counted from
/// `send_end(now, ..)`; no deadline runs while a request is being served.
#[test]
fn keep_alive_idle_deadline() {
    let t = Instant::now();
    let mut conn = Connection::new(timed(), t);
    conn.handle_input(&get(b""), t + secs(1.0));
    assert!(matches!(conn.poll_event(), Ok(Some(Event::Request(_)))));
    assert_eq!(conn.poll_timeout(), None, "no deadline while serving");
    assert!(matches!(conn.poll_event(), Ok(Some(Event::EndOfBody))));
    conn.handle_timeout(t + secs(100.0));
    assert!(matches!(conn.poll_event(), Ok(None)), "a slow application is not timed out");
    let mut out = Vec::new();
    conn.send_head(&ok_head(), &mut out).unwrap();
    conn.send_body(b"ok", &mut out).unwrap();
    conn.send_end(t + secs(102.0), &mut out).unwrap();
    assert_eq!(out, OK);
    assert_eq!(conn.poll_timeout(), Some(t + secs(105.0)));
    conn.handle_timeout(t + secs(104.9));
    assert!(matches!(conn.poll_event(), Ok(None)));
    assert!(!conn.is_closed());
    conn.handle_timeout(t + secs(105.0));
    assert!(matches!(conn.poll_event(), Ok(Some(Event::Closed))));
    assert!(conn.is_closed());
}

/// On a kept-alive connection the head deadline runs from the first byte of the next head.
#[test]
fn keep_alive_then_partial_head_gets_head_deadline() {
    let t = Instant::now();
    let mut conn = Connection::new(timed(), t);
    conn.handle_input(&get(b""), t);
    let mut o = Outcome::default();
    drive(&mut conn, t + secs(1.0), &mut o);
    check("first", &o, &served("GET / HTTP/1.1", &[]), OK, false);
    assert_eq!(conn.poll_timeout(), Some(t + secs(4.0)));
    conn.handle_input(b"GET /2 HT", t + secs(3.0));
    assert!(matches!(conn.poll_event(), Ok(None)));
    assert_eq!(conn.poll_timeout(), Some(t + secs(13.0)));
    conn.handle_timeout(t + secs(4.0));
    assert!(matches!(conn.poll_event(), Ok(None)), "the idle deadline no longer applies");
    conn.handle_timeout(t + secs(13.0));
    assert!(matches!(conn.poll_event(), Err(ProtocolError::HeadTimeout)));
}

/// A complete head before the deadline stops the head deadline.
#[test]
fn head_deadline_met() {
    let t = Instant::now();
    let mut conn = Connection::new(timed(), t);
    conn.handle_input(&get(b""), t + secs(9.0));
    assert!(matches!(conn.poll_event(), Ok(Some(Event::Request(_)))));
    assert_eq!(conn.poll_timeout(), None);
    conn.handle_timeout(t + secs(20.0));
    assert!(matches!(conn.poll_event(), Ok(Some(Event::EndOfBody))));
}

// ---------------------------------------------------------------------------------------------
// EOF (RFC 9112 §8, §9.6)
// ---------------------------------------------------------------------------------------------

/// Each input is followed by EOF before the first `poll_event`.
#[test]
fn eof_rows() {
    use ProtocolError::*;
    #[rustfmt::skip]
    let rows: Vec<Conversation> = vec![
        // RFC 9112 §9.6: EOF between requests is a clean close.
        (vec![], vec![Ev::Closed], vec![], true),
        // RFC 9112 §8: an incomplete head is an incomplete message.
        (
            b"GET / HTTP/1.1\r\nHo".to_vec(),
            vec![Ev::Err(IncompleteHead)],
            wire_error(IncompleteHead),
            true,
        ),
        // RFC 9112 §8: fewer body bytes than Content-Length is an incomplete message...
        (
            post(b"Content-Length: 10\r\n", b"abc"),
            vec![
                req("POST / HTTP/1.1"),
                body(b"abc"),
                Ev::Err(IncompleteBody),
            ],
            wire_error(IncompleteBody),
            true,
        ),
        // ...and so is a chunked body without its last chunk.
        (
            chunked(b"5\r\nhello\r\n"),
            vec![
                req("POST / HTTP/1.1"),
                body(b"hello"),
                Ev::Err(IncompleteBody),
            ],
            wire_error(IncompleteBody),
            true,
        ),
        // RFC 9112 §9.6: a half-closed client still gets its response, which says close.
        (get(b""), served("GET / HTTP/1.1", &[]), OK_CLOSE.to_vec(), true),
        // RFC 9112 §9.3.2: pipelined requests before EOF are all served, in order; the last
        // response says close.
        (
            [line(b"GET /1 HTTP/1.1"), line(b"GET /2 HTTP/1.1")].concat(),
            [
                served("GET /1 HTTP/1.1", &[]),
                served("GET /2 HTTP/1.1", &[]),
            ]
            .concat(),
            [OK, OK_CLOSE].concat(),
            true,
        ),
    ];
    for (input, events, out, closed) in rows {
        check(&name(&input), &serve_with(Config::default(), &input, true), &events, &out, closed);
    }
}

/// RFC 9112 §9.3.2, §9.6: pipelined requests before EOF are served when the application
/// answers each without asking for its body's end (a GET has none): the first response does
/// not say close, the last one does.
#[test]
fn eof_after_pipelined_requests_answered_without_their_body_end() {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), now);
    conn.handle_input(&[line(b"GET /1 HTTP/1.1"), line(b"GET /2 HTTP/1.1")].concat(), now);
    conn.handle_eof(now);
    let mut out = Vec::new();
    for target in [b"/1", b"/2"] {
        let Ok(Some(Event::Request(head))) = conn.poll_event() else { panic!("no request") };
        assert_eq!(head.target(), target);
        respond(&mut conn, now, &mut out);
    }
    assert_eq!(out, [OK, OK_CLOSE].concat());
    assert!(conn.is_closed());
}

/// RFC 9112 §9.6: EOF after a kept-alive exchange is a clean close.
#[test]
fn eof_after_exchange_is_clean_close() {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), now);
    let mut o = Outcome::default();
    conn.handle_input(&get(b""), now);
    drive(&mut conn, now, &mut o);
    assert!(!o.closed);
    conn.handle_eof(now);
    drive(&mut conn, now, &mut o);
    check(
        "eof after exchange",
        &o,
        &[served("GET / HTTP/1.1", &[]), vec![Ev::Closed]].concat(),
        OK,
        true,
    );
}

/// RFC 9112 §9.6: EOF while the response is being written: it completes, then the connection
/// closes (nothing else is buffered).
#[test]
fn eof_while_responding() {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), now);
    conn.handle_input(&get(b""), now);
    assert!(matches!(conn.poll_event(), Ok(Some(Event::Request(_)))));
    assert!(matches!(conn.poll_event(), Ok(Some(Event::EndOfBody))));
    let mut out = Vec::new();
    conn.send_head(&ok_head(), &mut out).unwrap();
    conn.handle_eof(now);
    conn.send_body(b"ok", &mut out).unwrap();
    conn.send_end(now, &mut out).unwrap();
    assert_eq!(out, OK);
    assert!(conn.is_closed());
    assert!(matches!(conn.poll_event(), Ok(None)));
}

// ---------------------------------------------------------------------------------------------
// Sticky errors
// ---------------------------------------------------------------------------------------------

/// Errors are sticky, and bytes after an error (in the same read or later) are ignored.
#[test]
fn errors_are_sticky_and_later_bytes_ignored() {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), now);
    conn.handle_input(&[b"GET / HTTP/1.1\r\n\r\n".to_vec(), get(b"")].concat(), now);
    for _ in 0..3 {
        assert!(matches!(conn.poll_event(), Err(ProtocolError::MissingHost)));
    }
    conn.handle_input(&get(b""), now);
    assert!(matches!(conn.poll_event(), Err(ProtocolError::MissingHost)));
    assert!(!conn.wants_read());
    conn.handle_eof(now);
    conn.handle_timeout(now + Duration::from_secs(3600));
    assert!(matches!(conn.poll_event(), Err(ProtocolError::MissingHost)));
    let mut out = Vec::new();
    conn.send_error(&ProtocolError::MissingHost, &mut out);
    assert_eq!(out, wire_error(ProtocolError::MissingHost));
    assert!(conn.is_closed());
    assert!(matches!(conn.poll_event(), Err(ProtocolError::MissingHost)));
    // A second send_error writes nothing more.
    conn.send_error(&ProtocolError::MissingHost, &mut out);
    assert_eq!(out, wire_error(ProtocolError::MissingHost));
}

/// An error in the middle of a body is sticky too, whatever arrives next.
#[test]
fn body_error_is_sticky() {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), now);
    conn.handle_input(&chunked(b"5\r\nhelloX"), now);
    assert!(matches!(conn.poll_event(), Ok(Some(Event::Request(_)))));
    assert!(matches!(conn.poll_event(), Ok(Some(Event::Body(_)))));
    assert!(matches!(conn.poll_event(), Err(ProtocolError::BadChunkDelimiter)));
    conn.handle_input(b"\r\n0\r\n\r\n", now);
    assert!(matches!(conn.poll_event(), Err(ProtocolError::BadChunkDelimiter)));
}

// ---------------------------------------------------------------------------------------------
// Unread request body after the response (RFC 9112 §9.3, §6.3)
// ---------------------------------------------------------------------------------------------

/// Answers the first request without reading its body, then drives the rest.
fn respond_without_reading(input: &[u8]) -> Outcome {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), now);
    conn.handle_input(input, now);
    let mut o = Outcome::default();
    let Ok(Some(event)) = conn.poll_event() else { panic!("no request") };
    o.events.push(describe(event));
    respond(&mut conn, now, &mut o.out);
    drive(&mut conn, now, &mut o);
    o
}

#[test]
fn unread_body_rows() {
    let next = || line(b"GET /next HTTP/1.1");
    #[rustfmt::skip]
    let rows: Vec<Conversation> = vec![
        // A small unread body is drained and the next pipelined request served.
        (
            [post(b"Content-Length: 5\r\n", b"hello"), next()].concat(),
            [
                vec![req("POST / HTTP/1.1")],
                served("GET /next HTTP/1.1", &[]),
            ]
            .concat(),
            [OK, OK].concat(),
            false,
        ),
        // The same for a chunked body, with an extension and a trailer.
        (
            [chunked(b"5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n"), next()].concat(),
            [
                vec![req("POST / HTTP/1.1")],
                served("GET /next HTTP/1.1", &[]),
            ]
            .concat(),
            [OK, OK].concat(),
            false,
        ),
        // A small body that has not arrived yet will be drained as it comes.
        (post(b"Content-Length: 5\r\n", b""), vec![req("POST / HTTP/1.1")], OK.to_vec(), false),
        // A large unread body is not worth reading: the head says close, then it closes.
        (
            [post(b"Content-Length: 100000\r\n", &[b'x'; 1000]), next()].concat(),
            vec![req("POST / HTTP/1.1")],
            OK_CLOSE.to_vec(),
            true,
        ),
    ];
    for (input, events, out, closed) in rows {
        let o = respond_without_reading(&input);
        check(&name(&input[..input.len().min(60)]), &o, &events, &out, closed);
    }
}

/// The drained body's bytes may arrive after the response; the next request follows them.
#[test]
fn unread_body_drained_as_it_arrives() {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), now);
    conn.handle_input(&post(b"Content-Length: 5\r\n", b"he"), now);
    assert!(matches!(conn.poll_event(), Ok(Some(Event::Request(_)))));
    let mut out = Vec::new();
    respond(&mut conn, now, &mut out);
    assert_eq!(out, OK);
    assert!(matches!(conn.poll_event(), Ok(None)));
    assert!(conn.wants_read());
    conn.handle_input(&[b"llo".as_slice(), &line(b"GET /next HTTP/1.1")].concat(), now);
    let Ok(Some(Event::Request(head))) = conn.poll_event() else { panic!("next") };
    assert_eq!(head.target(), b"/next");
}

/// A response that ends with nothing of the request body left to come ends the cycle at once:
/// the connection is idle (or closed) without another `poll_event`, so a driver can hand it
/// to whatever waits for the next request. One with a body still to drain is not idle.
#[test]
fn a_response_ends_the_cycle_when_no_body_is_left() {
    let now = Instant::now();
    // request bytes, how many events the application takes before answering, then whether
    // the connection is idle and closed right after the response's end
    #[rustfmt::skip]
    let rows: &[(Vec<u8>, usize, bool, bool)] = &[
        // No body: idle once answered.
        (get(b""), 1, true, false),
        (post(b"Content-Length: 0\r\n", b""), 1, true, false),
        // A body read to its last byte, its end not asked for: idle.
        (post(b"Content-Length: 5\r\n", b"hello"), 2, true, false),
        // A body read with its end: idle.
        (post(b"Content-Length: 5\r\n", b"hello"), 3, true, false),
        (chunked(b"5\r\nhello\r\n0\r\n\r\n"), 3, true, false),
        // A body left unread (received or not): drained first, so not idle yet.
        (post(b"Content-Length: 5\r\n", b"hello"), 1, false, false),
        (post(b"Content-Length: 5\r\n", b"he"), 1, false, false),
        (chunked(b"5\r\nhello\r\n0\r\n\r\n"), 2, false, false),
        // HTTP/1.0 without keep-alive: closed, not idle.
        (get10(b""), 1, false, true),
    ];
    for (input, taken, idle, closed) in rows {
        let row = format!("{} after {taken} events", name(input));
        let mut conn = Connection::new(Config::default(), now);
        conn.handle_input(input, now);
        for _ in 0..*taken {
            assert!(matches!(conn.poll_event(), Ok(Some(_))), "{row}");
        }
        let mut out = Vec::new();
        respond(&mut conn, now, &mut out);
        assert_eq!(conn.is_idle(), *idle, "{row}: idle");
        assert_eq!(conn.is_closed(), *closed, "{row}: closed");
        if *idle {
            assert!(conn.wants_read(), "{row}: wants the next request");
            conn.handle_input(&get(b""), now);
            assert!(matches!(conn.poll_event(), Ok(Some(Event::Request(_)))), "{row}: next");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol before the first request (Config::proxy_protocol)
// ---------------------------------------------------------------------------------------------

#[test]
fn proxy_protocol_header_then_requests() {
    let proxied = config(|c| c.proxy_protocol = true);
    let v1 = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x01, 0xbb]);
    for header in [&v1[..], &v2[..]] {
        // The header, then two pipelined requests: both served, the header read once.
        let input = [header, &get(b""), &get(b"")].concat();
        let now = Instant::now();
        let mut conn = Connection::new(proxied.clone(), now);
        let mut o = Outcome::default();
        conn.handle_input(&input, now);
        drive(&mut conn, now, &mut o);
        let row = name(header);
        check(
            &row,
            &o,
            &[served("GET / HTTP/1.1", &[]), served("GET / HTTP/1.1", &[])].concat(),
            &[OK, OK].concat(),
            false,
        );
        let h = conn.proxy_header().unwrap();
        assert_eq!(h.source, Some("192.0.2.1:56324".parse().unwrap()), "{row}");
        assert_eq!(h.destination, Some("198.51.100.2:443".parse().unwrap()), "{row}");
    }
}

#[test]
fn proxy_protocol_rejections() {
    let proxied = config(|c| c.proxy_protocol = true);
    // A request without the header the listener requires: 400, closed.
    let o = serve_with(proxied.clone(), &get(b""), false);
    check_rejected("no header", &o, &[], ProtocolError::BadProxyHeader);
    // A second header on a kept-alive connection is not a header but a bad request line.
    let second = [&b"PROXY UNKNOWN\r\n"[..], &get(b""), b"PROXY UNKNOWN\r\n\r\n"].concat();
    let o = serve_with(proxied.clone(), &second, false);
    let mut events = served("GET / HTTP/1.1", &[]);
    events.push(Ev::Err(ProtocolError::BadRequestLine));
    let out = [OK, &wire_error(ProtocolError::BadRequestLine)].concat();
    check("second header", &o, &events, &out, true);
    // Cut inside the header: the head is incomplete.
    let o = serve_with(proxied.clone(), b"PROXY TCP4 192.0", true);
    check_rejected("cut header", &o, &[], ProtocolError::IncompleteHead);
    // A health check that connects, sends only the header and leaves: a quiet close.
    let o = serve_with(proxied.clone(), b"PROXY UNKNOWN\r\n", true);
    check("header only", &o, &[Ev::Closed], b"", true);
    // Without the setting, a PROXY line is an ordinary (bad) request.
    let o = serve(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n\r\n");
    assert_eq!(o.events, [Ev::Err(ProtocolError::BadRequestLine)]);
    // Not one byte of a header yet: waiting, not failing.
    let o = serve_with(proxied, b"", false);
    check("nothing", &o, &[], b"", false);
}
