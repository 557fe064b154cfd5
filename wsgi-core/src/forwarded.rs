//! Proxy headers from trusted peers: RFC 7239 `Forwarded` and the `X-Forwarded-*` family.
//!
//! A server behind a reverse proxy sees the proxy as its peer. The proxy says who the client
//! was in headers, but any client can send those headers too, and a proxy passes on those it
//! does not itself set. So a header is believed only from a peer in [`TrustedProxies`]
//! (gunicorn's `--forwarded-allow-ips`), and only if it is one of the headers the proxy is said
//! to set ([`TrustedProxies::believe`]; by default `X-Forwarded-For` and `X-Forwarded-Proto`,
//! which nginx's usual configuration sets: the others would be the client's word). What each
//! changes:
//!
//! | header               | environ                                                        |
//! |----------------------|----------------------------------------------------------------|
//! | `X-Forwarded-For`    | `REMOTE_ADDR` (and `REMOTE_PORT` if it has one, else removed)   |
//! | `X-Forwarded-Proto`  | `wsgi.url_scheme` (`http` or `https`)                          |
//! | `X-Forwarded-Host`   | `HTTP_HOST`, `SERVER_NAME`, `SERVER_PORT`                      |
//! | `X-Forwarded-Port`   | `SERVER_PORT` and the port in `HTTP_HOST`                      |
//! | `X-Forwarded-Prefix` | put before `SCRIPT_NAME` (percent-decoded)                     |
//! | `Forwarded`          | `for=`, `proto=`, `host=` of the client's hop, as the above    |
//!
//! The client is found by walking the hops from the nearest one back: every hop whose address
//! is itself a trusted proxy is skipped, and the first that is not is the client. A client can
//! thus prepend whatever it likes to `X-Forwarded-For`; only the hops trusted proxies appended
//! are believed. A believed `Forwarded` that is present and valid supplies the client, scheme
//! and host; otherwise the believed `X-Forwarded-*` do. The `X-Forwarded-*` values other than
//! `-For` take their last element, the one the nearest proxy wrote. Invalid values are ignored.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::environ::Scheme;
use crate::framing::trim_ows as trim;
use crate::head::{RequestHead, is_tchar, parse_authority, parse_port, split_authority};
use crate::names;

/// The peers whose proxy headers are believed.
///
/// ```
/// use wsgi_core::TrustedProxies;
/// let trusted = TrustedProxies::parse("127.0.0.1, ::1, 10.0.0.0/8").unwrap();
/// assert!(trusted.trusts(Some("10.1.2.3".parse().unwrap())));
/// assert!(!trusted.trusts(Some("192.0.2.1".parse().unwrap())));
/// assert!(trusted.trusts(None)); // a Unix-socket peer
/// assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedProxies {
    any: bool,
    networks: Vec<IpNet>,
    unix: bool,
    /// The believed headers, one bit per [`ForwardedHeader`].
    believed: u8,
}

impl Default for TrustedProxies {
    /// Trusts no one.
    fn default() -> Self {
        TrustedProxies { any: false, networks: Vec::new(), unix: false, believed: DEFAULT_BELIEVED }
    }
}

/// A proxy header [`TrustedProxies`] can believe.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ForwardedHeader {
    /// RFC 7239 `Forwarded`.
    Forwarded,
    /// `X-Forwarded-For`.
    XForwardedFor,
    /// `X-Forwarded-Proto`.
    XForwardedProto,
    /// `X-Forwarded-Host`.
    XForwardedHost,
    /// `X-Forwarded-Port`.
    XForwardedPort,
    /// `X-Forwarded-Prefix`.
    XForwardedPrefix,
}

impl ForwardedHeader {
    /// Every header, in declaration order.
    pub const ALL: [ForwardedHeader; 6] = [
        ForwardedHeader::Forwarded,
        ForwardedHeader::XForwardedFor,
        ForwardedHeader::XForwardedProto,
        ForwardedHeader::XForwardedHost,
        ForwardedHeader::XForwardedPort,
        ForwardedHeader::XForwardedPrefix,
    ];

    /// The header's name in lowercase, e.g. `"x-forwarded-for"`.
    pub const fn name(self) -> &'static str {
        match self {
            ForwardedHeader::Forwarded => "forwarded",
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::XForwardedProto => "x-forwarded-proto",
            ForwardedHeader::XForwardedHost => "x-forwarded-host",
            ForwardedHeader::XForwardedPort => "x-forwarded-port",
            ForwardedHeader::XForwardedPrefix => "x-forwarded-prefix",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl std::str::FromStr for ForwardedHeader {
    type Err = BadTrustedProxy;

    /// A header name, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ForwardedHeader::ALL
            .into_iter()
            .find(|h| h.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| BadTrustedProxy(Bad::Header(s.trim().to_owned())))
    }
}

/// What is believed when nothing is said: the two headers nginx's usual configuration sets.
const DEFAULT_BELIEVED: u8 =
    ForwardedHeader::XForwardedFor.bit() | ForwardedHeader::XForwardedProto.bit();

/// A trusted-proxy entry that is neither an address, a network nor `*`, or a header name that
/// is not a proxy header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadTrustedProxy(Bad);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Bad {
    Entry(String),
    Header(String),
}

impl fmt::Display for BadTrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Bad::Entry(entry) => write!(
                f,
                "{entry:?} is not a trusted-proxy entry: write an IP address (127.0.0.1, ::1), a \
                 network (10.0.0.0/8, fd00::/8) or * for every peer, separated by commas"
            ),
            Bad::Header(name) => {
                write!(f, "{name:?} is not a proxy header: choose among ")?;
                for (i, h) in ForwardedHeader::ALL.iter().enumerate() {
                    write!(f, "{}{}", if i > 0 { ", " } else { "" }, h.name())?;
                }
                f.write_str(", separated by commas")
            }
        }
    }
}

impl std::error::Error for BadTrustedProxy {}

impl TrustedProxies {
    /// Parses a comma-separated list of IP addresses and CIDR networks, or `*` for every peer.
    ///
    /// Peers on Unix sockets are trusted unless the list is empty: a Unix socket is reachable
    /// only by processes its file permissions admit, which is how a local proxy such as nginx
    /// connects. An empty list trusts no one.
    ///
    /// # Errors
    ///
    /// [`BadTrustedProxy`] naming the first entry that does not parse.
    pub fn parse(spec: &str) -> Result<TrustedProxies, BadTrustedProxy> {
        let mut trusted = TrustedProxies::default();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                trusted.any = true;
            } else if let Ok(net) = entry.parse::<IpNet>() {
                trusted.networks.push(net.trunc());
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                trusted.networks.push(IpNet::from(ip));
            } else {
                return Err(BadTrustedProxy(Bad::Entry(entry.to_owned())));
            }
        }
        trusted.unix = trusted.any || !trusted.networks.is_empty();
        Ok(trusted)
    }

    /// Believes these headers (and no others) from trusted peers: only those the proxy sets
    /// or replaces, since it passes on whatever else the client sent.
    #[must_use]
    pub fn believe(mut self, headers: &[ForwardedHeader]) -> TrustedProxies {
        self.believed = headers.iter().fold(0, |bits, h| bits | h.bit());
        self
    }

    /// Parses a comma-separated list of header names for [`believe`](Self::believe), e.g.
    /// `"x-forwarded-for,x-forwarded-proto"`.
    ///
    /// # Errors
    ///
    /// [`BadTrustedProxy`] naming the first name that is not a proxy header.
    pub fn parse_headers(spec: &str) -> Result<Vec<ForwardedHeader>, BadTrustedProxy> {
        spec.split(',').filter(|h| !h.trim().is_empty()).map(str::parse).collect()
    }

    /// Returns `true` if `header` is believed from trusted peers.
    pub fn believes(&self, header: ForwardedHeader) -> bool {
        self.believed & header.bit() != 0
    }

    /// Returns `true` if proxy headers from `peer` are believed (`None`: a Unix-socket peer).
    pub fn trusts(&self, peer: Option<IpAddr>) -> bool {
        match peer {
            None => self.unix,
            Some(ip) => self.trusts_ip(ip),
        }
    }

    fn trusts_ip(&self, ip: IpAddr) -> bool {
        // An IPv4 peer on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        self.any || self.networks.iter().any(|n| n.contains(&ip))
    }
}

/// What trusted proxy headers say about a request; `None` fields change nothing.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Forwarded<'a> {
    /// The client's address and, if the proxy said, its port.
    pub(crate) client: Option<(IpAddr, Option<u16>)>,
    pub(crate) scheme: Option<Scheme>,
    /// A valid `host[:port]`.
    pub(crate) host: Option<Cow<'a, [u8]>>,
    pub(crate) port: Option<u16>,
    /// An absolute path, still percent-encoded, without a trailing `/`.
    pub(crate) prefix: Option<&'a [u8]>,
}

/// Reads the proxy headers of `head`, sent by a peer `trusted` trusts.
pub(crate) fn forwarded<'a>(head: &'a RequestHead, trusted: &TrustedProxies) -> Forwarded<'a> {
    use ForwardedHeader as H;
    let mut standard: Vec<&[u8]> = Vec::new();
    let (mut xff, mut proto, mut host, mut port, mut prefix) = (Vec::new(), None, None, None, None);
    for f in &head.fields {
        let header = match f.id {
            names::FORWARDED => H::Forwarded,
            names::X_FORWARDED_FOR => H::XForwardedFor,
            names::X_FORWARDED_PROTO => H::XForwardedProto,
            names::X_FORWARDED_HOST => H::XForwardedHost,
            names::X_FORWARDED_PORT => H::XForwardedPort,
            names::X_FORWARDED_PREFIX => H::XForwardedPrefix,
            _ => continue,
        };
        if !trusted.believes(header) {
            continue;
        }
        let value = f.value.get(&head.bytes);
        match header {
            H::Forwarded => standard.push(value),
            H::XForwardedFor => xff.push(value),
            H::XForwardedProto => proto = Some(value),
            H::XForwardedHost => host = Some(value),
            H::XForwardedPort => port = Some(value),
            H::XForwardedPrefix => prefix = Some(value),
        }
    }
    let prefix = prefix.map(last_element).and_then(valid_prefix);
    if let Some(hop) = forwarded_hop(&standard, trusted) {
        let host = hop.host.filter(|h| valid_host(h));
        return Forwarded {
            client: hop.node.address(),
            scheme: hop.proto.as_deref().and_then(scheme),
            port: host.as_deref().and_then(authority_port),
            host,
            prefix,
        };
    }
    let client = if xff.is_empty() {
        None
    } else {
        let nodes: Vec<Node> = xff
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|n| Node::parse_xff(trim(n)))
            .collect();
        client_hop(&nodes, trusted).and_then(|i| nodes[i].address())
    };
    let host = host.map(last_element).filter(|h| valid_host(h)).map(Cow::Borrowed);
    let port = port
        .map(last_element)
        .and_then(parse_port)
        .or_else(|| host.as_deref().and_then(authority_port));
    Forwarded { client, scheme: proto.map(last_element).and_then(scheme), host, port, prefix }
}

/// The client's hop of valid `Forwarded` values, if there are any.
fn forwarded_hop<'a>(values: &[&'a [u8]], trusted: &TrustedProxies) -> Option<Element<'a>> {
    if values.is_empty() {
        return None;
    }
    let mut elements = parse_forwarded(values)?;
    let nodes: Vec<Node> = elements.iter().map(|e| e.node).collect();
    let i = client_hop(&nodes, trusted)?;
    Some(elements.swap_remove(i))
}

/// A `host[:port]` with a non-empty host.
fn valid_host(authority: &[u8]) -> bool {
    parse_authority(authority).is_some_and(|(host, _)| !host.is_empty())
}

/// One hop's address as a proxy wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Ip(IpAddr, Option<u16>),
    /// `unknown`, an obfuscated identifier, or anything that is not an address.
    Opaque,
}

impl Node {
    fn address(self) -> Option<(IpAddr, Option<u16>)> {
        match self {
            Node::Ip(ip, port) => Some((ip, port)),
            Node::Opaque => None,
        }
    }

    /// An `X-Forwarded-For` element: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1` or
    /// `[2001:db8::1]:4711`.
    fn parse_xff(text: &[u8]) -> Node {
        let Ok(text) = std::str::from_utf8(text) else { return Node::Opaque };
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Node::Ip(ip, None);
        }
        Node::parse_rfc7239(text.as_bytes())
    }

    /// An RFC 7239 §6 node: `IPv4[:port]`, `"[IPv6]"[:port]`, `unknown` or `_obfuscated`.
    fn parse_rfc7239(text: &[u8]) -> Node {
        let Ok(text) = std::str::from_utf8(text) else { return Node::Opaque };
        let (ip, port) = if let Some(rest) = text.strip_prefix('[') {
            let Some((v6, after)) = rest.split_once(']') else { return Node::Opaque };
            let Ok(ip) = v6.parse::<Ipv6Addr>() else { return Node::Opaque };
            (IpAddr::V6(ip), after)
        } else {
            let (v4, after) = text.split_at(text.find(':').unwrap_or(text.len()));
            let Ok(ip) = v4.parse::<Ipv4Addr>() else { return Node::Opaque };
            (IpAddr::V4(ip), after)
        };
        match port.strip_prefix(':') {
            None if port.is_empty() => Node::Ip(ip, None),
            // An obfuscated port still identifies the address.
            Some(p) if p.starts_with('_') => Node::Ip(ip, None),
            Some(p) => match parse_port(p.as_bytes()) {
                Some(p) => Node::Ip(ip, Some(p)),
                None => Node::Opaque,
            },
            None => Node::Opaque,
        }
    }
}

/// The index of the client among `nodes` (nearest hop last): the last one that is not a
/// trusted proxy, or the first if all are. `None` if there are no nodes.
fn client_hop(nodes: &[Node], trusted: &TrustedProxies) -> Option<usize> {
    let last = nodes.len().checked_sub(1)?;
    Some(
        (0..=last)
            .rev()
            .find(|&i| !matches!(nodes[i], Node::Ip(ip, _) if trusted.trusts_ip(ip)))
            .unwrap_or(0),
    )
}

/// One `Forwarded` element: the parameters of one hop.
#[derive(Debug)]
struct Element<'a> {
    node: Node,
    proto: Option<Cow<'a, [u8]>>,
    host: Option<Cow<'a, [u8]>>,
}

/// Parses the `Forwarded` field values (in order): `None` if any is malformed.
fn parse_forwarded<'a>(values: &[&'a [u8]]) -> Option<Vec<Element<'a>>> {
    let mut elements = Vec::new();
    for value in values {
        for element in split_outside_quotes(value, b',')? {
            let element = trim(element);
            let (mut node, mut proto, mut host, mut by) = (None, None, None, None);
            for pair in split_outside_quotes(element, b';')? {
                let pair = trim(pair);
                if pair.is_empty() {
                    continue;
                }
                let eq = memchr::memchr(b'=', pair)?;
                let (name, raw) = (&pair[..eq], &pair[eq + 1..]);
                if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
                    return None;
                }
                let value = parameter_value(raw)?;
                let slot = match name.to_ascii_lowercase().as_slice() {
                    b"for" => &mut node,
                    b"proto" => &mut proto,
                    b"host" => &mut host,
                    b"by" => &mut by,
                    _ => continue, // extensions are allowed and ignored
                };
                if slot.replace(value).is_some() {
                    return None; // RFC 7239 §4: a parameter occurs at most once per element
                }
            }
            let node = node.map_or(Node::Opaque, |n| Node::parse_rfc7239(&n));
            elements.push(Element { node, proto, host });
        }
    }
    Some(elements)
}

/// A parameter value: a token, or a quoted string (unescaped).
fn parameter_value(raw: &[u8]) -> Option<Cow<'_, [u8]>> {
    match raw {
        [b'"', inner @ .., b'"'] => {
            let mut out = Vec::with_capacity(inner.len());
            let mut escaped = false;
            for &b in inner {
                match (escaped, b) {
                    (false, b'\\') => escaped = true,
                    (false, b'"') => return None,
                    (_, b) if b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80 => {
                        out.push(b);
                        escaped = false;
                    }
                    _ => return None,
                }
            }
            (!escaped).then_some(Cow::Owned(out))
        }
        _ if !raw.is_empty() && raw.iter().all(|&b| is_tchar(b)) => Some(Cow::Borrowed(raw)),
        _ => None,
    }
}

/// Splits at `sep` outside quoted strings; `None` if a quote is left open.
fn split_outside_quotes(value: &[u8], sep: u8) -> Option<Vec<&[u8]>> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in value.iter().enumerate() {
        match (quoted, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, false, b'"') => quoted = !quoted,
            (false, _, b) if b == sep => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    parts.push(&value[start..]);
    Some(parts)
}

/// The last comma-separated element, trimmed: what the nearest proxy wrote.
fn last_element(value: &[u8]) -> &[u8] {
    trim(value.rsplit(|&b| b == b',').next().unwrap_or_default())
}

fn scheme(value: &[u8]) -> Option<Scheme> {
    if value.eq_ignore_ascii_case(b"https") {
        Some(Scheme::Https)
    } else if value.eq_ignore_ascii_case(b"http") {
        Some(Scheme::Http)
    } else {
        None
    }
}

/// The port of a valid `host[:port]`, if it has one.
fn authority_port(authority: &[u8]) -> Option<u16> {
    let (_, port) = split_authority(authority);
    port.and_then(parse_port)
}

/// A prefix path: absolute, visible ASCII, no query or fragment, and no escape of a control
/// byte (`%00`); the trailing `/` dropped.
fn valid_prefix(value: &[u8]) -> Option<&[u8]> {
    let escapes_control = value.windows(3).any(|w| {
        w[0] == b'%' && matches!((w[1], w[2].to_ascii_uppercase()), (b'0' | b'1', _) | (b'7', b'F'))
    });
    let ok = value.first() == Some(&b'/')
        && !escapes_control
        && value.iter().all(|&b| b.is_ascii_graphic() && b != b'?' && b != b'#');
    let mut trimmed = value;
    while let [rest @ .., b'/'] = trimmed {
        trimmed = rest;
    }
    ok.then_some(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxy_lists() {
        let t = TrustedProxies::parse("127.0.0.1,::1").unwrap();
        assert!(t.trusts(Some("127.0.0.1".parse().unwrap())));
        assert!(t.trusts(Some("::1".parse().unwrap())));
        assert!(t.trusts(Some("::ffff:127.0.0.1".parse().unwrap())));
        assert!(!t.trusts(Some("127.0.0.2".parse().unwrap())));
        assert!(t.trusts(None));
        let nets = TrustedProxies::parse(" 10.0.0.0/8 , fd00::/8,192.0.2.7/24").unwrap();
        assert!(nets.trusts(Some("10.255.0.1".parse().unwrap())));
        assert!(nets.trusts(Some("fd12::1".parse().unwrap())));
        assert!(nets.trusts(Some("192.0.2.200".parse().unwrap())));
        assert!(!nets.trusts(Some("11.0.0.1".parse().unwrap())));
        let any = TrustedProxies::parse("*").unwrap();
        assert!(any.trusts(Some("203.0.113.9".parse().unwrap())) && any.trusts(None));
        let none = TrustedProxies::parse("").unwrap();
        assert!(!none.trusts(None) && !none.trusts(Some("127.0.0.1".parse().unwrap())));
        for bad in ["localhost", "10.0.0.0/33", "1.2.3", "::1/129", "127.0.0.1:80"] {
            let e = TrustedProxies::parse(&format!("127.0.0.1,{bad}")).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn nodes() {
        let ip = |s: &str, p| Node::Ip(s.parse().unwrap(), p);
        assert_eq!(Node::parse_xff(b"192.0.2.1"), ip("192.0.2.1", None));
        assert_eq!(Node::parse_xff(b"192.0.2.1:4711"), ip("192.0.2.1", Some(4711)));
        assert_eq!(Node::parse_xff(b"2001:db8::1"), ip("2001:db8::1", None));
        assert_eq!(Node::parse_xff(b"[2001:db8::1]:80"), ip("2001:db8::1", Some(80)));
        assert_eq!(Node::parse_rfc7239(b"[2001:db8::1]"), ip("2001:db8::1", None));
        assert_eq!(Node::parse_rfc7239(b"192.0.2.1:_port"), ip("192.0.2.1", None));
        for opaque in [
            &b"unknown"[..],
            b"_hidden",
            b"",
            b"192.0.2.1:99999",
            b"192.0.2.1:",
            b"[2001:db8::1",
            b"2001:db8::1:80x",
            b"192.0.2.01",
            b"example.com",
        ] {
            assert_eq!(Node::parse_xff(opaque), Node::Opaque, "{}", opaque.escape_ascii());
        }
    }

    #[test]
    fn forwarded_syntax() {
        fn one(v: &[u8]) -> Option<Vec<Element<'_>>> {
            parse_forwarded(&[v])
        }
        let e = one(b"for=192.0.2.60;proto=http;by=203.0.113.43").unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].node, Node::Ip("192.0.2.60".parse().unwrap(), None));
        assert_eq!(e[0].proto.as_deref(), Some(&b"http"[..]));
        let e =
            one(b"For=\"[2001:db8:cafe::17]:4711\", for=unknown;Host=\"a.example:8443\"").unwrap();
        assert_eq!(e[0].node, Node::Ip("2001:db8:cafe::17".parse().unwrap(), Some(4711)));
        assert_eq!(e[1].node, Node::Opaque);
        assert_eq!(e[1].host.as_deref(), Some(&b"a.example:8443"[..]));
        // A quoted comma or semicolon does not split; escapes are undone.
        let e = one(b"for=\"_a,b;c\";host=\"x\\\"y\"").unwrap();
        assert_eq!((e.len(), e[0].host.as_deref()), (1, Some(&b"x\"y"[..])));
        // Extensions are ignored; empty pairs tolerated.
        assert!(one(b"for=192.0.2.1;;ext=1").is_some());
        for bad in [
            &b"for=192.0.2.1;for=192.0.2.2"[..],
            b"for=\"192.0.2.1",
            b"for",
            b"=x",
            b"for=[2001:db8::1]",
            b"for=a b",
            b"f r=1",
            b"for=\"a\x01\"",
        ] {
            assert!(one(bad).is_none(), "{}", bad.escape_ascii());
        }
    }

    #[test]
    fn client_is_the_last_untrusted_hop() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let n = |s: &str| Node::parse_xff(s.as_bytes());
        let nodes = [n("203.0.113.1"), n("198.51.100.7"), n("10.0.0.2")];
        assert_eq!(client_hop(&nodes, &t), Some(1));
        let spoofed = [n("1.1.1.1"), n("198.51.100.7")];
        assert_eq!(client_hop(&spoofed, &t), Some(1));
        let all_trusted = [n("10.0.0.3"), n("10.0.0.2")];
        assert_eq!(client_hop(&all_trusted, &t), Some(0));
        assert_eq!(client_hop(&[n("unknown"), n("10.0.0.2")], &t), Some(0));
        assert_eq!(client_hop(&[], &t), None);
    }

    #[test]
    fn helpers() {
        assert_eq!(last_element(b"https, http "), b"http");
        assert_eq!(last_element(b" https"), b"https");
        assert_eq!(valid_prefix(b"/app/"), Some(&b"/app"[..]));
        assert_eq!(valid_prefix(b"/"), Some(&b""[..]));
        assert_eq!(valid_prefix(b"app"), None);
        assert_eq!(valid_prefix(b"/a?b"), None);
        assert_eq!(valid_prefix(b"/a b"), None);
        assert_eq!(parse_port(b"65535"), Some(65535));
        assert_eq!(parse_port(b"65536"), None);
        assert_eq!(parse_port(b"+1"), None);
        assert_eq!(scheme(b"HTTPS"), Some(Scheme::Https));
        assert_eq!(scheme(b"ws"), None);
    }
}
