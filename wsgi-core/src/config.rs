//! Limits and deadlines of one connection.

use std::time::Duration;

use bytes::Bytes;

use crate::error::ResponseError;
use crate::response::valid_field_value;

/// The limits and deadlines a [`Connection`](crate::Connection) enforces.
///
/// Defaults follow gunicorn where gunicorn has the setting (request line 8190, 100 fields,
/// 8190-byte field lines) and nginx-like values elsewhere.
///
/// ```
/// let mut config = wsgi_core::Config::default();
/// config.max_body_size = 10 << 20;
/// config.set_server_header(Some("my-server/1.0")).unwrap();
/// ```
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct Config {
    /// The longest request line, CRLF excluded; longer is answered 414.
    pub max_request_line: usize,
    /// The most header fields in a head (and in a chunked trailer section); more is answered 431.
    pub max_header_count: usize,
    /// The longest header field line, CRLF excluded; longer is answered 431.
    pub max_field_size: usize,
    /// The largest request head, request line to the empty line; larger is answered 431.
    pub max_head_size: usize,
    /// The largest request body, declared or chunked; larger is answered 413.
    pub max_body_size: u64,
    /// The longest chunk-size line (size and extensions), CRLF excluded; longer is answered 400.
    pub max_chunk_line: usize,
    /// How long a client has to deliver a complete head once the connection opened or, on a
    /// kept-alive connection, once its first byte arrived. Past it: 408, or a quiet close if not
    /// one byte of the head arrived.
    pub head_timeout: Duration,
    /// How long a kept-alive connection may sit idle between requests before it is closed.
    pub keep_alive_timeout: Duration,
    /// Expect a PROXY protocol header (version 1 or 2, as HAProxy and nginx send it) before
    /// the first request, and refuse the connection (400) without one. Turn it on only for
    /// listeners that a proxy alone can reach: the header decides the client's address.
    pub proxy_protocol: bool,
    server_header: Option<Bytes>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_request_line: 8190,
            max_header_count: 100,
            max_field_size: 8190,
            max_head_size: 64 * 1024,
            max_body_size: 1 << 30,
            max_chunk_line: 4096,
            head_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(5),
            proxy_protocol: false,
            server_header: None,
        }
    }
}

impl Config {
    /// Sets the value of the `Server` header added to responses that do not set their own, or
    /// `None` (the default) to send none.
    ///
    /// # Errors
    ///
    /// [`ResponseError::BadHeaderValue`] (index 0) if the value holds a control character or a
    /// character outside ASCII.
    pub fn set_server_header(&mut self, value: Option<&str>) -> Result<(), ResponseError> {
        self.server_header = match value {
            None => None,
            Some(v) if v.is_ascii() && valid_field_value(v.as_bytes()) => {
                Some(Bytes::copy_from_slice(v.as_bytes()))
            }
            Some(_) => return Err(ResponseError::BadHeaderValue { index: 0 }),
        };
        Ok(())
    }

    /// Returns the `Server` header value, if one is set.
    pub fn server_header(&self) -> Option<&[u8]> {
        self.server_header.as_deref()
    }
}
