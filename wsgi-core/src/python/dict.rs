//! The environ dict, copied from a per-thread dict of the same shape.
//!
//! Inserting some 35 entries one by one into a new dict (growing it twice on the way) is most of
//! the bridge's work per request, yet requests mostly come in a few kinds, each with the same
//! header names in the same order and many of the same values. So each app thread keeps a few
//! private dicts, its *shapes* (most recently used first): the constant entries,
//! `wsgi.url_scheme`, the CGI and `HTTP_*` entries of the last request of that kind, and
//! `wsgi.input`/`wsgi.errors` set to `None`, with a record of their texts. A request whose
//! entries have a shape's keys in the same order updates the values that differ in that shape,
//! then gets a `copy()` of it (CPython copies a dict's key table in one piece); a request that
//! matches no shape builds a new one, replacing the least recently used.
//!
//! Shapes are never handed to Python code, so nothing but the bridge changes them. Their values
//! are immutable `str`s shared with the copies; credentials (`Cookie`, `Authorization`) are not
//! kept in them: they are set in each copy only.

use std::cell::RefCell;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::objects::RequestObjects;
use super::{PyApplication, put_local, strings, take_local};
use crate::environ::{CgiKey, Environ, RawKey, Scheme};
use crate::names;

/// The arena of recorded texts is rebuilt when it grows past this (values that changed are
/// appended to it).
const MAX_TEXT: usize = 16 * 1024;

/// The key of an environ entry as recorded: a CGI variable, a known header's `HTTP_*` key by
/// its id, or the span of another `HTTP_*` key in [`Shape::text`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecordedKey {
    Cgi(CgiKey),
    Known(u8),
    Other(usize, usize),
}

/// One environ entry of the shape: its key, and the span of its value in [`Shape::text`] (`None`
/// for a credential, which the shape does not hold).
#[derive(Clone, Copy, Debug)]
struct Entry {
    key: RecordedKey,
    value: Option<(usize, usize)>,
}

/// A thread's shape dict and what it holds.
struct Shape {
    /// The application whose constants the dict holds.
    app: u64,
    dict: Py<PyDict>,
    /// The scheme whose `wsgi.url_scheme` the dict holds.
    scheme: Scheme,
    entries: Vec<Entry>,
    /// The texts of the `HTTP_*` keys and the values.
    text: String,
}

/// How many shapes an app thread keeps (most recently used first): enough for the usual mix of
/// page loads, API calls, asset and health-check requests.
const SHAPES: usize = 4;

thread_local! {
    static THREAD_SHAPES: RefCell<Vec<Shape>> = const { RefCell::new(Vec::new()) };
}

impl PyApplication {
    /// Builds the environ dict: the constant template, `wsgi.url_scheme`, the CGI and `HTTP_*`
    /// variables, and `wsgi.input`/`wsgi.errors` set to `None` (see
    /// [`add_streams`](Self::add_streams)).
    pub(super) fn environ_dict<'py>(
        &self,
        py: Python<'py>,
        environ: &Environ,
    ) -> PyResult<Bound<'py, PyDict>> {
        // Taken out while in use; an error leaves the thread without shapes, to be rebuilt.
        let mut shapes = take_local(&THREAD_SHAPES);
        // The entries whose values the shape does not hold: changed ones, and credentials.
        let mut pending = Vec::new();
        let scheme = environ.scheme();
        // The most recent shape straight from the environ (usually a match); the others, if it
        // is not, against entries read once.
        let mut found = None;
        if let Some(shape) = shapes.first_mut() {
            if self.update(py, shape, scheme, environ.raw_entries(), &mut pending)? {
                found = Some(0);
            }
        }
        if found.is_none() {
            let entries: Vec<(RawKey<'_>, &[u8])> = environ.raw_entries().collect();
            for (i, shape) in shapes.iter_mut().enumerate().skip(1) {
                if self.update(py, shape, scheme, entries.iter().copied(), &mut pending)? {
                    found = Some(i);
                    break;
                }
            }
            if found.is_none() {
                pending.clear();
                let recycled = if shapes.len() >= SHAPES { shapes.pop() } else { None };
                shapes.push(self.new_shape(py, scheme, &entries, &mut pending, recycled)?);
                found = Some(shapes.len() - 1);
            }
        }
        let found = found.unwrap_or_default();
        shapes[..=found].rotate_right(1);
        let shape = &shapes[0];
        let dict = shape.dict.bind(py).copy()?;
        for &(i, key, text) in &pending {
            if shape.entries.get(i).is_some_and(|entry| entry.value.is_none()) {
                dict.set_item(self.key(py, key), PyString::new(py, utf8(text)))?;
            }
        }
        put_local(&THREAD_SHAPES, shapes);
        Ok(dict)
    }

    /// Updates `shape` to the values of `entries` if it has the same keys in the same order;
    /// `false` (the shape unchanged) if not. `pending` collects the entries whose values differ
    /// from the shape's, and the credentials (set in the copy only).
    fn update<'e>(
        &self,
        py: Python<'_>,
        shape: &mut Shape,
        scheme: Scheme,
        entries: impl ExactSizeIterator<Item = (RawKey<'e>, &'e [u8])>,
        pending: &mut Vec<(usize, RawKey<'e>, &'e [u8])>,
    ) -> PyResult<bool> {
        if shape.app != self.consts.id
            || shape.entries.len() != entries.len()
            || shape.text.len() > MAX_TEXT
        {
            return Ok(false); // an arena grown too large is rebuilt compact
        }
        pending.clear();
        for (i, (entry, (key, text))) in shape.entries.iter().zip(entries).enumerate() {
            let same_key = match (key, entry.key) {
                (RawKey::Cgi(a), RecordedKey::Cgi(b)) => a == b,
                (RawKey::Known(a), RecordedKey::Known(b)) => a == b,
                (RawKey::Other(h), RecordedKey::Other(a, b)) => {
                    shape.text.as_bytes().get(a..b).is_some_and(|k| same(k, h.as_bytes()))
                }
                _ => false,
            };
            if !same_key {
                return Ok(false);
            }
            match entry.value {
                Some((a, b)) if shape.text.as_bytes().get(a..b).is_some_and(|v| same(v, text)) => {}
                _ => pending.push((i, key, text)),
            }
        }
        // The same keys: now the shape takes the new values.
        let dict = shape.dict.bind(py);
        if shape.scheme != scheme {
            dict.set_item(pyo3::intern!(py, "wsgi.url_scheme"), self.scheme(py, scheme))?;
            shape.scheme = scheme;
        }
        for &(i, key, text) in pending.iter() {
            let Some(entry) = shape.entries.get_mut(i) else { continue };
            if entry.value.is_none() {
                continue; // a credential: set in the copy only
            }
            let text = utf8(text);
            dict.set_item(self.key(py, key), strings::value(py, text, false))?;
            entry.value = Some(push_text(&mut shape.text, text));
        }
        Ok(true)
    }

    /// Builds a shape for `entries`, in the buffers of a `recycled` one. `pending` collects the
    /// credentials.
    fn new_shape<'e>(
        &self,
        py: Python<'_>,
        scheme: Scheme,
        entries: &[(RawKey<'e>, &'e [u8])],
        pending: &mut Vec<(usize, RawKey<'e>, &'e [u8])>,
        recycled: Option<Shape>,
    ) -> PyResult<Shape> {
        let (mut recorded, mut text) = match recycled {
            Some(Shape { entries, text, .. }) => (entries, text),
            None => (Vec::with_capacity(entries.len()), String::with_capacity(1024)),
        };
        recorded.clear();
        text.clear();
        let dict = self.consts.template.bind(py).copy()?;
        dict.set_item(pyo3::intern!(py, "wsgi.url_scheme"), self.scheme(py, scheme))?;
        let mut previous: Option<(&[u8], Bound<'_, PyString>)> = None;
        for (i, &(key, value)) in entries.iter().enumerate() {
            let recorded_key = match key {
                RawKey::Cgi(k) => RecordedKey::Cgi(k),
                RawKey::Known(id) => RecordedKey::Known(id),
                RawKey::Other(k) => {
                    let (a, b) = push_text(&mut text, k);
                    RecordedKey::Other(a, b)
                }
            };
            if is_secret(key) {
                dict.set_item(self.key(py, key), py.None())?; // holds its place in the order
                recorded.push(Entry { key: recorded_key, value: None });
                pending.push((i, key, value));
                continue;
            }
            // RAW_URI and REQUEST_URI are one slice of the environ: one str.
            let value_text = utf8(value);
            let object = match previous {
                Some((t, o)) if std::ptr::eq(t, value) => o,
                _ => strings::value(py, value_text, false),
            };
            dict.set_item(self.key(py, key), &object)?;
            recorded
                .push(Entry { key: recorded_key, value: Some(push_text(&mut text, value_text)) });
            previous = Some((value, object));
        }
        let none = py.None();
        dict.set_item(pyo3::intern!(py, "wsgi.input"), &none)?;
        dict.set_item(pyo3::intern!(py, "wsgi.errors"), &none)?;
        Ok(Shape { app: self.consts.id, dict: dict.unbind(), scheme, entries: recorded, text })
    }

    /// The key object of an environ key.
    fn key<'py>(&self, py: Python<'py>, key: RawKey<'_>) -> Bound<'py, PyString> {
        let interned = match key {
            RawKey::Cgi(k) => self.consts.cgi_keys.get(k.index()),
            RawKey::Known(id) => self.consts.header_keys.get(usize::from(id)),
            RawKey::Other(_) => None,
        };
        match interned {
            Some(object) => object.bind(py).clone(),
            None => PyString::new(py, key.env_key().as_str()),
        }
    }

    /// The `wsgi.url_scheme` object.
    fn scheme<'py>(&self, py: Python<'py>, scheme: Scheme) -> &Bound<'py, PyString> {
        match scheme {
            Scheme::Http => self.consts.http.bind(py),
            Scheme::Https => self.consts.https.bind(py),
        }
    }

    /// Sets this request's `wsgi.input` and `wsgi.errors`.
    pub(super) fn add_streams<'py>(
        &self,
        py: Python<'py>,
        dict: &Bound<'py, PyDict>,
        objects: &RequestObjects,
    ) -> PyResult<()> {
        dict.set_item(pyo3::intern!(py, "wsgi.input"), objects.input.bind(py))?;
        dict.set_item(pyo3::intern!(py, "wsgi.errors"), objects.errors.bind(py))?;
        Ok(())
    }
}

/// `a == b` without a call into libc: the shape compares some 30 short strings per request,
/// and `memcmp` calls were 4 % of the bridge's instructions.
fn same(a: &[u8], b: &[u8]) -> bool {
    crate::names::eq_with_bits_set(a, b, 0)
}

/// An environ value as text ([`Environ::raw_entries`] values are UTF-8).
fn utf8(value: &[u8]) -> &str {
    std::str::from_utf8(value).unwrap_or_default()
}

/// Appends `s` to `text`, returning its span.
fn push_text(text: &mut String, s: &str) -> (usize, usize) {
    let start = text.len();
    text.push_str(s);
    (start, text.len())
}

/// Whether an environ value is a credential, which is neither kept in the shape nor cached.
fn is_secret(key: RawKey<'_>) -> bool {
    matches!(key, RawKey::Known(names::COOKIE | names::AUTHORIZATION | names::PROXY_AUTHORIZATION))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Instant;

    use bytes::Bytes;
    use pyo3::types::PyModule;

    use super::*;
    use crate::app::{AppIo, AppIoError, Job};
    use crate::python::PyOptions;
    use crate::{Config, Connection, Event, ResponseHead, ServerInfo};

    struct Discard;

    impl AppIo for Discard {
        fn read_body(&mut self) -> Result<Option<Bytes>, AppIoError> {
            Ok(None)
        }
        fn send_head(&mut self, _: &ResponseHead) -> Result<(), AppIoError> {
            Ok(())
        }
        fn send_body(&mut self, _: &[u8]) -> Result<(), AppIoError> {
            Ok(())
        }
        fn send_end(&mut self) -> Result<(), AppIoError> {
            Ok(())
        }
        fn abort(&mut self) {}
    }

    fn environ(request: &str) -> Environ {
        let now = Instant::now();
        let mut conn = Connection::new(Config::default(), now);
        conn.handle_input(request.as_bytes(), now);
        let Ok(Some(Event::Request(head))) = conn.poll_event() else { panic!("{request}") };
        let server = ServerInfo::new(
            Some("127.0.0.1:8000".parse().unwrap()),
            Some("10.0.0.1:4000".parse().unwrap()),
        );
        Environ::new(head, &server)
    }

    /// An app that records each environ it sees (without the streams), then vandalises it.
    const APP: &std::ffi::CStr = cr#"
seen = []

def application(environ, start_response):
    seen.append({k: v for k, v in environ.items() if k not in ("wsgi.input", "wsgi.errors")})
    environ["PATH_INFO"] = "/changed"
    environ["added"] = object()
    environ.pop("HTTP_ACCEPT", None)
    environ["wsgi.url_scheme"] = "gopher"
    environ["wsgi.version"] = (9, 9)
    start_response("200 OK", [])
    return [b"ok"]
"#;

    /// Runs `requests` through one application; returns the environs it saw.
    fn serve(requests: &[&str]) -> Vec<Vec<(String, String)>> {
        Python::initialize();
        Python::attach(|py| {
            // A module of its own per call: tests run on parallel threads, and the bridge
            // releases the GIL between requests, so a shared module's `seen` list could be
            // reset by another test mid-run.
            static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = std::ffi::CString::new(format!("shape_app_{n}")).unwrap();
            let module = PyModule::from_code(py, APP, c"shape_app.py", &name).unwrap();
            let app = module.getattr("application").unwrap();
            let app = PyApplication::new(py, app, "shape_app", PyOptions::default()).unwrap();
            for request in requests {
                app.call(py, Job { environ: environ(request), io: Box::new(Discard) });
            }
            let seen = module.getattr("seen").unwrap();
            seen.try_iter()
                .unwrap()
                .map(|environ| {
                    let environ = environ.unwrap().cast_into::<PyDict>().unwrap();
                    let mut items: Vec<(String, String)> = environ
                        .iter()
                        .map(|(k, v)| (k.extract().unwrap(), v.repr().unwrap().to_string()))
                        .collect();
                    items.sort();
                    items
                })
                .collect()
        })
    }

    fn expected(request: &str) -> Vec<(String, String)> {
        let mut items: Vec<(String, String)> = environ(request)
            .iter()
            .map(|(k, v)| (k.to_owned(), format!("{v:?}").replace('"', "'")))
            .collect();
        items.retain(|(k, _)| !k.starts_with("wsgi."));
        items.sort();
        items
    }

    fn cgi_and_http(seen: &[(String, String)]) -> Vec<(String, String)> {
        seen.iter()
            .filter(|(k, _)| !k.starts_with("wsgi.") && k != "SERVER_SOFTWARE")
            .cloned()
            .collect()
    }

    const A: &str = "GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\
                     Cookie: id=1\r\n\r\n";
    const A2: &str = "GET /b?x=2 HTTP/1.1\r\nHost: example.com\r\nAccept: text/html\r\n\
                      Cookie: id=2\r\n\r\n";
    const B: &str = "GET /a HTTP/1.1\r\nAccept: */*\r\nHost: example.com\r\nX-Custom: 1\r\n\r\n";

    #[test]
    fn each_request_sees_its_own_environ_whatever_the_previous_one_did() {
        let requests = [A, A, A2, B, A, B, B, A2];
        let seen = serve(&requests);
        assert_eq!(seen.len(), requests.len());
        for (request, seen) in requests.iter().zip(&seen) {
            assert_eq!(cgi_and_http(seen), expected(request), "{request}");
            let get = |key: &str| seen.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
            assert_eq!(get("wsgi.url_scheme"), Some("'http'"));
            assert_eq!(get("wsgi.version"), Some("(1, 0)"));
            assert_eq!(get("added"), None);
        }
    }

    #[test]
    fn same_is_string_equality() {
        for len in 0..20 {
            let a: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            assert!(same(a.as_bytes(), a.clone().as_bytes()), "{a:?}");
            assert!(!same(a.as_bytes(), format!("{a}x").as_bytes()), "{a:?}");
            for at in 0..len {
                let mut b = a.clone().into_bytes();
                b[at] = b'Z';
                let b = String::from_utf8(b).unwrap();
                assert!(!same(a.as_bytes(), b.as_bytes()), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn the_shape_keeps_no_credentials() {
        const CREDENTIALS: &str = "GET /a HTTP/1.1\r\nHost: example.com\r\nCookie: id=secret1\r\n\
                                   Authorization: Basic c2VjcmV0Mg==\r\n\
                                   Proxy-Authorization: Basic c2VjcmV0Mw==\r\n\r\n";
        let seen = serve(&[CREDENTIALS, CREDENTIALS]);
        // The app saw them, both times.
        for environ in &seen {
            let get = |key: &str| environ.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            assert_eq!(get("HTTP_COOKIE").as_deref(), Some("'id=secret1'"));
            assert_eq!(get("HTTP_AUTHORIZATION").as_deref(), Some("'Basic c2VjcmV0Mg=='"));
            assert_eq!(get("HTTP_PROXY_AUTHORIZATION").as_deref(), Some("'Basic c2VjcmV0Mw=='"));
        }
        THREAD_SHAPES.with(|shapes| {
            let shapes = shapes.borrow();
            let shape = shapes.first().expect("a shape after a request");
            for secret in ["secret1", "c2VjcmV0Mg==", "c2VjcmV0Mw=="] {
                assert!(!shape.text.contains(secret), "{secret} in the shape's record");
            }
            Python::attach(|py| {
                let dict = shape.dict.bind(py);
                for key in ["HTTP_COOKIE", "HTTP_AUTHORIZATION", "HTTP_PROXY_AUTHORIZATION"] {
                    let value = dict.get_item(key).unwrap();
                    assert!(value.is_some_and(|v| v.is_none()), "{key}: the place, not the value");
                }
            });
        });
    }
}
