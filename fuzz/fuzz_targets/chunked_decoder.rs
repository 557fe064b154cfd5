//! Arbitrary bytes into a `ChunkedDecoder`, whole and one byte at a time.
//!
//! Invariants:
//! - both feeds give the same decoded data, the same end and the same error;
//! - `Data` is never empty, and the decoded data is never longer than the input;
//! - after `End`, what is left in the buffer is exactly the unconsumed suffix of the input, and
//!   decoding again gives `End` without consuming anything;
//! - nothing panics.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wsgi_core::{ChunkedDecoder, Config, Decoded, ProtocolError};

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    data: Vec<u8>,
    /// The bytes left after `End`, if the body ended.
    rest: Option<Vec<u8>>,
    error: Option<ProtocolError>,
}

/// Small limits, so the fuzzer reaches every limit check with short inputs.
fn config() -> Config {
    let mut c = Config::default();
    c.max_header_count = 4;
    c.max_field_size = 64;
    c.max_head_size = 160;
    c.max_body_size = 1024;
    c.max_chunk_line = 24;
    c
}

/// Decodes everything `buf` allows; `true` once the body ended or failed.
fn step(decoder: &mut ChunkedDecoder, buf: &mut BytesMut, out: &mut Outcome) -> bool {
    loop {
        match decoder.decode(buf) {
            Ok(Some(Decoded::Data(bytes))) => {
                assert!(!bytes.is_empty(), "empty Data");
                out.data.extend_from_slice(&bytes);
            }
            Ok(Some(Decoded::End)) => {
                assert!(decoder.is_done());
                let left = buf.len();
                assert_eq!(decoder.decode(buf), Ok(Some(Decoded::End)), "End is not repeated");
                assert_eq!(buf.len(), left, "decoding after End consumed bytes");
                return true;
            }
            Ok(None) => return false,
            Err(e) => {
                assert!(!decoder.is_done());
                out.error = Some(e);
                return true;
            }
        }
    }
}

fn whole(data: &[u8], config: &Config) -> Outcome {
    let mut decoder = ChunkedDecoder::new(config);
    let mut buf = BytesMut::from(data);
    let mut out = Outcome { data: Vec::new(), rest: None, error: None };
    if step(&mut decoder, &mut buf, &mut out) && out.error.is_none() {
        out.rest = Some(buf.to_vec());
    }
    out
}

fn bytewise(data: &[u8], config: &Config) -> Outcome {
    let mut decoder = ChunkedDecoder::new(config);
    let mut buf = BytesMut::new();
    let mut out = Outcome { data: Vec::new(), rest: None, error: None };
    for (i, &b) in data.iter().enumerate() {
        buf.extend_from_slice(&[b]);
        if step(&mut decoder, &mut buf, &mut out) {
            if out.error.is_none() {
                let mut rest = buf.to_vec();
                rest.extend_from_slice(&data[i + 1..]);
                out.rest = Some(rest);
            }
            return out;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let config = config();
    let w = whole(data, &config);
    let b = bytewise(data, &config);
    assert!(w.data.len() <= data.len(), "decoded more than the input");
    assert!(w.data.len() as u64 <= config.max_body_size, "decoded past the body limit");
    if let Some(rest) = &w.rest {
        assert!(data.ends_with(rest), "what follows End is not a suffix of the input");
        assert!(w.data.len() + rest.len() < data.len(), "End consumed no framing");
    }
    assert_eq!(w, b, "whole vs byte-at-a-time");
});
