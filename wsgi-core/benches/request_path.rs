//! One typical browser request (about 500 bytes, 12 header fields) from wire bytes to the WSGI
//! environ, beside `httparse` alone on the same bytes.
//!
//! - `httparse_only`: `httparse::Request::parse` with 16 header slots: the tokenizing floor.
//! - `connection_only`: a kept-alive `Connection` takes the bytes, reports `Request` and
//!   `EndOfBody`, and writes a tiny response (so it cycles to the next request).
//! - `environ_only`: `Environ::new` on an already parsed head.
//! - `connection_to_environ`: the whole path a driver runs per request: the two above together.
//!
//! After criterion, the ratio the target is stated in (`connection_to_environ` over
//! `httparse_only`) is also measured in paired rounds: each round times a batch of each, one
//! right after the other, and the median of the per-round ratios is printed. httparse's own
//! time moves from one process to the next by several percent (code and stack placement), and
//! pairing keeps each ratio to one process and one moment. The rounds run only without
//! arguments past criterion's flags (a filter, or an option's value such as `--warm-up-time 2`,
//! skips them) and without `--profile-time`.
//!
//! Run with `cargo bench -p wsgi-core --bench request_path`; the figures go in BENCHMARKS.md.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use wsgi_core::{Config, Connection, Environ, Event, ResponseHead, ServerInfo};

mod common;
use common::REQUEST;

fn server_info() -> ServerInfo {
    ServerInfo::new(
        Some("127.0.0.1:8000".parse().unwrap()),
        Some("127.0.0.1:51234".parse().unwrap()),
    )
}

/// Runs one request through a kept-alive connection and answers it, leaving the connection ready
/// for the next; `f` gets the request head.
fn cycle<R>(
    conn: &mut Connection,
    response: &ResponseHead,
    out: &mut Vec<u8>,
    now: Instant,
    f: impl FnOnce(wsgi_core::RequestHead) -> R,
) -> R {
    conn.handle_input(black_box(REQUEST), now);
    let Ok(Some(Event::Request(head))) = conn.poll_event() else { panic!("no request") };
    let Ok(Some(Event::EndOfBody)) = conn.poll_event() else { panic!("no end of body") };
    let r = f(head);
    out.clear();
    conn.send_head(response, out).unwrap();
    conn.send_end(now, out).unwrap();
    black_box(&*out);
    r
}

fn request_path(c: &mut Criterion) {
    assert_eq!(REQUEST.len(), 519);
    let mut group = c.benchmark_group("request_path");
    let now = Instant::now();
    let server = server_info();
    let response = ResponseHead::from_wsgi(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "0")],
    )
    .unwrap();

    group.bench_function("httparse_only", |b| b.iter(httparse_once));

    group.bench_function("connection_only", |b| {
        let mut conn = Connection::new(Config::default(), now);
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            cycle(&mut conn, &response, &mut out, now, |head| black_box(head.headers().len()))
        });
    });

    group.bench_function("environ_only", |b| {
        let mut conn = Connection::new(Config::default(), now);
        conn.handle_input(REQUEST, now);
        let Ok(Some(Event::Request(head))) = conn.poll_event() else { panic!("no request") };
        b.iter(|| black_box(Environ::new(black_box(head.clone()), &server)));
    });

    group.bench_function("connection_to_environ", |b| {
        let mut conn = Connection::new(Config::default(), now);
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            cycle(&mut conn, &response, &mut out, now, |head| {
                black_box(Environ::new(head, &server))
            })
        });
    });

    // The same, then every entry read as (&str, &str): what a consumer such as the Python
    // bridge pays on top of building the environ.
    group.bench_function("connection_to_environ_read", |b| {
        let mut conn = Connection::new(Config::default(), now);
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            cycle(&mut conn, &response, &mut out, now, |head| {
                let environ = Environ::new(head, &server);
                let bytes: usize = environ.iter().map(|(k, v)| k.len() + v.len()).sum();
                black_box(bytes)
            })
        });
    });

    group.finish();

    let args: Vec<String> = std::env::args().collect();
    let test_mode = args.iter().any(|a| a == "--test" || a == "--list");
    // A filter or an option's value: not a whole run.
    let filtered = args.iter().skip(1).any(|a| !a.starts_with('-'));
    if !filtered && !args.iter().any(|a| a == "--profile-time") {
        paired_rounds(if test_mode { (1_000, 1) } else { (200_000, 21) }, &server, &response);
    }
}

fn httparse_once() {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut req = httparse::Request::new(&mut headers);
    let status = req.parse(black_box(REQUEST)).unwrap();
    black_box((status, req.method, req.path, req.headers.len()));
}

/// `rounds` rounds of `n` httparse parses then `n` whole-path cycles; prints the medians.
fn paired_rounds((n, rounds): (u32, usize), server: &ServerInfo, response: &ResponseHead) {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), now);
    let mut out = Vec::with_capacity(256);
    let per = |start: Instant| start.elapsed().as_nanos() as f64 / f64::from(n);
    let (mut parse, mut path, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..n {
            httparse_once();
        }
        let h = per(start);
        let start = Instant::now();
        for _ in 0..n {
            cycle(&mut conn, response, &mut out, now, |head| {
                black_box(Environ::new(head, server));
            });
        }
        let p = per(start);
        parse.push(h);
        path.push(p);
        ratio.push(p / h);
    }
    for v in [&mut parse, &mut path, &mut ratio] {
        v.sort_by(f64::total_cmp);
    }
    let mid = rounds / 2;
    println!();
    println!("paired rounds ({rounds} x {n} of each, medians):");
    println!("  httparse_only          {:7.1} ns", parse[mid]);
    println!("  connection_to_environ  {:7.1} ns", path[mid]);
    println!(
        "  ratio                  {:7.3}   (rounds: {:.3} to {:.3})",
        ratio[mid],
        ratio[0],
        ratio[rounds - 1]
    );
}

criterion_group!(benches, request_path);
criterion_main!(benches);
