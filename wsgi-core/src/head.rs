//! Request head parsing and validation.
//!
//! A head that arrives whole (the usual case) is tokenized in one pass by
//! [`tokenize::tokenize`]. One that arrives in pieces goes through the scanner, which finds
//! the end of the head incrementally, checking each line's terminator and the size limits as
//! bytes arrive, so a partial head is never re-tokenized and an oversized one is refused before
//! it is complete; the complete head is then tokenized once. This module then adds what the
//! grammar leaves to the server: the target's form, Host, and the body framing.

use bytes::{Buf, Bytes, BytesMut};

use crate::config::Config;
use crate::error::ProtocolError;
use crate::framing::{self, FramingField, RequestBody};
use crate::names;
use crate::tokenize::{self, Tokens};

/// The HTTP version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
}

impl Version {
    /// Returns the version as it appears on the wire, e.g. `"HTTP/1.1"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// The form of a request target (RFC 9112 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetForm {
    /// `/path?query`, the usual form.
    Origin,
    /// `http://authority/path?query`, as sent to proxies; the authority replaces Host.
    Absolute,
    /// `*`, only with `OPTIONS`.
    Asterisk,
}

/// A byte range inside [`RequestHead`]'s buffer. Heads are bounded by `Config::max_head_size`,
/// which the scanner keeps far below `u32::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    pub(crate) fn sub(self, from: usize, to: usize) -> Span {
        Span { start: self.start + from as u32, end: self.start + to as u32 }
    }

    pub(crate) fn get(self, bytes: &[u8]) -> &[u8] {
        bytes.get(self.start as usize..self.end as usize).unwrap_or_default()
    }
}

/// One header field: where its name and value are, and the name's id in [`names`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    pub(crate) name: Span,
    pub(crate) value: Span,
    pub(crate) id: u8,
}

/// A parsed and validated request head: request line and header fields.
///
/// It owns the head's bytes (a zero-copy slice of the connection's read buffer); every accessor
/// borrows from them. Header names and values are as the client sent them (names keep their
/// case; values are raw bytes, which WSGI reads as latin-1).
#[derive(Clone, Debug)]
pub struct RequestHead {
    pub(crate) bytes: Bytes,
    pub(crate) method: Span,
    pub(crate) target: Span,
    pub(crate) path: Span,
    pub(crate) query: Option<Span>,
    /// The authority the request is for: the absolute-form target's, else the Host value.
    pub(crate) authority: Option<Span>,
    /// The length of `authority`'s host name; a port, if any, follows it after a colon.
    /// Validation found it, so the environ need not split the authority again.
    pub(crate) authority_name: u32,
    pub(crate) fields: Vec<Field>,
    /// The body's length; with `chunked` false, no body is a length of 0 and `has_length`
    /// says whether the client sent one. [`RequestBody`] spread out, so that the head stays
    /// within 128 bytes: moves of it are then a few vector stores rather than a `memcpy` call.
    pub(crate) body_length: u64,
    pub(crate) has_length: bool,
    pub(crate) chunked: bool,
    pub(crate) form: TargetForm,
    pub(crate) version: Version,
    pub(crate) keep_alive: bool,
    pub(crate) expect_continue: bool,
    /// Every byte of the head is ASCII, so any slice of it is a `str` as it stands.
    pub(crate) ascii: bool,
}

impl RequestHead {
    /// Returns the method, e.g. `"GET"` (a token, so always ASCII).
    pub fn method(&self) -> &str {
        std::str::from_utf8(self.method.get(&self.bytes)).unwrap_or_default()
    }

    /// Returns `true` for a `HEAD` request, whose response carries no body bytes.
    pub fn is_head(&self) -> bool {
        self.method.get(&self.bytes) == b"HEAD"
    }

    /// Returns the request target exactly as sent.
    pub fn target(&self) -> &[u8] {
        self.target.get(&self.bytes)
    }

    /// Returns the form of the request target.
    pub fn target_form(&self) -> TargetForm {
        self.form
    }

    /// Returns the target's path, still percent-encoded: `/a%20b` for `/a%20b?x`, `/` for
    /// `http://host` and `*` for the asterisk form.
    pub fn path(&self) -> &[u8] {
        match self.form {
            TargetForm::Absolute if self.path.start == self.path.end => b"/",
            _ => self.path.get(&self.bytes),
        }
    }

    /// Returns the target's query without the `?`, as sent, or `None` if there is no `?`.
    pub fn query(&self) -> Option<&[u8]> {
        self.query.map(|s| s.get(&self.bytes))
    }

    /// Returns the HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Returns the header fields in the order they were sent, names as sent.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
        self.fields.iter().map(|f| {
            (
                std::str::from_utf8(f.name.get(&self.bytes)).unwrap_or_default(),
                f.value.get(&self.bytes),
            )
        })
    }

    /// Returns the value of the first header field named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// Returns the authority the request is for: the absolute-form target's authority if the
    /// target has one (RFC 9112 §3.2.2: it overrides Host), else the Host value, else `None`
    /// (an HTTP/1.0 request without Host).
    pub fn host(&self) -> Option<&[u8]> {
        self.authority.map(|s| s.get(&self.bytes))
    }

    /// Returns how the request body is framed.
    pub fn body(&self) -> RequestBody {
        match (self.chunked, self.has_length) {
            (true, _) => RequestBody::Chunked,
            (false, true) => RequestBody::Length(self.body_length),
            (false, false) => RequestBody::Empty,
        }
    }

    /// Returns the declared Content-Length, if the request has one.
    pub fn content_length(&self) -> Option<u64> {
        self.has_length.then_some(self.body_length)
    }

    /// Returns whether the client allows the connection to be reused after this exchange
    /// (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Returns whether the client sent `Expect: 100-continue` and waits for an interim response
    /// before sending its body.
    pub fn expects_continue(&self) -> bool {
        self.expect_continue
    }

    /// The non-empty authority's host name and its port (when not empty), as spans.
    pub(crate) fn authority_parts(&self) -> Option<(Span, Option<Span>)> {
        let a = self.authority.filter(|s| s.start != s.end)?;
        let name_end = a.start + self.authority_name;
        let port = (a.end > name_end + 1).then_some(Span { start: name_end + 1, end: a.end });
        Some((Span { start: a.start, end: name_end }, port))
    }
}

/// The largest head the scanner accepts regardless of configuration, so spans fit in `u32`.
const HEAD_SIZE_CAP: usize = 16 << 20;

/// Finds the end of a request head as bytes arrive and parses it once it is complete.
#[derive(Debug, Default)]
pub(crate) struct HeadScanner {
    /// Bytes of the buffer already checked for line terminators.
    scanned: usize,
    /// Where the line being received starts.
    line_start: usize,
    /// Complete lines so far, the request line included.
    lines: usize,
}

impl HeadScanner {
    /// Scans `buf` for a complete head. On success the head's bytes are split off `buf`, which
    /// keeps whatever follows (body bytes, the next pipelined request).
    pub(crate) fn parse(
        &mut self,
        buf: &mut BytesMut,
        config: &Config,
    ) -> Result<Option<RequestHead>, ProtocolError> {
        let max_head = config.max_head_size.min(HEAD_SIZE_CAP);
        // The tokenizer refuses a buffer that starts with an empty line (the scanner skips it).
        if self.scanned == 0 && self.lines == 0 {
            if let Some(head) = parse_fast(buf, max_head, config) {
                return head.map(Some);
            }
        }
        loop {
            let Some(lf) = tokenize::find(buf, self.scanned, tokenize::Is(b'\n')) else {
                self.scanned = buf.len();
                self.check_limits(buf, max_head, config)?;
                return Ok(None);
            };
            // The limits as a read ending just before this LF would have met them. Only a line
            // longer than its limit, or a head longer than its own, can have crossed one.
            let max_line =
                if self.lines == 0 { config.max_request_line } else { config.max_field_size };
            if lf - self.line_start > max_line || lf > max_head {
                self.check_limits(&buf[..lf], max_head, config)?;
            }
            if lf == 0 || buf[lf - 1] != b'\r' {
                return Err(ProtocolError::BareLineEnding);
            }
            let line_len = lf - 1 - self.line_start;
            if lf + 1 > max_head {
                return Err(ProtocolError::HeadTooLarge);
            }
            if line_len == 0 {
                if self.lines == 0 {
                    // RFC 9112 §2.2: ignore empty lines before the request line.
                    buf.advance(lf + 1);
                    *self = HeadScanner::default();
                    continue;
                }
                let head = parse_complete(buf, lf + 1, config)?;
                *self = HeadScanner::default();
                return Ok(Some(head));
            }
            self.lines += 1;
            if self.lines - 1 > config.max_header_count {
                return Err(ProtocolError::TooManyFields);
            }
            self.line_start = lf + 1;
            self.scanned = lf + 1;
        }
    }

    /// Checks the line and head limits against `seen`, the head so far (without the current
    /// line's LF). Fails with the limit the bytes crossed first, so the error does not depend on
    /// how they arrived. A CR ending `seen` is not counted in the line: it may start its CRLF.
    fn check_limits(
        &self,
        seen: &[u8],
        max_head: usize,
        config: &Config,
    ) -> Result<(), ProtocolError> {
        let (max_line, line_error) = if self.lines == 0 {
            (config.max_request_line, ProtocolError::TargetTooLong)
        } else {
            (config.max_field_size, ProtocolError::FieldTooLarge)
        };
        // The line crosses its limit with its (max_line + 1)th byte, or the next if that is a CR.
        let at = self.line_start.saturating_add(max_line).saturating_add(1);
        let line_at = at.saturating_add(usize::from(seen.get(at - 1) == Some(&b'\r')));
        let head_at = max_head + 1;
        match (line_at <= seen.len(), head_at <= seen.len()) {
            (true, true) if head_at < line_at => Err(ProtocolError::HeadTooLarge),
            (true, _) => Err(line_error),
            (false, true) => Err(ProtocolError::HeadTooLarge),
            (false, false) => Ok(()),
        }
    }
}

/// Tokenizes and validates the complete head that is `buf`'s first `end` bytes (it ends with the
/// empty line, every line of it ends in CRLF and fits its limit: the scanner checked), and
/// splits it off `buf`.
fn parse_complete(
    buf: &mut BytesMut,
    end: usize,
    config: &Config,
) -> Result<RequestHead, ProtocolError> {
    let head = &buf[..end];
    match tokenize::tokenize(head, config) {
        Some(tokens) if tokens.len == end => validate(buf.split_to(end).freeze(), tokens, config),
        // The scanner saw the empty line, so the tokenizer must end there too.
        Some(_) => Err(ProtocolError::BadRequestLine),
        None => Err(tokenize::explain(head)),
    }
}

/// Parses a head that arrived whole, in one pass, when that gives exactly what the incremental
/// scanner followed by [`parse_complete`] would: the buffer starts with the request line, every
/// line ends in CRLF and no limit is crossed (the tokenizer refuses the head otherwise). Returns
/// `None` whenever it cannot be sure (a partial head, any tokenizing error, a limit), and the
/// scanner then finds the first problem in byte order, as it does for heads that arrive in
/// pieces. A head it tokenized is split off `buf` (an error is final for the connection, so
/// what stays in `buf` then no longer matters).
fn parse_fast(
    buf: &mut BytesMut,
    max_head: usize,
    config: &Config,
) -> Option<Result<RequestHead, ProtocolError>> {
    let tokens = tokenize::tokenize(&buf[..buf.len().min(max_head)], config)?;
    let head = buf.split_to(tokens.len).freeze();
    Some(validate(head, tokens, config))
}

/// Checks a tokenized head, `bytes` (target form, Host, framing), and records where its parts
/// are.
fn validate(bytes: Bytes, tokens: Tokens, config: &Config) -> Result<RequestHead, ProtocolError> {
    let head: &[u8] = &bytes;
    let version = tokens.version;
    let method = tokens.method.get(head);
    let target_span = tokens.target;
    let (form, authority, path, query) = split_target(method, target_span.get(head))?;
    let authority = authority.map(|((a, b), name)| (target_span.sub(a, b), name));
    let path = target_span.sub(path.0, path.1);
    let query = query.map(|(a, b)| target_span.sub(a, b));

    let mut host = None;
    let mut host_count = 0usize;
    let mut keep_alive_token = false;
    let mut close_token = false;
    let mut expect_continue = false;
    let mut framed = false;
    for f in &tokens.fields {
        match f.id {
            names::HOST => {
                host_count += 1;
                let name = authority_name_len(f.value.get(head)).ok_or(ProtocolError::BadHost)?;
                host = Some((f.value, name));
            }
            names::CONNECTION => {
                for token in framing::list_elements(f.value.get(head)) {
                    close_token |= token.eq_ignore_ascii_case(b"close");
                    keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            names::EXPECT => {
                // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored.
                expect_continue |= version == Version::Http11
                    && f.value.get(head).eq_ignore_ascii_case(b"100-continue");
            }
            names::CONTENT_LENGTH | names::TRANSFER_ENCODING => framed = true,
            _ => {}
        }
    }
    match host_count {
        0 if version == Version::Http11 => return Err(ProtocolError::MissingHost),
        0 | 1 => {}
        _ => return Err(ProtocolError::MultipleHost),
    }
    // Most requests (every GET) have neither framing field: no second pass over the fields.
    let body = if framed {
        let framing = tokens.fields.iter().filter_map(|f| match f.id {
            names::CONTENT_LENGTH => Some((FramingField::ContentLength, f.value.get(head))),
            names::TRANSFER_ENCODING => Some((FramingField::TransferEncoding, f.value.get(head))),
            _ => None,
        });
        framing::framing_of(version, framing, config.max_body_size)?
    } else {
        RequestBody::Empty
    };
    let keep_alive = framing::keep_alive(version, close_token, keep_alive_token);
    // RFC 9112 §3.2.2: the absolute-form target's authority overrides Host.
    let (authority, authority_name) = authority.or(host).map_or((None, 0), |(a, n)| (Some(a), n));
    let (body_length, has_length) = match body {
        RequestBody::Length(n) => (n, true),
        RequestBody::Empty | RequestBody::Chunked => (0, false),
    };
    Ok(RequestHead {
        bytes,
        method: tokens.method,
        target: target_span,
        path,
        query,
        authority,
        authority_name,
        fields: tokens.fields,
        body_length,
        has_length,
        chunked: body == RequestBody::Chunked,
        form,
        version,
        keep_alive,
        expect_continue,
        ascii: tokens.ascii,
    })
}

type Range2 = (usize, usize);

/// An absolute-form target's authority: its offsets in the target, and its host name's length.
type TargetAuthority = (Range2, u32);

/// Splits a request target into its form, authority (with its host name's length), path and
/// query (as offsets into it).
fn split_target(
    method: &[u8],
    t: &[u8],
) -> Result<(TargetForm, Option<TargetAuthority>, Range2, Option<Range2>), ProtocolError> {
    if tokenize::find(t, 0, tokenize::Is(b'#')).is_some() {
        return Err(ProtocolError::BadTarget);
    }
    let path_and_query = |from: usize| {
        let rest = &t[from..];
        match tokenize::find(rest, 0, tokenize::Is(b'?')) {
            Some(q) => ((from, from + q), Some((from + q + 1, t.len()))),
            None => ((from, t.len()), None),
        }
    };
    match t.first() {
        Some(b'/') => {
            let (path, query) = path_and_query(0);
            Ok((TargetForm::Origin, None, path, query))
        }
        Some(b'*') if t.len() == 1 => {
            if method == b"OPTIONS" {
                Ok((TargetForm::Asterisk, None, (0, 1), None))
            } else {
                Err(ProtocolError::BadTarget)
            }
        }
        _ if method == b"CONNECT" => Err(ProtocolError::UnsupportedMethod),
        _ => {
            let scheme_len = if starts_with_ignore_case(t, b"http://") {
                7
            } else if starts_with_ignore_case(t, b"https://") {
                8
            } else {
                return Err(ProtocolError::BadTarget);
            };
            let rest = &t[scheme_len..];
            let auth_len = rest.iter().position(|&b| b == b'/' || b == b'?').unwrap_or(rest.len());
            let authority = (scheme_len, scheme_len + auth_len);
            let name = authority_name_len(&t[authority.0..authority.1])
                .filter(|_| auth_len > 0)
                .ok_or(ProtocolError::BadHost)?;
            let (path, query) = path_and_query(authority.1);
            Ok((TargetForm::Absolute, Some((authority, name)), path, query))
        }
    }
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Splits `host[:port]` (or `[v6]:port`) into host and port. The input must be valid.
pub(crate) fn split_authority(a: &[u8]) -> (&[u8], Option<&[u8]>) {
    let colon = if a.first() == Some(&b'[') {
        memchr::memchr(b']', a)
            .and_then(|close| (a.get(close + 1) == Some(&b':')).then_some(close + 1))
    } else {
        // Short (a host name and port): a loop, where a call into memchr costs more.
        a.iter().rposition(|&b| b == b':')
    };
    match colon {
        Some(c) => (&a[..c], Some(&a[c + 1..])),
        None => (a, None),
    }
}

/// The length of the host name of `a` if it is a valid `uri-host [ ":" port ]` (RFC 9110 §7.2,
/// RFC 3986 §3.2.2), `None` otherwise. An empty value is valid: RFC 9112 §3.2 has clients send
/// an empty Host when the target has no authority. Heads are far shorter than `u32::MAX`.
fn authority_name_len(a: &[u8]) -> Option<u32> {
    parse_authority(a).map(|(name, _)| name.len() as u32)
}

/// [`split_authority`] of a valid authority (see [`authority_name_len`]), `None` for an
/// invalid one.
pub(crate) fn parse_authority(a: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let (host, port) = split_authority(a);
    let host_ok = match host {
        [b'[', inner @ .., b']'] => {
            !inner.is_empty()
                && inner.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        // Without an early exit: valid names (nearly all) are read whole anyway, and the loop
        // is then a table lookup and an AND per byte.
        _ => host.iter().fold(true, |ok, &b| ok & REG_NAME[usize::from(b)]),
    };
    let port_ok = port.is_none_or(|p| p.is_empty() || parse_port(p).is_some());
    (host_ok && port_ok).then_some((host, port))
}

/// A port: 1 to 5 decimal digits, at most 65535.
pub(crate) fn parse_port(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    u16::try_from(digits.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'))).ok()
}

/// `tchar` of RFC 9110 §5.6.2.
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// The bytes `set` holds, plus ASCII letters and digits, as a lookup table.
const fn alphanumeric_and(set: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < set.len() {
        table[set[i] as usize] = true;
        i += 1;
    }
    table
}

/// `tchar` (RFC 9110 §5.6.2).
static TCHAR: [bool; 256] = alphanumeric_and(b"!#$%&'*+-.^_`|~");

/// What a `reg-name` or IPv4 host holds (RFC 3986 §3.2.2: unreserved, pct-encoded and
/// sub-delims; `%` is allowed without checking the two hex digits after it).
static REG_NAME: [bool; 256] = alphanumeric_and(b"-._~%!$&'()*+,;=");
