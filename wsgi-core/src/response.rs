//! The response side of PEP 3333, without Python: validating what the application passes to
//! `start_response`, and the bookkeeping of when the head may change and when it goes out.

use crate::error::{ResponseError, StartError};

/// A validated response head: status and the application's header fields, ready to serialize.
///
/// The server adds the framing headers (Content-Length is the application's;
/// `Transfer-Encoding` and `Connection` are the server's), `Date` and `Server` when
/// [`Connection::send_head`](crate::Connection::send_head) writes it.
///
/// ```
/// use wsgi_core::ResponseHead;
/// let head = ResponseHead::from_wsgi("200 OK", [("Content-Type", "text/plain")]).unwrap();
/// assert_eq!(head.status(), 200);
/// assert!(ResponseHead::from_wsgi("200", [("A", "b")]).is_err());
/// assert!(ResponseHead::from_wsgi("200 OK", [("Connection", "close")]).is_err());
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct ResponseHead {
    status: u16,
    /// `NNN reason\r\n`, then `Name: value\r\n` for each field: latin-1 bytes, in one buffer
    /// (a head is copied per response from a cached one, and each buffer is an allocation).
    bytes: Vec<u8>,
    /// Where the fields start in `bytes`.
    fields_at: usize,
    content_length: Option<u64>,
    has_date: bool,
    has_server: bool,
}

/// Room for a `Content-Length: n\r\n` field.
const CONTENT_LENGTH_ROOM: usize = "Content-Length: \r\n".len() + 20;

impl Clone for ResponseHead {
    /// A copy with room for the Content-Length the server may add
    /// ([`set_content_length_if_absent`](Self::set_content_length_if_absent)) without growing.
    fn clone(&self) -> ResponseHead {
        let mut bytes = Vec::with_capacity(self.bytes.len() + CONTENT_LENGTH_ROOM);
        bytes.extend_from_slice(&self.bytes);
        ResponseHead { bytes, ..*self }
    }
}

/// Header names PEP 3333 reserves for the server (wsgiref's list).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

impl ResponseHead {
    /// Validates the `status` and `response_headers` an application passed to
    /// `start_response`, per PEP 3333 and RFC 9110.
    ///
    /// # Errors
    ///
    /// A [`ResponseError`] naming the rule broken and, for headers, the index of the offending
    /// pair.
    pub fn from_wsgi<N, V>(
        status: &str,
        headers: impl IntoIterator<Item = (N, V)>,
    ) -> Result<ResponseHead, ResponseError>
    where
        N: AsRef<str>,
        V: AsRef<str>,
    {
        let code = parse_status(status)?;
        let mut bytes = Vec::with_capacity(256);
        if !push_latin1(&mut bytes, status) || !valid_field_value(&bytes[4..]) {
            return Err(ResponseError::BadReason);
        }
        bytes.extend_from_slice(b"\r\n");
        let mut head = ResponseHead {
            status: code,
            fields_at: bytes.len(),
            bytes,
            content_length: None,
            has_date: false,
            has_server: false,
        };
        for (index, (name, value)) in headers.into_iter().enumerate() {
            head.push_field(index, name.as_ref(), value.as_ref())?;
        }
        Ok(head)
    }

    fn push_field(&mut self, index: usize, name: &str, value: &str) -> Result<(), ResponseError> {
        let n = name.as_bytes();
        if n.is_empty() || !n.iter().all(|&b| crate::head::is_tchar(b)) {
            return Err(ResponseError::BadHeaderName { index });
        }
        if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            return Err(ResponseError::HopByHop { index });
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(n);
        self.bytes.extend_from_slice(b": ");
        let value_start = self.bytes.len();
        if !push_latin1(&mut self.bytes, value) {
            self.bytes.truncate(start);
            return Err(ResponseError::NotLatin1 { index });
        }
        if !valid_field_value(&self.bytes[value_start..]) {
            self.bytes.truncate(start);
            return Err(ResponseError::BadHeaderValue { index });
        }
        if name.eq_ignore_ascii_case("content-length") {
            let v = value.as_bytes();
            let parsed = (!v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit))
                .then(|| v.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0')));
            match (parsed, self.content_length) {
                (None, _) => {
                    self.bytes.truncate(start);
                    return Err(ResponseError::BadContentLength { index });
                }
                (Some(a), Some(b)) if a != b => {
                    self.bytes.truncate(start);
                    return Err(ResponseError::BadContentLength { index });
                }
                (Some(_), Some(_)) => {
                    // An equal repeat adds nothing; keep a single field on the wire.
                    self.bytes.truncate(start);
                    return Ok(());
                }
                (Some(a), None) => self.content_length = Some(a),
            }
        }
        self.has_date |= name.eq_ignore_ascii_case("date");
        self.has_server |= name.eq_ignore_ascii_case("server");
        self.bytes.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// Builds the plain-text head the server sends for its own error responses: the status
    /// with `Content-Type: text/plain; charset=utf-8` and the given Content-Length.
    pub fn plain_text(status: u16, reason: &str, content_length: u64) -> ResponseHead {
        let mut bytes = Vec::with_capacity(96 + reason.len());
        let mut code = itoa::Buffer::new();
        bytes.extend_from_slice(code.format(status.clamp(100, 999)).as_bytes());
        bytes.push(b' ');
        if reason.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
            bytes.extend_from_slice(reason.as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        let fields_at = bytes.len();
        bytes.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
        bytes.extend_from_slice(itoa::Buffer::new().format(content_length).as_bytes());
        bytes.extend_from_slice(b"\r\n");
        ResponseHead {
            status,
            bytes,
            fields_at,
            content_length: Some(content_length),
            has_date: false,
            has_server: false,
        }
    }

    /// Returns the status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Returns the reason phrase as latin-1 bytes.
    pub fn reason(&self) -> &[u8] {
        self.bytes.get(4..self.fields_at - 2).unwrap_or_default()
    }

    /// Returns the Content-Length the application declared, if any.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Adds `Content-Length: n` unless the application set one; used when the server knows the
    /// whole body in advance (a result list of one item).
    pub fn set_content_length_if_absent(&mut self, n: u64) {
        if self.content_length.is_none() {
            self.bytes.extend_from_slice(b"Content-Length: ");
            self.bytes.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            self.bytes.extend_from_slice(b"\r\n");
            self.content_length = Some(n);
        }
    }

    /// Returns the header fields as `(name, value)` byte pairs, in the order given.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields().split(|&b| b == b'\n').filter_map(|line| line.strip_suffix(b"\r")).filter_map(
            |line| {
                let colon = memchr::memchr(b':', line)?;
                Some((&line[..colon], line.get(colon + 2..).unwrap_or_default()))
            },
        )
    }

    /// Appends `HTTP/1.1 NNN reason\r\n` and the application's fields. A Content-Length is left
    /// out where RFC 9110 §8.6 forbids one (1xx and 204).
    pub(crate) fn write_status_and_fields(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 ");
        if self.content_length.is_some() && (self.status < 200 || self.status == 204) {
            out.extend_from_slice(&self.bytes[..self.fields_at]);
            for (name, value) in self.headers() {
                if !name.eq_ignore_ascii_case(b"content-length") {
                    out.extend_from_slice(name);
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(value);
                    out.extend_from_slice(b"\r\n");
                }
            }
        } else {
            out.extend_from_slice(&self.bytes);
        }
    }

    /// The `Name: value\r\n` lines.
    fn fields(&self) -> &[u8] {
        self.bytes.get(self.fields_at..).unwrap_or_default()
    }

    pub(crate) fn has_date(&self) -> bool {
        self.has_date
    }

    pub(crate) fn has_server(&self) -> bool {
        self.has_server
    }
}

fn parse_status(status: &str) -> Result<u16, ResponseError> {
    let s = status.as_bytes();
    match s {
        [a, b, c, b' ', ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
            if (200..=599).contains(&code) {
                Ok(code)
            } else {
                Err(ResponseError::StatusOutOfRange)
            }
        }
        _ => Err(ResponseError::BadStatus),
    }
}

/// Appends `s` encoded as latin-1; returns `false` (having appended a prefix) if a character is
/// above U+00FF.
fn push_latin1(out: &mut Vec<u8>, s: &str) -> bool {
    if s.is_ascii() {
        out.extend_from_slice(s.as_bytes());
        return true;
    }
    for c in s.chars() {
        match u8::try_from(u32::from(c)) {
            Ok(b) => out.push(b),
            Err(_) => return false,
        }
    }
    true
}

/// A field value (or reason phrase) of RFC 9110 §5.5: HTAB, SP, visible ASCII and obs-text;
/// no CR, LF, NUL, DEL or other control bytes.
pub(crate) fn valid_field_value(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// The PEP 3333 bookkeeping of one response: when `start_response` may be called, and when the
/// head goes out.
///
/// The head is sent with the first non-empty body chunk, or at the end if the body is empty.
///
/// ```
/// use wsgi_core::{ResponseHead, StartError, StartResponse};
/// let head = || ResponseHead::from_wsgi("200 OK", [("A", "b")]).unwrap();
/// let mut sr = StartResponse::new();
/// sr.start(head(), false).unwrap();
/// assert_eq!(sr.start(head(), false), Err(StartError::AlreadyCalled));
/// assert!(sr.before_body(b"").unwrap().is_none()); // empty: the head waits
/// assert!(sr.before_body(b"x").unwrap().is_some()); // now it goes out
/// assert_eq!(sr.start(head(), true), Err(StartError::HeadAlreadySent)); // re-raise exc_info
/// ```
#[derive(Clone, Debug, Default)]
pub struct StartResponse {
    state: StartState,
}

#[derive(Clone, Debug, Default)]
enum StartState {
    #[default]
    NotCalled,
    Called(ResponseHead),
    Sent,
}

impl StartResponse {
    /// Creates the bookkeeping for a new response.
    pub fn new() -> StartResponse {
        StartResponse::default()
    }

    /// Records a `start_response(status, headers, exc_info)` call; `with_exc_info` is whether
    /// `exc_info` was given (and not `None`).
    ///
    /// # Errors
    ///
    /// - [`StartError::AlreadyCalled`]: a second call without `exc_info`.
    /// - [`StartError::HeadAlreadySent`]: a call with `exc_info` after the head went out; the
    ///   caller must re-raise the exception.
    pub fn start(&mut self, head: ResponseHead, with_exc_info: bool) -> Result<(), StartError> {
        match (&self.state, with_exc_info) {
            (StartState::NotCalled, _) | (StartState::Called(_), true) => {
                self.state = StartState::Called(head);
                Ok(())
            }
            (StartState::Called(_), false) => Err(StartError::AlreadyCalled),
            (StartState::Sent, true) => Err(StartError::HeadAlreadySent),
            (StartState::Sent, false) => Err(StartError::AlreadyCalled),
        }
    }

    /// Returns `true` once `start_response` was called.
    pub fn is_called(&self) -> bool {
        !matches!(self.state, StartState::NotCalled)
    }

    /// Returns `true` once the head was handed out to be sent.
    pub fn is_sent(&self) -> bool {
        matches!(self.state, StartState::Sent)
    }

    /// Returns the recorded head, if it has not been sent yet (to adjust it, e.g. with
    /// [`ResponseHead::set_content_length_if_absent`]).
    pub fn pending_head(&mut self) -> Option<&mut ResponseHead> {
        match &mut self.state {
            StartState::Called(head) => Some(head),
            _ => None,
        }
    }

    /// Called before each body chunk: returns the head when it must go out first (the chunk is
    /// the first non-empty one), `None` when it already went out or the chunk is empty.
    ///
    /// # Errors
    ///
    /// [`StartError::NotCalled`] if `start_response` has not been called.
    pub fn before_body(&mut self, chunk: &[u8]) -> Result<Option<ResponseHead>, StartError> {
        match self.state {
            StartState::NotCalled => Err(StartError::NotCalled),
            StartState::Sent => Ok(None),
            StartState::Called(_) if chunk.is_empty() => Ok(None),
            StartState::Called(_) => Ok(self.take()),
        }
    }

    /// Called when the body ends: returns the head if it has not gone out yet.
    ///
    /// # Errors
    ///
    /// [`StartError::NotCalled`] if `start_response` was never called.
    pub fn before_end(&mut self) -> Result<Option<ResponseHead>, StartError> {
        match self.state {
            StartState::NotCalled => Err(StartError::NotCalled),
            StartState::Sent => Ok(None),
            StartState::Called(_) => Ok(self.take()),
        }
    }

    fn take(&mut self) -> Option<ResponseHead> {
        match std::mem::replace(&mut self.state, StartState::Sent) {
            StartState::Called(head) => Some(head),
            _ => None,
        }
    }
}
