//! Arbitrary bytes through a `Connection`, driven like a server.
//!
//! Invariants:
//! - the same bytes give the same events, errors and response bytes whether they arrive whole,
//!   one byte at a time, or in two pieces split at a point derived from the input, and whether
//!   the pieces are given as slices (`handle_input`) or in buffers of their own
//!   (`handle_input_vec`);
//! - errors are sticky: after one, `poll_event` returns the same error and no event, even after
//!   more input;
//! - every surfaced request yields an environ with the variables PEP 3333 requires and no
//!   repeated key (the peer is a trusted proxy, so proxy headers are parsed into it as well);
//! - nothing panics.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use wsgi_core::{Config, Connection, Environ, Event, ProtocolError, ResponseHead, ServerInfo};

/// What the driver saw, in a form that can be compared across feeds.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Request {
        method: String,
        target: Vec<u8>,
        version: &'static str,
        headers: Vec<(String, Vec<u8>)>,
        environ: Vec<(String, String)>,
        keep_alive: bool,
        expects_continue: bool,
    },
    /// Consecutive body events merged: how the body is cut depends on how the bytes arrive.
    Body(Vec<u8>),
    EndOfBody,
    Closed,
    Error(ProtocolError),
}

/// Small limits, so the fuzzer reaches every limit check with short inputs.
fn config() -> Config {
    let mut c = Config::default();
    c.max_request_line = 128;
    c.max_header_count = 12;
    c.max_field_size = 128;
    c.max_head_size = 1024;
    c.max_body_size = 2048;
    c.max_chunk_line = 32;
    c
}

struct Driver {
    conn: Connection,
    now: Instant,
    server: ServerInfo,
    seen: Vec<Seen>,
    out: Vec<u8>,
    failed: Option<ProtocolError>,
}

impl Driver {
    fn new(now: Instant) -> Driver {
        let server = ServerInfo::new(
            Some("127.0.0.1:8000".parse().unwrap()),
            Some("10.0.0.7:51234".parse().unwrap()),
        )
        .with_root_path("/app")
        // The peer is a trusted proxy, so every request's Forwarded and X-Forwarded-* fields
        // are parsed into the environ too.
        .with_trusted_proxies(Some(std::sync::Arc::new(
            wsgi_core::TrustedProxies::parse("10.0.0.0/8,::1")
                .unwrap()
                .believe(&wsgi_core::ForwardedHeader::ALL),
        )));
        Driver {
            conn: Connection::new(config(), now),
            now,
            server,
            seen: Vec::new(),
            out: Vec::new(),
            failed: None,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.conn.handle_input(bytes, self.now);
        self.drain();
    }

    /// As `feed`, giving the bytes in a buffer of their own (`handle_input_vec`).
    fn feed_vec(&mut self, bytes: &[u8]) {
        self.conn.handle_input_vec(bytes.to_vec(), self.now);
        self.drain();
    }

    fn eof(&mut self) {
        self.conn.handle_eof(self.now);
        self.drain();
    }

    fn record(&mut self, seen: Seen) {
        match (self.seen.last_mut(), seen) {
            (Some(Seen::Body(acc)), Seen::Body(more)) => acc.extend_from_slice(&more),
            (_, seen) => self.seen.push(seen),
        }
    }

    fn drain(&mut self) {
        if let Some(e) = self.failed {
            // Sticky: the same error again, never an event.
            assert_eq!(self.conn.poll_event().map(|_| ()), Err(e));
            return;
        }
        loop {
            match self.conn.poll_event() {
                Ok(None) => return,
                Ok(Some(Event::Request(head))) => {
                    let environ = Environ::new(head.clone(), &self.server);
                    check_environ(&environ, head.method());
                    if head.expects_continue() {
                        self.conn.send_continue(&mut self.out).unwrap();
                    }
                    self.record(Seen::Request {
                        method: head.method().to_owned(),
                        target: head.target().to_vec(),
                        version: head.version().as_str(),
                        headers: head.headers().map(|(n, v)| (n.to_owned(), v.to_vec())).collect(),
                        environ: environ
                            .iter()
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .collect(),
                        keep_alive: head.keep_alive(),
                        expects_continue: head.expects_continue(),
                    });
                }
                Ok(Some(Event::Body(bytes))) => {
                    assert!(!bytes.is_empty(), "empty Body event");
                    self.record(Seen::Body(bytes.to_vec()));
                }
                Ok(Some(Event::EndOfBody)) => {
                    self.record(Seen::EndOfBody);
                    self.respond();
                }
                Ok(Some(Event::Closed)) => {
                    self.record(Seen::Closed);
                    assert!(self.conn.is_closed());
                }
                Err(e) => {
                    self.record(Seen::Error(e));
                    self.failed = Some(e);
                    self.conn.send_error(&e, &mut self.out);
                    assert!(self.conn.is_closed());
                    assert_eq!(self.conn.poll_event().map(|_| ()), Err(e));
                    return;
                }
            }
        }
    }

    /// A small response, so pipelined requests proceed.
    fn respond(&mut self) {
        let head = ResponseHead::from_wsgi("200 OK", [("Content-Type", "text/plain")]).unwrap();
        self.conn.send_head(&head, &mut self.out).unwrap();
        self.conn.send_body(b"ok", &mut self.out).unwrap();
        self.conn.send_end(self.now, &mut self.out).unwrap();
    }
}

fn check_environ(environ: &Environ, method: &str) {
    let mut keys = HashSet::new();
    for (key, _) in environ.iter() {
        assert!(keys.insert(key), "environ key {key:?} repeated");
    }
    for required in [
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
    ] {
        assert!(keys.contains(required), "environ lacks {required}");
    }
    assert_eq!(environ.get("REQUEST_METHOD"), Some(method));
}

/// Feeds `data` in `pieces`; with `vecs`, each through `handle_input_vec`.
fn run(
    data: &[u8],
    pieces: impl Iterator<Item = (usize, usize)>,
    now: Instant,
    vecs: bool,
) -> Driver {
    let mut d = Driver::new(now);
    for (a, b) in pieces {
        if vecs {
            d.feed_vec(&data[a..b]);
        } else {
            d.feed(&data[a..b]);
        }
    }
    d.eof();
    // More bytes after the end change nothing.
    let before = d.seen.len();
    d.feed(b"GET / HTTP/1.1\r\nHost: late\r\n\r\n");
    assert_eq!(d.seen.len(), before, "event after EOF or error");
    d
}

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let len = data.len();
    let whole = run(data, std::iter::once((0, len)), now, false);
    let bytewise = run(data, (0..len).map(|i| (i, i + 1)), now, false);
    let split = data.iter().fold(0usize, |h, &b| h.wrapping_mul(31).wrapping_add(usize::from(b)))
        % (len + 1);
    let halves = run(data, [(0, split), (split, len)].into_iter(), now, false);
    // Each half given in a buffer of its own (kept as the connection's when nothing else is
    // buffered).
    let vecs = run(data, [(0, split), (split, len)].into_iter(), now, true);

    assert_eq!(whole.seen, bytewise.seen, "whole vs byte-at-a-time");
    assert_eq!(whole.seen, halves.seen, "whole vs split at {split}");
    assert_eq!(whole.out, bytewise.out, "response bytes: whole vs byte-at-a-time");
    assert_eq!(whole.out, halves.out, "response bytes: whole vs split at {split}");
    assert_eq!(whole.seen, vecs.seen, "whole vs split at {split}, second half by vec");
    assert_eq!(whole.out, vecs.out, "response bytes: whole vs split at {split} by vec");
    // Everything ends: EOF closes the connection or leaves it failed.
    assert!(whole.conn.is_closed());
});
