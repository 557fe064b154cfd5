//! Request body decoders: one small type per framing.
//!
//! Decoders take bytes from the front of the connection's read buffer and hand out zero-copy
//! slices of it. They consume only what belongs to the body, so bytes of a pipelined request
//! that follow the body stay in the buffer.

use bytes::{Buf, Bytes, BytesMut};

use crate::config::Config;
use crate::error::ProtocolError;
use crate::framing::RequestBody;
use crate::head::is_tchar;
use crate::response::valid_field_value;

/// One step of body decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes (never empty).
    Data(Bytes),
    /// The body is complete.
    End,
}

/// The decoder a request's framing calls for.
#[derive(Clone, Debug)]
pub(crate) enum BodyDecoder {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
}

impl BodyDecoder {
    pub(crate) fn new(body: RequestBody, config: &Config) -> BodyDecoder {
        match body {
            RequestBody::Empty => BodyDecoder::Length { remaining: 0 },
            RequestBody::Length(n) => BodyDecoder::Length { remaining: n },
            RequestBody::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new(config)),
        }
    }

    /// Returns whether the rest of the body may be read and discarded within `limit` bytes
    /// (a chunked body's size is unknown: its drain is cut off at `limit` as it goes).
    pub(crate) fn drainable(&self, limit: u64) -> bool {
        match self {
            BodyDecoder::Length { remaining } => *remaining <= limit,
            BodyDecoder::Chunked(_) => true,
        }
    }

    /// Returns `true` once the whole body has been decoded (a length of 0 left, or the last
    /// chunk and trailers).
    pub(crate) fn is_done(&self) -> bool {
        match self {
            BodyDecoder::Length { remaining } => *remaining == 0,
            BodyDecoder::Chunked(c) => c.is_done(),
        }
    }

    /// Decodes the next step from `buf`; `Ok(None)` means more bytes are needed.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
        match self {
            BodyDecoder::Length { remaining: 0 } => Ok(Some(Decoded::End)),
            BodyDecoder::Length { remaining } => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = usize::try_from(*remaining).unwrap_or(usize::MAX).min(buf.len());
                *remaining -= n as u64;
                Ok(Some(Decoded::Data(buf.split_to(n).freeze())))
            }
            BodyDecoder::Chunked(c) => c.decode(buf),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Expecting `chunk-size [chunk-ext] CRLF`.
    Size,
    /// Inside chunk data.
    Data { remaining: u64 },
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Inside the trailer section, after the last chunk.
    Trailer { fields: usize, bytes: usize },
    /// The body is complete.
    Done,
}

/// A decoder for `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1).
///
/// Strict: hex digits only (overflow-checked), extensions must be `;name[=token|"quoted"]`,
/// every line ends in CRLF, and the chunk-size line, the trailer section and the total body are
/// bounded by the [`Config`]. Trailer fields are checked and discarded (WSGI has no trailers).
///
/// ```
/// use bytes::BytesMut;
/// use wsgi_core::{ChunkedDecoder, Config, Decoded};
/// let mut decoder = ChunkedDecoder::new(&Config::default());
/// let mut buf = BytesMut::from(&b"3;ext=1\r\nabc\r\n0\r\nTrailer: x\r\n\r\nNEXT"[..]);
/// assert_eq!(decoder.decode(&mut buf), Ok(Some(Decoded::Data("abc".into()))));
/// assert_eq!(decoder.decode(&mut buf), Ok(Some(Decoded::End)));
/// assert_eq!(&buf[..], b"NEXT");
/// ```
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
    total: u64,
    max_body: u64,
    max_line: usize,
    max_field: usize,
    max_fields: usize,
    max_trailer: usize,
}

impl ChunkedDecoder {
    /// Creates a decoder bounded by `config`'s body, chunk-line and head limits.
    pub fn new(config: &Config) -> ChunkedDecoder {
        ChunkedDecoder {
            state: ChunkState::Size,
            total: 0,
            max_body: config.max_body_size,
            max_line: config.max_chunk_line,
            max_field: config.max_field_size,
            max_fields: config.max_header_count,
            max_trailer: config.max_head_size,
        }
    }

    /// Decodes the next step from the front of `buf`, consuming what it decodes.
    ///
    /// Returns `Ok(None)` when `buf` holds no complete step yet; `buf` then keeps the partial
    /// line for the next call. After [`Decoded::End`] the bytes following the body stay in `buf`.
    ///
    /// # Errors
    ///
    /// The [`ProtocolError`] describing the malformed or oversized input.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(line) =
                        take_line(buf, self.max_line, ProtocolError::ChunkLineTooLong)?
                    else {
                        return Ok(None);
                    };
                    let size = parse_chunk_line(&line)?;
                    if size == 0 {
                        self.state = ChunkState::Trailer { fields: 0, bytes: 0 };
                    } else {
                        self.total = self.total.saturating_add(size);
                        if self.total > self.max_body {
                            return Err(ProtocolError::BodyTooLarge);
                        }
                        self.state = ChunkState::Data { remaining: size };
                    }
                }
                ChunkState::Data { remaining } => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(remaining).unwrap_or(usize::MAX).min(buf.len());
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data { remaining: left }
                    };
                    return Ok(Some(Decoded::Data(buf.split_to(n).freeze())));
                }
                ChunkState::DataEnd => match buf.get(..2) {
                    Some(b"\r\n") => {
                        buf.advance(2);
                        self.state = ChunkState::Size;
                    }
                    Some(_) => return Err(ProtocolError::BadChunkDelimiter),
                    None if buf.first().is_some_and(|&b| b != b'\r') => {
                        return Err(ProtocolError::BadChunkDelimiter);
                    }
                    None => return Ok(None),
                },
                ChunkState::Trailer { fields, bytes } => {
                    let Some(line) = take_line(buf, self.max_field, ProtocolError::BadTrailer)?
                    else {
                        return Ok(None);
                    };
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                        return Ok(Some(Decoded::End));
                    }
                    let bytes = bytes + line.len() + 2;
                    if fields + 1 > self.max_fields || bytes > self.max_trailer {
                        return Err(ProtocolError::BadTrailer);
                    }
                    if !valid_trailer_field(&line) {
                        return Err(ProtocolError::BadTrailer);
                    }
                    self.state = ChunkState::Trailer { fields: fields + 1, bytes };
                }
                ChunkState::Done => return Ok(Some(Decoded::End)),
            }
        }
    }

    /// Returns `true` once the last chunk and the trailer section have been decoded.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// Takes one CRLF-terminated line off the front of `buf` (CRLF removed), or `Ok(None)` if it is
/// not complete yet. A line longer than `max` fails with `too_long`; a bare LF or CR fails.
fn take_line(
    buf: &mut BytesMut,
    max: usize,
    too_long: ProtocolError,
) -> Result<Option<Bytes>, ProtocolError> {
    let Some(lf) = memchr::memchr(b'\n', buf) else {
        // A partial line longer than `max` (plus room for its CR) can never become valid.
        if buf.len() > max + 1 {
            return Err(too_long);
        }
        return Ok(None);
    };
    // Length first, as the partial-line check above would have: the error must not depend on
    // how the bytes arrived.
    if lf > max + 1 {
        return Err(too_long);
    }
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Err(ProtocolError::BareLineEnding);
    }
    let line = buf.split_to(lf + 1).freeze();
    let line = line.slice(..lf - 1);
    if memchr::memchr(b'\r', &line).is_some() {
        return Err(ProtocolError::BareLineEnding);
    }
    Ok(Some(line))
}

/// Parses `chunk-size [ chunk-ext ]` (RFC 9112 §7.1.1).
fn parse_chunk_line(line: &[u8]) -> Result<u64, ProtocolError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ProtocolError::BadChunkSize);
    }
    let mut size: u64 = 0;
    for &d in &line[..digits] {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => d - b'A' + 10,
        };
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(v)))
            .ok_or(ProtocolError::BadChunkSize)?;
    }
    let ext = &line[digits..];
    if !ext.is_empty() && !valid_chunk_ext(ext) {
        // Distinguish "5 x" / "5x" (not a size) from a malformed extension after a size.
        let first = ext.iter().find(|&&b| b != b' ' && b != b'\t');
        return Err(if first == Some(&b';') {
            ProtocolError::BadChunkExtension
        } else {
            ProtocolError::BadChunkSize
        });
    }
    Ok(size)
}

/// `*( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )`, ext-val a token or a quoted-string.
fn valid_chunk_ext(mut s: &[u8]) -> bool {
    fn skip_ws(s: &[u8]) -> &[u8] {
        let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
        &s[n..]
    }
    fn token(s: &[u8]) -> Option<&[u8]> {
        let n = s.iter().take_while(|&&b| is_tchar(b)).count();
        (n > 0).then(|| &s[n..])
    }
    fn quoted(s: &[u8]) -> Option<&[u8]> {
        let mut i = 1; // past the opening quote
        while let Some(&b) = s.get(i) {
            match b {
                b'"' => return Some(&s[i + 1..]),
                b'\\' => match s.get(i + 1) {
                    Some(&e) if e == b'\t' || (0x20..=0x7e).contains(&e) || e >= 0x80 => i += 2,
                    _ => return None,
                },
                b'\t' | 0x20..=0x7e | 0x80..=0xff => i += 1,
                _ => return None,
            }
        }
        None
    }
    while !s.is_empty() {
        s = skip_ws(s);
        let Some(rest) = s.strip_prefix(b";") else { return false };
        let Some(rest) = token(skip_ws(rest)) else { return false };
        let after = skip_ws(rest);
        s = match after.strip_prefix(b"=") {
            Some(v) => {
                let v = skip_ws(v);
                let parsed = if v.first() == Some(&b'"') { quoted(v) } else { token(v) };
                match parsed {
                    Some(rest) => rest,
                    None => return false,
                }
            }
            None => rest,
        };
    }
    true
}

fn valid_trailer_field(line: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', line) else { return false };
    let name = &line[..colon];
    !name.is_empty() && name.iter().all(|&b| is_tchar(b)) && valid_field_value(&line[colon + 1..])
}
