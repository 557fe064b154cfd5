//! The `Date` header value (RFC 9110 §6.6.1), formatted once and copied into each response.

use std::fmt;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`, ready to copy into a response.
///
/// The core reads no clock: a driver makes one from `SystemTime::now()` (once a second is
/// enough) and hands it to [`Connection::set_date`](crate::Connection::set_date).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let date = wsgi_core::HttpDate::from(UNIX_EPOCH + Duration::from_secs(784111777));
/// assert_eq!(date.as_bytes(), b"Sun, 06 Nov 1994 08:49:37 GMT");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HttpDate([u8; 29]);

/// The last second httpdate can format (9999-12-31T23:59:59Z).
const LAST_SECOND: u64 = 253_402_300_799;

impl From<SystemTime> for HttpDate {
    /// Formats `time`, clamped to 1970..=9999 so a wrong system clock cannot fail a response.
    fn from(time: SystemTime) -> HttpDate {
        let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).min(LAST_SECOND);
        let date = httpdate::HttpDate::from(UNIX_EPOCH + Duration::from_secs(secs));
        let mut buf = [b' '; 29];
        // IMF-fixdate is always 29 bytes, so the write fills the buffer exactly.
        let _ = write!(&mut buf[..], "{date}");
        HttpDate(buf)
    }
}

impl HttpDate {
    /// Returns the formatted date.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for HttpDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.0).unwrap_or("<date>"))
    }
}
