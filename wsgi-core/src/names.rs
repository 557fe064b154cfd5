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
pub(crate) const AUTHORIZATION: u8 = 14;
pub(crate) const X_FORWARDED_FOR: u8 = 38;
pub(crate) const X_FORWARDED_PROTO: u8 = 39;
pub(crate) const X_FORWARDED_HOST: u8 = 40;
pub(crate) const X_FORWARDED_PORT: u8 = 41;
pub(crate) const X_FORWARDED_PREFIX: u8 = 42;
pub(crate) const FORWARDED: u8 = 48;
pub(crate) const PROXY_AUTHORIZATION: u8 = 57;

/// Known names (lowercase) and their environ keys, by id.
pub(crate) static NAMES: [(&str, &str); 62] = [
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

/// The slot of a name in [`BY_HASH`]: its length and four of its bytes, lowercased, mixed
/// multiplicatively. The multiplier was searched for so that no two names in [`NAMES`] share a
/// slot.
fn slot(name: &[u8]) -> usize {
    const M: u32 = 0x9e378e13;
    let lower = |i: usize| u32::from(name.get(i).copied().unwrap_or(0) | 0x20);
    let n = name.len();
    let mut x = n as u32;
    for byte in [lower(0), lower(n.wrapping_sub(1)), lower(n / 2), lower(n.wrapping_sub(2))] {
        x = x.wrapping_mul(M).wrapping_add(byte);
    }
    (x.wrapping_mul(M) >> 24) as usize
}

/// The id in each slot, or [`UNKNOWN`].
static BY_HASH: [u8; 256] = [
    255, 9, 36, 255, 255, 5, 255, 255, 255, 44, 255, 255, 255, 255, 25, 255, 4, 255, 255, 14, 255,
    255, 59, 28, 255, 255, 255, 255, 20, 255, 255, 255, 255, 6, 255, 50, 22, 255, 255, 255, 255,
    255, 8, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 1, 255, 255, 255, 18, 255, 40, 255,
    38, 255, 255, 57, 255, 35, 255, 255, 255, 255, 3, 255, 255, 255, 255, 255, 255, 255, 37, 255,
    255, 255, 255, 255, 39, 255, 53, 255, 255, 255, 255, 255, 255, 255, 255, 26, 255, 255, 2, 255,
    255, 255, 255, 255, 255, 24, 255, 255, 255, 255, 255, 255, 255, 255, 23, 255, 255, 255, 255,
    255, 255, 255, 31, 255, 7, 255, 255, 255, 21, 255, 51, 255, 255, 30, 16, 255, 42, 43, 255, 17,
    255, 255, 255, 255, 255, 255, 56, 255, 255, 255, 255, 255, 255, 255, 255, 41, 255, 12, 255,
    255, 10, 29, 255, 255, 255, 255, 255, 255, 255, 255, 47, 255, 48, 255, 255, 255, 255, 255, 255,
    46, 255, 27, 255, 255, 33, 255, 255, 255, 255, 255, 255, 255, 61, 60, 255, 255, 255, 0, 255,
    255, 255, 255, 255, 11, 255, 255, 255, 255, 255, 32, 255, 58, 255, 255, 255, 255, 255, 255, 55,
    255, 255, 255, 52, 255, 255, 19, 255, 15, 255, 255, 255, 255, 49, 45, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 13, 255, 34, 255, 54, 255, 255, 255,
];

/// Returns the id of `name` (ASCII case-insensitive), or [`UNKNOWN`]: one slot, one compare.
pub(crate) fn lookup(name: &[u8]) -> u8 {
    let id = BY_HASH[slot(name)];
    match NAMES.get(usize::from(id)) {
        Some((known, _)) if eq_token_lowercase(name, known.as_bytes()) => id,
        _ => UNKNOWN,
    }
}

/// Compares a header name (a token, as httparse guarantees) with a known name, ASCII
/// case-insensitively. Exact for these inputs: every byte of a known name (`a-z`, `0-9`, `-`)
/// has bit 0x20 set, and setting that bit maps no token byte other than an uppercase letter onto
/// one of them.
fn eq_token_lowercase(name: &[u8], known: &[u8]) -> bool {
    eq_with_bits_set(name, known, 0x20)
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
    let word = |w: &[u8]| u64::from_ne_bytes(w.try_into().unwrap_or([0; 8]));
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
}
