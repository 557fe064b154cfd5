//! Response body encoders: one per [`ResponseBody`] framing, writing into a caller-owned buffer.

use crate::error::UsageError;
use crate::framing::ResponseBody;

/// Encodes a response body for the framing its head chose.
///
/// ```
/// use wsgi_core::{BodyEncoder, ResponseBody};
/// let mut out = Vec::new();
/// let mut encoder = BodyEncoder::new(ResponseBody::Chunked);
/// encoder.encode(b"foo bar", &mut out).unwrap();
/// encoder.encode(b"", &mut out).unwrap(); // empty chunks write nothing
/// encoder.finish(&mut out).unwrap();
/// assert_eq!(out, b"7\r\nfoo bar\r\n0\r\n\r\n");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyEncoder {
    kind: EncoderKind,
    sent: u64,
    finished: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EncoderKind {
    Empty,
    Length(u64),
    Chunked,
    CloseDelimited,
}

impl BodyEncoder {
    /// Creates the encoder for `framing`.
    pub fn new(framing: ResponseBody) -> BodyEncoder {
        let kind = match framing {
            ResponseBody::Empty => EncoderKind::Empty,
            ResponseBody::Length(n) => EncoderKind::Length(n),
            ResponseBody::Chunked => EncoderKind::Chunked,
            ResponseBody::CloseDelimited => EncoderKind::CloseDelimited,
        };
        BodyEncoder { kind, sent: 0, finished: false }
    }

    /// Appends `chunk`, framed, to `out`.
    ///
    /// An empty chunk writes nothing (in chunked framing it would end the body). With the
    /// `Empty` framing (HEAD, 204, 304) the bytes are counted but not written.
    ///
    /// # Errors
    ///
    /// - [`UsageError::BodyTooLong`] if `chunk` passes the Content-Length: the bytes up to it are
    ///   written, the rest dropped.
    /// - [`UsageError::ResponseEnded`] after [`finish`](Self::finish).
    pub fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), UsageError> {
        // The framing is `encode_external`'s; only the bytes it lets through are copied here.
        let framed = self.encode_external(chunk.len() as u64, out)?;
        let body = framed.part_to_send(chunk);
        out.reserve(body.len() + framed.suffix.len());
        out.extend_from_slice(body);
        out.extend_from_slice(framed.suffix);
        framed.error.map_or(Ok(()), Err)
    }

    /// Ends the body: the last chunk for chunked framing, nothing otherwise.
    ///
    /// # Errors
    ///
    /// - [`UsageError::BodyTooShort`] if fewer bytes than the Content-Length were sent; the
    ///   message cannot be completed and its connection must close.
    /// - [`UsageError::ResponseEnded`] if called twice.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), UsageError> {
        if self.finished {
            return Err(UsageError::ResponseEnded);
        }
        self.finished = true;
        match self.kind {
            EncoderKind::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
            EncoderKind::Length(declared) if self.sent < declared => {
                return Err(UsageError::BodyTooShort { declared, sent: self.sent });
            }
            _ => {}
        }
        Ok(())
    }

    /// Frames `len` body bytes that the caller writes to the peer itself, e.g. with sendfile:
    /// appends what must precede them to `out` and says how many to send and what must follow.
    ///
    /// `send` is less than `len` when the Content-Length leaves less room (the rest must not be
    /// sent; `error` then holds the [`UsageError::BodyTooLong`] that [`encode`](Self::encode)
    /// would return, for the caller to report once the `send` bytes are out) and 0 for the
    /// `Empty` framing (HEAD, 204, 304).
    ///
    /// ```
    /// use wsgi_core::{BodyEncoder, ResponseBody};
    /// let mut out = Vec::new();
    /// let mut encoder = BodyEncoder::new(ResponseBody::Chunked);
    /// let external = encoder.encode_external(4096, &mut out).unwrap();
    /// assert_eq!((out.as_slice(), external.send, external.suffix), (&b"1000\r\n"[..], 4096, &b"\r\n"[..]));
    /// assert_eq!(external.error, None);
    /// ```
    ///
    /// # Errors
    ///
    /// [`UsageError::ResponseEnded`] after [`finish`](Self::finish).
    pub fn encode_external(
        &mut self,
        len: u64,
        out: &mut Vec<u8>,
    ) -> Result<ExternalBody, UsageError> {
        if self.finished {
            return Err(UsageError::ResponseEnded);
        }
        let none = ExternalBody { send: 0, suffix: b"", error: None };
        if len == 0 {
            return Ok(none);
        }
        let external = match self.kind {
            EncoderKind::Empty => none,
            EncoderKind::Length(declared) => {
                let room = declared - self.sent;
                ExternalBody {
                    send: len.min(room),
                    suffix: b"",
                    error: (len > room).then_some(UsageError::BodyTooLong { declared }),
                }
            }
            EncoderKind::Chunked => {
                let mut hex = [0u8; 16];
                out.extend_from_slice(write_hex(len, &mut hex));
                out.extend_from_slice(b"\r\n");
                ExternalBody { send: len, suffix: b"\r\n", error: None }
            }
            EncoderKind::CloseDelimited => ExternalBody { send: len, suffix: b"", error: None },
        };
        self.sent += if self.kind == EncoderKind::Empty { len } else { external.send };
        Ok(external)
    }

    /// Returns the body bytes accepted so far (before framing; for `Empty`, those counted).
    pub fn body_bytes(&self) -> u64 {
        self.sent
    }

    /// Returns `true` once no byte can be added to the body: its Content-Length is reached, or
    /// the framing carries none (`Empty`: HEAD, 204, 304). Only [`finish`](Self::finish) can
    /// follow, and for these framings it writes nothing.
    ///
    /// ```
    /// use wsgi_core::{BodyEncoder, ResponseBody};
    /// let mut encoder = BodyEncoder::new(ResponseBody::Length(5));
    /// encoder.encode(b"hel", &mut Vec::new()).unwrap();
    /// assert!(!encoder.is_complete());
    /// encoder.encode(b"lo", &mut Vec::new()).unwrap();
    /// assert!(encoder.is_complete());
    /// ```
    pub fn is_complete(&self) -> bool {
        match self.kind {
            EncoderKind::Empty => true,
            EncoderKind::Length(declared) => self.sent >= declared,
            EncoderKind::Chunked | EncoderKind::CloseDelimited => false,
        }
    }

    /// Returns `true` if the connection must close to end this body (HTTP/1.0 without a
    /// Content-Length).
    pub fn is_close_delimited(&self) -> bool {
        self.kind == EncoderKind::CloseDelimited
    }
}

/// How to send body bytes the caller writes itself; see [`BodyEncoder::encode_external`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct ExternalBody {
    /// How many of the bytes to send.
    pub send: u64,
    /// What must follow them on the wire.
    pub suffix: &'static [u8],
    /// [`UsageError::BodyTooLong`] if the bytes pass the Content-Length: only `send` of them
    /// may go, and the error is the caller's to report once they have.
    pub error: Option<UsageError>,
}

impl ExternalBody {
    /// The bytes of `chunk` (the bytes this was made for) to send: its first `send`.
    ///
    /// ```
    /// use wsgi_core::{BodyEncoder, ResponseBody};
    /// let mut encoder = BodyEncoder::new(ResponseBody::Length(3));
    /// let external = encoder.encode_external(5, &mut Vec::new()).unwrap();
    /// assert_eq!(external.part_to_send(b"hello"), b"hel");
    /// ```
    pub fn part_to_send<'a>(&self, chunk: &'a [u8]) -> &'a [u8] {
        chunk.get(..usize::try_from(self.send).unwrap_or(usize::MAX)).unwrap_or(chunk)
    }
}

/// Writes `n` in lowercase hex without leading zeros into `buf`, returning the digits.
fn write_hex(mut n: u64, buf: &mut [u8; 16]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            return &buf[i..];
        }
    }
}
