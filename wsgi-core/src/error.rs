//! Error types, one per boundary, each saying whose fault it is.
//!
//! - [`ProtocolError`]: the peer broke HTTP/1.1. It carries the status to answer with, and it is
//!   sticky: once [`Connection::poll_event`](crate::Connection::poll_event) returns one, every
//!   later call returns the same error.
//! - [`UsageError`]: the caller (a driver or the application bridge) called a command at the wrong
//!   time or broke the response framing it chose.
//! - [`ResponseError`]: the application passed a status or header that PEP 3333 or RFC 9110
//!   forbids.

use std::fmt;

/// The peer sent something that is not valid HTTP/1.1 (or that this server refuses to guess
/// about); the status to answer with is [`ProtocolError::status`].
///
/// After any of these the connection is not reused: the answer carries `Connection: close`.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolError {
    /// The request line is not `method SP request-target SP HTTP-version CRLF`.
    BadRequestLine,
    /// The request target is not in origin, absolute or asterisk form (or `*` without `OPTIONS`).
    BadTarget,
    /// The request line is longer than [`Config::max_request_line`](crate::Config).
    TargetTooLong,
    /// The request head is larger than [`Config::max_head_size`](crate::Config).
    HeadTooLarge,
    /// The request has more header fields than [`Config::max_header_count`](crate::Config).
    TooManyFields,
    /// One header field line is longer than [`Config::max_field_size`](crate::Config).
    FieldTooLarge,
    /// A header field name is empty or holds a byte that is not a token character.
    BadFieldName,
    /// A header field value holds CR, LF, NUL or another control byte.
    BadFieldValue,
    /// A header field line starts with whitespace (obsolete line folding, RFC 9112 §5.2).
    ObsoleteLineFolding,
    /// Whitespace between a header field name and its colon (RFC 9112 §5.1).
    WhitespaceBeforeColon,
    /// A line ends in a bare LF or a bare CR instead of CRLF.
    BareLineEnding,
    /// An HTTP/1.1 request without a Host header field (RFC 9112 §3.2).
    MissingHost,
    /// More than one Host header field.
    MultipleHost,
    /// A Host value (or the authority of an absolute-form target) that is not `host[:port]`.
    BadHost,
    /// A Content-Length value that is not a string of decimal digits.
    BadContentLength,
    /// Content-Length values that differ from each other.
    ConflictingContentLength,
    /// Both Transfer-Encoding and Content-Length (a request-smuggling vector, RFC 9112 §6.1).
    TransferEncodingWithContentLength,
    /// Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1).
    TransferEncodingOnHttp10,
    /// A Transfer-Encoding whose final coding is not `chunked`, or that applies `chunked` twice.
    BadTransferEncoding,
    /// A transfer coding this server does not implement (anything but `chunked`).
    UnsupportedTransferCoding,
    /// A chunk-size line that is not hex digits with optional extensions, or that overflows.
    BadChunkSize,
    /// A chunk extension that is not `;name[=value]`.
    BadChunkExtension,
    /// A chunk-size line longer than the configured bound.
    ChunkLineTooLong,
    /// Chunk data not followed by exactly CRLF.
    BadChunkDelimiter,
    /// A malformed trailer section, or one larger than the head limits.
    BadTrailer,
    /// The declared or received body is larger than [`Config::max_body_size`](crate::Config).
    BodyTooLarge,
    /// An HTTP version other than 1.0 and 1.1.
    UnsupportedVersion,
    /// A method this server does not implement (`CONNECT`).
    UnsupportedMethod,
    /// A connection expected to start with a PROXY protocol header
    /// ([`Config::proxy_protocol`](crate::Config)) started with something else.
    BadProxyHeader,
    /// The connection ended in the middle of a request head.
    IncompleteHead,
    /// The connection ended in the middle of a request body.
    IncompleteBody,
    /// The request head did not arrive within [`Config::head_timeout`](crate::Config).
    HeadTimeout,
}

impl ProtocolError {
    /// Returns the HTTP status code to answer this error with.
    ///
    /// ```
    /// assert_eq!(wsgi_core::ProtocolError::HeadTooLarge.status(), 431);
    /// ```
    pub const fn status(self) -> u16 {
        use ProtocolError::*;
        match self {
            TargetTooLong => 414,
            HeadTooLarge | TooManyFields | FieldTooLarge => 431,
            BodyTooLarge => 413,
            UnsupportedTransferCoding | UnsupportedMethod => 501,
            UnsupportedVersion => 505,
            HeadTimeout => 408,
            BadRequestLine
            | BadTarget
            | BadFieldName
            | BadFieldValue
            | ObsoleteLineFolding
            | WhitespaceBeforeColon
            | BareLineEnding
            | MissingHost
            | MultipleHost
            | BadHost
            | BadContentLength
            | ConflictingContentLength
            | TransferEncodingWithContentLength
            | TransferEncodingOnHttp10
            | BadTransferEncoding
            | BadChunkSize
            | BadChunkExtension
            | ChunkLineTooLong
            | BadChunkDelimiter
            | BadTrailer
            | BadProxyHeader
            | IncompleteHead
            | IncompleteBody => 400,
        }
    }

    /// Returns the reason phrase that goes with [`status`](Self::status).
    pub const fn reason(self) -> &'static str {
        match self.status() {
            408 => "Request Timeout",
            413 => "Content Too Large",
            414 => "URI Too Long",
            431 => "Request Header Fields Too Large",
            501 => "Not Implemented",
            505 => "HTTP Version Not Supported",
            _ => "Bad Request",
        }
    }

    const fn message(self) -> &'static str {
        use ProtocolError::*;
        match self {
            BadRequestLine => "malformed request line",
            BadTarget => "malformed request target",
            TargetTooLong => "request line too long",
            HeadTooLarge => "request head too large",
            TooManyFields => "too many header fields",
            FieldTooLarge => "header field line too long",
            BadFieldName => "invalid header field name",
            BadFieldValue => "invalid byte in header field value",
            ObsoleteLineFolding => "obsolete line folding in header field",
            WhitespaceBeforeColon => "whitespace between header field name and colon",
            BareLineEnding => "line not terminated by CRLF",
            MissingHost => "HTTP/1.1 request without Host",
            MultipleHost => "more than one Host header field",
            BadHost => "invalid Host",
            BadContentLength => "invalid Content-Length",
            ConflictingContentLength => "conflicting Content-Length values",
            TransferEncodingWithContentLength => "both Transfer-Encoding and Content-Length",
            TransferEncodingOnHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            BadTransferEncoding => "Transfer-Encoding must end in a single chunked",
            UnsupportedTransferCoding => "unsupported transfer coding",
            BadChunkSize => "invalid chunk size",
            BadChunkExtension => "invalid chunk extension",
            ChunkLineTooLong => "chunk size line too long",
            BadChunkDelimiter => "chunk data not followed by CRLF",
            BadTrailer => "invalid trailer section",
            BodyTooLarge => "request body too large",
            UnsupportedVersion => "unsupported HTTP version",
            UnsupportedMethod => "unsupported method",
            BadProxyHeader => "invalid or missing PROXY protocol header",
            IncompleteHead => "connection closed during the request head",
            IncompleteBody => "connection closed during the request body",
            HeadTimeout => "request head not received in time",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ProtocolError {}

/// A command was called at a time the connection's state does not allow, or the response body
/// broke the framing its head chose. The connection's state is unchanged unless a variant says
/// otherwise.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UsageError {
    /// There is no request awaiting a response.
    NoRequest,
    /// The response head was already sent.
    HeadAlreadySent,
    /// A body chunk or the end was sent before the response head.
    HeadNotSent,
    /// The response already ended.
    ResponseEnded,
    /// The body is longer than the response's Content-Length. The bytes up to the declared length
    /// were written; the rest was dropped.
    BodyTooLong {
        /// The declared Content-Length.
        declared: u64,
    },
    /// The response ended before its Content-Length was reached. The message cannot be completed,
    /// so the connection is closed after the bytes already written.
    BodyTooShort {
        /// The declared Content-Length.
        declared: u64,
        /// The body bytes actually sent.
        sent: u64,
    },
    /// The connection is closed.
    Closed,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            UsageError::NoRequest => f.write_str("no request is awaiting a response"),
            UsageError::HeadAlreadySent => f.write_str("the response head was already sent"),
            UsageError::HeadNotSent => f.write_str("the response head has not been sent"),
            UsageError::ResponseEnded => f.write_str("the response already ended"),
            UsageError::BodyTooLong { declared } => write!(
                f,
                "response body longer than its Content-Length of {declared}; extra bytes dropped"
            ),
            UsageError::BodyTooShort { declared, sent } => write!(
                f,
                "response body ended after {sent} of its Content-Length of {declared} bytes; \
                 connection closed"
            ),
            UsageError::Closed => f.write_str("the connection is closed"),
        }
    }
}

impl std::error::Error for UsageError {}

/// The application passed a status or headers that PEP 3333 or RFC 9110 forbid.
///
/// Header errors carry the index of the offending `(name, value)` pair so the caller can name it
/// in its log line.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResponseError {
    /// The status is not three digits, a space and a reason phrase (e.g. `"200 OK"`).
    BadStatus,
    /// The status code is outside 200..=599 (interim 1xx responses are the server's business).
    StatusOutOfRange,
    /// The reason phrase holds a control byte or a character outside latin-1.
    BadReason,
    /// A header name is empty or holds a character that is not a token character.
    BadHeaderName {
        /// The index of the header in the list the application passed.
        index: usize,
    },
    /// A header value holds CR, LF, NUL or another control character.
    BadHeaderValue {
        /// The index of the header in the list the application passed.
        index: usize,
    },
    /// A header value holds a character above U+00FF (WSGI header values are latin-1).
    NotLatin1 {
        /// The index of the header in the list the application passed.
        index: usize,
    },
    /// A hop-by-hop header (Connection, Keep-Alive, Transfer-Encoding, …), which PEP 3333
    /// reserves for the server.
    HopByHop {
        /// The index of the header in the list the application passed.
        index: usize,
    },
    /// A Content-Length that is not decimal digits, or that differs from an earlier one.
    BadContentLength {
        /// The index of the header in the list the application passed.
        index: usize,
    },
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ResponseError::BadStatus => f.write_str(
                "status must be a three-digit code, a space and a reason, e.g. '200 OK'",
            ),
            ResponseError::StatusOutOfRange => {
                f.write_str("status code must be between 200 and 599")
            }
            ResponseError::BadReason => {
                f.write_str("status reason phrase must be latin-1 text without control characters")
            }
            ResponseError::BadHeaderName { index } => {
                write!(f, "response header #{index} has an invalid name")
            }
            ResponseError::BadHeaderValue { index } => write!(
                f,
                "response header #{index} has a control character (CR, LF, NUL, …) in its value"
            ),
            ResponseError::NotLatin1 { index } => {
                write!(f, "response header #{index} has a character outside latin-1 in its value")
            }
            ResponseError::HopByHop { index } => write!(
                f,
                "response header #{index} is hop-by-hop, which PEP 3333 reserves for the server"
            ),
            ResponseError::BadContentLength { index } => {
                write!(f, "response header #{index} is an invalid or conflicting Content-Length")
            }
        }
    }
}

impl std::error::Error for ResponseError {}

/// A PEP 3333 rule about *when* `start_response` may be called was broken.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StartError {
    /// `start_response` was called a second time without `exc_info`.
    AlreadyCalled,
    /// `start_response` was called with `exc_info` after the head was sent: PEP 3333 has the
    /// server re-raise that exception.
    HeadAlreadySent,
    /// The application produced body bytes (or returned) without calling `start_response`.
    NotCalled,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StartError::AlreadyCalled => "start_response() called a second time without exc_info",
            StartError::HeadAlreadySent => {
                "start_response() called with exc_info after the response head was sent"
            }
            StartError::NotCalled => "application produced a body without calling start_response()",
        })
    }
}

impl std::error::Error for StartError {}
