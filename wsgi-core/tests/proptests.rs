//! Property tests: split invariance, robustness on arbitrary bytes, chunked round trips and
//! pipelining (issue 2, Tests: proptest (a)–(d)).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use bytes::BytesMut;
use proptest::prelude::*;
use wsgi_core::{
    BodyEncoder, ChunkedDecoder, Config, Connection, Decoded, Event, ProtocolError, ProxyHeader,
    ResponseBody, ResponseHead,
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
    drive_with(Config::default(), pieces).0
}

/// [`drive`], giving every other piece through `handle_input_vec` (in a buffer of its own,
/// with room to spare) rather than `handle_input`: how a piece is given must not matter.
fn drive_vecs(pieces: &[&[u8]]) -> Vec<Seen> {
    drive_fed(Config::default(), pieces, true).0
}

/// [`drive`] with `config`; also returns the PROXY protocol header the connection received.
fn drive_with(config: Config, pieces: &[&[u8]]) -> (Vec<Seen>, Option<ProxyHeader>) {
    drive_fed(config, pieces, false)
}

/// [`drive_with`]; with `vecs`, as [`drive_vecs`].
fn drive_fed(config: Config, pieces: &[&[u8]], vecs: bool) -> (Vec<Seen>, Option<ProxyHeader>) {
    let now = Instant::now();
    let mut conn = Connection::new(config, now);
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
    for (i, piece) in pieces.iter().enumerate() {
        if conn.is_closed() {
            break;
        }
        if vecs && i % 2 == 1 {
            let mut owned = Vec::with_capacity(piece.len() * 2);
            owned.extend_from_slice(piece);
            conn.handle_input_vec(owned, now);
        } else {
            conn.handle_input(piece, now);
        }
        pump(&mut conn, &mut seen);
    }
    if !conn.is_closed() {
        conn.handle_eof(now);
        pump(&mut conn, &mut seen);
    }
    (seen, conn.proxy_header().cloned())
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
        prop_assert_eq!(drive_vecs(&split(&bytes, &cuts)), whole.clone());
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        prop_assert_eq!(drive_vecs(&bytewise), whole.clone());
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
        prop_assert_eq!(drive_vecs(&split(&bytes, &cuts)), whole.clone());
        prop_assert_eq!(drive(&split(&bytes, &cuts)), whole);
    }

    /// (a') With `proxy_protocol` on: a PROXY header (either version) before a valid request
    /// stream, split anywhere, yields the same header and the same events as without it.
    #[test]
    fn proxy_header_split_invariance(
        reqs in prop::collection::vec(req_strategy(), 1..3),
        v2 in any::<bool>(),
        src in any::<[u8; 4]>(),
        sport in any::<u16>(),
        tls in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let source = std::net::SocketAddr::from((src, sport));
        let header = if v2 {
            let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
            let tlv: &[u8] = if tls { &[0x20, 0, 5, 1, 0, 0, 0, 0] } else { &[] };
            h.extend_from_slice(&u16::try_from(12 + tlv.len()).unwrap().to_be_bytes());
            h.extend_from_slice(&src);
            h.extend_from_slice(&[127, 0, 0, 1]);
            h.extend_from_slice(&sport.to_be_bytes());
            h.extend_from_slice(&443u16.to_be_bytes());
            h.extend_from_slice(tlv);
            h
        } else {
            format!("PROXY TCP4 {} 127.0.0.1 {sport} 443\r\n", source.ip()).into_bytes()
        };
        let mut config = Config::default();
        config.proxy_protocol = true;
        let requests: Vec<u8> = reqs.iter().flat_map(Req::to_bytes).collect();
        let bytes = [&header[..], &requests].concat();
        let (whole, proxied) = drive_with(config.clone(), &[&bytes]);
        prop_assert_eq!(&whole, &expected(&reqs));
        let proxied = proxied.unwrap();
        prop_assert_eq!(proxied.source, Some(source));
        prop_assert_eq!(proxied.tls, v2 && tls);
        let (split_seen, split_proxied) = drive_with(config.clone(), &split(&bytes, &cuts));
        prop_assert_eq!(split_seen, whole.clone());
        prop_assert_eq!(split_proxied.as_ref(), Some(&proxied));
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        let (byte_seen, byte_proxied) = drive_with(config, &bytewise);
        prop_assert_eq!(byte_seen, whole);
        prop_assert_eq!(byte_proxied, Some(proxied));
    }

    /// (a'') Proxy headers: a `Forwarded` or `X-Forwarded-For` list sent as one field line or
    /// split over several (RFC 9110 §5.3: the same list) gives the same environ; and arbitrary
    /// values from a trusted peer never panic nor repeat a key.
    #[test]
    fn forwarded_lists_split_over_field_lines(
        hops in prop::collection::vec((any::<[u8; 4]>(), any::<bool>(), any::<bool>()), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
        noise in prop::collection::vec(
            prop::sample::select(b"abc019.:[]\",;=_ \t\\forprotohst".to_vec()), 0..40),
    ) {
        use std::sync::Arc;
        use wsgi_core::{Environ, ForwardedHeader, ServerInfo, TrustedProxies};
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap().believe(&ForwardedHeader::ALL);
        let server = ServerInfo::new(None, Some("10.0.0.1:5000".parse().unwrap()))
            .with_trusted_proxies(Some(Arc::new(trusted)));
        let environ_of = |fields: &[String]| {
            let mut request = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
            for f in fields {
                request.extend_from_slice(f.as_bytes());
                request.extend_from_slice(b"\r\n");
            }
            request.extend_from_slice(b"\r\n");
            let mut conn = Connection::new(Config::default(), Instant::now());
            conn.handle_input(&request, Instant::now());
            match conn.poll_event() {
                Ok(Some(Event::Request(head))) => {
                    let env = Environ::new(head, &server);
                    let mut keys: Vec<&str> = env.iter().map(|(k, _)| k).collect();
                    let n = keys.len();
                    keys.sort_unstable();
                    keys.dedup();
                    assert_eq!(keys.len(), n, "repeated key");
                    Some(["REMOTE_ADDR", "REMOTE_PORT", "SERVER_PORT", "HTTP_HOST"]
                        .map(|k| env.get(k).map(str::to_owned))
                        .to_vec())
                }
                _ => None,
            }
        };
        for name in ["Forwarded", "X-Forwarded-For"] {
            let elements: Vec<String> = hops
                .iter()
                .map(|(ip, trusted, proto)| {
                    let ip = if *trusted { [10, ip[1], ip[2], ip[3]] } else { *ip };
                    let ip = std::net::Ipv4Addr::from(ip);
                    match (name, proto) {
                        ("Forwarded", true) => format!("for={ip};proto=https"),
                        ("Forwarded", false) => format!("for=\"{ip}:80\""),
                        _ => ip.to_string(),
                    }
                })
                .collect();
            let one = vec![format!("{name}: {}", elements.join(", "))];
            let mut at: Vec<usize> = cuts.iter().map(|c| c % elements.len()).collect();
            at.sort_unstable();
            at.dedup();
            let mut lines = Vec::new();
            let mut start = 0;
            for c in at.into_iter().chain([elements.len()]) {
                if c > start {
                    lines.push(format!("{name}: {}", elements[start..c].join(",")));
                    start = c;
                }
            }
            let whole = environ_of(&one);
            prop_assert!(whole.is_some());
            prop_assert_eq!(whole, environ_of(&lines));
            let noisy = vec![format!("{name}: {}", String::from_utf8_lossy(&noise))];
            let _ = environ_of(&noisy);
        }
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
