//! Property tests: split invariance, robustness on arbitrary bytes, chunked round trips and
//! pipelining (issue 2, Tests: proptest (a)–(d)).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use bytes::BytesMut;
use proptest::prelude::*;
use wsgi_core::{
    BodyEncoder, ChunkedDecoder, Config, Connection, Decoded, Event, ProtocolError, ResponseBody,
    ResponseHead,
};

/// What a driver observes, with body pieces coalesced (their boundaries depend on how the
/// bytes arrived; their content must not).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Head { method: String, target: Vec<u8>, headers: Vec<(String, Vec<u8>)> },
    Body(Vec<u8>),
    End,
    Closed,
    Error(ProtocolError),
}

/// Drives a connection like a server: feeds `pieces` in order, answers each request once its
/// body ended, and records everything seen. Ends with EOF.
fn drive(pieces: &[&[u8]]) -> Vec<Seen> {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), now);
    let mut seen = Vec::new();
    let mut out = Vec::new();
    let response = ResponseHead::from_wsgi("200 OK", [("Content-Length", "2")]).unwrap();
    let mut pump = |conn: &mut Connection, seen: &mut Vec<Seen>| loop {
        match conn.poll_event() {
            Ok(Some(Event::Request(head))) => seen.push(Seen::Head {
                method: head.method().to_owned(),
                target: head.target().to_vec(),
                headers: head.headers().map(|(n, v)| (n.to_owned(), v.to_vec())).collect(),
            }),
            Ok(Some(Event::Body(bytes))) => match seen.last_mut() {
                Some(Seen::Body(acc)) => acc.extend_from_slice(&bytes),
                _ => seen.push(Seen::Body(bytes.to_vec())),
            },
            Ok(Some(Event::EndOfBody)) => {
                seen.push(Seen::End);
                conn.send_head(&response, &mut out).unwrap();
                conn.send_body(b"ok", &mut out).unwrap();
                conn.send_end(now, &mut out).unwrap();
            }
            Ok(Some(Event::Closed)) => seen.push(Seen::Closed),
            Ok(None) => return,
            Err(e) => {
                seen.push(Seen::Error(e));
                // Sticky: asking again gives the same error and nothing else.
                assert_eq!(conn.poll_event().unwrap_err(), e);
                conn.send_error(&e, &mut out);
                assert!(conn.is_closed());
                return;
            }
        }
    };
    for piece in pieces {
        if conn.is_closed() {
            break;
        }
        conn.handle_input(piece, now);
        pump(&mut conn, &mut seen);
    }
    if !conn.is_closed() {
        conn.handle_eof(now);
        pump(&mut conn, &mut seen);
    }
    seen
}

/// Splits `bytes` at the given cut points (any values; taken modulo the length, sorted).
fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    if bytes.is_empty() {
        return vec![bytes];
    }
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % bytes.len()).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for c in cuts {
        pieces.push(&bytes[start..c]);
        start = c;
    }
    pieces.push(&bytes[start..]);
    pieces
}

/// A valid request and what a server must see of it.
#[derive(Clone, Debug)]
struct Req {
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: Option<Vec<usize>>,
}

impl Req {
    fn to_bytes(&self) -> Vec<u8> {
        let mut b = format!("{} {} HTTP/1.1\r\nHost: example.test\r\n", self.method, self.target)
            .into_bytes();
        for (n, v) in &self.headers {
            b.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        match &self.chunked {
            None => {
                if !self.body.is_empty() {
                    b.extend_from_slice(
                        format!("Content-Length: {}\r\n", self.body.len()).as_bytes(),
                    );
                }
                b.extend_from_slice(b"\r\n");
                b.extend_from_slice(&self.body);
            }
            Some(sizes) => {
                b.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = &self.body[..];
                let mut i = 0;
                while !rest.is_empty() {
                    let n = sizes.get(i).copied().unwrap_or(rest.len()).clamp(1, rest.len());
                    let ext = if i % 2 == 1 { ";ext=\"v\"" } else { "" };
                    b.extend_from_slice(format!("{n:X}{ext}\r\n").as_bytes());
                    b.extend_from_slice(&rest[..n]);
                    b.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                    i += 1;
                }
                b.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
            }
        }
        b
    }
}

fn req_strategy() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
        "/[a-z0-9/._~-]{0,20}(\\?[a-z0-9=&%]{0,16})?",
        prop::collection::vec(("X-[A-Za-z]{1,8}", "[ -~]{0,24}"), 0..6),
        prop::collection::vec(any::<u8>(), 0..300),
        prop::option::of(prop::collection::vec(1usize..64, 0..8)),
    )
        .prop_map(|(method, target, headers, body, chunked)| {
            // A field value has no leading or trailing whitespace (RFC 9110 §5.5).
            let headers = headers.into_iter().map(|(n, v)| (n, v.trim().to_owned())).collect();
            Req { method, target, headers, body, chunked }
        })
}

fn expected(reqs: &[Req]) -> Vec<Seen> {
    let mut seen = Vec::new();
    for r in reqs {
        let mut headers = vec![("Host".to_owned(), b"example.test".to_vec())];
        headers.extend(r.headers.iter().map(|(n, v)| (n.clone(), v.clone().into_bytes())));
        match &r.chunked {
            None if !r.body.is_empty() => {
                headers.push(("Content-Length".to_owned(), r.body.len().to_string().into_bytes()))
            }
            None => {}
            Some(_) => headers.push(("Transfer-Encoding".to_owned(), b"chunked".to_vec())),
        }
        seen.push(Seen::Head {
            method: r.method.to_owned(),
            target: r.target.clone().into_bytes(),
            headers,
        });
        if !r.body.is_empty() {
            seen.push(Seen::Body(r.body.clone()));
        }
        seen.push(Seen::End);
    }
    seen.push(Seen::Closed);
    seen
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (a) Any valid request stream, split anywhere, yields the same events as in one piece.
    #[test]
    fn split_invariance(
        reqs in prop::collection::vec(req_strategy(), 1..4),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let bytes: Vec<u8> = reqs.iter().flat_map(Req::to_bytes).collect();
        let whole = drive(&[&bytes]);
        prop_assert_eq!(&whole, &expected(&reqs));
        prop_assert_eq!(drive(&split(&bytes, &cuts)), whole.clone());
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        prop_assert_eq!(drive(&bytewise), whole);
    }

    /// (b) Arbitrary bytes never panic; the outcome does not depend on the split; after an
    /// error nothing else is reported.
    #[test]
    fn arbitrary_bytes(
        prefix in prop::sample::select(vec![
            &b""[..], b"GET / HTTP/1.1\r\n", b"POST / HTTP/1.1\r\nHost: a\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]),
        noise in prop::collection::vec(any::<u8>(), 0..400),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let bytes = [prefix, &noise[..]].concat();
        let whole = drive(&[&bytes]);
        if let Some(i) = whole.iter().position(|s| matches!(s, Seen::Error(_))) {
            prop_assert_eq!(i, whole.len() - 1, "events after an error: {:?}", whole);
        }
        prop_assert_eq!(drive(&split(&bytes, &cuts)), whole);
    }

    /// (c) Chunked encode → decode gives back any body, whatever its chunking.
    #[test]
    fn chunked_round_trip(
        pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..10),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut wire = Vec::new();
        let mut encoder = BodyEncoder::new(ResponseBody::Chunked);
        for p in &pieces {
            encoder.encode(p, &mut wire).unwrap();
        }
        encoder.finish(&mut wire).unwrap();
        wire.extend_from_slice(b"NEXT");

        let mut decoder = ChunkedDecoder::new(&Config::default());
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut ended = false;
        for piece in split(&wire, &cuts) {
            buf.extend_from_slice(piece);
            while !ended {
                match decoder.decode(&mut buf).unwrap() {
                    Some(Decoded::Data(d)) => body.extend_from_slice(&d),
                    Some(Decoded::End) => ended = true,
                    None => break,
                }
            }
        }
        prop_assert!(ended);
        prop_assert_eq!(body, pieces.concat());
        prop_assert_eq!(&buf[..], b"NEXT");
    }

    /// (d) N pipelined valid requests give N heads in order, each with its own body.
    #[test]
    fn pipelined_requests_in_order(reqs in prop::collection::vec(req_strategy(), 1..12)) {
        let bytes: Vec<u8> = reqs.iter().flat_map(Req::to_bytes).collect();
        let seen = drive(&[&bytes]);
        let heads = seen.iter().filter(|s| matches!(s, Seen::Head { .. })).count();
        prop_assert_eq!(heads, reqs.len());
        prop_assert_eq!(seen, expected(&reqs));
    }
}
