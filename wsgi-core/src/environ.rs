//! [`Environ`]: the CGI part of a WSGI environ (PEP 3333), in plain Rust.
//!
//! Every value is a PEP 3333 "native string": the request's bytes decoded as latin-1, so each
//! byte becomes one character and nothing is lost. The whole environ lives in one string arena
//! plus one entry table: building it costs two allocations, whatever the number of headers.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::forwarded::{Forwarded, TrustedProxies, forwarded};
use crate::head::{RequestHead, Span, TargetForm, Version, split_authority};
use crate::names;
use crate::proxy_protocol::ProxyHeader;
use crate::tokenize;

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
#[derive(Clone, Debug)]
pub struct ServerInfo {
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    scheme: Scheme,
    root_path: Option<Arc<str>>,
    proxies: Option<Arc<TrustedProxies>>,
    /// `peer` is in `proxies`: its proxy headers are believed.
    peer_trusted: bool,
    /// The environ strings that depend only on the connection, rendered once for all its
    /// requests.
    rendered: Rendered,
}

/// `REMOTE_ADDR`, `REMOTE_PORT`, `SERVER_NAME` and `SERVER_PORT` as a connection's addresses
/// give them, back to back.
///
/// Each environ copies them to the start of its own text (a few dozen bytes, in an
/// allocation it mostly needs anyway) rather than sharing them: a shared count cost two
/// atomic operations per request, 7 ns of the request-path benchmark's 280.
#[derive(Clone, Debug, Default)]
struct Rendered {
    text: String,
    /// Where each [`Part`] starts in `text` (the part's index), and where it ends (the next).
    bounds: [u32; 5],
}

/// One of [`Rendered`]'s strings, by its place in the text.
#[derive(Clone, Copy)]
enum Part {
    RemoteAddr,
    /// Empty over a Unix socket, whose peer has no port.
    RemotePort,
    LocalName,
    LocalPort,
}

impl Rendered {
    /// Appends `part`'s text with `push`, after the parts before it.
    fn push(&mut self, part: Part, push: impl FnOnce(&mut String)) {
        push(&mut self.text);
        self.bounds[part as usize + 1] = self.text.len() as u32;
    }

    /// Where `part` is in an environ's text, which starts with a copy of `text`.
    fn part(&self, part: Part) -> Text {
        let i = part as usize;
        Text::Extra(self.bounds[i], self.bounds[i + 1])
    }
}

impl Default for ServerInfo {
    fn default() -> Self {
        ServerInfo::new(None, None)
    }
}

impl ServerInfo {
    /// Describes a connection accepted on `local` from `peer` (`None` for Unix sockets).
    pub fn new(local: Option<SocketAddr>, peer: Option<SocketAddr>) -> ServerInfo {
        let info = ServerInfo {
            local,
            peer,
            scheme: Scheme::Http,
            root_path: None,
            proxies: None,
            peer_trusted: false,
            rendered: Rendered::default(),
        };
        info.rendered()
    }

    /// Renders the per-connection strings.
    fn rendered(mut self) -> ServerInfo {
        let mut r = Rendered::default();
        let peer = self.peer;
        r.push(Part::RemoteAddr, |t| {
            if let Some(p) = peer {
                push_ip(t, p.ip());
            }
        });
        r.push(Part::RemotePort, |t| {
            if let Some(p) = peer {
                t.push_str(itoa::Buffer::new().format(p.port()));
            }
        });
        // RFC 3875 §4.1.14: an IPv6 SERVER_NAME is written in brackets, as in a Host.
        r.push(Part::LocalName, |t| match self.local {
            Some(SocketAddr::V4(a)) => push_ip(t, (*a.ip()).into()),
            Some(SocketAddr::V6(a)) => push_display(t, format_args!("[{}]", a.ip())),
            None => t.push_str("localhost"),
        });
        r.push(Part::LocalPort, |t| match self.local {
            Some(local) => t.push_str(itoa::Buffer::new().format(local.port())),
            None => t.push_str(self.scheme.default_port()),
        });
        self.rendered = r;
        self.peer_trusted =
            self.proxies.as_ref().is_some_and(|p| p.trusts(self.peer.map(|a| a.ip())));
        self
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
        self.rendered()
    }

    /// Sets the URL scheme.
    #[must_use]
    pub fn with_scheme(mut self, scheme: Scheme) -> ServerInfo {
        self.scheme = scheme;
        self.rendered()
    }

    /// Sets both addresses, keeping the rest: a listener's `ServerInfo` made into one of its
    /// connections, with one rendering of the per-connection strings rather than one per
    /// `with_*` call.
    #[must_use]
    pub fn with_addresses(
        mut self,
        local: Option<SocketAddr>,
        peer: Option<SocketAddr>,
    ) -> ServerInfo {
        self.local = local;
        self.peer = peer;
        self.rendered()
    }

    /// Sets the peer's address, keeping the rest (one `ServerInfo` per listener, one per
    /// connection).
    #[must_use]
    pub fn with_peer(mut self, peer: Option<SocketAddr>) -> ServerInfo {
        self.peer = peer;
        self.rendered()
    }

    /// Believes the proxy headers (`Forwarded`, `X-Forwarded-For`, `-Proto`, `-Host`, `-Port`,
    /// `-Prefix`) of requests from a peer in `proxies`; `None` (the default) believes none.
    /// What each header changes is in [`TrustedProxies`]' module documentation.
    #[must_use]
    pub fn with_trusted_proxies(mut self, proxies: Option<Arc<TrustedProxies>>) -> ServerInfo {
        self.proxies = proxies;
        self.rendered()
    }

    /// Takes the client's and the server's addresses from a PROXY protocol header, and the
    /// scheme `https` if the client reached the proxy over TLS. A header without addresses (a
    /// health check, `UNKNOWN`) changes only the scheme.
    #[must_use]
    pub fn with_proxy_header(mut self, header: &ProxyHeader) -> ServerInfo {
        if let Some(source) = header.source {
            self.peer = Some(source);
            self.local = header.destination.or(self.local);
        }
        if header.tls {
            self.scheme = Scheme::Https;
        }
        self.rendered()
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

    /// Returns the peer's address (`None` for Unix sockets).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
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

/// An entry's key as the environ holds it (and [`Environ::raw_entries`] gives it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RawKey<'a> {
    /// One of the fixed CGI variables.
    Cgi(CgiKey),
    /// The `HTTP_*` key of a header name in the [`names`] table, by its id.
    Known(u8),
    /// The `HTTP_*` key of another header name.
    Other(&'a str),
}

impl<'a> RawKey<'a> {
    /// The key as [`Environ::entries`] gives it.
    pub(crate) fn env_key(self) -> EnvKey<'a> {
        match self {
            RawKey::Cgi(k) => EnvKey::Cgi(k),
            RawKey::Known(id) => EnvKey::Http(names::NAMES[usize::from(id)].1),
            RawKey::Other(k) => EnvKey::Http(k),
        }
    }
}

/// The key of the header name with id `id`: `Content-Type` is a CGI variable.
fn known_key(id: u8) -> Key {
    if id == names::CONTENT_TYPE { Key::Cgi(CgiKey::ContentType) } else { Key::Known(id) }
}

/// Where an environ string lives. Values from the head that are ASCII (nearly all) are views
/// of the head's bytes; only decoded, joined or non-ASCII values are copied.
#[derive(Clone, Copy, Debug)]
enum Text {
    Head(Span),
    Extra(u32, u32),
    Static(Fixed),
    /// The root path ([`Environ`]'s `root`).
    Root,
}

/// The values an environ takes from neither the request nor the connection: two bytes rather
/// than a `&str`, so an [`Entry`] is 24 bytes rather than 40. The version and the default port
/// are spelled by [`Version::as_str`] and [`Scheme::default_port`].
#[derive(Clone, Copy, Debug)]
enum Fixed {
    Empty,
    Asterisk,
    Slash,
    Version(Version),
    DefaultPort(Scheme),
}

impl Fixed {
    const fn as_str(self) -> &'static str {
        match self {
            Fixed::Empty => "",
            Fixed::Asterisk => "*",
            Fixed::Slash => "/",
            Fixed::Version(v) => v.as_str(),
            Fixed::DefaultPort(scheme) => scheme.default_port(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Cgi(CgiKey),
    /// A header in the [`names`] table: its key is static.
    Known(u8),
    /// Another header: its `HTTP_*` key is in `extra`.
    Extra(u32, u32),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: Key,
    value: Text,
}

// An environ holds one entry per variable: kept at 24 bytes (see `Fixed`).
const _: () = assert!(std::mem::size_of::<Entry>() == 24);

/// Room an environ's text has past the connection's strings: for values that are not views of
/// the head (non-ASCII, percent-decoded, joined repeats) and unknown headers' `HTTP_*` keys.
const EXTRA_HINT: usize = 64;

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
/// let environ = Environ::new(head, &ServerInfo::default());
/// assert_eq!(environ.get("PATH_INFO"), Some("/cafÃ©")); // UTF-8 bytes read as latin-1
/// assert_eq!(environ.get("QUERY_STRING"), Some("q=1"));
/// assert_eq!(environ.get("SERVER_PORT"), Some("80"));
/// ```
#[derive(Clone, Debug)]
pub struct Environ {
    head: Bytes,
    extra: String,
    /// The root path, when `SCRIPT_NAME` is it.
    root: Option<Arc<str>>,
    entries: Vec<Entry>,
    scheme: Scheme,
}

impl Environ {
    /// Builds the environ of `head` as received through the connection `server` describes.
    ///
    /// It takes over the head's bytes rather than copying them (a driver has no use for the
    /// head once its environ is built; clone it to keep it), and copies the per-connection
    /// strings `server` rendered once.
    pub fn new(mut head: RequestHead, server: &ServerInfo) -> Environ {
        let trusted = server.proxies.as_ref().filter(|_| server.peer_trusted);
        let head = &mut head;
        let rendered = &server.rendered;
        let mut extra = String::with_capacity(rendered.text.len() + EXTRA_HINT);
        extra.push_str(&rendered.text);
        let mut b = Builder {
            head,
            root: server.root_path(),
            extra,
            entries: Vec::with_capacity(head.fields.len() + 13),
            seen: 0,
        };
        b.push(Key::Cgi(CgiKey::RequestMethod), Text::Head(head.method));
        let under_root = b.cgi_path(head);
        let query = head.query.map_or(Text::Static(Fixed::Empty), |q| b.value(q));
        b.push(Key::Cgi(CgiKey::QueryString), query);
        let target = b.value(head.target);
        b.push(Key::Cgi(CgiKey::RawUri), target);
        b.push(Key::Cgi(CgiKey::RequestUri), target);
        b.push(Key::Cgi(CgiKey::ServerProtocol), Text::Static(Fixed::Version(head.version)));
        b.server_name_port(head, server.scheme, rendered);
        b.push(Key::Cgi(CgiKey::RemoteAddr), rendered.part(Part::RemoteAddr));
        if server.peer.is_some() {
            b.push(Key::Cgi(CgiKey::RemotePort), rendered.part(Part::RemotePort));
        }
        if let Some(n) = head.content_length() {
            b.content_length(head, n);
        }
        b.http_headers(head);
        let (extra, entries) = (b.extra, b.entries);
        // Only the proxy headers are read from the head after this.
        let bytes = match trusted {
            Some(_) => head.bytes.clone(),
            None => std::mem::take(&mut head.bytes),
        };
        let mut environ = Environ {
            head: bytes,
            extra,
            root: if under_root { server.root_path.clone() } else { None },
            entries,
            scheme: server.scheme,
        };
        if let Some(proxies) = trusted {
            environ.apply_forwarded(head, forwarded(head, proxies));
        }
        environ
    }

    /// Applies what trusted proxy headers said (see [`TrustedProxies`]).
    fn apply_forwarded(&mut self, head: &RequestHead, f: Forwarded<'_>) {
        let mut text = String::new();
        if let Some((ip, port)) = f.client {
            push_ip(&mut text, ip);
            self.set(Key::Cgi(CgiKey::RemoteAddr), &text);
            match port {
                Some(p) => self.set(Key::Cgi(CgiKey::RemotePort), itoa::Buffer::new().format(p)),
                None => self.entries.retain(|e| e.key != Key::Cgi(CgiKey::RemotePort)),
            }
        }
        if let Some(scheme) = f.scheme {
            self.scheme = scheme;
        }
        let default_port = self.scheme.default_port();
        if let Some(host) = &f.host {
            // A valid authority is ASCII.
            text.clear();
            push_latin1(&mut text, host);
            self.set(Key::Known(names::HOST), &text);
            let (name, _) = split_authority(host);
            text.clear();
            push_latin1(&mut text, name);
            self.set(Key::Cgi(CgiKey::ServerName), &text);
        }
        if let Some(port) = f.port {
            let digits = itoa::Buffer::new().format(port).to_owned();
            self.set(Key::Cgi(CgiKey::ServerPort), &digits);
            if f.host.is_none() {
                // The port the client used, in HTTP_HOST too, so the two agree.
                if let Some(sent) = self.value_of(Key::Known(names::HOST)) {
                    let (name, _) = split_authority(sent.as_bytes());
                    text.clear();
                    push_latin1(&mut text, name);
                    text.push(':');
                    text.push_str(&digits);
                    self.set(Key::Known(names::HOST), &text);
                }
            }
        } else if f.host.is_some() {
            self.set(Key::Cgi(CgiKey::ServerPort), default_port);
        } else if f.scheme.is_some() {
            // A Host without a port meant the default port of the scheme the client used.
            // An empty port (`host:`) is no port, as in `server_name_port`.
            if head.authority_parts().is_some_and(|(_, port)| port.is_none()) {
                self.set(Key::Cgi(CgiKey::ServerPort), default_port);
            }
        }
        if let Some(prefix) = f.prefix {
            text.clear();
            push_percent_decoded(&mut text, prefix);
            let script = self.value_of(Key::Cgi(CgiKey::ScriptName)).unwrap_or_default().to_owned();
            text.push_str(&script);
            self.set(Key::Cgi(CgiKey::ScriptName), &text);
        }
    }

    /// The root path, when `SCRIPT_NAME` is it (else `""`).
    fn root(&self) -> &str {
        self.root.as_deref().unwrap_or_default()
    }

    /// The value of `key`, if present.
    fn value_of(&self, key: Key) -> Option<&str> {
        let e = self.entries.iter().find(|e| e.key == key)?;
        Some(text(HeadView::Bytes(&self.head), &self.extra, self.root(), e.value))
    }

    /// Sets `key` to `value` (a copy in `extra`), adding the entry if it is missing: a CGI
    /// variable after the other CGI variables, a header variable at the end.
    fn set(&mut self, key: Key, value: &str) {
        let start = self.extra.len() as u32;
        self.extra.push_str(value);
        let value = Text::Extra(start, self.extra.len() as u32);
        if let Some(e) = self.entries.iter_mut().find(|e| e.key == key) {
            e.value = value;
            return;
        }
        let at = match key {
            Key::Cgi(_) => self
                .entries
                .iter()
                .position(|e| !matches!(e.key, Key::Cgi(_)))
                .unwrap_or(self.entries.len()),
            _ => self.entries.len(),
        };
        self.entries.insert(at, Entry { key, value });
    }

    /// Returns `CONTENT_LENGTH` as a number, if the request has one: what [`get`](Self::get)
    /// would give, without looking the key up by name.
    pub fn content_length(&self) -> Option<u64> {
        self.value_of(Key::Cgi(CgiKey::ContentLength))?.parse().ok()
    }

    /// Returns the value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        let e = self.entries.iter().find(|e| self.env_key(e.key).as_str() == key)?;
        Some(text(HeadView::Bytes(&self.head), &self.extra, self.root(), e.value))
    }

    /// The key of an entry, as the environ holds it.
    fn raw_key(&self, key: Key) -> RawKey<'_> {
        match key {
            Key::Cgi(k) => RawKey::Cgi(k),
            Key::Known(id) => RawKey::Known(id),
            Key::Extra(a, b) => {
                RawKey::Other(self.extra.get(a as usize..b as usize).unwrap_or_default())
            }
        }
    }

    /// The typed key of an entry.
    fn env_key(&self, key: Key) -> EnvKey<'_> {
        self.raw_key(key).env_key()
    }

    /// Returns the entries as `(key, value)` strings, CGI variables first, then those made from
    /// header fields (`HTTP_*` and `CONTENT_TYPE`) in the order their fields were first sent.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.entries().map(|(k, v)| (k.as_str(), v))
    }

    /// Returns the entries with typed keys, for a bridge that caches one key object per
    /// [`CgiKey`].
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (EnvKey<'_>, &str)> + '_ {
        // One UTF-8 check of the whole head (any all-ASCII head passes) instead of one per value.
        let head =
            std::str::from_utf8(&self.head).map_or(HeadView::Bytes(&self.head), HeadView::Text);
        self.entries
            .iter()
            .map(move |e| (self.env_key(e.key), text(head, &self.extra, self.root(), e.value)))
    }

    /// Returns the entries as the environ holds them: keys cheap to compare, values as bytes
    /// (valid UTF-8, unchecked). For the bridge, which compares every entry with the last
    /// request's on each request and needs text only for those that changed.
    #[cfg(feature = "python")]
    pub(crate) fn raw_entries(&self) -> impl ExactSizeIterator<Item = (RawKey<'_>, &[u8])> + '_ {
        self.entries.iter().map(move |e| {
            let value = match e.value {
                Text::Head(span) => span.get(&self.head),
                // The others are text already: no check to skip.
                t => text(HeadView::Bytes(&self.head), &self.extra, self.root(), t).as_bytes(),
            };
            (self.raw_key(e.key), value)
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
}

/// The head's bytes, as text when the whole head is valid UTF-8.
#[derive(Clone, Copy)]
enum HeadView<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
}

/// Resolves a [`Text`]. Head text is only ever recorded for ASCII bytes, so it is valid UTF-8.
fn text<'a>(head: HeadView<'a>, extra: &'a str, root: &'a str, t: Text) -> &'a str {
    match t {
        Text::Head(span) => match head {
            HeadView::Text(head) => {
                head.get(span.start as usize..span.end as usize).unwrap_or_default()
            }
            HeadView::Bytes(head) => std::str::from_utf8(span.get(head)).unwrap_or_default(),
        },
        Text::Extra(a, b) => extra.get(a as usize..b as usize).unwrap_or_default(),
        Text::Static(s) => s.as_str(),
        Text::Root => root,
    }
}

struct Builder<'h> {
    head: &'h RequestHead,
    /// The root path (`""` for none).
    root: &'h str,
    extra: String,
    entries: Vec<Entry>,
    /// The [`names`] ids already pushed (ids stay below 64), so repeats are found in O(1).
    seen: u64,
}

impl Builder<'_> {
    fn push(&mut self, key: Key, value: Text) {
        self.entries.push(Entry { key, value });
    }

    /// A value from the head: a view of its bytes if ASCII, else decoded as latin-1.
    fn value(&mut self, span: Span) -> Text {
        let bytes = span.get(&self.head.bytes);
        if self.head.ascii || bytes.is_ascii() {
            Text::Head(span)
        } else {
            let start = self.extra.len();
            push_latin1(&mut self.extra, bytes);
            Text::Extra(start as u32, self.extra.len() as u32)
        }
    }

    fn get(&self, t: Text) -> &str {
        text(HeadView::Bytes(&self.head.bytes), &self.extra, self.root, t)
    }

    /// `SCRIPT_NAME` and `PATH_INFO`: the path percent-decoded, split at the root path. Says
    /// whether `SCRIPT_NAME` is the root path.
    fn cgi_path(&mut self, head: &RequestHead) -> bool {
        let root = self.root;
        let path = match head.form {
            TargetForm::Asterisk => Text::Static(Fixed::Asterisk),
            TargetForm::Absolute if head.path.start == head.path.end => Text::Static(Fixed::Slash),
            _ => {
                let raw = head.path.get(&head.bytes);
                if tokenize::find(raw, 0, tokenize::Is(b'%')).is_none() {
                    self.value(head.path)
                } else {
                    let start = self.extra.len();
                    push_percent_decoded(&mut self.extra, raw);
                    Text::Extra(start as u32, self.extra.len() as u32)
                }
            }
        };
        // Without a root path (the usual case) the path need not be read as text at all.
        let under_root = !root.is_empty() && {
            let p = self.get(path);
            p.starts_with(root) && matches!(p.as_bytes().get(root.len()), None | Some(b'/'))
        };
        let (path, script) = match (under_root, path) {
            (false, _) => (path, Text::Static(Fixed::Empty)),
            // A head view is ASCII, so the root it starts with has as many bytes as characters.
            (true, Text::Head(span)) => {
                (Text::Head(span.sub(root.len(), (span.end - span.start) as usize)), Text::Root)
            }
            (true, Text::Extra(a, b)) => (Text::Extra(a + root.len() as u32, b), Text::Root),
            (true, other) => (other, Text::Static(Fixed::Empty)),
        };
        self.push(Key::Cgi(CgiKey::PathInfo), path);
        self.push(Key::Cgi(CgiKey::ScriptName), script);
        matches!(script, Text::Root)
    }

    /// `SERVER_NAME` and `SERVER_PORT`: from the request's authority, else the listening
    /// address's (in the text, copied from `rendered`).
    fn server_name_port(&mut self, head: &RequestHead, scheme: Scheme, rendered: &Rendered) {
        match head.authority_parts() {
            // A valid authority is ASCII (see `head::parse_authority`).
            Some((name, port)) => {
                self.push(Key::Cgi(CgiKey::ServerName), Text::Head(name));
                let port = port.map_or(Text::Static(Fixed::DefaultPort(scheme)), Text::Head);
                self.push(Key::Cgi(CgiKey::ServerPort), port);
            }
            None => {
                self.push(Key::Cgi(CgiKey::ServerName), rendered.part(Part::LocalName));
                self.push(Key::Cgi(CgiKey::ServerPort), rendered.part(Part::LocalPort));
            }
        }
    }

    /// `CONTENT_LENGTH`: the validated length, as the client wrote it when that is canonical.
    fn content_length(&mut self, head: &RequestHead, n: u64) {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(n);
        let sent = head.fields.iter().find(|f| f.id == names::CONTENT_LENGTH).map(|f| f.value);
        let value = match sent {
            Some(span) if span.get(&head.bytes) == digits.as_bytes() => Text::Head(span),
            _ => {
                let start = self.extra.len();
                self.extra.push_str(digits);
                Text::Extra(start as u32, self.extra.len() as u32)
            }
        };
        self.push(Key::Cgi(CgiKey::ContentLength), value);
    }

    fn http_headers(&mut self, head: &RequestHead) {
        let absolute = head.form == TargetForm::Absolute;
        if let (true, Some(authority)) = (absolute, head.authority) {
            // RFC 9112 §3.2.2: the target's authority replaces Host.
            self.push_known(names::HOST, Text::Head(authority));
        }
        for f in &head.fields {
            match f.id {
                names::CONTENT_LENGTH => {} // CONTENT_LENGTH comes from the validated framing.
                names::HOST if absolute => {}
                names::UNKNOWN => self.push_unknown(f.name, f.value),
                id => self.push_known_field(id, f.value),
            }
        }
    }

    /// [`push_known`](Self::push_known) of a header field's value. The common case (an ASCII
    /// head, the name's first field) writes the entry straight into the vector. Through
    /// `push_known` (measured: even with the value made inline) the value went through a stack
    /// temporary in pieces and was read back whole, a store-forwarding stall per field that
    /// cost a third of `new` (72 vs 115 ns for the benchmark's request).
    fn push_known_field(&mut self, id: u8, span: Span) {
        let bit = 1u64 << (id % 64);
        if self.head.ascii && self.seen & bit == 0 {
            self.seen |= bit;
            self.entries.push(Entry { key: known_key(id), value: Text::Head(span) });
        } else {
            self.push_known_field_slow(id, span);
        }
    }

    #[inline(never)]
    fn push_known_field_slow(&mut self, id: u8, span: Span) {
        let value = self.value(span);
        self.push_known(id, value);
    }

    fn push_known(&mut self, id: u8, value: Text) {
        let key = known_key(id);
        let bit = 1u64 << (id % 64);
        if self.seen & bit != 0 {
            if let Some(i) = self.entries.iter().position(|e| e.key == key) {
                let sep = if id == names::COOKIE { "; " } else { "," };
                return self.join(i, sep, value);
            }
        }
        self.seen |= bit;
        self.push(key, value);
    }

    fn push_unknown(&mut self, name: Span, value: Span) {
        let n = name.get(&self.head.bytes);
        if n.contains(&b'_') {
            return; // a client must not pass `X_Forwarded_For` off as `X-Forwarded-For`
        }
        let key_start = self.extra.len();
        self.extra.push_str("HTTP_");
        self.extra.extend(
            n.iter().map(|&b| if b == b'-' { '_' } else { char::from(b.to_ascii_uppercase()) }),
        );
        let key_end = self.extra.len();
        let existing = self.entries.iter().position(|e| match e.key {
            Key::Extra(a, b) => {
                self.extra.get(a as usize..b as usize) == self.extra.get(key_start..key_end)
            }
            _ => false,
        });
        let value = self.value(value);
        match existing {
            Some(i) => {
                // The repeat's key text stays in `extra` unused: repeats are rare.
                self.join(i, ",", value);
            }
            None => self.push(Key::Extra(key_start as u32, key_end as u32), value),
        }
    }

    /// Appends `sep` and `value` to entry `i`'s value, as a new string in `extra`.
    fn join(&mut self, i: usize, sep: &str, value: Text) {
        let old = self.entries[i].value;
        let mut joined = String::with_capacity(64);
        joined.push_str(self.get(old));
        joined.push_str(sep);
        joined.push_str(self.get(value));
        let start = self.extra.len();
        self.extra.push_str(&joined);
        self.entries[i].value = Text::Extra(start as u32, self.extra.len() as u32);
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
