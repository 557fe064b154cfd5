//! The request head tokenizer: one pass over the head's bytes that splits it into the request
//! line's parts and header fields, checks every byte against the grammar, enforces the line
//! limits and finds each field name's id in [`names`], all at once.
//!
//! It only decides whether a head is valid; [`explain`] says why one is not, on the error path
//! alone, so the hot path carries no error bookkeeping. The grammar is RFC 9112's, as strict as
//! httparse's defaults (single spaces in the request line, no obs-fold) plus CRLF line endings:
//!
//! - method: `tchar`s (RFC 9110 §5.6.2); target: visible ASCII or UTF-8;
//!   version: `HTTP/1.0` or `HTTP/1.1`;
//! - field name: `tchar`s directly followed by `:`; value: HTAB, visible ASCII, space and bytes
//!   of 0x80 and up, with whitespace around it trimmed.
//!
//! Scans read sixteen bytes at a time ([`find`]): on x86-64 with SSE2 compares and a mask of
//! the lanes that stop (through `safe_arch`'s safe wrappers, so this crate keeps no `unsafe`),
//! elsewhere with word arithmetic. Most of a head is field values, and a typical one is crossed
//! in a few steps. The incremental scanner in `head.rs` finds line ends with the same search.
//!
//! Each field line's end is found first, scanning from the line's start, so that finding the
//! next line waits on nothing else; the name is checked and looked up off that path.

use crate::config::Config;
use crate::error::ProtocolError;
use crate::head::{Field, Span, Version, is_tchar};
use crate::names;
use crate::response::valid_field_value;
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
use safe_arch::{
    cmp_eq_mask_i8_m128i, cmp_lt_mask_i8_m128i, load_unaligned_m128i, m128i, min_u8_m128i,
    move_mask_i8_m128i, set_splat_i8_m128i,
};

/// A head that [`tokenize`] found valid: where its parts are, as offsets into its bytes.
#[derive(Debug)]
pub(crate) struct Tokens {
    pub(crate) method: Span,
    pub(crate) target: Span,
    pub(crate) version: Version,
    pub(crate) fields: Vec<Field>,
    /// Every byte of the head is ASCII.
    pub(crate) ascii: bool,
    /// The head's length, through the empty line that ends it.
    pub(crate) len: usize,
}

/// Fields a head is expected to have; more make the list grow once.
const FIELDS_HINT: usize = 16;

/// Bit 7 of every byte.
const HIGH: u64 = 0x8080_8080_8080_8080;
/// Bits 0-6 of every byte.
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// `b` in every byte.
const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// Which bytes of a word stop a scan: bit 7 of each byte of the result says whether that byte
/// of `w` does. Exact per byte: no sum below carries out of its byte.
pub(crate) trait Stop: Copy {
    fn marks(self, w: u64) -> u64;
    fn is_stop(self, b: u8) -> bool;
    /// The same rule over sixteen lanes: all ones in each lane that stops.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    fn lanes(self, v: m128i) -> m128i;
}

/// Bytes below `below` (0x20 for values, 0x21 for the target, whose space ends it), DEL and,
/// with `NON_ASCII`, bytes of 0x80 and up: the scans stop at those while the head is still all
/// ASCII, to note that it no longer is, and need not once it is not.
#[derive(Clone, Copy)]
struct Outside<const NON_ASCII: bool> {
    below: u8,
}

impl<const NON_ASCII: bool> Stop for Outside<NON_ASCII> {
    #[inline(always)]
    fn marks(self, w: u64) -> u64 {
        let low = w & LOW7;
        // Bit 7 of `low + (0x80 - below)` is set for low seven bits from `below` up; of
        // `low + 1` for DEL (and 0xff); bit 7 of `w` for bytes of 0x80 and up.
        let by_low = !low.wrapping_add(splat(0x80 - self.below)) | low.wrapping_add(splat(1));
        if NON_ASCII { (w | by_low) & HIGH } else { !w & by_low & HIGH }
    }
    #[inline(always)]
    fn is_stop(self, b: u8) -> bool {
        (b < self.below) | (b == 0x7f) | (NON_ASCII & (b >= 0x80))
    }
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    fn lanes(self, v: m128i) -> m128i {
        let del = cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(0x7f));
        let low = if NON_ASCII {
            // Signed, bytes of 0x80 and up are negative: below `below` too.
            cmp_lt_mask_i8_m128i(v, set_splat_i8_m128i(self.below as i8))
        } else {
            cmp_eq_mask_i8_m128i(min_u8_m128i(v, set_splat_i8_m128i((self.below - 1) as i8)), v)
        };
        low | del
    }
}

/// One byte value.
#[derive(Clone, Copy)]
pub(crate) struct Is(pub(crate) u8);

impl Stop for Is {
    #[inline(always)]
    fn marks(self, w: u64) -> u64 {
        let x = w ^ splat(self.0);
        // Bit 7 set exactly for the zero bytes of `x`.
        !((x & LOW7).wrapping_add(LOW7) | x | LOW7)
    }
    #[inline(always)]
    fn is_stop(self, b: u8) -> bool {
        b == self.0
    }
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    fn lanes(self, v: m128i) -> m128i {
        cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(self.0 as i8))
    }
}

/// What ends a field name: `:`, or any byte outside visible ASCII.
#[derive(Clone, Copy)]
struct NameEnd;

impl Stop for NameEnd {
    #[inline(always)]
    fn marks(self, w: u64) -> u64 {
        Is(b':').marks(w) | Outside::<true> { below: 0x21 }.marks(w)
    }
    #[inline(always)]
    fn is_stop(self, b: u8) -> bool {
        Is(b':').is_stop(b) | Outside::<true> { below: 0x21 }.is_stop(b)
    }
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    fn lanes(self, v: m128i) -> m128i {
        Is(b':').lanes(v) | Outside::<true> { below: 0x21 }.lanes(v)
    }
}

/// The eight bytes of `buf` from `at` as a little-endian word, if it has them.
#[inline(always)]
fn word_at(buf: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = buf.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Finds the first byte at or after `from` that `stop` selects.
#[inline(always)]
pub(crate) fn find(buf: &[u8], from: usize, stop: impl Stop) -> Option<usize> {
    // Sixteen bytes at a time: one compare per rule and a mask of the lanes that stop. The
    // last few bytes, fewer than sixteen, are left to the words.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    let from = {
        let mut from = from;
        while let Some(chunk) = buf.get(from..).and_then(|rest| rest.first_chunk::<16>()) {
            let m = move_mask_i8_m128i(stop.lanes(load_unaligned_m128i(chunk)));
            if m != 0 {
                return Some(from + m.trailing_zeros() as usize);
            }
            from += 16;
        }
        from
    };
    find_words(buf, from, stop)
}

/// [`find`] without vector instructions: sixteen bytes are skipped at a time while none stops
/// (a lane-wise test and an OR across the lanes, which the compiler turns into vector compares
/// and one mask test where it can), and the one that does is found eight at a time.
#[inline(always)]
fn find_words(buf: &[u8], mut from: usize, stop: impl Stop) -> Option<usize> {
    while let Some(chunk) = buf.get(from..from + 16) {
        if chunk.iter().fold(0u8, |any, &b| any | u8::from(stop.is_stop(b))) != 0 {
            break;
        }
        from += 16;
    }
    while let Some(w) = word_at(buf, from) {
        let m = stop.marks(w);
        if m != 0 {
            return Some(from + (m.trailing_zeros() / 8) as usize);
        }
        from += 8;
    }
    buf.get(from..)?.iter().position(|&b| stop.is_stop(b)).map(|i| from + i)
}

/// Finds `end`, the byte that closes the target (SP) or a value (CR), past bytes of `below`
/// and up other than DEL, and past HTAB where `tab` allows it. Notes a non-ASCII byte in
/// `ascii`. `None` if another byte comes first or the buffer ends.
#[inline(always)]
fn scan_to(
    buf: &[u8],
    mut at: usize,
    end: u8,
    below: u8,
    tab: bool,
    ascii: &mut bool,
) -> Option<usize> {
    loop {
        let stop = if *ascii {
            find(buf, at, Outside::<true> { below })?
        } else {
            find(buf, at, Outside::<false> { below })?
        };
        match buf[stop] {
            b if b == end => return Some(stop),
            b'\t' if tab => at = stop + 1,
            0x80.. => {
                *ascii = false;
                at = stop + 1;
            }
            _ => return None,
        }
    }
}

/// Tokenizes the head at the start of `buf` (one that starts with an empty line is refused).
///
/// Returns `None` unless `buf` begins with a complete, valid head whose lines all end in CRLF,
/// whose request line and field lines fit `config`'s limits and which has at most
/// `config.max_header_count` fields. The head-size limit is the caller's: it passes at most
/// that many bytes.
pub(crate) fn tokenize(buf: &[u8], config: &Config) -> Option<Tokens> {
    let mut ascii = true;

    // The request line: method SP target SP version CRLF.
    let method_len = buf.iter().position(|&b| !is_tchar(b))?;
    if method_len == 0 || buf.get(method_len) != Some(&b' ') {
        return None;
    }
    let target_start = method_len + 1;
    let target_end = scan_to(buf, target_start, b' ', 0x21, false, &mut ascii)?;
    // A target is ASCII (RFC 3986 §2); raw UTF-8 is tolerated, as some clients send it, and any
    // other byte refused rather than guessed at.
    let target = &buf[target_start..target_end];
    if target.is_empty() || (!ascii && std::str::from_utf8(target).is_err()) {
        return None;
    }
    let version = match buf.get(target_end + 1..target_end + 11)? {
        b"HTTP/1.1\r\n" => Version::Http11,
        b"HTTP/1.0\r\n" => Version::Http10,
        _ => return None,
    };
    if target_end + 9 > config.max_request_line {
        return None;
    }

    let mut fields = Vec::with_capacity(FIELDS_HINT);
    let mut pos = target_end + 11;
    loop {
        let line_start = pos;
        if buf.get(pos..pos + 2)? == b"\r\n" {
            return Some(Tokens {
                method: span(0, method_len),
                target: span(target_start, target_end),
                version,
                fields,
                ascii,
                len: pos + 2,
            });
        }
        if fields.len() == config.max_header_count {
            return None;
        }

        // The line's end first: the search for the next line then waits on nothing else. A
        // name's bytes are all allowed in a value, so the value's scan can run from the line's
        // start; the name is checked apart, off that path.
        let cr = scan_to(buf, pos, b'\r', 0x20, true, &mut ascii)?;
        if buf.get(cr + 1) != Some(&b'\n') || cr - line_start > config.max_field_size {
            return None;
        }

        // The name's end (at the latest the CR), and the name's id from its first and last
        // eight bytes (all but the last few lines of a buffer have eight bytes to read there).
        let colon = find(buf, pos, NameEnd)?;
        if colon == pos || buf[colon] != b':' {
            return None;
        }
        let name = &buf[pos..colon];
        let id = match (word_at(buf, pos), colon.checked_sub(8).and_then(|at| word_at(buf, at))) {
            (Some(first), Some(last)) => names::lookup_read(name, first, last),
            _ => names::lookup(name),
        };
        if id == names::UNKNOWN && !name.iter().all(|&b| is_tchar(b)) {
            return None;
        }

        let mut value_start = colon + 1;
        while matches!(buf.get(value_start), Some(b' ' | b'\t')) {
            value_start += 1;
        }
        let mut value_end = cr;
        while value_end > value_start && matches!(buf[value_end - 1], b' ' | b'\t') {
            value_end -= 1;
        }
        fields.push(Field {
            name: span(line_start, colon),
            value: span(value_start, value_end),
            id,
        });
        pos = cr + 2;
    }
}

/// A span of a head; heads are far shorter than `u32::MAX` (the scanner caps them).
fn span(start: usize, end: usize) -> Span {
    Span { start: start as u32, end: end as u32 }
}

/// Says why [`tokenize`] refused `head`, a complete head whose lines all end in CRLF and fit
/// their limits (the scanner checked): the first line, in order, that breaks the grammar, and
/// the rule it breaks.
pub(crate) fn explain(head: &[u8]) -> ProtocolError {
    broken_rule(head).unwrap_or(ProtocolError::BadFieldName)
}

/// The rule that the first line of `head` to break one breaks, or `None` if every line keeps
/// the grammar (then [`tokenize`] accepts `head`: the tests check that the two agree).
fn broken_rule(head: &[u8]) -> Option<ProtocolError> {
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    explain_request_line(request_line).or_else(|| lines.find_map(explain_field_line))
}

/// The rule `line` (without its CRLF) breaks as a request line, if any.
fn explain_request_line(line: &[u8]) -> Option<ProtocolError> {
    if line.contains(&b'\r') {
        return Some(ProtocolError::BareLineEnding);
    }
    // RFC 9112 §3: exactly `method SP request-target SP HTTP-version` (a target holds no space);
    // any other shape is a malformed line, not a version (505) or a target problem.
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Some(ProtocolError::BadRequestLine);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Some(ProtocolError::BadRequestLine);
    }
    if target.is_empty()
        || target.iter().any(|&b| Outside::<false> { below: 0x21 }.is_stop(b))
        || std::str::from_utf8(target).is_err()
    {
        return Some(ProtocolError::BadTarget);
    }
    match version {
        b"HTTP/1.0" | b"HTTP/1.1" => None,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Some(ProtocolError::UnsupportedVersion)
        }
        [b'H', b'T', b'T', b'P', b'/', major] if major.is_ascii_digit() => {
            Some(ProtocolError::UnsupportedVersion)
        }
        _ => Some(ProtocolError::BadRequestLine),
    }
}

/// The rule `line` (without its CRLF) breaks as a field line, if any.
fn explain_field_line(line: &[u8]) -> Option<ProtocolError> {
    if line.contains(&b'\r') {
        return Some(ProtocolError::BareLineEnding);
    }
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Some(ProtocolError::ObsoleteLineFolding);
    }
    let Some(colon) = memchr::memchr(b':', line) else {
        return (!line.is_empty()).then_some(ProtocolError::BadFieldName);
    };
    let name = &line[..colon];
    if name.last().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Some(ProtocolError::WhitespaceBeforeColon);
    }
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Some(ProtocolError::BadFieldName);
    }
    if !valid_field_value(&line[colon + 1..]) {
        return Some(ProtocolError::BadFieldValue);
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn config() -> Config {
        Config::default()
    }

    /// A head's method, target and fields (name, value), for comparisons.
    type Parts = (String, Vec<u8>, Vec<(String, Vec<u8>)>);

    /// The tokens of `head`, as [`Parts`].
    fn parts(head: &[u8], t: &Tokens) -> Parts {
        let text = |s: Span| String::from_utf8(s.get(head).to_vec()).unwrap();
        let fields = t.fields.iter().map(|f| (text(f.name), f.value.get(head).to_vec())).collect();
        (text(t.method), t.target.get(head).to_vec(), fields)
    }

    #[test]
    fn a_head_and_what_it_is_made_of() {
        let head = b"GET /a?b HTTP/1.1\r\nHost: x\r\nX-Custom:  v \t\r\nEmpty:\r\n\r\nBODY";
        let t = tokenize(head, &config()).unwrap();
        assert_eq!(t.len, head.len() - 4);
        assert_eq!(t.version, Version::Http11);
        assert!(t.ascii);
        let (method, target, fields) = parts(head, &t);
        assert_eq!(method, "GET");
        assert_eq!(target, b"/a?b");
        assert_eq!(
            fields,
            [
                ("Host".to_owned(), b"x".to_vec()),
                ("X-Custom".to_owned(), b"v".to_vec()),
                ("Empty".to_owned(), b"".to_vec()),
            ]
        );
        let ids: Vec<u8> = t.fields.iter().map(|f| f.id).collect();
        assert_eq!(ids, [names::HOST, names::UNKNOWN, names::UNKNOWN]);
    }

    #[test]
    fn table() {
        use ProtocolError as E;
        // A head, and whether it is accepted (and ASCII) or the rule it breaks.
        let rows: &[(&[u8], Result<bool, E>)] = &[
            (b"GET / HTTP/1.0\r\n\r\n", Ok(true)),
            (b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", Ok(true)),
            (b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n", Ok(false)),
            (b"GET / HTTP/1.1\r\nX: caf\xe9\r\nY: \x7e\r\n\r\n", Ok(false)),
            (b"GET / HTTP/1.1\r\nX: a\tb\r\n\r\n", Ok(true)),
            (b"GET /\xe9 HTTP/1.1\r\n\r\n", Err(E::BadTarget)),
            (b"GET /\x7f HTTP/1.1\r\n\r\n", Err(E::BadTarget)),
            (b"GET  HTTP/1.1\r\n\r\n", Err(E::BadTarget)),
            (b"G(T / HTTP/1.1\r\n\r\n", Err(E::BadRequestLine)),
            (b"GET / HTTP/1.1 \r\n\r\n", Err(E::BadRequestLine)),
            (b"GET / HTTP/2.0\r\n\r\n", Err(E::UnsupportedVersion)),
            (b"GET / HTTP/1.2\r\n\r\n", Err(E::UnsupportedVersion)),
            (b"GET / HTTP/2\r\n\r\n", Err(E::UnsupportedVersion)),
            (b"GET / http/1.1\r\n\r\n", Err(E::BadRequestLine)),
            (b"GET /\r HTTP/1.1\r\n\r\n", Err(E::BareLineEnding)),
            (b"GET / HTTP/1.1\r\n X: v\r\n\r\n", Err(E::ObsoleteLineFolding)),
            (b"GET / HTTP/1.1\r\nX : v\r\n\r\n", Err(E::WhitespaceBeforeColon)),
            (b"GET / HTTP/1.1\r\nX(: v\r\n\r\n", Err(E::BadFieldName)),
            (b"GET / HTTP/1.1\r\n: v\r\n\r\n", Err(E::BadFieldName)),
            (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", Err(E::BadFieldName)),
            (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", Err(E::BadFieldValue)),
            (b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n", Err(E::BadFieldValue)),
            (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", Err(E::BareLineEnding)),
            // A control byte in a known name's place is no known name: CR would read as `-`.
            (b"GET / HTTP/1.1\r\ncontent\rlength: 1\r\n\r\n", Err(E::BareLineEnding)),
            (b"GET / HTTP/1.1\r\nt\x05: 1\r\n\r\n", Err(E::BadFieldName)),
        ];
        for &(head, expected) in rows {
            let shown = String::from_utf8_lossy(head);
            let t = tokenize(head, &config());
            assert_eq!(
                t.as_ref().map(|t| t.ascii).ok_or(()),
                expected.map_err(|_| ()),
                "{shown:?}"
            );
            assert_eq!(broken_rule(head), expected.err(), "{shown:?}");
            if let Some(t) = t {
                assert_eq!(t.len, head.len(), "{shown:?}");
            }
        }
    }

    #[test]
    fn limits_and_partial_heads() {
        let head = b"GET /abc HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n";
        for end in 0..head.len() {
            assert!(tokenize(&head[..end], &config()).is_none(), "cut at {end}");
        }
        let limited = |f: &dyn Fn(&mut Config)| {
            let mut c = config();
            f(&mut c);
            tokenize(head, &c).is_some()
        };
        assert!(limited(&|c| c.max_request_line = 17));
        assert!(!limited(&|c| c.max_request_line = 16));
        assert!(limited(&|c| c.max_field_size = 11));
        assert!(!limited(&|c| c.max_field_size = 10));
        assert!(limited(&|c| c.max_header_count = 2));
        assert!(!limited(&|c| c.max_header_count = 1));
    }

    /// Every byte value in every lane of a word, among every kind of neighbour, and (where
    /// there is a vector rule) in every lane of sixteen: each scan's marks are exactly its
    /// per-byte rule.
    #[test]
    fn marks_are_exact() {
        fn check(stop: impl Stop) {
            let neighbours = [0x00, 0x09, 0x0d, 0x1f, 0x20, 0x21, 0x3a, 0x7e, 0x7f, 0x80, 0xff];
            for b in 0..=255u8 {
                for lane in 0..8 {
                    for &n in &neighbours {
                        let mut bytes = [n; 8];
                        bytes[lane] = b;
                        let expected = bytes.iter().enumerate().fold(0u64, |m, (i, &x)| {
                            m | (u64::from(stop.is_stop(x)) << (8 * i + 7))
                        });
                        assert_eq!(stop.marks(u64::from_le_bytes(bytes)), expected, "{bytes:?}");
                    }
                }
                #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
                for lane in 0..16 {
                    let mut bytes = [b'a'; 16];
                    bytes[lane] = b;
                    let m = move_mask_i8_m128i(stop.lanes(load_unaligned_m128i(&bytes)));
                    let expected = if stop.is_stop(b) { 1 << lane } else { 0 };
                    assert_eq!(m, expected, "byte {b:#x} in lane {lane} of sixteen");
                }
            }
        }
        check(Outside::<true> { below: 0x20 });
        check(Outside::<true> { below: 0x21 });
        check(Outside::<false> { below: 0x20 });
        check(Outside::<false> { below: 0x21 });
        check(NameEnd);
        check(Is(b'\n'));
    }

    /// Both searches: the one this target uses and the portable one.
    #[test]
    fn find_agrees_with_a_plain_search() {
        /// `byte`, which `stop` stops at, at every place in a run of `a`s, searched for from
        /// every place before it, and in the run cut there (other alignments).
        type Search<S> = fn(&[u8], usize, S) -> Option<usize>;
        fn check<S: Stop>(stop: S, byte: u8) {
            let searches: [Search<S>; 2] = [find, find_words];
            for find in searches {
                let mut hay = vec![b'a'; 70];
                assert_eq!(find(&hay, 0, stop), None);
                for i in 0..hay.len() {
                    hay[i] = byte;
                    for from in 0..=i {
                        assert_eq!(find(&hay, from, stop), Some(i), "stop at {i}, from {from}");
                        assert_eq!(find(&hay[from..], 0, stop), Some(i - from), "cut at {from}");
                    }
                    assert_eq!(find(&hay, i + 1, stop), None);
                    hay[i] = b'a';
                }
            }
        }
        check(Outside::<true> { below: 0x20 }, b'\r');
        check(Is(b'\n'), b'\n');
        // The scanner's line search: bytes whose XOR with LF borrows or carries must not look
        // like LF.
        let tricky: Vec<u8> = (0..=255u8).filter(|&b| b != b'\n').collect();
        assert_eq!(find(&tricky, 0, Is(b'\n')), None);
        let mut with_lf = tricky.clone();
        with_lf.push(b'\n');
        assert_eq!(find(&with_lf, 0, Is(b'\n')), Some(tricky.len()));
    }

    /// What httparse makes of `head` where its grammar and ours are the same: a complete head
    /// with every line ending in CRLF. Returns the head's length and its parts.
    fn oracle(head: &[u8]) -> Option<(usize, Parts)> {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut slots);
        let Ok(httparse::Status::Complete(n)) = req.parse(head) else { return None };
        if !as_the_scanner_passes_it(&head[..n]) {
            return None;
        }
        let fields = req.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect();
        Some((n, (req.method?.to_owned(), req.path?.as_bytes().to_vec(), fields)))
    }

    /// Whether `head` is shaped as the scanner passes heads on: no empty line first (httparse
    /// skips those; the scanner does that here) and a CR before every LF.
    fn as_the_scanner_passes_it(head: &[u8]) -> bool {
        !matches!(head.first(), Some(b'\r' | b'\n'))
            && head.iter().enumerate().all(|(i, &b)| b != b'\n' || i > 0 && head[i - 1] == b'\r')
    }

    fn field_line() -> impl Strategy<Value = Vec<u8>> {
        let name = prop_oneof![
            Just("Host".to_owned()),
            Just("content-length".to_owned()),
            Just("Upgrade-Insecure-Requests".to_owned()),
            "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,30}",
        ];
        let value = proptest::collection::vec(
            // Mostly what a value may hold, now and then what it may not.
            prop_oneof![
                40 => 0x20u8..0x7f,
                3 => Just(b'\t'),
                5 => 0x80u8..=0xff,
                1 => Just(0x7f),
                1 => 0u8..0x20,
            ],
            0..40,
        );
        (name, value).prop_map(|(n, v)| [n.as_bytes(), b": ", &v, b"\r\n"].concat())
    }

    fn head() -> impl Strategy<Value = Vec<u8>> {
        let method = prop_oneof![Just("GET".to_owned()), "[A-Z]{1,8}"];
        let target = prop_oneof![
            Just("/".to_owned()),
            "/[!-~]{0,40}",
            "/[a-z\u{e9}\u{4e2d}]{0,8}",
            "/[a-z\u{0}-\u{1f}\u{7f}]{0,4}",
        ];
        let version = prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0")];
        let fields = proptest::collection::vec(field_line(), 0..12);
        (method, target, version, fields).prop_map(|(m, t, v, f)| {
            [format!("{m} {t} {v}\r\n").as_bytes(), &f.concat(), b"\r\n"].concat()
        })
    }

    /// A head with some bytes changed, inserted or removed anywhere.
    fn mangled() -> impl Strategy<Value = Vec<u8>> {
        let edit = (any::<prop::sample::Index>(), any::<u8>(), 0..3u8);
        (head(), proptest::collection::vec(edit, 0..4)).prop_map(|(mut h, edits)| {
            for (at, byte, kind) in edits {
                let i = at.index(h.len());
                match kind {
                    0 => h[i] = byte,
                    1 => h.insert(i, byte),
                    _ => {
                        h.remove(i);
                    }
                }
            }
            h
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The tokenizer accepts exactly what httparse does (where the grammars meet), with the
        /// same parts, and the explanation of a refusal names a line for every head refused.
        #[test]
        fn agrees_with_httparse(head in prop_oneof![head(), mangled()]) {
            let mut input = head.clone();
            input.extend_from_slice(b"tail \x00\r\n");
            let ours = tokenize(&input, &config());
            let theirs = oracle(&input);
            match (&ours, &theirs) {
                (Some(t), Some((n, parts_theirs))) => {
                    prop_assert_eq!(t.len, *n);
                    prop_assert_eq!(&parts(&input, t), parts_theirs);
                    prop_assert_eq!(t.ascii, input[..*n].is_ascii());
                    for f in &t.fields {
                        prop_assert_eq!(f.id, names::lookup(f.name.get(&input)));
                    }
                }
                (None, None) => {}
                _ => prop_assert!(
                    false,
                    "tokenizer {:?}, httparse {:?}",
                    ours.map(|t| t.len),
                    theirs.map(|t| t.0)
                ),
            }
            // Where the head is complete and its lines end in CRLF (what `explain` is given),
            // a refusal always has a line to blame, and an acceptance none.
            if let Some(end) = memchr::memmem::find(&input, b"\r\n\r\n") {
                let head = &input[..end + 4];
                if as_the_scanner_passes_it(head) {
                    prop_assert_eq!(tokenize(head, &config()).is_some(), broken_rule(head).is_none());
                }
            }
        }
    }
}
