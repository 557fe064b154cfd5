//! Arbitrary bytes through `parse_proxy_header`, whole and as every prefix, and through a
//! `Connection` that expects a PROXY protocol header.
//!
//! Invariants:
//! - every strict prefix of a parsed header is "need more" (`Ok(None)`), and every longer input
//!   parses to the same header and length: the outcome does not depend on how bytes arrive;
//! - once a prefix is refused, every longer input is refused too;
//! - a parsed header's length is within the input and at least 15 bytes (`PROXY UNKNOWN\r\n`);
//! - a connection fed the bytes whole and one byte at a time reports the same header;
//! - nothing panics.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use wsgi_core::{Config, Connection, ProxyHeader, parse_proxy_header};

fn connection_header(pieces: &[&[u8]]) -> (Option<ProxyHeader>, bool) {
    let now = Instant::now();
    let mut config = Config::default();
    config.proxy_protocol = true;
    let mut conn = Connection::new(config, now);
    let mut failed = false;
    for piece in pieces {
        conn.handle_input(piece, now);
        // Surface whatever is there; requests are not answered, so at most one comes out.
        while let Ok(Some(_)) = conn.poll_event() {
            if conn.proxy_header().is_some() {
                break;
            }
        }
        failed |= conn.poll_event().is_err();
    }
    (conn.proxy_header().cloned(), failed)
}

fuzz_target!(|data: &[u8]| {
    let whole = parse_proxy_header(data);
    if let Ok(Some((_, n))) = &whole {
        assert!(*n <= data.len() && *n >= 15, "length {n} of {}", data.len());
    }
    // Prefix by prefix, the way bytes arrive one at a time.
    let mut settled = None;
    for end in 0..=data.len() {
        let r = parse_proxy_header(&data[..end]);
        match (&settled, &r) {
            (None, Ok(None)) => {}
            (None, _) => settled = Some((end, r.clone())),
            (Some((_, Ok(Some(first)))), Ok(Some(now))) => assert_eq!(first, now),
            (Some((_, Err(first))), Err(now)) => assert_eq!(first, now),
            (Some((at, first)), _) => panic!("prefix {at} gave {first:?}, prefix {end} {r:?}"),
        }
    }
    match settled {
        None => assert_eq!(whole, Ok(None)),
        Some((_, r)) => assert_eq!(r, whole),
    }
    let at_once = connection_header(&[data]);
    let bytewise: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(connection_header(&bytewise), at_once);
    if let Ok(Some((header, _))) = whole {
        assert_eq!(at_once.0, Some(header));
    }
});
