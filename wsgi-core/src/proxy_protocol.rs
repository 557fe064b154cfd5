//! The PROXY protocol (versions 1 and 2, as HAProxy defines it): the header a load balancer
//! writes at the start of a connection to tell the server who the client is.
//!
//! A [`Connection`](crate::Connection) whose [`Config::proxy_protocol`](crate::Config) is on
//! expects one header before its first request and parses it with [`parse_proxy_header`]; the
//! driver then reads it from [`Connection::proxy_header`](crate::Connection::proxy_header).
//! Specification: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::ProtocolError;

/// The 12 bytes every version 2 header starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// What every version 1 header starts with.
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// The longest version 1 header, CRLF included (the specification's bound).
const V1_MAX: usize = 107;

/// The most bytes a version 2 header may carry after its 16-byte start (addresses and TLVs).
/// HAProxy sends a few hundred at most; the bound keeps a header within what a connection
/// buffers before it stops reading, so a larger one is refused rather than waited for.
pub const PROXY_V2_MAX_LEN: usize = 4096;

/// `PP2_TYPE_SSL`: the client reached the proxy over TLS (or SSL).
const PP2_TYPE_SSL: u8 = 0x20;

/// In `PP2_TYPE_SSL`'s client field: the client connected over TLS.
const PP2_CLIENT_SSL: u8 = 0x01;

/// Which version of the protocol a header used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyVersion {
    /// The human-readable version: `PROXY TCP4 … \r\n`.
    V1,
    /// The binary version.
    V2,
}

/// What a PROXY protocol header said about the connection the proxy received.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The protocol version the header used.
    pub version: ProxyVersion,
    /// The client's address, as the proxy saw it. `None` when the header carries no usable
    /// address: a version 1 `UNKNOWN`, a version 2 `LOCAL` command (a health check from the
    /// proxy itself), or an address family other than TCP over IPv4 or IPv6.
    pub source: Option<SocketAddr>,
    /// The address the client connected to on the proxy (`None` in the same cases).
    pub destination: Option<SocketAddr>,
    /// The client reached the proxy over TLS (a version 2 `PP2_TYPE_SSL` entry with its
    /// `PP2_CLIENT_SSL` bit).
    pub tls: bool,
}

/// Parses a PROXY protocol header at the start of `input`.
///
/// Returns `Ok(None)` while `input` is a strict prefix of a header that may still be valid,
/// and `Ok(Some((header, n)))` once a whole header is there, `n` being its length: the
/// connection's own bytes start at `input[n..]`. Whatever way `input` is split over calls,
/// the result for the whole is the same.
///
/// # Errors
///
/// [`ProtocolError::BadProxyHeader`] when `input` does not start with a valid header.
///
/// ```
/// use wsgi_core::parse_proxy_header;
/// let input = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
/// let (header, n) = parse_proxy_header(input).unwrap().unwrap();
/// assert_eq!(header.source, Some("192.0.2.1:56324".parse().unwrap()));
/// assert_eq!(&input[n..n + 3], b"GET");
/// assert_eq!(parse_proxy_header(b"PROXY TCP4 192.0").unwrap(), None);
/// ```
pub fn parse_proxy_header(input: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProtocolError> {
    if input.first() == Some(&b'\r') {
        let n = input.len().min(V2_SIGNATURE.len());
        if input[..n] != V2_SIGNATURE[..n] {
            return Err(ProtocolError::BadProxyHeader);
        }
        return parse_v2(input);
    }
    let n = input.len().min(V1_PREFIX.len());
    if input[..n] != V1_PREFIX[..n] {
        return Err(ProtocolError::BadProxyHeader);
    }
    parse_v1(input)
}

fn parse_v1(input: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProtocolError> {
    let window = &input[..input.len().min(V1_MAX)];
    // The first CR or LF ends the line; a LF without its CR is never valid.
    let Some(cr) = memchr::memchr2(b'\r', b'\n', window) else {
        // A header still arriving, or one longer than the bound.
        return if window.len() == V1_MAX { Err(ProtocolError::BadProxyHeader) } else { Ok(None) };
    };
    if window[cr] == b'\n' {
        return Err(ProtocolError::BadProxyHeader);
    }
    match window.get(cr + 1) {
        None if cr + 1 < V1_MAX => return Ok(None),
        Some(b'\n') => {}
        _ => return Err(ProtocolError::BadProxyHeader),
    }
    let line = &window[V1_PREFIX.len()..cr];
    let bad = ProtocolError::BadProxyHeader;
    let mut parts = line.split(|&b| b == b' ');
    let family = parts.next().ok_or(bad)?;
    let (source, destination) = match family {
        // "UNKNOWN" may be followed by anything: the receiver ignores it.
        b"UNKNOWN" => (None, None),
        b"TCP4" | b"TCP6" => {
            let v6 = family == b"TCP6";
            let src = v1_ip(parts.next(), v6)?;
            let dst = v1_ip(parts.next(), v6)?;
            let sport = v1_port(parts.next())?;
            let dport = v1_port(parts.next())?;
            if parts.next().is_some() {
                return Err(bad);
            }
            (Some(SocketAddr::new(src, sport)), Some(SocketAddr::new(dst, dport)))
        }
        _ => return Err(bad),
    };
    let header = ProxyHeader { version: ProxyVersion::V1, source, destination, tls: false };
    Ok(Some((header, cr + 2)))
}

fn v1_ip(part: Option<&[u8]>, v6: bool) -> Result<IpAddr, ProtocolError> {
    let text =
        part.and_then(|p| std::str::from_utf8(p).ok()).ok_or(ProtocolError::BadProxyHeader)?;
    let ip = if v6 {
        text.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().map(IpAddr::V4)
    };
    ip.map_err(|_| ProtocolError::BadProxyHeader)
}

fn v1_port(part: Option<&[u8]>) -> Result<u16, ProtocolError> {
    let digits = part.ok_or(ProtocolError::BadProxyHeader)?;
    // 1 to 5 decimal digits, no sign, no leading zero (but "0" itself).
    let canonical = !digits.is_empty()
        && digits.len() <= 5
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || digits.len() == 1);
    if !canonical {
        return Err(ProtocolError::BadProxyHeader);
    }
    let value = digits.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| ProtocolError::BadProxyHeader)
}

fn parse_v2(input: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProtocolError> {
    let bad = ProtocolError::BadProxyHeader;
    let Some(fixed) = input.get(..16) else {
        // Check what is there of the version/command byte early: a v1-style garbage after
        // the signature is refused before 16 bytes arrive.
        if let Some(&vc) = input.get(12) {
            if vc >> 4 != 2 || vc & 0x0f > 1 {
                return Err(bad);
            }
        }
        return Ok(None);
    };
    let version_command = fixed[12];
    if version_command >> 4 != 2 {
        return Err(bad);
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(bad),
    };
    let family = fixed[13];
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > PROXY_V2_MAX_LEN {
        return Err(bad);
    }
    let Some(body) = input.get(16..16 + len) else {
        return Ok(None);
    };
    if local {
        // A health check from the proxy itself: the family and the block are ignored, the
        // connection's own addresses stand.
        let header =
            ProxyHeader { version: ProxyVersion::V2, source: None, destination: None, tls: false };
        return Ok(Some((header, 16 + len)));
    }
    // The address block's size by family (the high nibble) and transport (the low nibble).
    let (addresses, rest): (Option<(SocketAddr, SocketAddr)>, &[u8]) = match family {
        0x11 => {
            let a = body.get(..12).ok_or(bad)?;
            let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]));
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (Some((SocketAddr::new(ip(0), port(8)), SocketAddr::new(ip(4), port(10)))), &body[12..])
        }
        0x21 => {
            let a = body.get(..36).ok_or(bad)?;
            let ip = |o: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&a[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (
                Some((SocketAddr::new(ip(0), port(32)), SocketAddr::new(ip(16), port(34)))),
                &body[36..],
            )
        }
        // UNSPEC, or UDP and UNIX families: nothing usable for an HTTP connection's
        // REMOTE_ADDR; their address blocks are skipped with the TLVs' bytes below.
        0x00 => (None, body),
        0x12 => (None, body.get(12..).ok_or(bad)?),
        0x22 => (None, body.get(36..).ok_or(bad)?),
        0x31 | 0x32 => (None, body.get(216..).ok_or(bad)?),
        _ => return Err(bad),
    };
    let tls = tls_from_tlvs(rest)?;
    let (source, destination) = match addresses {
        Some((s, d)) => (Some(s), Some(d)),
        None => (None, None),
    };
    let header = ProxyHeader { version: ProxyVersion::V2, source, destination, tls };
    Ok(Some((header, 16 + len)))
}

/// Walks the type-length-value entries after the addresses; `true` if one says the client
/// used TLS. A malformed entry makes the header invalid.
fn tls_from_tlvs(mut tlvs: &[u8]) -> Result<bool, ProtocolError> {
    let mut tls = false;
    while !tlvs.is_empty() {
        let [kind, hi, lo, ..] = *tlvs else {
            return Err(ProtocolError::BadProxyHeader);
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let value = tlvs.get(3..3 + len).ok_or(ProtocolError::BadProxyHeader)?;
        if kind == PP2_TYPE_SSL {
            // client (1 byte), verify (4 bytes), then sub-entries.
            let client = *value.first().ok_or(ProtocolError::BadProxyHeader)?;
            if value.len() < 5 {
                return Err(ProtocolError::BadProxyHeader);
            }
            tls = client & PP2_CLIENT_SSL != 0;
        }
        tlvs = &tlvs[3 + len..];
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    /// A version 2 header: `command` 0 (LOCAL) or 1 (PROXY), `family`, the address block and
    /// TLVs.
    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    fn v4_block() -> Vec<u8> {
        let mut b = vec![192, 0, 2, 1, 198, 51, 100, 2];
        b.extend_from_slice(&56324u16.to_be_bytes());
        b.extend_from_slice(&443u16.to_be_bytes());
        b
    }

    fn ssl_tlv(client: u8) -> Vec<u8> {
        // PP2_TYPE_SSL with client, verify = 0, and a PP2_SUBTYPE_SSL_VERSION sub-entry.
        let mut value = vec![client, 0, 0, 0, 0, 0x21, 0, 7];
        value.extend_from_slice(b"TLSv1.3");
        let mut t = vec![PP2_TYPE_SSL];
        t.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        t.extend_from_slice(&value);
        t
    }

    #[test]
    fn version_1_headers() {
        let ok: &[(&[u8], Option<SocketAddr>, Option<SocketAddr>)] = &[
            (
                b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
                addr("192.0.2.1:56324"),
                addr("198.51.100.2:443"),
            ),
            (
                b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n",
                addr("[2001:db8::1]:1"),
                addr("[2001:db8::2]:65535"),
            ),
            (
                b"PROXY TCP4 0.0.0.0 255.255.255.255 0 0\r\n",
                addr("0.0.0.0:0"),
                addr("255.255.255.255:0"),
            ),
            (b"PROXY UNKNOWN\r\n", None, None),
            (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None, None),
        ];
        for (input, source, destination) in ok {
            let mut with_request = input.to_vec();
            with_request.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let (h, n) = parse_proxy_header(&with_request).unwrap().unwrap();
            assert_eq!(n, input.len(), "{:?}", String::from_utf8_lossy(input));
            assert_eq!(
                (h.version, h.source, h.destination, h.tls),
                (ProxyVersion::V1, *source, *destination, false)
            );
        }
    }

    #[test]
    fn version_1_rejections() {
        let bad: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\n",
            b"proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\rX",
            b"PROXY TCP4  192.0.2.1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
            b"PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n",
            b"PROXY TCP4 192.0.2.01 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 080 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 +80 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 -1 2\r\n",
            b"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
            b"PROXY \r\n",
            b"PROXY\r\n",
        ];
        for input in bad {
            assert_eq!(
                parse_proxy_header(input),
                Err(ProtocolError::BadProxyHeader),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        // Longer than 107 bytes without a CRLF.
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX, b'a');
        assert_eq!(parse_proxy_header(&long), Err(ProtocolError::BadProxyHeader));
        // 107 bytes ending in CRLF is the longest valid header.
        long.truncate(V1_MAX - 2);
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse_proxy_header(&long).unwrap().unwrap().1, V1_MAX);
    }

    #[test]
    fn prefixes_wait_for_more() {
        let whole_v1 = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n".to_vec();
        let mut block = v4_block();
        block.extend_from_slice(&ssl_tlv(PP2_CLIENT_SSL));
        let whole_v2 = v2(1, 0x11, &block);
        for whole in [&whole_v1, &whole_v2] {
            for cut in 0..whole.len() {
                assert_eq!(parse_proxy_header(&whole[..cut]), Ok(None), "cut at {cut}");
            }
            assert!(parse_proxy_header(whole).unwrap().is_some());
        }
    }

    #[test]
    fn version_2_headers() {
        let tcp4 = v2(1, 0x11, &v4_block());
        let (h, n) = parse_proxy_header(&tcp4).unwrap().unwrap();
        assert_eq!(n, tcp4.len());
        assert_eq!(
            (h.source, h.destination, h.tls),
            (addr("192.0.2.1:56324"), addr("198.51.100.2:443"), false)
        );

        let mut block = v4_block();
        block.extend_from_slice(&ssl_tlv(PP2_CLIENT_SSL | 0x02));
        let h = parse_proxy_header(&v2(1, 0x11, &block)).unwrap().unwrap().0;
        assert!(h.tls);
        // An SSL entry without the client bit (the client did not use TLS).
        let mut block = v4_block();
        block.extend_from_slice(&ssl_tlv(0));
        assert!(!parse_proxy_header(&v2(1, 0x11, &block)).unwrap().unwrap().0.tls);

        let mut six = Vec::new();
        six.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        six.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        six.extend_from_slice(&8080u16.to_be_bytes());
        six.extend_from_slice(&80u16.to_be_bytes());
        // Other TLVs (PP2_TYPE_AUTHORITY, PP2_TYPE_NOOP) are skipped.
        six.extend_from_slice(&[0x02, 0, 11]);
        six.extend_from_slice(b"example.com");
        six.extend_from_slice(&[0x04, 0, 0]);
        let h = parse_proxy_header(&v2(1, 0x21, &six)).unwrap().unwrap().0;
        assert_eq!(
            (h.source, h.destination),
            (addr("[2001:db8::1]:8080"), addr("[2001:db8::2]:80"))
        );

        // LOCAL: a health check; the addresses, if any, are ignored, and so are the family and
        // the block's size.
        let h = parse_proxy_header(&v2(0, 0x11, &v4_block())).unwrap().unwrap().0;
        assert_eq!((h.source, h.destination), (None, None));
        for (family, block) in [(0x41, &v4_block()[..]), (0x11, &[][..]), (0x21, &[1, 2, 3][..])] {
            let input = v2(0, family, block);
            let (h, n) = parse_proxy_header(&input).unwrap().unwrap();
            assert_eq!((h.source, n), (None, input.len()), "family {family:#x}");
        }
        // UNSPEC with PROXY: no addresses, but TLVs are still read.
        let h = parse_proxy_header(&v2(1, 0x00, &ssl_tlv(PP2_CLIENT_SSL))).unwrap().unwrap().0;
        assert_eq!((h.source, h.tls), (None, true));
        // The longest header accepted, and one byte more refused at once (before it arrives).
        let mut longest = v4_block();
        longest.extend_from_slice(&[0x04, 0x0f, 0xf1]);
        longest.resize(PROXY_V2_MAX_LEN, 0);
        assert!(parse_proxy_header(&v2(1, 0x11, &longest)).unwrap().is_some());
        longest.push(0);
        let too_long = v2(1, 0x11, &longest);
        assert_eq!(parse_proxy_header(&too_long[..16]), Err(ProtocolError::BadProxyHeader));
        let h = parse_proxy_header(&v2(0, 0x00, &[])).unwrap().unwrap().0;
        assert_eq!((h.source, h.destination, h.version), (None, None, ProxyVersion::V2));
        // UNIX and UDP families carry nothing usable.
        assert_eq!(parse_proxy_header(&v2(1, 0x31, &[0; 216])).unwrap().unwrap().0.source, None);
        assert_eq!(parse_proxy_header(&v2(1, 0x12, &v4_block())).unwrap().unwrap().0.source, None);
    }

    #[test]
    fn version_2_rejections() {
        let mut wrong_version = v2(1, 0x11, &v4_block());
        wrong_version[12] = 0x11;
        let mut wrong_command = v2(1, 0x11, &v4_block());
        wrong_command[12] = 0x22;
        let short_block = v2(1, 0x11, &v4_block()[..11]);
        let short_six = v2(1, 0x21, &[0; 35]);
        let bad_family = v2(1, 0x41, &v4_block());
        let mut truncated_tlv = v4_block();
        truncated_tlv.extend_from_slice(&[0x04, 0, 5, 1]);
        let mut short_ssl = v4_block();
        short_ssl.extend_from_slice(&[PP2_TYPE_SSL, 0, 1, 1]);
        let mut half_tlv = v4_block();
        half_tlv.extend_from_slice(&[0x04, 0]);
        for input in [
            wrong_version,
            wrong_command,
            short_block,
            short_six,
            bad_family,
            v2(1, 0x11, &truncated_tlv),
            v2(1, 0x11, &short_ssl),
            v2(1, 0x11, &half_tlv),
            b"\r\n\r\n\0\r\nQUIT\r".to_vec(),
            b"\r\nGET".to_vec(),
        ] {
            assert_eq!(parse_proxy_header(&input), Err(ProtocolError::BadProxyHeader), "{input:?}");
        }
        // A bad version/command byte is refused as soon as it arrives.
        let mut early = V2_SIGNATURE.to_vec();
        early.push(0x11);
        assert_eq!(parse_proxy_header(&early), Err(ProtocolError::BadProxyHeader));
    }
}
