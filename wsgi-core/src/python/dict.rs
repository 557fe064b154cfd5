//! The environ dict, copied from a per-thread dict of the same shape.
//!
//! Inserting some 35 entries one by one into a new dict (growing it twice on the way) is most of
//! the bridge's work per request, yet consecutive requests mostly have the same header names in
//! the same order, and many of the same values. So each app thread keeps a private dict, its
//! *shape*: the constant entries, `wsgi.url_scheme`, the previous request's CGI and `HTTP_*`
//! entries, and `wsgi.input`/`wsgi.errors` set to `None`. A request whose entries have the same
//! keys in the same order updates the values that differ in the shape, then gets a `copy()` of
//! it (CPython copies a dict's key table in one piece); any other request rebuilds the shape.
//!
//! The shape is never handed to Python code, so nothing but the bridge changes it. Its values
//! are immutable `str`s shared with the copies; credentials (`Cookie`, `Authorization`) are not
//! kept in it: they are set in each copy only.

use std::cell::RefCell;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::exchange::Exchange;
use super::{PyApplication, input, strings};
use crate::environ::{CgiKey, EnvKey, Environ, Scheme};

/// The arena of recorded texts is rebuilt when it grows past this (values that changed are
/// appended to it).
const MAX_TEXT: usize = 16 * 1024;

/// The key of an environ entry as recorded: a CGI variable, or the span of an `HTTP_*` key in
/// [`Shape::text`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecordedKey {
    Cgi(CgiKey),
    Http(usize, usize),
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
        let mut shapes = THREAD_SHAPES
            .try_with(|shapes| shapes.try_borrow_mut().map(|mut s| std::mem::take(&mut *s)))
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        // The credentials, set in the copy only.
        let mut secrets = Vec::new();
        let mut found = None;
        for (i, shape) in shapes.iter_mut().enumerate() {
            // A failed match leaves the shape consistent (its dict and its record agree).
            secrets.clear();
            if shape.app == self.consts.id && self.update(py, shape, environ, &mut secrets)? {
                found = Some(i);
                break;
            }
        }
        let found = match found {
            Some(i) => i,
            None => {
                secrets.clear();
                let recycled = if shapes.len() >= SHAPES { shapes.pop() } else { None };
                shapes.push(self.new_shape(py, environ, &mut secrets, recycled)?);
                shapes.len() - 1
            }
        };
        shapes[..=found].rotate_right(1);
        let dict = shapes[0].dict.bind(py).copy()?;
        for (key, text) in secrets {
            dict.set_item(self.key(py, key), PyString::new(py, text))?;
        }
        let _ = THREAD_SHAPES.try_with(|slot| {
            if let Ok(mut slot) = slot.try_borrow_mut() {
                *slot = shapes;
            }
        });
        Ok(dict)
    }

    /// Updates `shape` to `environ`'s values if it has the same keys in the same order (and
    /// scheme); `false` if not, the shape then being half updated.
    fn update<'e>(
        &self,
        py: Python<'_>,
        shape: &mut Shape,
        environ: &'e Environ,
        secrets: &mut Vec<(EnvKey<'e>, &'e str)>,
    ) -> PyResult<bool> {
        if shape.entries.len() != environ.len() {
            return Ok(false);
        }
        if shape.text.len() > MAX_TEXT {
            return Ok(false); // rebuilt with a compact arena
        }
        let dict = shape.dict.bind(py);
        if shape.scheme != environ.scheme() {
            dict.set_item(pyo3::intern!(py, "wsgi.url_scheme"), self.scheme(py, environ.scheme()))?;
            shape.scheme = environ.scheme();
        }
        for (i, (key, text)) in environ.entries().enumerate() {
            let Some(entry) = shape.entries.get(i).copied() else { return Ok(false) };
            let same_key = match (key, entry.key) {
                (EnvKey::Cgi(a), RecordedKey::Cgi(b)) => a == b,
                (EnvKey::Http(h), RecordedKey::Http(a, b)) => shape.text.get(a..b) == Some(h),
                _ => false,
            };
            if !same_key {
                return Ok(false);
            }
            let Some((a, b)) = entry.value else {
                secrets.push((key, text)); // a credential: set in the copy only
                continue;
            };
            if shape.text.get(a..b) == Some(text) {
                continue;
            }
            dict.set_item(self.key(py, key), strings::value(py, text, false))?;
            let span = push_text(&mut shape.text, text);
            if let Some(entry) = shape.entries.get_mut(i) {
                entry.value = Some(span);
            }
        }
        Ok(true)
    }

    /// Builds a shape for `environ`, in the buffers of a `recycled` one.
    fn new_shape<'e>(
        &self,
        py: Python<'_>,
        environ: &'e Environ,
        secrets: &mut Vec<(EnvKey<'e>, &'e str)>,
        recycled: Option<Shape>,
    ) -> PyResult<Shape> {
        let (mut entries, mut text) = match recycled {
            Some(Shape { entries, text, .. }) => (entries, text),
            None => (Vec::with_capacity(environ.len()), String::with_capacity(1024)),
        };
        entries.clear();
        text.clear();
        let dict = self.consts.template.bind(py).copy()?;
        dict.set_item(pyo3::intern!(py, "wsgi.url_scheme"), self.scheme(py, environ.scheme()))?;
        let mut previous: Option<(&str, Bound<'_, PyString>)> = None;
        for (key, value) in environ.entries() {
            let recorded = match key {
                EnvKey::Cgi(k) => RecordedKey::Cgi(k),
                EnvKey::Http(k) => {
                    let (a, b) = push_text(&mut text, k);
                    RecordedKey::Http(a, b)
                }
            };
            if is_secret(key) {
                dict.set_item(self.key(py, key), py.None())?; // holds its place in the order
                entries.push(Entry { key: recorded, value: None });
                secrets.push((key, value));
                continue;
            }
            // RAW_URI and REQUEST_URI are one slice of the environ: one str.
            let object = match previous {
                Some((t, o)) if std::ptr::eq(t, value) => o,
                _ => strings::value(py, value, false),
            };
            dict.set_item(self.key(py, key), &object)?;
            entries.push(Entry { key: recorded, value: Some(push_text(&mut text, value)) });
            previous = Some((value, object));
        }
        let none = py.None();
        dict.set_item(pyo3::intern!(py, "wsgi.input"), &none)?;
        dict.set_item(pyo3::intern!(py, "wsgi.errors"), &none)?;
        Ok(Shape {
            app: self.consts.id,
            dict: dict.unbind(),
            scheme: environ.scheme(),
            entries,
            text,
        })
    }

    /// The key object of an environ key.
    fn key<'py>(&self, py: Python<'py>, key: EnvKey<'_>) -> Bound<'py, PyString> {
        match key {
            EnvKey::Cgi(k) => match self.consts.cgi_keys.get(k.index()) {
                Some(object) => object.bind(py).clone(),
                None => PyString::new(py, k.as_str()),
            },
            EnvKey::Http(k) => self.consts.header_keys.get(py, k),
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
        exchange: &Arc<Exchange>,
    ) -> PyResult<()> {
        dict.set_item(pyo3::intern!(py, "wsgi.input"), input::WsgiInput::new(py, exchange)?)?;
        dict.set_item(pyo3::intern!(py, "wsgi.errors"), input::WsgiErrors::new(py, exchange)?)?;
        Ok(())
    }
}

/// Appends `s` to `text`, returning its span.
fn push_text(text: &mut String, s: &str) -> (usize, usize) {
    let start = text.len();
    text.push_str(s);
    (start, text.len())
}

/// Whether an environ value is a credential, which is neither kept in the shape nor cached.
fn is_secret(key: EnvKey<'_>) -> bool {
    matches!(key, EnvKey::Http("HTTP_COOKIE" | "HTTP_AUTHORIZATION" | "HTTP_PROXY_AUTHORIZATION"))
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
        Environ::new(&head, &server)
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
            let module = PyModule::from_code(py, APP, c"shape_app.py", c"shape_app").unwrap();
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
    fn the_shape_keeps_no_credentials() {
        serve(&[A, A2]);
        let cookie = THREAD_SHAPES.with(|shapes| {
            let shapes = shapes.borrow();
            let shape = shapes.first().expect("a shape after a request");
            Python::attach(|py| {
                shape.dict.bind(py).get_item("HTTP_COOKIE").unwrap().map(|v| v.is_none())
            })
        });
        assert_eq!(cookie, Some(true), "the shape holds the Cookie key's place, not its value");
    }
}
