//! An application's status, headers and body chunks through a `Connection`; the bytes written
//! must parse back as one valid response carrying exactly the body that was due.
//!
//! Invariants:
//! - `httparse` parses the head completely, with the status and (ASCII) reason given;
//! - the head has at most one framing header (Content-Length or chunked Transfer-Encoding), none
//!   for HEAD-less bodiless statuses where RFC 9110 forbids it;
//! - a client framing the body per RFC 9112 §6.3 reads exactly the bytes sent: nothing for HEAD,
//!   204 and 304; the first Content-Length bytes; the chunked body (decoded with
//!   `wsgi_core::ChunkedDecoder`); or everything up to the close;
//! - no bytes follow the response; the connection is closed exactly when the head says so (or
//!   when the body fell short of its Content-Length);
//! - nothing panics.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use wsgi_core::{
    ChunkedDecoder, Config, Connection, Decoded, Event, HttpDate, ResponseHead, UsageError,
};

#[derive(Arbitrary, Debug)]
enum Name {
    ContentType,
    ContentLength,
    SetCookie,
    Date,
    Server,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Value {
    Number(u16),
    Text(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    status: u16,
    reason: String,
    headers: Vec<(Name, Value)>,
    head_method: bool,
    http10: bool,
    http10_keep_alive: bool,
    request_close: bool,
    date: bool,
    server: bool,
    chunks: Vec<Vec<u8>>,
    /// Chunk `i` is sent as external bytes (the driver writes them, as with sendfile) when bit
    /// `i % 8` is set.
    external: u8,
}

impl Name {
    fn as_str(&self) -> &str {
        match self {
            Name::ContentType => "Content-Type",
            Name::ContentLength => "Content-Length",
            Name::SetCookie => "Set-Cookie",
            Name::Date => "Date",
            Name::Server => "Server",
            Name::Other(s) => s,
        }
    }
}

impl Value {
    fn to_text(&self) -> String {
        match self {
            Value::Number(n) => n.to_string(),
            Value::Text(s) => s.clone(),
        }
    }
}

fn request(input: &Input) -> Vec<u8> {
    let method = if input.head_method { "HEAD" } else { "GET" };
    let version = if input.http10 { "1.0" } else { "1.1" };
    let mut r = format!("{method} /x HTTP/{version}\r\nHost: example.com\r\n");
    if input.request_close {
        r.push_str("Connection: close\r\n");
    } else if input.http10 && input.http10_keep_alive {
        r.push_str("Connection: keep-alive\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

fn header<'a>(res: &'a httparse::Response<'_, '_>, name: &str) -> Vec<&'a [u8]> {
    res.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value).collect()
}

fuzz_target!(|input: Input| {
    if input.headers.len() > 8 || input.chunks.len() > 8 {
        return;
    }
    let status = format!("{} {}", 200 + input.status % 400, input.reason);
    let headers: Vec<(String, String)> =
        input.headers.iter().map(|(n, v)| (n.as_str().to_owned(), v.to_text())).collect();
    let Ok(head) = ResponseHead::from_wsgi(&status, headers) else {
        return;
    };

    let now = Instant::now();
    let mut config = Config::default();
    if input.server {
        config.set_server_header(Some("fuzz/1.0")).unwrap();
    }
    let mut conn = Connection::new(config, now);
    if input.date {
        conn.set_date(HttpDate::from(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
    }
    conn.handle_input(&request(&input), now);
    assert!(matches!(conn.poll_event(), Ok(Some(Event::Request(_)))));
    assert!(matches!(conn.poll_event(), Ok(Some(Event::EndOfBody))));

    let mut out = Vec::new();
    conn.send_head(&head, &mut out).unwrap();
    let code = head.status();
    let bodiless = input.head_method || code == 204 || code == 304;
    let mut due = Vec::new(); // the body bytes a client must read
    let mut given = 0u64;
    for (i, chunk) in input.chunks.iter().enumerate() {
        if input.external & (1 << (i % 8)) != 0 {
            let ext = conn.send_body_external(chunk.len() as u64, &mut out).unwrap();
            let send = usize::try_from(ext.send).unwrap();
            assert!(send <= chunk.len());
            // Bytes held back past the Content-Length are reported, as `send_body` reports them.
            assert_eq!(ext.error.is_some(), send < chunk.len() && !bodiless, "error {:?}", ext.error);
            if bodiless {
                assert_eq!(send, 0, "external bytes for a bodiless response");
            }
            out.extend_from_slice(&chunk[..send]);
            out.extend_from_slice(ext.suffix);
            due.extend_from_slice(&chunk[..send]);
            given += if bodiless { chunk.len() } else { send } as u64;
            if let (Some(n), false) = (head.content_length(), bodiless) {
                assert!(given <= n, "external bytes passed Content-Length");
            }
            continue;
        }
        let result = conn.send_body(chunk, &mut out);
        let before = given;
        given += chunk.len() as u64;
        match (result, head.content_length()) {
            (Ok(()), Some(n)) if !bodiless => assert!(given <= n, "body passed Content-Length"),
            (Ok(()), _) => {}
            (Err(UsageError::BodyTooLong { declared }), Some(n)) => {
                assert_eq!(declared, n);
                assert!(!bodiless && given > n && before <= n);
                let room = usize::try_from(n - before).unwrap();
                due.extend_from_slice(&chunk[..room]);
                given = n;
                break;
            }
            (Err(e), _) => panic!("send_body: {e:?}"),
        }
        if !bodiless {
            due.extend_from_slice(chunk);
        }
    }
    let end = conn.send_end(now, &mut out);
    let short = match (end, head.content_length()) {
        (Ok(()), _) => false,
        (Err(UsageError::BodyTooShort { declared, sent }), Some(n)) => {
            assert!(declared == n && sent == given && sent < n && !bodiless);
            true
        }
        (Err(e), _) => panic!("send_end: {e:?}"),
    };

    // The head.
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut fields);
    let head_len = match res.parse(&out) {
        Ok(httparse::Status::Complete(n)) => n,
        other => {
            panic!("response head does not parse: {other:?}\n{:?}", String::from_utf8_lossy(&out))
        }
    };
    assert_eq!(res.version, Some(1));
    assert_eq!(res.code, Some(code));
    if input.reason.is_ascii() {
        assert_eq!(res.reason, Some(input.reason.as_str()));
    }
    let lengths = header(&res, "content-length");
    let te = header(&res, "transfer-encoding");
    let connection = header(&res, "connection");
    assert!(lengths.len() <= 1, "repeated Content-Length");
    assert!(te.len() <= 1, "repeated Transfer-Encoding");
    assert!(lengths.is_empty() || te.is_empty(), "both Content-Length and Transfer-Encoding");
    if code == 204 {
        assert!(lengths.is_empty() && te.is_empty(), "framing header on a 204");
    }
    let app_dates = head.headers().filter(|(n, _)| n.eq_ignore_ascii_case(b"date")).count();
    let dates = if app_dates > 0 { app_dates } else { usize::from(input.date) };
    assert_eq!(header(&res, "date").len(), dates, "the server's Date replaces none of the app's");
    let close = match connection.as_slice() {
        [] => false,
        [v] if v.eq_ignore_ascii_case(b"close") => true,
        [v] if v.eq_ignore_ascii_case(b"keep-alive") => {
            assert!(input.http10, "Connection: keep-alive on an HTTP/1.1 response");
            false
        }
        other => panic!("unexpected Connection header {other:?}"),
    };
    if input.request_close || (input.http10 && !input.http10_keep_alive) {
        assert!(close, "the request asked to close, the response does not say so");
    }

    // The body, framed as a client reads it (RFC 9112 §6.3).
    let rest = &out[head_len..];
    if bodiless {
        assert!(te.is_empty(), "chunked framing on a bodiless response");
        assert_eq!(rest, b"", "body bytes on a HEAD, 204 or 304 response");
    } else if let [te] = te.as_slice() {
        assert_eq!(*te, b"chunked");
        assert!(!input.http10, "chunked to an HTTP/1.0 client");
        let mut decoder = ChunkedDecoder::new(&Config::default());
        let mut buf = BytesMut::from(rest);
        let mut body = Vec::new();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Decoded::Data(d))) => body.extend_from_slice(&d),
                Ok(Some(Decoded::End)) => break,
                other => panic!("chunked body does not decode: {other:?}"),
            }
        }
        assert!(buf.is_empty(), "bytes after the chunked body");
        assert_eq!(body, due);
    } else if let [length] = lengths.as_slice() {
        let n: usize = std::str::from_utf8(length).unwrap().parse().unwrap();
        assert_eq!(Some(n as u64), head.content_length());
        if short {
            assert!(rest.len() < n && conn.is_closed(), "short body without a close");
        } else {
            assert_eq!(rest.len(), n, "body length differs from Content-Length");
        }
        assert_eq!(rest, due);
    } else {
        assert!(input.http10, "close-delimited body to an HTTP/1.1 client");
        assert!(close, "close-delimited body without Connection: close");
        assert_eq!(rest, due);
    }
    assert_eq!(conn.is_closed(), close || short, "closed without saying so, or the reverse");
});
