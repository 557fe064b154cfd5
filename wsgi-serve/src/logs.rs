//! The error log, and the time and escaping the access log shares with it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use wsgi_core::python::{ErrorLog, Level};

/// The least severe level written to the error log (gunicorn's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

enum Sink {
    Stderr,
    File(Mutex<File>),
}

impl Sink {
    fn open(target: &str) -> io::Result<Sink> {
        Ok(match target {
            "-" => Sink::Stderr,
            path => {
                Sink::File(Mutex::new(OpenOptions::new().create(true).append(true).open(path)?))
            }
        })
    }

    /// Writes one whole line at once, so lines from several threads never interleave.
    fn line(&self, line: &str) {
        let _ = match self {
            Sink::Stderr => io::stderr().lock().write_all(line.as_bytes()),
            Sink::File(f) => {
                f.lock().unwrap_or_else(PoisonError::into_inner).write_all(line.as_bytes())
            }
        };
    }
}

/// The error log: `[time] [pid] [LEVEL] message`, as gunicorn writes it.
pub(crate) struct LineLog {
    sink: Sink,
    level: LogLevel,
}

impl LineLog {
    pub(crate) fn open(target: &str, level: LogLevel) -> io::Result<LineLog> {
        Ok(LineLog { sink: Sink::open(target)?, level })
    }

    pub(crate) fn info(&self, message: &str) {
        self.write(LogLevel::Info, message);
    }

    pub(crate) fn debug(&self, message: &str) {
        self.write(LogLevel::Debug, message);
    }

    pub(crate) fn warning(&self, message: &str) {
        self.write(LogLevel::Warning, message);
    }

    pub(crate) fn error(&self, message: &str) {
        self.write(LogLevel::Error, message);
    }

    pub(crate) fn critical(&self, message: &str) {
        self.write(LogLevel::Critical, message);
    }

    fn write(&self, level: LogLevel, message: &str) {
        if level < self.level {
            return;
        }
        let tag = match level {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
            LogLevel::Critical => "CRITICAL",
        };
        let (date, time) = civil(SystemTime::now());
        let (y, m, d) = date;
        let (hh, mm, ss) = time;
        self.sink.line(&format!(
            "[{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02} +0000] [{}] [{tag}] {message}\n",
            std::process::id()
        ));
    }
}

impl ErrorLog for LineLog {
    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Error => LogLevel::Error,
            Level::Warning => LogLevel::Warning,
            Level::Info => LogLevel::Info,
        };
        self.write(level, message);
    }
}

/// Escapes quotes, backslashes and control characters so a client cannot forge log lines.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// UTC calendar date and time of `t` (proleptic Gregorian; days-from-civil inverted).
pub(crate) fn civil(t: SystemTime) -> ((i64, u32, u32), (u64, u64, u64)) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    ((y, m, d), (rem / 3600, rem % 3600 / 60, rem % 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn civil_dates() {
        let at = |s: u64| civil(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), ((1970, 1, 1), (0, 0, 0)));
        assert_eq!(at(784_111_777), ((1994, 11, 6), (8, 49, 37)));
        assert_eq!(at(951_782_400), ((2000, 2, 29), (0, 0, 0)));
        assert_eq!(at(1_795_910_400), ((2026, 11, 29), (0, 0, 0)));
        assert_eq!(at(1_795_996_799), ((2026, 11, 29), (23, 59, 59)));
    }

    #[test]
    fn escapes_what_could_forge_a_line() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\x0ad");
    }
}
