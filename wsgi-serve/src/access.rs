//! The access log: gunicorn's `--access-logformat`, parsed once at startup, and a writer thread
//! that takes the formatting and the writing off the request's path.
//!
//! An app thread hands each finished request's [`AccessRecord`] to a bounded channel and goes
//! on; the writer formats it into a buffer that it writes at least every
//! [`FLUSH_INTERVAL`], whole lines at a time, so workers sharing one file never split each
//! other's lines (appends to a file are atomic; to a pipe, such as stdout under systemd or a
//! container runtime, writes are cut into pieces of whole lines of at most `PIPE_BUF` bytes,
//! the size the kernel writes atomically). When the writer falls behind and the channel is full, records are dropped
//! and counted rather than making requests wait, and the count goes to the error log.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wsgi_driver::AccessRecord;

use crate::logs::{LineLog, civil, escape};

/// gunicorn's default: the combined log format of Apache and nginx.
pub(crate) const DEFAULT_FORMAT: &str =
    r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// The longest a formatted line waits in the writer's buffer.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Records queued for the writer at most; past it they are dropped and counted.
const QUEUE: usize = 8192;

/// Buffered bytes that make the writer write before its interval is up.
const BUFFER: usize = 64 * 1024;

/// One `%(...)s` atom of the format.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Atom {
    /// `h`: the client address (`REMOTE_ADDR`).
    RemoteAddr,
    /// `l` and `u`: always `-`.
    Dash,
    /// `t`: `[10/Oct/2000:13:55:36 +0000]`.
    Time,
    /// `r`: `GET /path?query HTTP/1.1`.
    RequestLine,
    /// `m`.
    Method,
    /// `U`: the path (`PATH_INFO`).
    Path,
    /// `q`: the query string.
    Query,
    /// `H`: the protocol.
    Protocol,
    /// `s`.
    Status,
    /// `B`: response body bytes.
    Bytes,
    /// `b`: response body bytes, `-` for none.
    BytesOrDash,
    /// `f`: the Referer header.
    Referer,
    /// `a`: the User-Agent header.
    UserAgent,
    /// `T`: whole seconds.
    Seconds,
    /// `M`: milliseconds.
    Millis,
    /// `D`: microseconds.
    Micros,
    /// `L`: seconds with six decimals.
    DecimalSeconds,
    /// `p`: `<pid>`.
    Pid,
    /// `{name}i`: a request header, by its environ key.
    RequestHeader(String),
    /// `{name}o`: a response header.
    ResponseHeader(String),
    /// `{name}e`: an environ variable (CGI and `HTTP_*`).
    Environ(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Atom(Atom),
}

/// A parsed `--access-logformat`.
#[derive(Clone, Debug)]
pub(crate) struct AccessFormat {
    pieces: Vec<Piece>,
}

const KNOWN: &str = "h l u t r m U q H s B b f a T M D L p {header}i {header}o {variable}e";

impl AccessFormat {
    /// Parses gunicorn's syntax: `%(atom)s`, and `%%` for a literal `%`.
    pub(crate) fn parse(format: &str) -> Result<AccessFormat, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = format;
        while let Some(at) = rest.find('%') {
            text.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix('%') {
                text.push('%');
                rest = after;
                continue;
            }
            let Some(inner) = rest.strip_prefix('(') else {
                return Err(format!(
                    "--access-logformat: a lone % at byte {} of {format:?}; write %(atom)s for \
                     an atom or %% for a literal %",
                    format.len() - rest.len() - 1
                ));
            };
            let Some(close) = inner.find(')') else {
                return Err(format!("--access-logformat: unclosed %( in {format:?}"));
            };
            let name = &inner[..close];
            let after = &inner[close + 1..];
            let Some(after) = after.strip_prefix('s') else {
                return Err(format!(
                    "--access-logformat: %({name}) must be followed by s, as in %({name})s"
                ));
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Atom(atom(name)?));
            rest = after;
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(AccessFormat { pieces })
    }

    /// Returns `true` if the format records response headers (so records must carry the
    /// response head).
    pub(crate) fn uses_response_headers(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Atom(Atom::ResponseHeader(_))))
    }

    /// Appends the line of `r`, with its newline, to `out`.
    pub(crate) fn write_line(&self, r: &AccessRecord, pid: u32, out: &mut String) {
        let env = |key: &str| r.environ.get(key).filter(|v| !v.is_empty());
        for piece in &self.pieces {
            let atom = match piece {
                Piece::Text(t) => {
                    out.push_str(t);
                    continue;
                }
                Piece::Atom(atom) => atom,
            };
            // Writing to a String cannot fail.
            match atom {
                Atom::RemoteAddr => push_value(out, r.remote_addr()),
                Atom::Dash => push_value(out, None),
                Atom::Time => {
                    let ((y, m, d), (hh, mm, ss)) = civil(r.started);
                    const MONTHS: [&str; 12] = [
                        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                        "Nov", "Dec",
                    ];
                    let month = MONTHS.get(m.saturating_sub(1) as usize).copied().unwrap_or("Jan");
                    let _ = write!(out, "[{d:02}/{month}/{y:04}:{hh:02}:{mm:02}:{ss:02} +0000]");
                }
                Atom::RequestLine => {
                    push_value(out, Some(r.method()));
                    out.push(' ');
                    push_value(out, Some(r.target()));
                    out.push(' ');
                    push_value(out, Some(r.version()));
                }
                Atom::Method => push_value(out, Some(r.method())),
                Atom::Path => push_value(out, env("PATH_INFO")),
                Atom::Query => push_value(out, env("QUERY_STRING")),
                Atom::Protocol => push_value(out, Some(r.version())),
                Atom::Status => {
                    let _ = write!(out, "{}", r.status);
                }
                Atom::Bytes => {
                    let _ = write!(out, "{}", r.body_bytes);
                }
                Atom::BytesOrDash if r.body_bytes == 0 => push_value(out, None),
                Atom::BytesOrDash => {
                    let _ = write!(out, "{}", r.body_bytes);
                }
                Atom::Referer => push_value(out, env("HTTP_REFERER")),
                Atom::UserAgent => push_value(out, env("HTTP_USER_AGENT")),
                Atom::Seconds => {
                    let _ = write!(out, "{}", r.duration.as_secs());
                }
                Atom::Millis => {
                    let _ = write!(out, "{}", r.duration.as_millis());
                }
                Atom::Micros => {
                    let _ = write!(out, "{}", r.duration.as_micros());
                }
                Atom::DecimalSeconds => {
                    let _ =
                        write!(out, "{}.{:06}", r.duration.as_secs(), r.duration.subsec_micros());
                }
                Atom::Pid => {
                    let _ = write!(out, "<{pid}>");
                }
                Atom::RequestHeader(key) | Atom::Environ(key) => push_value(out, env(key)),
                Atom::ResponseHeader(name) => {
                    push_value(out, r.response_header(name).as_deref().filter(|v| !v.is_empty()))
                }
            }
        }
        out.push('\n');
    }
}

/// Appends `value`, escaped so a client cannot forge log lines, or `-`.
fn push_value(out: &mut String, value: Option<&str>) {
    match value {
        Some(v) => out.push_str(&escape(v)),
        None => out.push('-'),
    }
}

fn atom(name: &str) -> Result<Atom, String> {
    Ok(match name {
        "h" => Atom::RemoteAddr,
        "l" | "u" => Atom::Dash,
        "t" => Atom::Time,
        "r" => Atom::RequestLine,
        "m" => Atom::Method,
        "U" => Atom::Path,
        "q" => Atom::Query,
        "H" => Atom::Protocol,
        "s" => Atom::Status,
        "B" => Atom::Bytes,
        "b" => Atom::BytesOrDash,
        "f" => Atom::Referer,
        "a" => Atom::UserAgent,
        "T" => Atom::Seconds,
        "M" => Atom::Millis,
        "D" => Atom::Micros,
        "L" => Atom::DecimalSeconds,
        "p" => Atom::Pid,
        _ => {
            let braced = name
                .strip_prefix('{')
                .and_then(|n| n.rsplit_once('}'))
                .filter(|(key, kind)| !key.is_empty() && kind.len() == 1);
            match braced {
                Some((header, "i")) => Atom::RequestHeader(wsgi_driver::cgi_key(header)),
                Some((header, "o")) => Atom::ResponseHeader(header.to_owned()),
                Some((variable, "e")) => Atom::Environ(variable.to_owned()),
                _ => {
                    return Err(format!(
                        "--access-logformat: unknown atom %({name})s; the atoms are {KNOWN} \
                         (each written %(atom)s, e.g. %({{x-request-id}}i)s)"
                    ));
                }
            }
        }
    })
}

/// Where the writer writes.
enum Target {
    Stdout,
    File(std::fs::File),
}

impl Target {
    fn open(target: &str) -> io::Result<Target> {
        Ok(match target {
            "-" => Target::Stdout,
            path => Target::File(OpenOptions::new().create(true).append(true).open(path)?),
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Target::Stdout => {
                let mut out = io::stdout().lock();
                for piece in whole_lines(bytes, PIPE_BUF) {
                    out.write_all(piece)?;
                    out.flush()?;
                }
                Ok(())
            }
            Target::File(f) => f.write_all(bytes),
        }
    }
}

/// What a pipe writes atomically (POSIX's minimum, Linux's value).
const PIPE_BUF: usize = 4096;

/// Cuts `bytes` after newlines into pieces of at most `limit` bytes (a longer line is a piece
/// of its own).
fn whole_lines(bytes: &[u8], limit: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let window = &rest[..rest.len().min(limit)];
        let cut = match memchr::memrchr(b'\n', window) {
            Some(i) if window.len() < rest.len() => i + 1,
            _ if window.len() == rest.len() => rest.len(),
            // One line longer than `limit`: up to its end.
            _ => memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1),
        };
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

/// The app threads' side: hands records to the writer without waiting.
#[derive(Clone)]
pub(crate) struct AccessSender {
    tx: SyncSender<AccessRecord>,
    dropped: Arc<AtomicU64>,
}

impl AccessSender {
    /// Queues `record` for the writer; if the queue is full, counts it as dropped.
    pub(crate) fn send(&self, record: AccessRecord) {
        match self.tx.try_send(record) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The writer thread. [`finish`](Self::finish) writes what is queued and stops it.
pub(crate) struct AccessWriter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AccessWriter {
    /// Opens `target` (`-` for stdout) and starts the writer; lines have the form `format`.
    pub(crate) fn start(
        target: &str,
        format: AccessFormat,
        log: Arc<LineLog>,
    ) -> io::Result<(AccessWriter, AccessSender)> {
        let out = Target::open(target)?;
        let (tx, rx) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            rx,
            out,
            format,
            log,
            dropped: dropped.clone(),
            stop: stop.clone(),
            pid: std::process::id(),
        };
        let thread =
            std::thread::Builder::new().name("wsgi-access-log".to_owned()).spawn(move || {
                writer.run();
            })?;
        Ok((AccessWriter { stop, thread: Some(thread) }, AccessSender { tx, dropped }))
    }

    /// Writes every record queued so far and stops the writer.
    pub(crate) fn finish(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for AccessWriter {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

struct Writer {
    rx: Receiver<AccessRecord>,
    out: Target,
    format: AccessFormat,
    log: Arc<LineLog>,
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    pid: u32,
}

impl Writer {
    fn run(mut self) {
        let mut buf = String::with_capacity(BUFFER);
        let mut due = Instant::now() + FLUSH_INTERVAL;
        loop {
            let wait = due.saturating_duration_since(Instant::now());
            let disconnected = match self.rx.recv_timeout(wait) {
                Ok(record) => {
                    self.format.write_line(&record, self.pid, &mut buf);
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            let stopping = disconnected || self.stop.load(Ordering::Acquire);
            if stopping {
                // What was queued before the stop; bounded by the queue's capacity.
                for record in self.rx.try_iter().take(QUEUE) {
                    self.format.write_line(&record, self.pid, &mut buf);
                }
            }
            if stopping || buf.len() >= BUFFER || Instant::now() >= due {
                self.flush(&mut buf);
                due = Instant::now() + FLUSH_INTERVAL;
            }
            if stopping {
                return;
            }
        }
    }

    fn flush(&mut self, buf: &mut String) {
        if !buf.is_empty() {
            if let Err(e) = self.out.write_all(buf.as_bytes()) {
                self.log.error(&format!("cannot write the access log: {e}"));
            }
            buf.clear();
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            self.log.warning(&format!(
                "access log: {dropped} lines dropped: requests finished faster than the log \
                 could be written (is its disk or its reader slow?)"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_pieces_are_whole_lines_within_pipe_buf() {
        let line = |n: usize| format!("{}\n", "x".repeat(n - 1));
        let text = [line(1000), line(1000), line(1000), line(1500), line(5000), line(10)].concat();
        let pieces: Vec<&[u8]> = whole_lines(text.as_bytes(), 4096).collect();
        let sizes: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
        assert_eq!(sizes, [3000, 1500, 5000, 10]);
        assert!(pieces.iter().all(|p| p.ends_with(b"\n")));
        assert_eq!(pieces.concat(), text.as_bytes());
        assert_eq!(whole_lines(b"", 4096).count(), 0);
        assert_eq!(whole_lines(b"no newline", 4).collect::<Vec<_>>(), [&b"no newline"[..]]);
    }
    use wsgi_driver::{AccessLog, Exchange};

    #[test]
    fn parses_the_default_format() {
        let f = AccessFormat::parse(DEFAULT_FORMAT).unwrap();
        let atoms: Vec<&Atom> = f
            .pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Atom(a) => Some(a),
                Piece::Text(_) => None,
            })
            .collect();
        assert_eq!(
            atoms,
            [
                &Atom::RemoteAddr,
                &Atom::Dash,
                &Atom::Dash,
                &Atom::Time,
                &Atom::RequestLine,
                &Atom::Status,
                &Atom::BytesOrDash,
                &Atom::Referer,
                &Atom::UserAgent
            ]
        );
        assert!(!f.uses_response_headers());
    }

    #[test]
    fn parses_braced_atoms_and_percent() {
        let f =
            AccessFormat::parse("100%% %(D)s %({X-Req}i)s %({content-type}o)s %({PATH_INFO}e)s")
                .unwrap();
        assert_eq!(
            f.pieces,
            [
                Piece::Text("100% ".to_owned()),
                Piece::Atom(Atom::Micros),
                Piece::Text(" ".to_owned()),
                Piece::Atom(Atom::RequestHeader("HTTP_X_REQ".to_owned())),
                Piece::Text(" ".to_owned()),
                Piece::Atom(Atom::ResponseHeader("content-type".to_owned())),
                Piece::Text(" ".to_owned()),
                Piece::Atom(Atom::Environ("PATH_INFO".to_owned())),
            ]
        );
        assert!(f.uses_response_headers());
    }

    /// The record of one request through wsgi-driver's `Exchange`, as a driver makes it.
    fn record(raw: &str) -> AccessRecord {
        use std::sync::Mutex;
        use wsgi_core::{Config, Connection, Environ, Event, ResponseHead, ServerInfo};
        let now = Instant::now();
        let mut conn = Connection::new(Config::default(), now);
        conn.handle_input(raw.as_bytes(), now);
        let Ok(Some(Event::Request(head))) = conn.poll_event() else { panic!("{raw}") };
        let peer = "10.1.2.3:5555".parse().unwrap();
        let environ = Environ::new(head, &ServerInfo::new(None, Some(peer)));
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = records.clone();
        let log = AccessLog::new(move |r| sink.lock().unwrap().push(r)).with_response_head();
        let mut ex = Exchange::new(&environ, Some(&log));
        let head = ResponseHead::from_wsgi("404 Not Found", [("Content-Type", "text/x")]).unwrap();
        ex.head(&mut conn, &head, false).unwrap();
        ex.body(&mut conn, b"0123456789").unwrap();
        ex.end(&mut conn).unwrap();
        ex.log(Some(&log), Some(peer));
        records.lock().unwrap().pop().unwrap()
    }

    #[test]
    fn formats_each_atom() {
        let r = record(
            "GET /p/q?x=1&y=\"2\" HTTP/1.0\r\nReferer: http://r/\r\nUser-Agent: ua \"x\"\r\n\
             X-Req: abc\r\n\r\n",
        );
        let line = |format: &str| {
            let mut out = String::new();
            AccessFormat::parse(format).unwrap().write_line(&r, 42, &mut out);
            out
        };
        let combined = line(DEFAULT_FORMAT);
        let (head, tail) = combined.split_once(" [").unwrap();
        assert_eq!(head, "10.1.2.3 - -");
        let (time, tail) = tail.split_once("] ").unwrap();
        assert_eq!(time.len(), "10/Oct/2000:13:55:36 +0000".len(), "{time}");
        assert!(time.ends_with(" +0000"), "{time}");
        assert_eq!(
            tail,
            "\"GET /p/q?x=1&y=\\\"2\\\" HTTP/1.0\" 404 10 \"http://r/\" \"ua \\\"x\\\"\"\n"
        );
        assert_eq!(
            line("%(m)s|%(U)s|%(q)s|%(H)s|%(s)s"),
            "GET|/p/q|x=1&y=\\\"2\\\"|HTTP/1.0|404\n"
        );
        assert_eq!(line("%(B)s %(b)s %(p)s %%"), "10 10 <42> %\n");
        assert_eq!(
            line("%({x-req}i)s %({X-None}i)s %({content-type}o)s %({REMOTE_ADDR}e)s"),
            "abc - text/x 10.1.2.3\n"
        );
        let d = line("%(T)s %(M)s %(D)s %(L)s");
        let parts: Vec<&str> = d.trim_end().split(' ').collect();
        let micros: u128 = parts[2].parse().unwrap();
        assert_eq!(parts[0], (micros / 1_000_000).to_string());
        assert_eq!(parts[1], (micros / 1000).to_string());
        assert_eq!(parts[3], format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000));
    }

    #[test]
    fn rejects_what_it_cannot_format_naming_it() {
        let err = AccessFormat::parse("%(h)s %(zz)s").unwrap_err();
        assert!(err.contains("unknown atom %(zz)s"), "{err}");
        let err = AccessFormat::parse("%({x}z)s").unwrap_err();
        assert!(err.contains("unknown atom %({x}z)s"), "{err}");
        let err = AccessFormat::parse("%({}i)s").unwrap_err();
        assert!(err.contains("unknown atom"), "{err}");
        let err = AccessFormat::parse("50% off").unwrap_err();
        assert!(err.contains("lone %"), "{err}");
        let err = AccessFormat::parse("%(h)d").unwrap_err();
        assert!(err.contains("%(h) must be followed by s"), "{err}");
        let err = AccessFormat::parse("%(h").unwrap_err();
        assert!(err.contains("unclosed"), "{err}");
    }
}
