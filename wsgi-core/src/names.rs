//! The request header names common enough to get a precomputed `HTTP_*` key, and the ids
//! the parser gives them so later stages (framing, Host, the environ) never compare names again.
//!
//! The list covers browser, HTTP client library and proxy headers. `BY_HASH` must place every
//! name of `NAMES` in its own slot (the `table_is_consistent` test checks).

/// The id of a name that is not in the table.
pub(crate) const UNKNOWN: u8 = u8::MAX;
pub(crate) const HOST: u8 = 0;
pub(crate) const CONNECTION: u8 = 1;
pub(crate) const EXPECT: u8 = 2;
pub(crate) const CONTENT_LENGTH: u8 = 3;
pub(crate) const CONTENT_TYPE: u8 = 5;
pub(crate) const COOKIE: u8 = 6;
#[cfg_attr(not(feature = "python"), allow(dead_code))] // the bridge keeps credentials out of its caches
pub(crate) const AUTHORIZATION: u8 = 14;
pub(crate) const X_FORWARDED_FOR: u8 = 38;
pub(crate) const X_FORWARDED_PROTO: u8 = 39;
pub(crate) const X_FORWARDED_HOST: u8 = 40;
pub(crate) const X_FORWARDED_PORT: u8 = 41;
pub(crate) const X_FORWARDED_PREFIX: u8 = 42;
pub(crate) const FORWARDED: u8 = 48;
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) const PROXY_AUTHORIZATION: u8 = 57;

/// Known names (lowercase) and their environ keys, by id.
pub(crate) static NAMES: [(&str, &str); 62] = NAME_LIST;

/// [`NAMES`], as a constant the tables below are computed from at compile time.
const NAME_LIST: [(&str, &str); 62] = [
    ("host", "HTTP_HOST"),
    ("connection", "HTTP_CONNECTION"),
    ("expect", "HTTP_EXPECT"),
    ("content-length", "CONTENT_LENGTH"),
    ("transfer-encoding", "HTTP_TRANSFER_ENCODING"),
    ("content-type", "CONTENT_TYPE"),
    ("cookie", "HTTP_COOKIE"),
    ("user-agent", "HTTP_USER_AGENT"),
    ("accept", "HTTP_ACCEPT"),
    ("accept-language", "HTTP_ACCEPT_LANGUAGE"),
    ("accept-encoding", "HTTP_ACCEPT_ENCODING"),
    ("accept-charset", "HTTP_ACCEPT_CHARSET"),
    ("referer", "HTTP_REFERER"),
    ("origin", "HTTP_ORIGIN"),
    ("authorization", "HTTP_AUTHORIZATION"),
    ("cache-control", "HTTP_CACHE_CONTROL"),
    ("pragma", "HTTP_PRAGMA"),
    ("upgrade-insecure-requests", "HTTP_UPGRADE_INSECURE_REQUESTS"),
    ("upgrade", "HTTP_UPGRADE"),
    ("te", "HTTP_TE"),
    ("keep-alive", "HTTP_KEEP_ALIVE"),
    ("dnt", "HTTP_DNT"),
    ("range", "HTTP_RANGE"),
    ("if-range", "HTTP_IF_RANGE"),
    ("if-match", "HTTP_IF_MATCH"),
    ("if-none-match", "HTTP_IF_NONE_MATCH"),
    ("if-modified-since", "HTTP_IF_MODIFIED_SINCE"),
    ("if-unmodified-since", "HTTP_IF_UNMODIFIED_SINCE"),
    ("sec-fetch-dest", "HTTP_SEC_FETCH_DEST"),
    ("sec-fetch-mode", "HTTP_SEC_FETCH_MODE"),
    ("sec-fetch-site", "HTTP_SEC_FETCH_SITE"),
    ("sec-fetch-user", "HTTP_SEC_FETCH_USER"),
    ("sec-ch-ua", "HTTP_SEC_CH_UA"),
    ("sec-ch-ua-mobile", "HTTP_SEC_CH_UA_MOBILE"),
    ("sec-ch-ua-platform", "HTTP_SEC_CH_UA_PLATFORM"),
    ("sec-gpc", "HTTP_SEC_GPC"),
    ("priority", "HTTP_PRIORITY"),
    ("purpose", "HTTP_PURPOSE"),
    ("x-forwarded-for", "HTTP_X_FORWARDED_FOR"),
    ("x-forwarded-proto", "HTTP_X_FORWARDED_PROTO"),
    ("x-forwarded-host", "HTTP_X_FORWARDED_HOST"),
    ("x-forwarded-port", "HTTP_X_FORWARDED_PORT"),
    ("x-forwarded-prefix", "HTTP_X_FORWARDED_PREFIX"),
    ("x-real-ip", "HTTP_X_REAL_IP"),
    ("x-requested-with", "HTTP_X_REQUESTED_WITH"),
    ("x-csrftoken", "HTTP_X_CSRFTOKEN"),
    ("x-csrf-token", "HTTP_X_CSRF_TOKEN"),
    ("x-request-id", "HTTP_X_REQUEST_ID"),
    ("forwarded", "HTTP_FORWARDED"),
    ("via", "HTTP_VIA"),
    ("content-encoding", "HTTP_CONTENT_ENCODING"),
    ("content-language", "HTTP_CONTENT_LANGUAGE"),
    ("content-md5", "HTTP_CONTENT_MD5"),
    ("content-range", "HTTP_CONTENT_RANGE"),
    ("content-disposition", "HTTP_CONTENT_DISPOSITION"),
    ("access-control-request-method", "HTTP_ACCESS_CONTROL_REQUEST_METHOD"),
    ("access-control-request-headers", "HTTP_ACCESS_CONTROL_REQUEST_HEADERS"),
    ("proxy-authorization", "HTTP_PROXY_AUTHORIZATION"),
    ("max-forwards", "HTTP_MAX_FORWARDS"),
    ("from", "HTTP_FROM"),
    ("date", "HTTP_DATE"),
    ("warning", "HTTP_WARNING"),
];

/// Bit 0x20 in every byte: lowercases an ASCII letter.
const LOWER: u64 = 0x2020_2020_2020_2020;

/// The multiplier of [`slot`], searched for so that no two names of [`NAMES`] share a slot (the
/// build fails if they do: see [`BY_HASH`]).
const M: u64 = 0x7a41_6ffa_b620_2b3b;

/// A name's length and its first and last eight bytes as little-endian words, each byte with
/// bit 0x20 set; bytes past the end of a shorter name are zero (and its last word is its
/// first).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Words {
    len: usize,
    first: u64,
    last: u64,
}

/// [`Words`] byte by byte; `const` for the tables.
const fn words_of(name: &[u8]) -> Words {
    let n = name.len();
    let mut first = 0u64;
    let mut i = 0;
    while i < 8 && i < n {
        first |= ((name[i] | 0x20) as u64) << (8 * i);
        i += 1;
    }
    let mut last = first;
    if n >= 8 {
        last = 0;
        let mut j = 0;
        while j < 8 {
            last |= ((name[n - 8 + j] | 0x20) as u64) << (8 * j);
            j += 1;
        }
    }
    Words { len: n, first, last }
}

/// The slot of a name in [`BY_HASH`]: one multiplication of its [`Words`] mixed.
const fn slot(w: Words) -> usize {
    ((w.first ^ w.last.rotate_left(23)).wrapping_add(w.len as u64).wrapping_mul(M) >> 56) as usize
}

/// The [`Words`] of each known name, by id.
static KNOWN: [Words; 62] = KNOWN_WORDS;

/// [`KNOWN`], as a constant [`BY_HASH`] is computed from.
const KNOWN_WORDS: [Words; 62] = {
    let mut table = [Words { len: 0, first: 0, last: 0 }; 62];
    let mut id = 0;
    while id < NAME_LIST.len() {
        table[id] = words_of(NAME_LIST[id].0.as_bytes());
        id += 1;
    }
    table
};

/// The id in each slot, or [`UNKNOWN`].
static BY_HASH: [u8; 256] = {
    let mut table = [UNKNOWN; 256];
    let mut id = 0;
    while id < KNOWN_WORDS.len() {
        let at = slot(KNOWN_WORDS[id]);
        assert!(table[at] == UNKNOWN, "two known header names share a slot: search another M");
        table[at] = id as u8;
        id += 1;
    }
    table
};

/// Returns the id of `name` (ASCII case-insensitive), or [`UNKNOWN`].
pub(crate) fn lookup(name: &[u8]) -> u8 {
    find(words_of(name), name)
}

/// [`lookup`] of the header name `head[start..start + len]` (a token, as httparse guarantees),
/// reading its first and last eight bytes as two words where the head has them around it
/// (it always does but for a name of under three bytes ending it): some 12 names per request,
/// and hashing a byte at a time was a tenth of the request path.
pub(crate) fn lookup_in(head: &[u8], start: usize, len: usize) -> u8 {
    let end = start + len;
    let name = head.get(start..end).unwrap_or_default();
    let first = head.get(start..start + 8);
    let last = end.checked_sub(8).and_then(|at| head.get(at..end));
    let (Some(first), Some(last)) = (first, last) else { return lookup(name) };
    let keep = if len >= 8 { u64::MAX } else { (1u64 << (8 * len)) - 1 };
    let first = (word(first) | LOWER) & keep;
    let last = if len >= 8 { word(last) | LOWER } else { first };
    find(Words { len, first, last }, name)
}

/// Eight bytes as a little-endian word (zero unless `bytes` has exactly eight).
fn word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8]))
}

/// The bytes of a name between its first and last eight.
fn middle(name: &[u8]) -> &[u8] {
    name.get(8..name.len().saturating_sub(8)).unwrap_or_default()
}

/// The id of the known name whose [`Words`] are `w`, confirmed against all of `name`: exact for
/// tokens, since every byte of a known name (`a-z`, `0-9`, `-`) has bit 0x20 set and setting
/// that bit maps no token byte other than an uppercase letter onto one of them.
fn find(w: Words, name: &[u8]) -> u8 {
    let id = BY_HASH[slot(w)];
    let Some(known) = KNOWN.get(usize::from(id)) else { return UNKNOWN };
    // The two words cover a name of up to 16 bytes; the middle of a longer one is compared.
    let same = *known == w
        && (w.len <= 16
            || eq_with_bits_set(middle(name), middle(NAMES[usize::from(id)].0.as_bytes()), 0x20));
    if same { id } else { UNKNOWN }
}

/// Whether `a`, with the bits of `set` set in each byte, equals `b` (with `set` 0: `a == b`);
/// eight bytes at a time and inline, where the short strings of a request head would otherwise
/// each cost a call into libc's `memcmp`.
#[inline]
pub(crate) fn eq_with_bits_set(a: &[u8], b: &[u8], set: u8) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let set_word = u64::from_ne_bytes([set; 8]);
    let (mut wa, mut wb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut wa).zip(&mut wb) {
        if word(x) | set_word != word(y) {
            return false;
        }
    }
    let mut diff = 0;
    for (x, y) in wa.remainder().iter().zip(wb.remainder()) {
        diff |= (x | set) ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (id, (name, key)) in NAMES.iter().enumerate() {
            assert_eq!(lookup(name.as_bytes()), id as u8, "{name}");
            assert_eq!(lookup(name.to_uppercase().as_bytes()), id as u8, "{name}");
            let derived = format!("HTTP_{}", name.to_uppercase().replace('-', "_"));
            let cgi = matches!(*name, "content-type" | "content-length");
            assert_eq!(*key, if cgi { name.to_uppercase().replace('-', "_") } else { derived });
        }
        for (id, name) in [
            (X_FORWARDED_FOR, "x-forwarded-for"),
            (X_FORWARDED_PROTO, "x-forwarded-proto"),
            (X_FORWARDED_HOST, "x-forwarded-host"),
            (X_FORWARDED_PORT, "x-forwarded-port"),
            (X_FORWARDED_PREFIX, "x-forwarded-prefix"),
            (FORWARDED, "forwarded"),
            (COOKIE, "cookie"),
            (AUTHORIZATION, "authorization"),
            (PROXY_AUTHORIZATION, "proxy-authorization"),
        ] {
            assert_eq!(NAMES[usize::from(id)].0, name);
        }
        assert_eq!(lookup(b"x-unknown"), UNKNOWN);
        assert_eq!(lookup(b"HoSt"), HOST);
        assert_eq!(lookup(b"hosT"), HOST);
        assert_eq!(lookup(b"hos_"), UNKNOWN);
        assert_eq!(lookup(b"X-Forwarded-Port"), lookup(b"x-forwarded-port"));
        assert_ne!(lookup(b"x-forwarded-port"), lookup(b"x-forwarded-host"));
        assert_eq!(lookup(b""), UNKNOWN);
    }

    /// What [`lookup`] must return for a token: the known name equal to it ignoring ASCII case.
    fn reference(name: &[u8]) -> u8 {
        NAMES
            .iter()
            .position(|(known, _)| known.as_bytes().eq_ignore_ascii_case(name))
            .map_or(UNKNOWN, |id| id as u8)
    }

    /// Both lookups of `name`, the fast one with the name inside a request head and at its
    /// very end (where its words cannot be read around it).
    fn check(name: &[u8]) {
        let expected = reference(name);
        assert_eq!(lookup(name), expected, "{:?}", String::from_utf8_lossy(name));
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        let start = head.len();
        head.extend_from_slice(name);
        assert_eq!(lookup_in(&head, start, name.len()), expected, "at the end: {name:?}");
        head.extend_from_slice(b": v\r\n\r\n");
        assert_eq!(lookup_in(&head, start, name.len()), expected, "in a head: {name:?}");
        assert_eq!(lookup_in(name, 0, name.len()), expected, "alone: {name:?}");
    }

    #[test]
    fn the_fast_lookup_agrees_with_a_plain_search() {
        for (known, _) in NAMES {
            let known = known.as_bytes();
            let upper = known.to_ascii_uppercase();
            check(known);
            check(&upper);
            check(&known[..known.len() - 1]);
            check(&known[1..]);
            check(&[known, b"x"].concat());
            check(&[b"x", known].concat());
            // One byte changed anywhere: the middle of a long name too.
            for at in 0..known.len() {
                let mut changed = known.to_vec();
                changed[at] = if changed[at] == b'q' { b'z' } else { b'q' };
                check(&changed);
                changed[at] = b'_';
                check(&changed);
            }
        }
        for name in [&b""[..], b"a", b"te", b"TE", b"t", b"x-forwarded-", b"sec-fetch-"] {
            check(name);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_token_looks_up_as_a_plain_search_finds_it(
            name in "[a-zA-Z0-9!#$%&'*+.^_`|~-]{0,40}",
            known in 0..NAMES.len(),
            case in proptest::collection::vec(proptest::bool::ANY, 40),
        ) {
            check(name.as_bytes());
            // A known name in random case.
            let mixed: Vec<u8> = NAMES[known]
                .0
                .bytes()
                .zip(&case)
                .map(|(b, &up)| if up { b.to_ascii_uppercase() } else { b })
                .collect();
            check(&mixed);
        }
    }
}
