//! The request header names common enough to get a precomputed `HTTP_*` key, and the ids
//! the parser gives them so later stages (framing, Host, the environ) never compare names again.
//!
//! The list covers browser, HTTP client library and proxy headers. `BY_HASH` must place every
//! name of `NAMES` in its own slot (a compile-time assertion checks).

/// The id of a name that is not in the table.
pub(crate) const UNKNOWN: u8 = u8::MAX;
pub(crate) const HOST: u8 = 0;
pub(crate) const CONNECTION: u8 = 1;
pub(crate) const EXPECT: u8 = 2;
pub(crate) const CONTENT_LENGTH: u8 = 3;
pub(crate) const TRANSFER_ENCODING: u8 = 4;
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

/// A slot of [`BY_HASH`]: the [`Words`] of the known name there and its id, side by side so a
/// lookup reads one place.
#[derive(Clone, Copy)]
struct Slot {
    words: Words,
    id: u8,
}

/// The known name in each slot, or, in a slot no name hashes to, [`Words`] no name has (length
/// 0) and [`UNKNOWN`].
static BY_HASH: [Slot; 256] = {
    let empty = Slot { words: Words { len: 0, first: 0, last: 0 }, id: UNKNOWN };
    let mut table = [empty; 256];
    let mut id = 0;
    while id < NAME_LIST.len() {
        let words = words_of(NAME_LIST[id].0.as_bytes());
        let at = slot(words);
        assert!(table[at].id == UNKNOWN, "two known header names share a slot: search another M");
        table[at] = Slot { words, id: id as u8 };
        id += 1;
    }
    table
};

/// Returns the id of `name` (ASCII case-insensitive), or [`UNKNOWN`]. `name` must be visible
/// ASCII, as the tokenizer guarantees: see [`find`] (a CR would read as `-`).
pub(crate) fn lookup(name: &[u8]) -> u8 {
    find(words_of(name), name)
}

/// [`lookup`] of a header name (visible ASCII: see [`find`] for why that makes it exact) whose
/// bytes the caller has already read as little-endian words: `first` holds the eight bytes from
/// the name's start (those past a shorter name's end are ignored) and `last` the eight ending
/// with it (ignored for a name under eight bytes). The tokenizer reads both while it looks for
/// the name's end; some 12 names per request made a second reading of them, or hashing a byte
/// at a time, a tenth of the request path.
#[inline(always)]
pub(crate) fn lookup_read(name: &[u8], first: u64, last: u64) -> u8 {
    let len = name.len();
    let keep = if len >= 8 { u64::MAX } else { (1u64 << (8 * len)) - 1 };
    let first = (first | LOWER) & keep;
    let last = if len >= 8 { last | LOWER } else { first };
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
/// visible ASCII, since every byte of a known name (`a-z`, `0-9`, `-`) has bit 0x20 set and
/// setting that bit maps no visible ASCII byte other than an uppercase letter onto one of them
/// (only controls: CR onto `-`, 0x10-0x19 onto digits).
#[inline(always)]
fn find(w: Words, name: &[u8]) -> u8 {
    let slot = &BY_HASH[slot(w)];
    // The two words cover a name of up to 16 bytes; the middle of a longer one is compared.
    let same = slot.words == w
        && (w.len <= 16 || {
            let known = NAMES.get(usize::from(slot.id)).map_or("", |n| n.0);
            eq_with_bits_set(middle(name), middle(known.as_bytes()), 0x20)
        });
    if same { slot.id } else { UNKNOWN }
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
            (HOST, "host"),
            (CONNECTION, "connection"),
            (EXPECT, "expect"),
            (CONTENT_LENGTH, "content-length"),
            (TRANSFER_ENCODING, "transfer-encoding"),
            (CONTENT_TYPE, "content-type"),
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

    /// [`lookup_read`] of `name` with the words read around it, the bytes past its ends being
    /// `fill`.
    fn read_with(name: &[u8], fill: u8) -> u8 {
        let mut around = vec![fill; 8];
        around.extend_from_slice(name);
        around.extend_from_slice(&[fill; 8]);
        let start = 8;
        let end = start + name.len();
        let first = word(&around[start..start + 8]);
        let last = word(&around[end - 8..end]);
        lookup_read(name, first, last)
    }

    /// Both lookups of `name`, the one on read words with different bytes around it.
    fn check(name: &[u8]) {
        let expected = reference(name);
        assert_eq!(lookup(name), expected, "{:?}", String::from_utf8_lossy(name));
        for fill in [b':', b' ', b'a', b'A', 0xff, 0] {
            assert_eq!(read_with(name, fill), expected, "{name:?} among {fill:#x}");
        }
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
