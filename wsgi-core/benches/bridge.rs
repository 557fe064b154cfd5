//! The Python bridge in one process: the seed's hello app called through `PyApplication::call`
//! from a prebuilt `Environ` (no sockets), beside pure-Python loops that build the equivalent
//! environ dict and call the same app object.
//!
//! - `bridge/hello`: per iteration, clone the prebuilt `Environ` into a `Job` whose `AppIo`
//!   discards the response (counting its bytes) and run it through `PyApplication::call`, the
//!   thread attached to the interpreter once for the whole run (the attach-once model of
//!   `Application::serve`).
//! - `bridge/hello_varied`: the same, cycling through 1024 requests that differ in path, query,
//!   `User-Agent` and `Cookie` (values the bridge's per-thread caches have not seen).
//! - `bridge/hello_cold`: as `hello_varied`, the header fields also in 8 orders in turn: more
//!   environ shapes than the bridge keeps per thread, so every request builds its dict anew.
//! - `bridge/environ_clone`: the clone alone, to see what the `Job` itself costs.
//! - Python loops, timed inside Python with `time.perf_counter_ns` over N requests:
//!   - `python_prebuilt`: the environ built as a dict display of the constant `wsgi.*` entries,
//!     a fresh `BytesIO` for `wsgi.input` and `sys.stderr` for `wsgi.errors`, then
//!     `update()` with the request's CGI and `HTTP_*` pairs, prebuilt as `str` (the same
//!     starting point as the bridge's prebuilt `Environ`). The strict baseline: the target is
//!     judged against this one.
//!   - `python_server`: what a pure-Python server does from a parsed request (str method,
//!     target, version and header pairs as sent): split the target, percent-decode the path,
//!     derive the `HTTP_*` keys (joining repeats), `SERVER_NAME`/`SERVER_PORT` from Host.
//!
//!   Both then do what a Python server does per request: a `start_response` closure storing
//!   status and headers (returning a `write`), `app(environ, start_response)`,
//!   `b"".join(result)`, `result.close()` if present.
//!
//! Before timing, the bench checks that the bridge answers `200 OK` with the hello body and
//! that both Python environs equal the dict the bridge hands the application (same keys, same
//! values; `wsgi.input`/`wsgi.errors` of the right kind).
//!
//! Run with `cargo bench -p wsgi-core --features python --bench bridge`; the figures go in
//! BENCHMARKS.md.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;
use std::ffi::CString;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use wsgi_core::python::{PyApplication, PyOptions};
use wsgi_core::{
    AppIo, AppIoError, Config, Connection, Environ, Event, Job, ResponseHead, ServerInfo,
};

mod common;
use common::REQUEST;

/// The seed's hello app, verbatim.
const HELLO_APP: &str = r#"
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["Hello WSGI World!\n".encode()]
"#;

const HELLO_BODY: &[u8] = b"Hello WSGI World!\n";

/// The pure-Python side: environ builders, the per-request loop, and the equality check.
const PY_LOOPS: &str = r#"
import io
import sys
import time
from urllib.parse import unquote_to_bytes

BytesIO = io.BytesIO
stderr = sys.stderr
VERSION = (1, 0)


def prebuilt_builder(entries, file_wrapper, software, multithread, multiprocess, scheme):
    """The environ from the request's CGI and HTTP_* pairs, already computed (as the bridge's
    prebuilt Environ holds them): constants in a dict display, then the pairs."""
    entries = list(entries)

    def build(body):
        environ = {
            "wsgi.version": VERSION,
            "wsgi.url_scheme": scheme,
            "wsgi.input": BytesIO(body),
            "wsgi.errors": stderr,
            "wsgi.multithread": multithread,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": file_wrapper,
            "SERVER_SOFTWARE": software,
        }
        environ.update(entries)
        return environ

    return build


def server_builder(request, file_wrapper, software, multithread, multiprocess, scheme):
    """The environ as a pure-Python server derives it from a parsed request (gunicorn-style):
    method, target, version and the header pairs as sent, all str."""
    method, target, version, headers, peer = request
    remote_addr, remote_port = peer[0], str(peer[1])
    default_port = "443" if scheme == "https" else "80"

    def build(body):
        path, _, query = target.partition("?")
        if "%" in path:
            path = unquote_to_bytes(path).decode("latin-1")
        environ = {
            "wsgi.version": VERSION,
            "wsgi.url_scheme": scheme,
            "wsgi.input": BytesIO(body),
            "wsgi.errors": stderr,
            "wsgi.multithread": multithread,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": file_wrapper,
            "SERVER_SOFTWARE": software,
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "RAW_URI": target,
            "REQUEST_URI": target,
            "SERVER_PROTOCOL": version,
            "REMOTE_ADDR": remote_addr,
            "REMOTE_PORT": remote_port,
        }
        host = None
        for name, value in headers:
            if "_" in name:
                continue
            key = name.upper().replace("-", "_")
            if key == "CONTENT_LENGTH":
                environ[key] = value
                continue
            if key == "CONTENT_TYPE":
                if key in environ:
                    value = environ[key] + "," + value
                environ[key] = value
                continue
            if key == "HOST":
                host = value
            key = "HTTP_" + key
            if key in environ:
                sep = "; " if key == "HTTP_COOKIE" else ","
                value = environ[key] + sep + value
            environ[key] = value
        if host:
            name, sep, port = host.rpartition(":")
            if not sep or "]" in port:
                name, port = host, ""
            environ["SERVER_NAME"] = name
            environ["SERVER_PORT"] = port or default_port
        else:
            environ["SERVER_NAME"] = "localhost"
            environ["SERVER_PORT"] = default_port
        return environ

    return build


def run_loop(app, build, n, body=b""):
    """Serves n requests as a Python server would; returns (ns, bytes of body seen)."""
    join = b"".join
    seen = 0
    perf = time.perf_counter_ns
    t0 = perf()
    for _ in range(n):
        environ = build(body)
        state = [None, None]
        chunks = []

        def start_response(status, response_headers, exc_info=None):
            state[0] = status
            state[1] = response_headers
            return chunks.append

        result = app(environ, start_response)
        try:
            out = join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        seen += len(out)
    t1 = perf()
    return t1 - t0, seen


def environ_differences(bridge, built):
    """What differs between the bridge's environ and a Python-built one."""
    out = []
    for key in sorted(set(bridge) | set(built)):
        if key not in bridge or key not in built:
            out.append("%s only in %s" % (key, "bridge" if key in bridge else "python"))
            continue
        a, b = bridge[key], built[key]
        if key == "wsgi.input":
            ok = all(hasattr(a, m) and hasattr(b, m) for m in ("read", "readline", "readlines"))
        elif key == "wsgi.errors":
            ok = all(hasattr(a, m) and hasattr(b, m) for m in ("write", "writelines", "flush"))
        else:
            ok = type(a) is type(b) and a == b
        if not ok:
            out.append("%s: bridge %r, python %r" % (key, a, b))
    return out


captured = {}


def capture(environ, start_response):
    captured.clear()
    captured.update(environ)
    start_response("200 OK", [])
    return []
"#;

thread_local! {
    /// Response bytes the discarding `AppIo` saw: the work cannot be optimised away.
    static SENT: Cell<u64> = const { Cell::new(0) };
}

/// An `AppIo` that discards the response, counting its bytes. A zero-sized type, so boxing
/// it into each `Job` allocates nothing.
struct Sink;

impl AppIo for Sink {
    fn read_body(&mut self) -> Result<Option<Bytes>, AppIoError> {
        Ok(None)
    }
    fn send_head(&mut self, head: &ResponseHead) -> Result<(), AppIoError> {
        SENT.with(|s| s.set(s.get() + u64::from(head.status())));
        Ok(())
    }
    fn send_body(&mut self, chunk: &[u8]) -> Result<(), AppIoError> {
        SENT.with(|s| s.set(s.get() + chunk.len() as u64));
        Ok(())
    }
    fn send_end(&mut self) -> Result<(), AppIoError> {
        Ok(())
    }
    fn abort(&mut self) {
        panic!("the hello app aborted");
    }
}

/// What a response looked like, for the one checked call before timing.
#[derive(Debug, Default)]
struct Recorded {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    ended: bool,
}

struct Recorder(Arc<Mutex<Recorded>>);

impl AppIo for Recorder {
    fn read_body(&mut self) -> Result<Option<Bytes>, AppIoError> {
        Ok(None)
    }
    fn send_head(&mut self, head: &ResponseHead) -> Result<(), AppIoError> {
        let mut r = self.0.lock().unwrap();
        r.status = head.status();
        r.headers = head
            .headers()
            .map(|(n, v)| {
                (String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned())
            })
            .collect();
        Ok(())
    }
    fn send_body(&mut self, chunk: &[u8]) -> Result<(), AppIoError> {
        self.0.lock().unwrap().body.extend_from_slice(chunk);
        Ok(())
    }
    fn send_end(&mut self) -> Result<(), AppIoError> {
        self.0.lock().unwrap().ended = true;
        Ok(())
    }
    fn abort(&mut self) {}
}

/// The request's `Environ`, as a driver builds it: bytes into a `Connection`, `Environ::new`.
fn typical_environ() -> Environ {
    environ_of(REQUEST)
}

/// `n` requests like [`REQUEST`], each with its own path, query, `User-Agent` and `Cookie`
/// values (more distinct values than the bridge's per-thread value cache holds), their header
/// fields in one of `orders` orders (request `i` in order `i % orders`, Host first, the others
/// rotated). With more orders than the bridge keeps shapes per thread, every request misses both.
fn varied_environs(n: usize, orders: usize) -> Vec<Environ> {
    let text = std::str::from_utf8(REQUEST).unwrap();
    let (request_line, rest) = text.split_once("\r\n").unwrap();
    let fields: Vec<&str> = rest.trim_end().split("\r\n").collect();
    assert!(fields[0].starts_with("Host:") && orders < fields.len());
    (0..n)
        .map(|i| {
            let mut others = fields[1..].to_vec();
            others.rotate_left(i % orders);
            let mut request = format!("{request_line}\r\n{}\r\n", fields[0]);
            for field in others {
                request.push_str(field);
                request.push_str("\r\n");
            }
            request.push_str("\r\n");
            let request = request
                .replace("/articles/sans-io-servers?page=2", &format!("/articles/{i}?page={i}"))
                .replace("Firefox/128.0", &format!("Firefox/128.{i}"))
                .replace("8f14e45fceea167a5a36dedd4bea2543", &format!("{i:032x}"));
            environ_of(request.as_bytes())
        })
        .collect()
}

fn environ_of(request: &[u8]) -> Environ {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), now);
    conn.handle_input(request, now);
    let Ok(Some(Event::Request(head))) = conn.poll_event() else { panic!("no request") };
    let server = ServerInfo::new(
        Some("127.0.0.1:8000".parse().unwrap()),
        Some("127.0.0.1:51234".parse().unwrap()),
    );
    Environ::new(head, &server)
}

fn module<'py>(py: Python<'py>, code: &str, name: &str) -> Bound<'py, PyModule> {
    let code = CString::new(code).unwrap();
    let file = CString::new(format!("{name}.py")).unwrap();
    let name = CString::new(name).unwrap();
    PyModule::from_code(py, &code, &file, &name).unwrap_or_else(|e| panic!("{e}"))
}

/// The parsed request as a pure-Python parser would hand it over: str pieces, headers as sent.
fn parsed_request<'py>(py: Python<'py>) -> Bound<'py, PyTuple> {
    let text = std::str::from_utf8(REQUEST).unwrap();
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().unwrap().split(' ');
    let (method, target, version) =
        (request_line.next().unwrap(), request_line.next().unwrap(), request_line.next().unwrap());
    let headers: Vec<(&str, &str)> = lines
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n, v.trim())
        })
        .collect();
    (method, target, version, headers, ("127.0.0.1", 51234)).into_pyobject(py).unwrap()
}

/// Runs `loop_` (a Python builder) `rounds` times over `n` requests; returns the median
/// ns/request.
fn time_python(
    loops: &Bound<'_, PyModule>,
    app: &Bound<'_, PyAny>,
    build: &Bound<'_, PyAny>,
    n: usize,
    rounds: usize,
) -> f64 {
    let run_loop = loops.getattr("run_loop").unwrap();
    // Warm-up: let the interpreter specialise the loop's bytecode.
    run_loop.call1((app, build, n.min(10_000))).unwrap();
    let mut per_request: Vec<f64> = (0..rounds)
        .map(|_| {
            let (ns, seen): (u64, u64) =
                run_loop.call1((app, build, n)).unwrap().extract().unwrap();
            assert_eq!(seen, (n * HELLO_BODY.len()) as u64);
            ns as f64 / n as f64
        })
        .collect();
    per_request.sort_by(f64::total_cmp);
    per_request[per_request.len() / 2]
}

/// The bridge's figure as criterion recorded it, if this run wrote it.
fn criterion_estimate(group: &str, bench: &str, since: SystemTime) -> Option<f64> {
    let root = std::env::var_os("CRITERION_HOME").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
            .join("criterion")
    });
    let path = root.join(group).join(bench).join("new/estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let json = std::fs::read_to_string(path).ok()?;
    // The figure criterion prints: the slope of the linear fit, else the mean.
    let estimate = |name: &str| {
        let at = json.find(&format!("\"{name}\":{{"))?;
        let rest = &json[at..];
        let value = &rest[rest.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
        value[..value.find([',', '}'])?].parse().ok()
    };
    estimate("slope").or_else(|| estimate("mean"))
}

fn bridge(c: &mut Criterion) {
    let args: Vec<String> = std::env::args().collect();
    let test_mode = args.iter().any(|a| a == "--test" || a == "--list");
    let profiling = args.iter().any(|a| a == "--profile-time");
    let started = SystemTime::now();
    Python::initialize();
    Python::attach(|py| {
        let hello = module(py, HELLO_APP, "hello").getattr("application").unwrap();
        let loops = module(py, PY_LOOPS, "bridge_bench_loops");
        let options = PyOptions::default();
        let (multithread, multiprocess) = (options.multithread, options.multiprocess);
        let software = options.server_software.clone();
        let app = PyApplication::new(py, hello.clone(), "hello:application", options).unwrap();
        let environ = typical_environ();

        // The bridge answers the hello app correctly.
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        app.call(py, Job { environ: environ.clone(), io: Box::new(Recorder(recorded.clone())) });
        {
            let r = recorded.lock().unwrap();
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(r.body, HELLO_BODY, "{r:?}");
            assert!(r.ended, "{r:?}");
            assert!(r.headers.contains(&("Content-Length".into(), "18".into())), "{r:?}");
        }

        // The environ the bridge hands the app, and the Python builders' equivalents.
        let capture = loops.getattr("capture").unwrap();
        let capture_app = PyApplication::new(py, capture, "capture", PyOptions::default()).unwrap();
        capture_app.call(py, Job { environ: environ.clone(), io: Box::new(Sink) });
        let bridge_env = loops.getattr("captured").unwrap().cast_into::<PyDict>().unwrap();
        assert!(bridge_env.len() > 30, "{bridge_env}");
        let file_wrapper = bridge_env.get_item("wsgi.file_wrapper").unwrap().unwrap();
        let entries = PyList::new(py, environ.iter()).unwrap();
        let consts = (file_wrapper, software, multithread, multiprocess, "http");
        let prebuilt = loops
            .getattr("prebuilt_builder")
            .unwrap()
            .call1((entries, consts.0.clone(), &consts.1, consts.2, consts.3, consts.4))
            .unwrap();
        let server = loops
            .getattr("server_builder")
            .unwrap()
            .call1((parsed_request(py), consts.0, &consts.1, consts.2, consts.3, consts.4))
            .unwrap();
        for (name, build) in [("python_prebuilt", &prebuilt), ("python_server", &server)] {
            let built = build.call1((Bytes::new().as_ref(),)).unwrap();
            let diff: Vec<String> = loops
                .getattr("environ_differences")
                .unwrap()
                .call1((&bridge_env, built))
                .unwrap()
                .extract()
                .unwrap();
            assert!(diff.is_empty(), "{name} differs from the bridge's environ: {diff:#?}");
        }

        let mut group = c.benchmark_group("bridge");
        group.bench_function("environ_clone", |b| b.iter(|| black_box(environ.clone())));
        group.bench_function("hello", |b| {
            b.iter(|| {
                app.call(py, Job { environ: black_box(&environ).clone(), io: Box::new(Sink) })
            })
        });
        for (name, orders) in [("hello_varied", 1), ("hello_cold", 8)] {
            let environs = varied_environs(1024, orders);
            let mut next = 0;
            group.bench_function(name, |b| {
                b.iter(|| {
                    next = (next + 1) % environs.len();
                    app.call(py, Job { environ: environs[next].clone(), io: Box::new(Sink) })
                })
            });
        }
        group.finish();
        assert!(SENT.with(Cell::get) > 0);
        if profiling {
            return;
        }

        let (n, rounds) = if test_mode { (100, 1) } else { (200_000, 15) };
        let python_prebuilt = time_python(&loops, &hello, &prebuilt, n, rounds);
        let python_server = time_python(&loops, &hello, &server, n, rounds);
        if test_mode {
            return;
        }
        let Some(bridge) = criterion_estimate("bridge", "hello", started) else {
            println!("(bridge/hello was not run: no ratio)");
            return;
        };
        let rps = |ns: f64| 1e9 / ns;
        println!();
        println!("hello app, one request (ns/request, requests/s on one thread):");
        println!("  bridge          {bridge:8.1} ns  {:>10.0} req/s  (criterion)", rps(bridge));
        for (name, label) in [("hello_varied", "bridge, varied"), ("hello_cold", "bridge, cold")] {
            if let Some(ns) = criterion_estimate("bridge", name, started) {
                println!(
                    "  {label:<15} {ns:8.1} ns  {:>10.0} req/s  (criterion; {:.2}x python_prebuilt)",
                    rps(ns),
                    python_prebuilt / ns
                );
            }
        }
        for (name, ns) in [("python_prebuilt", python_prebuilt), ("python_server", python_server)] {
            println!(
                "  {name:<15} {ns:8.1} ns  {:>10.0} req/s  (median of {rounds} x {n}); \
                 bridge is {:.2}x",
                rps(ns),
                ns / bridge
            );
        }
    });
}

criterion_group!(benches, bridge);
criterion_main!(benches);
