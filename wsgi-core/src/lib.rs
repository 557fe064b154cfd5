//! A sans-IO HTTP/1.1 server protocol and the PEP 3333 (WSGI) rules.
//!
//! Bytes in, request events and the WSGI environ out; the application's status, headers and
//! body in, response bytes out. No sockets, threads, clock or async: a driver (see the
//! `adapter-*` crates) owns those and calls in.
//!
//! # In scope
//!
//! - HTTP/1.0 and HTTP/1.1 server connections: keep-alive, pipelining (strictly in order),
//!   `Expect: 100-continue`, head and keep-alive deadlines (time is passed in).
//! - Strict request framing per RFC 9112 §6: anything two parsers could read differently is
//!   rejected with the status to answer, never guessed at.
//! - The CGI part of the WSGI environ ([`Environ`]) and the response rules of PEP 3333
//!   ([`ResponseHead::from_wsgi`], [`StartResponse`]).
//!
//! # Out of scope
//!
//! - I/O, TLS, HTTP/2, upgrades and `CONNECT` (answered 501).
//! - Calling Python: the pyo3 bridge builds on this crate.
//!
//! # The exchange
//!
//! ```text
//!  driver                         Connection
//!  ──────                         ──────────
//!  handle_input(bytes, now) ───▶  buffer ─▶ head scanner ─▶ body decoder
//!  poll_event()             ◀───  Request(head), Body(bytes)…, EndOfBody | Err(ProtocolError)
//!  send_continue/send_head/
//!  send_body/send_end(out)  ───▶  framing ─▶ body encoder ─▶ bytes appended to `out`
//!  poll_timeout/handle_timeout    head and keep-alive deadlines
//!  is_closed()              ◀───  flush `out`, close the socket
//! ```
//!
//! A whole keep-alive exchange, in memory:
//!
//! ```
//! use std::time::Instant;
//! use wsgi_core::{Config, Connection, Environ, Event, ResponseHead, ServerInfo};
//!
//! let now = Instant::now();
//! let mut conn = Connection::new(Config::default(), now);
//! conn.handle_input(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", now);
//!
//! let Some(Event::Request(head)) = conn.poll_event()? else { unreachable!() };
//! let environ = Environ::new(head, &ServerInfo::default());
//! assert_eq!(environ.get("PATH_INFO"), Some("/echo"));
//! assert_eq!(environ.get("CONTENT_LENGTH"), Some("5"));
//!
//! let mut body = Vec::new();
//! while let Some(event) = conn.poll_event()? {
//!     match event {
//!         Event::Body(bytes) => body.extend_from_slice(&bytes),
//!         Event::EndOfBody => break,
//!         other => unreachable!("{other:?}"),
//!     }
//! }
//! assert_eq!(body, b"hello");
//!
//! let mut out = Vec::new();
//! let response = ResponseHead::from_wsgi("200 OK", [("Content-Type", "text/plain")])?;
//! conn.send_head(&response, &mut out)?;
//! conn.send_body(&body, &mut out)?;
//! conn.send_end(now, &mut out)?;
//! assert_eq!(
//!     out,
//!     b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
//!       5\r\nhello\r\n0\r\n\r\n"
//! );
//! assert!(!conn.is_closed()); // kept alive, waiting for the next request
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod app;
mod config;
mod connection;
mod date;
mod decode;
mod encode;
mod environ;
mod error;
mod forwarded;
mod framing;
mod head;
mod names;
mod proxy_protocol;
#[cfg(feature = "python")]
pub mod python;
mod response;
mod state;
mod tokenize;

pub use app::{AppIo, AppIoError, Application, Job, JobSource};
pub use config::Config;
pub use connection::{Connection, Event};
pub use date::HttpDate;
pub use decode::{ChunkedDecoder, Decoded};
pub use encode::{BodyEncoder, ExternalBody};
pub use environ::{CgiKey, EnvKey, Environ, Scheme, ServerInfo};
pub use error::{ProtocolError, ResponseError, StartError, UsageError};
pub use forwarded::{BadTrustedProxy, ForwardedHeader, TrustedProxies};
pub use framing::{RequestBody, ResponseBody, keep_alive, request_framing, response_framing};
pub use head::{RequestHead, TargetForm, Version};
pub use proxy_protocol::{PROXY_V2_MAX_LEN, ProxyHeader, ProxyVersion, parse_proxy_header};
pub use response::{ResponseHead, StartResponse};
