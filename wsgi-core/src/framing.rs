//! Message body framing (RFC 9112 §6.3), one pure function per direction.
//!
//! Request framing never looks at the method; it rejects rather than guesses whenever two
//! readers of the same bytes could disagree about where the body ends.

use crate::error::ProtocolError;
use crate::head::Version;

/// How a request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestBody {
    /// Neither Content-Length nor Transfer-Encoding: no body (RFC 9112 §6.3, rule 7).
    Empty,
    /// `Content-Length: n` (possibly 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// How a response body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResponseBody {
    /// No body bytes at all: HEAD requests and 1xx, 204 and 304 responses.
    Empty,
    /// Exactly `n` bytes, as the application's Content-Length declares.
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 without a Content-Length).
    Chunked,
    /// The body ends when the connection closes (HTTP/1.0 without a Content-Length).
    CloseDelimited,
}

/// Splits a comma-separated field value (RFC 9110 §5.6.1) into its non-empty elements, with
/// optional whitespace trimmed.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows).filter(|e| !e.is_empty())
}

pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Decides how a request body is framed from its version and header fields.
///
/// - Transfer-Encoding on HTTP/1.0 is refused, and so is Transfer-Encoding together with
///   Content-Length (the classic request-smuggling pair).
/// - Transfer-Encoding must end in `chunked`, applied once; any other coding is not implemented.
/// - Content-Length must be decimal digits; repeated values (as separate fields or a list) must
///   all be equal; the value must not exceed `max_body`.
///
/// ```
/// use wsgi_core::{request_framing, ProtocolError, RequestBody, Version};
/// let framing = |fields: &[(&'static str, &'static [u8])]| {
///     request_framing(Version::Http11, fields.iter().copied(), 1 << 20)
/// };
/// assert_eq!(framing(&[("Content-Length", b"5")]), Ok(RequestBody::Length(5)));
/// assert_eq!(framing(&[("Transfer-Encoding", b"chunked")]), Ok(RequestBody::Chunked));
/// assert_eq!(
///     framing(&[("Content-Length", b"5"), ("Content-Length", b"6")]),
///     Err(ProtocolError::ConflictingContentLength)
/// );
/// ```
///
/// # Errors
///
/// The [`ProtocolError`] to answer with; each names the rule broken.
pub fn request_framing<'a>(
    version: Version,
    fields: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    max_body: u64,
) -> Result<RequestBody, ProtocolError> {
    let framing = fields.into_iter().filter_map(|(name, value)| {
        if name.eq_ignore_ascii_case("content-length") {
            Some((FramingField::ContentLength, value))
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            Some((FramingField::TransferEncoding, value))
        } else {
            None
        }
    });
    framing_of(version, framing, max_body)
}

/// A field that frames a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FramingField {
    ContentLength,
    TransferEncoding,
}

/// [`request_framing`] from the framing fields alone, already told apart (the parser knows each
/// field's name by its id, so it need not compare names again).
pub(crate) fn framing_of<'a>(
    version: Version,
    fields: impl IntoIterator<Item = (FramingField, &'a [u8])>,
    max_body: u64,
) -> Result<RequestBody, ProtocolError> {
    let mut length: Option<u64> = None;
    let mut conflicting = false;
    let mut te_seen = false;
    let mut codings = 0usize;
    let mut chunked_count = 0usize;
    let mut last_chunked = false;
    for (field, value) in fields {
        if field == FramingField::ContentLength {
            let mut any = false;
            for element in value.split(|&b| b == b',').map(trim_ows) {
                any = true;
                let n = parse_decimal(element).ok_or(ProtocolError::BadContentLength)?;
                match length {
                    Some(prev) if prev != n => conflicting = true,
                    _ => length = Some(n),
                }
            }
            if !any {
                return Err(ProtocolError::BadContentLength);
            }
        } else {
            te_seen = true;
            for coding in list_elements(value) {
                codings += 1;
                last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                chunked_count += usize::from(last_chunked);
            }
        }
    }
    if te_seen {
        if version == Version::Http10 {
            return Err(ProtocolError::TransferEncodingOnHttp10);
        }
        if length.is_some() {
            return Err(ProtocolError::TransferEncodingWithContentLength);
        }
        if codings == 0 || !last_chunked || chunked_count > 1 {
            return Err(ProtocolError::BadTransferEncoding);
        }
        if codings > 1 {
            return Err(ProtocolError::UnsupportedTransferCoding);
        }
        return Ok(RequestBody::Chunked);
    }
    if conflicting {
        return Err(ProtocolError::ConflictingContentLength);
    }
    match length {
        Some(n) if n > max_body => Err(ProtocolError::BodyTooLarge),
        Some(n) => Ok(RequestBody::Length(n)),
        None => Ok(RequestBody::Empty),
    }
}

/// Parses `1*DIGIT`, saturating at `u64::MAX` (which exceeds any body limit).
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, &d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

/// Decides whether the connection may carry another request after this one, from the version
/// and the tokens of the request's Connection header (RFC 9112 §9.3).
///
/// ```
/// use wsgi_core::{keep_alive, Version};
/// assert!(keep_alive(Version::Http11, false, false));
/// assert!(!keep_alive(Version::Http11, true, false));
/// assert!(!keep_alive(Version::Http10, false, false));
/// assert!(keep_alive(Version::Http10, false, true));
/// ```
pub fn keep_alive(version: Version, close_token: bool, keep_alive_token: bool) -> bool {
    !close_token && (version == Version::Http11 || keep_alive_token)
}

/// Decides how a response body is framed (RFC 9112 §6.3).
///
/// `content_length` is the application's Content-Length, if it set one.
///
/// ```
/// use wsgi_core::{response_framing, ResponseBody, Version};
/// assert_eq!(response_framing(Version::Http11, false, 200, None), ResponseBody::Chunked);
/// assert_eq!(response_framing(Version::Http10, false, 200, None), ResponseBody::CloseDelimited);
/// assert_eq!(response_framing(Version::Http11, true, 200, Some(5)), ResponseBody::Empty);
/// ```
pub fn response_framing(
    version: Version,
    head_request: bool,
    status: u16,
    content_length: Option<u64>,
) -> ResponseBody {
    if head_request || status < 200 || status == 204 || status == 304 {
        return ResponseBody::Empty;
    }
    match (content_length, version) {
        (Some(n), _) => ResponseBody::Length(n),
        (None, Version::Http11) => ResponseBody::Chunked,
        (None, Version::Http10) => ResponseBody::CloseDelimited,
    }
}
