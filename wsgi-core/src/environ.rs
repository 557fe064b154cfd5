//! [`Environ`]: the CGI part of a WSGI environ (PEP 3333), in plain Rust.
//!
//! Every value is a PEP 3333 "native string": the request's bytes decoded as latin-1, so each
//! byte becomes one character and nothing is lost. The whole environ lives in one string arena
//! plus one entry table: building it costs two allocations, whatever the number of headers.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::head::{RequestHead, TargetForm, split_authority};

/// The URL scheme the server is reached by (`wsgi.url_scheme`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Scheme {
    /// `http`.
    #[default]
    Http,
    /// `https`.
    Https,
}

impl Scheme {
    /// Returns `"http"` or `"https"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    const fn default_port(self) -> &'static str {
        match self {
            Scheme::Http => "80",
            Scheme::Https => "443",
        }
    }
}

/// What the environ needs to know about the server and the connection.
///
/// ```
/// use wsgi_core::{Scheme, ServerInfo};
/// let info = ServerInfo::new(Some("127.0.0.1:8000".parse().unwrap()), None)
///     .with_root_path("/app/")
///     .with_scheme(Scheme::Https);
/// assert_eq!(info.root_path(), "/app");
/// ```
#[derive(Clone, Debug, Default)]
pub struct ServerInfo {
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    scheme: Scheme,
    root_path: Option<Arc<str>>,
}

impl ServerInfo {
    /// Describes a connection accepted on `local` from `peer` (`None` for Unix sockets).
    pub fn new(local: Option<SocketAddr>, peer: Option<SocketAddr>) -> ServerInfo {
        ServerInfo { local, peer, scheme: Scheme::Http, root_path: None }
    }

    /// Sets the path the application is mounted at (`SCRIPT_NAME`), e.g. `/app`, as the
    /// decoded URL path (`/café` matches requests for `/caf%C3%A9`). A trailing `/` is removed
    /// and a missing leading `/` added; `""` or `"/"` mean the root.
    #[must_use]
    pub fn with_root_path(mut self, root: &str) -> ServerInfo {
        let trimmed = root.trim_end_matches('/');
        self.root_path = (!trimmed.is_empty()).then(|| {
            // Stored as a PEP 3333 native string, like PATH_INFO: its UTF-8 bytes as latin-1.
            let mut native = String::with_capacity(trimmed.len() + 1);
            if !trimmed.starts_with('/') {
                native.push('/');
            }
            push_latin1(&mut native, trimmed.as_bytes());
            Arc::from(native)
        });
        self
    }

    /// Sets the URL scheme.
    #[must_use]
    pub fn with_scheme(mut self, scheme: Scheme) -> ServerInfo {
        self.scheme = scheme;
        self
    }

    /// Sets the peer's address, keeping the rest (one `ServerInfo` per listener, one per
    /// connection).
    #[must_use]
    pub fn with_peer(mut self, peer: Option<SocketAddr>) -> ServerInfo {
        self.peer = peer;
        self
    }

    /// Returns the root path as a native string (`""` for the root): `/café` is returned as
    /// `/cafÃ©`, the form `SCRIPT_NAME` takes.
    pub fn root_path(&self) -> &str {
        self.root_path.as_deref().unwrap_or_default()
    }

    /// Returns the URL scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }
}

/// The CGI variables PEP 3333 defines (and two request-URI extras), as a closed set so a bridge
/// can keep one interned key object for each.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CgiKey {
    /// `REQUEST_METHOD`.
    RequestMethod,
    /// `SCRIPT_NAME`: the root path the application is mounted at.
    ScriptName,
    /// `PATH_INFO`: the rest of the path, percent-decoded.
    PathInfo,
    /// `QUERY_STRING`: as sent, still percent-encoded.
    QueryString,
    /// `CONTENT_TYPE`, only if the request has one.
    ContentType,
    /// `CONTENT_LENGTH`, only if the request has one.
    ContentLength,
    /// `SERVER_NAME`.
    ServerName,
    /// `SERVER_PORT`.
    ServerPort,
    /// `SERVER_PROTOCOL`: `HTTP/1.0` or `HTTP/1.1`.
    ServerProtocol,
    /// `REMOTE_ADDR`: the peer's IP address (empty for Unix sockets).
    RemoteAddr,
    /// `REMOTE_PORT`: the peer's port (absent for Unix sockets).
    RemotePort,
    /// `RAW_URI` (as gunicorn sets it): the request target exactly as sent.
    RawUri,
    /// `REQUEST_URI` (as uWSGI and werkzeug set it): the same.
    RequestUri,
}

impl CgiKey {
    /// Every CGI variable, in [`index`](Self::index) order.
    pub const ALL: [CgiKey; 13] = [
        CgiKey::RequestMethod,
        CgiKey::ScriptName,
        CgiKey::PathInfo,
        CgiKey::QueryString,
        CgiKey::ContentType,
        CgiKey::ContentLength,
        CgiKey::ServerName,
        CgiKey::ServerPort,
        CgiKey::ServerProtocol,
        CgiKey::RemoteAddr,
        CgiKey::RemotePort,
        CgiKey::RawUri,
        CgiKey::RequestUri,
    ];

    /// Returns a dense index (`0..ALL.len()`), for tables with one slot per variable.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Returns the variable's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            CgiKey::RequestMethod => "REQUEST_METHOD",
            CgiKey::ScriptName => "SCRIPT_NAME",
            CgiKey::PathInfo => "PATH_INFO",
            CgiKey::QueryString => "QUERY_STRING",
            CgiKey::ContentType => "CONTENT_TYPE",
            CgiKey::ContentLength => "CONTENT_LENGTH",
            CgiKey::ServerName => "SERVER_NAME",
            CgiKey::ServerPort => "SERVER_PORT",
            CgiKey::ServerProtocol => "SERVER_PROTOCOL",
            CgiKey::RemoteAddr => "REMOTE_ADDR",
            CgiKey::RemotePort => "REMOTE_PORT",
            CgiKey::RawUri => "RAW_URI",
            CgiKey::RequestUri => "REQUEST_URI",
        }
    }
}

/// The key of an environ entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EnvKey<'a> {
    /// One of the fixed CGI variables.
    Cgi(CgiKey),
    /// An `HTTP_*` variable made from a request header's name.
    Http(&'a str),
}

impl<'a> EnvKey<'a> {
    /// Returns the key as a string.
    pub fn as_str(&self) -> &'a str {
        match *self {
            EnvKey::Cgi(k) => k.as_str(),
            EnvKey::Http(s) => s,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Key {
    Cgi(CgiKey),
    Http(u32, u32),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: Key,
    value: (u32, u32),
}

/// The CGI variables of one request, per PEP 3333.
///
/// - `PATH_INFO` is percent-decoded to bytes, then read as latin-1; `SCRIPT_NAME` is the
///   configured root path when the request path lies under it (else `""`).
/// - `QUERY_STRING` is the raw query (`""` if none).
/// - `SERVER_NAME`/`SERVER_PORT` come from Host (or an absolute-form target), else from the
///   listening address; a Host without a port means the scheme's default port.
/// - `HTTP_*`: one per header name, repeats joined with `,` (`Cookie` with `; `); names
///   containing `_` are dropped, so a client cannot pass `X_Forwarded_For` off as
///   `X-Forwarded-For`. `Content-Type`/`Content-Length` become `CONTENT_TYPE`/`CONTENT_LENGTH`,
///   present only when sent.
///
/// ```
/// use std::time::Instant;
/// use wsgi_core::{Config, Connection, Environ, Event, ServerInfo};
/// let mut conn = Connection::new(Config::default(), Instant::now());
/// conn.handle_input(b"GET /caf%C3%A9?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", Instant::now());
/// let Ok(Some(Event::Request(head))) = conn.poll_event() else { panic!() };
/// let environ = Environ::new(&head, &ServerInfo::default());
/// assert_eq!(environ.get("PATH_INFO"), Some("/cafÃ©")); // UTF-8 bytes read as latin-1
/// assert_eq!(environ.get("QUERY_STRING"), Some("q=1"));
/// assert_eq!(environ.get("SERVER_PORT"), Some("80"));
/// ```
#[derive(Clone, Debug)]
pub struct Environ {
    text: String,
    entries: Vec<Entry>,
    scheme: Scheme,
}

impl Environ {
    /// Builds the environ of `head` as received through the connection `server` describes.
    pub fn new(head: &RequestHead, server: &ServerInfo) -> Environ {
        let mut b = Builder {
            text: String::with_capacity(head.target().len() * 2 + 384 + head.headers().len() * 48),
            entries: Vec::with_capacity(head.headers().len() + 13),
            http_seen: 0,
        };
        b.push(CgiKey::RequestMethod, head.method());
        b.cgi_path(head, server);
        b.push_latin1(CgiKey::QueryString, head.query().unwrap_or_default());
        b.push_latin1(CgiKey::RawUri, head.target());
        b.push_latin1(CgiKey::RequestUri, head.target());
        b.push(CgiKey::ServerProtocol, head.version().as_str());
        b.server_name_port(head, server);
        if let Some(peer) = server.peer {
            let start = b.text.len();
            push_ip(&mut b.text, peer.ip());
            b.entry(Key::Cgi(CgiKey::RemoteAddr), start);
            b.push(CgiKey::RemotePort, itoa::Buffer::new().format(peer.port()));
        } else {
            b.push(CgiKey::RemoteAddr, "");
        }
        if let Some(n) = head.content_length() {
            b.push(CgiKey::ContentLength, itoa::Buffer::new().format(n));
        }
        b.http_headers(head);
        Environ { text: b.text, entries: b.entries, scheme: server.scheme }
    }

    /// Returns the value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Returns the entries as `(key, value)` strings, CGI variables first, then those made from
    /// header fields (`HTTP_*` and `CONTENT_TYPE`) in the order their fields were first sent.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.entries().map(|(k, v)| (k.as_str(), v))
    }

    /// Returns the entries with typed keys, for a bridge that caches one key object per
    /// [`CgiKey`].
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (EnvKey<'_>, &str)> + '_ {
        self.entries.iter().map(|e| {
            let key = match e.key {
                Key::Cgi(k) => EnvKey::Cgi(k),
                Key::Http(a, b) => EnvKey::Http(self.slice(a, b)),
            };
            (key, self.slice(e.value.0, e.value.1))
        })
    }

    /// Returns the URL scheme the request arrived by (`wsgi.url_scheme`).
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Returns the number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns `true` if there are no entries (never, for an environ built from a request).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn slice(&self, a: u32, b: u32) -> &str {
        self.text.get(a as usize..b as usize).unwrap_or_default()
    }
}

struct Builder {
    text: String,
    entries: Vec<Entry>,
    /// A 64-bit filter of the `HTTP_*` keys pushed so far: a name whose bit is clear is new,
    /// so most headers skip the search for a repeat.
    http_seen: u64,
}

impl Builder {
    fn entry(&mut self, key: Key, value_start: usize) {
        self.entries.push(Entry { key, value: (value_start as u32, self.text.len() as u32) });
    }

    fn push(&mut self, key: CgiKey, value: &str) {
        let start = self.text.len();
        self.text.push_str(value);
        self.entry(Key::Cgi(key), start);
    }

    fn push_latin1(&mut self, key: CgiKey, value: &[u8]) {
        let start = self.text.len();
        push_latin1(&mut self.text, value);
        self.entry(Key::Cgi(key), start);
    }

    /// `SCRIPT_NAME` and `PATH_INFO`: the path percent-decoded, split at the root path.
    fn cgi_path(&mut self, head: &RequestHead, server: &ServerInfo) {
        let start = self.text.len();
        if head.target_form() == TargetForm::Asterisk {
            self.text.push('*');
        } else {
            push_percent_decoded(&mut self.text, head.path());
        }
        let root = server.root_path();
        let path = &self.text[start..];
        let under_root = !root.is_empty()
            && path.starts_with(root)
            && matches!(path.as_bytes().get(root.len()), None | Some(b'/'));
        let (script, path_start) =
            if under_root { (root, start + root.len()) } else { ("", start) };
        let path_end = self.text.len();
        self.entries.push(Entry {
            key: Key::Cgi(CgiKey::PathInfo),
            value: (path_start as u32, path_end as u32),
        });
        self.push(CgiKey::ScriptName, script);
    }

    fn server_name_port(&mut self, head: &RequestHead, server: &ServerInfo) {
        match head.host().filter(|h| !h.is_empty()) {
            Some(authority) => {
                let (name, port) = split_authority(authority);
                self.push_latin1(CgiKey::ServerName, name);
                match port.filter(|p| !p.is_empty()) {
                    Some(port) => self.push_latin1(CgiKey::ServerPort, port),
                    None => self.push(CgiKey::ServerPort, server.scheme.default_port()),
                }
            }
            None => match server.local {
                Some(local) => {
                    // RFC 3875 §4.1.14: an IPv6 SERVER_NAME is written in brackets, as in a Host.
                    let start = self.text.len();
                    match local {
                        SocketAddr::V4(a) => push_display(&mut self.text, a.ip()),
                        SocketAddr::V6(a) => {
                            push_display(&mut self.text, format_args!("[{}]", a.ip()))
                        }
                    }
                    self.entry(Key::Cgi(CgiKey::ServerName), start);
                    self.push(CgiKey::ServerPort, itoa::Buffer::new().format(local.port()));
                }
                None => {
                    self.push(CgiKey::ServerName, "localhost");
                    self.push(CgiKey::ServerPort, server.scheme.default_port());
                }
            },
        }
    }

    fn http_headers(&mut self, head: &RequestHead) {
        let first_http = self.entries.len();
        let absolute = head.target_form() == TargetForm::Absolute;
        if absolute {
            // RFC 9112 §3.2.2: the target's authority replaces Host.
            self.push_http(b"Host", head.host().unwrap_or_default(), first_http);
        }
        for (name, value) in head.headers() {
            let n = name.as_bytes();
            if n.contains(&b'_') || (absolute && n.eq_ignore_ascii_case(b"host")) {
                continue;
            }
            if n.eq_ignore_ascii_case(b"content-length") {
                continue; // CONTENT_LENGTH comes from the validated framing.
            }
            if n.eq_ignore_ascii_case(b"content-type") {
                match self.find(Key::Cgi(CgiKey::ContentType), first_http) {
                    Some(i) => self.join(i, b",", value),
                    None => self.push_latin1(CgiKey::ContentType, value),
                }
                continue;
            }
            self.push_http(n, value, first_http);
        }
    }

    fn push_http(&mut self, name: &[u8], value: &[u8], first_http: usize) {
        let key_start = self.text.len();
        self.text.push_str("HTTP_");
        for &b in name {
            self.text.push(match b {
                b'-' => '_',
                b => char::from(b.to_ascii_uppercase()),
            });
        }
        let key = Key::Http(key_start as u32, self.text.len() as u32);
        // Equal keys come from names equal but for case: hash the length and the ends, lowercased.
        let (first, last) = (name.first().copied(), name.last().copied());
        let hash = name.len()
            ^ usize::from(first.unwrap_or(0) | 0x20) << 1
            ^ usize::from(last.unwrap_or(0) | 0x20) << 2;
        let bit = 1u64 << (hash & 63);
        let maybe_seen = self.http_seen & bit != 0;
        self.http_seen |= bit;
        if let Some(i) = maybe_seen.then(|| self.find(key, first_http)).flatten() {
            self.text.truncate(key_start);
            let sep: &[u8] = if name.eq_ignore_ascii_case(b"cookie") { b"; " } else { b"," };
            self.join(i, sep, value);
            return;
        }
        let start = self.text.len();
        push_latin1(&mut self.text, value);
        self.entry(key, start);
    }

    /// Finds an entry with the same key among those from `from` on (the `HTTP_*` section).
    fn find(&self, key: Key, from: usize) -> Option<usize> {
        // Bytes, not `str` slices: no char-boundary checks, and lengths compared first.
        let text = self.text.as_bytes();
        let want = match key {
            Key::Http(a, b) => Some(&text[a as usize..b as usize]),
            Key::Cgi(_) => None,
        };
        self.entries[from..]
            .iter()
            .position(|e| match (e.key, key, want) {
                (Key::Cgi(x), Key::Cgi(y), _) => x == y,
                (Key::Http(a, b), Key::Http(..), Some(w)) => {
                    (b - a) as usize == w.len() && &text[a as usize..b as usize] == w
                }
                _ => false,
            })
            .map(|i| i + from)
    }

    /// Appends `sep` and `value` to entry `i`'s value (copied to the end of the arena).
    fn join(&mut self, i: usize, sep: &[u8], value: &[u8]) {
        let (a, b) = self.entries[i].value;
        let start = self.text.len();
        self.text.extend_from_within(a as usize..b as usize);
        push_latin1(&mut self.text, sep);
        push_latin1(&mut self.text, value);
        self.entries[i].value = (start as u32, self.text.len() as u32);
    }
}

/// Appends `bytes` read as latin-1 (each byte one character).
fn push_latin1(text: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.is_ascii() => text.push_str(s),
        _ => text.extend(bytes.iter().map(|&b| char::from(b))),
    }
}

/// Appends `path` percent-decoded to bytes, then read as latin-1. Invalid escapes stay as sent.
fn push_percent_decoded(text: &mut String, path: &[u8]) {
    if memchr::memchr(b'%', path).is_none() {
        return push_latin1(text, path);
    }
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        let decoded = match (b, path.get(i + 1..i + 3)) {
            (b'%', Some(&[h, l])) => hex_val(h).zip(hex_val(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match decoded {
            Some(d) => {
                text.push(char::from(d));
                i += 3;
            }
            None => {
                text.push(char::from(b));
                i += 1;
            }
        }
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends `ip` as `Display` writes it; IPv4 (the common case, once per request) without the
/// `fmt` machinery.
fn push_ip(text: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                text.push_str(digits.format(octet));
            }
        }
        std::net::IpAddr::V6(v6) => push_display(text, v6),
    }
}

fn push_display(text: &mut String, value: impl std::fmt::Display) {
    use std::fmt::Write as _;
    let _ = write!(text, "{value}");
}
