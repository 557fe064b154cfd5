//! adapter-std serving Rust closures over real loopback sockets (no Python): what a server
//! author embedding the adapter relies on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use adapter_std::{Listener, Server, ServerConfig, start};
use wsgi_core::{AppIoError, Application, Job, ResponseHead, UsageError};

/// Echoes the method, path and body back with a Content-Length.
fn echo(mut job: Job) {
    let mut body = format!(
        "{} {}\n",
        job.environ.get("REQUEST_METHOD").unwrap_or_default(),
        job.environ.get("PATH_INFO").unwrap_or_default()
    )
    .into_bytes();
    while let Ok(Some(piece)) = job.io.read_body() {
        body.extend_from_slice(&piece);
    }
    if job.environ.get("PATH_INFO") == Some("/slow") {
        std::thread::sleep(Duration::from_millis(500));
    }
    let length = body.len().to_string();
    let head = ResponseHead::from_wsgi("200 OK", [("Content-Length", length.as_str())]).unwrap();
    job.io.send_head(&head).unwrap();
    job.io.send_body(&body).unwrap();
    job.io.send_end().unwrap();
}

fn serve<A: Application>(app: A, threads: usize) -> (Server, SocketAddr) {
    let listener = Listener::bind_tcp("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = ServerConfig::default();
    config.threads = threads;
    (start(app, vec![listener], config).unwrap(), addr)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until `n` complete responses (each with a Content-Length) have arrived.
fn read_responses(s: &mut TcpStream, n: usize) -> Vec<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        assert!(Instant::now() < deadline, "timed out; have {out:?}");
        let mut chunk = [0; 4096];
        let got = s.read(&mut chunk).unwrap();
        assert!(got > 0, "connection closed after {} responses", out.len());
        buf.extend_from_slice(&chunk[..got]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end].to_vec()).unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |v| v.parse().unwrap());
            if buf.len() < end + 4 + length {
                break;
            }
            let body = buf[end + 4..end + 4 + length].to_vec();
            buf.drain(..end + 4 + length);
            out.push((head, body));
        }
    }
    out
}

/// Sends `GET path` and reads its response.
fn get(s: &mut TcpStream, path: &str) -> (String, Vec<u8>) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
    read_responses(s, 1).remove(0)
}

#[test]
fn keep_alive_pipelining_and_bodies() {
    let (server, addr) = serve(echo, 2);
    let mut s = connect(addr);
    // Three pipelined requests in one write, one with a body: answered in order, one connection.
    s.write_all(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          GET /c HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let got = read_responses(&mut s, 3);
    let bodies: Vec<&[u8]> = got.iter().map(|(_, b)| b.as_slice()).collect();
    assert_eq!(bodies, [&b"GET /a\n"[..], b"POST /b\nhello", b"GET /c\n"]);
    assert!(got.iter().all(|(h, _)| h.starts_with("HTTP/1.1 200 OK")));
    // The same connection serves a chunked upload afterwards.
    s.write_all(
        b"PUT /d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_responses(&mut s, 1)[0].1, b"PUT /d\nabc");
    server.handle().shutdown();
    server.join(Duration::from_secs(5));
}

#[test]
fn malformed_requests_get_their_status_and_the_server_keeps_serving() {
    let (server, addr) = serve(echo, 1);
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
    assert!(answer.contains("Connection: close\r\n"), "{answer}");
    let mut s = connect(addr);
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_responses(&mut s, 1)[0].1, b"GET /ok\n");
    server.handle().shutdown();
    server.join(Duration::from_secs(5));
}

#[test]
fn idle_connections_hold_no_app_thread() {
    // One app thread, many idle keep-alive connections: a new client is still served.
    let (server, addr) = serve(echo, 1);
    let idle: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            read_responses(&mut s, 1);
            s
        })
        .collect();
    let mut s = connect(addr);
    s.write_all(b"GET /fresh HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_responses(&mut s, 1)[0].1, b"GET /fresh\n");
    drop(idle);
    server.handle().shutdown();
    server.join(Duration::from_secs(5));
}

#[test]
fn silent_and_partial_new_connections_are_served_without_holding_a_thread() {
    // On Linux the kernel holds a connection back from `accept` until its first bytes arrive
    // (TCP_DEFER_ACCEPT) and the poller hands it straight to an app thread; these are the
    // connections for which that guess fails, with one app thread to hold.
    let (server, addr) = serve(echo, 1);
    // Connects, then stays silent past the kernel's one-second deferral.
    let mut silent = connect(addr);
    // Sends part of its head at once (accepted and read at once), the rest later.
    let mut partial = connect(addr);
    partial.write_all(b"GET /partial HTTP/1.1\r\nHo").unwrap();
    // Neither holds the app thread: a third client is served meanwhile.
    let mut other = connect(addr);
    other.write_all(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_responses(&mut other, 1)[0].1, b"GET /other\n");
    std::thread::sleep(Duration::from_millis(1500));
    partial.write_all(b"st: x\r\n\r\n").unwrap();
    assert_eq!(read_responses(&mut partial, 1)[0].1, b"GET /partial\n");
    silent.write_all(b"GET /silent HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_responses(&mut silent, 1)[0].1, b"GET /silent\n");
    server.handle().shutdown();
    server.join(Duration::from_secs(5));
}

#[test]
fn shutdown_lets_the_request_in_flight_finish() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let (server, addr) = serve(
        move |job: Job| {
            counted.fetch_add(1, Ordering::SeqCst);
            echo(job);
        },
        2,
    );
    let mut s = connect(addr);
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the request never reached the app");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopping = Instant::now();
    server.handle().shutdown();
    let (head, body) = read_responses(&mut s, 1).remove(0);
    assert_eq!(body, b"GET /slow\n");
    assert!(head.contains("Connection: close"), "{head}");
    server.join(Duration::from_secs(10));
    assert!(stopping.elapsed() < Duration::from_secs(5), "{:?}", stopping.elapsed());
    assert!(TcpStream::connect(addr).is_err(), "still accepting after shutdown");
}

/// Large chunks (sent from the app's buffer) arrive whole, and bytes past the Content-Length,
/// from `send_body` or `send_file`, are cut with `BodyTooLong` (testkit's shared exchange).
#[test]
fn large_bodies_and_bodies_past_their_length() {
    let (server, addr) = serve(wsgi_testkit::app, 1);
    wsgi_testkit::bodies_past_their_length(&mut wsgi_testkit::Client::new(connect(addr)));
    server.handle().shutdown();
    server.join(Duration::from_secs(5));
}

/// An application that runs one thread at a time, as Python does: each request holds a global
/// lock while it spins for `spin` (long enough that one app thread serves alone, and finished
/// responses are held back while other requests wait), then answers its path: its body, then its
/// end. `/slow` sleeps 500 ms before its answer, `/linger` 500 ms after it (as a slow `close()`
/// would), and `/linger-body` 500 ms between its body and its end (as a result iterable's code
/// after its last item would); `/linger-body` and paths ending in `-iter` also check what a chunk
/// past the Content-Length and a body read get after the body. Paths starting `/pad` get a body
/// of 12,000 bytes (dots after the usual line).
struct Serialized {
    lock: std::sync::Mutex<()>,
    spin: Duration,
}

impl Application for Serialized {
    fn serve(&self, next_job: &mut wsgi_core::JobSource<'_>) {
        while let Some(mut job) = next_job() {
            let path = job.environ.get("PATH_INFO").unwrap_or_default().to_owned();
            {
                let _lock = self.lock.lock().unwrap();
                let start = Instant::now();
                while start.elapsed() < self.spin {
                    std::hint::spin_loop();
                }
            }
            if path == "/slow" {
                std::thread::sleep(Duration::from_millis(500));
            }
            let mut body = format!("GET {path}\n");
            if path.starts_with("/pad") {
                body.extend(std::iter::repeat_n('.', 12_000 - body.len()));
            }
            let length = body.len().to_string();
            let head =
                ResponseHead::from_wsgi("200 OK", [("Content-Length", length.as_str())]).unwrap();
            job.io.send_head(&head).unwrap();
            job.io.send_body(body.as_bytes()).unwrap();
            if path == "/linger-body" {
                std::thread::sleep(Duration::from_millis(500));
            }
            if path == "/linger-body" || path.ends_with("-iter") {
                // A chunk past the Content-Length gets what the connection says of it, and
                // nothing of the request is left to read, whether the response ended early or not.
                let late = job.io.send_body(b"x");
                assert!(
                    matches!(late, Err(AppIoError::Usage(UsageError::BodyTooLong { .. }))),
                    "{late:?}"
                );
                assert!(job.io.read_body().unwrap().is_none());
            }
            job.io.send_end().unwrap();
            if path == "/linger" {
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }

    fn serializes_threads(&self) -> bool {
        true
    }
}

fn serialized(spin: Duration) -> Serialized {
    Serialized { lock: std::sync::Mutex::new(()), spin }
}

/// Sixteen clients keep requests waiting for one app thread, so responses are held and
/// written in batches (by the poller, or by the app thread once nothing waits): every client
/// gets every response, whole and in order, on its own connection.
#[test]
fn held_responses_all_arrive_whole_and_in_order() {
    let (server, addr) = serve(serialized(Duration::from_micros(100)), 4);
    std::thread::scope(|scope| {
        for client in 0..16 {
            scope.spawn(move || {
                let mut s = connect(addr);
                for i in 0..40 {
                    // Every other one also checks the calls after its body (see Serialized).
                    let how = if i % 2 == 1 { "-iter" } else { "" };
                    let path = format!("/c{client}/r{i}{how}");
                    let (head, body) = get(&mut s, &path);
                    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
                    assert_eq!(body, format!("GET {path}\n").into_bytes());
                }
                // Pipelined: the held end of one response goes before the next one.
                let paths: Vec<String> = (0..5).map(|i| format!("/c{client}/p{i}")).collect();
                let requests: String =
                    paths.iter().map(|p| format!("GET {p} HTTP/1.1\r\nHost: x\r\n\r\n")).collect();
                s.write_all(requests.as_bytes()).unwrap();
                let got = read_responses(&mut s, 5);
                for (path, (_, body)) in paths.iter().zip(got) {
                    assert_eq!(body, format!("GET {path}\n").into_bytes());
                }
            });
        }
    });
    server.handle().shutdown();
    server.join(Duration::from_secs(5));
}

/// A response held while other requests waited waits neither for the long request its app
/// thread takes next nor for the application's own code after the end: it arrives while
/// those still run.
#[test]
fn a_held_response_waits_for_no_application_code() {
    let (server, addr) = serve(serialized(Duration::from_micros(200)), 4);
    let mut fast: Vec<TcpStream> = (0..12).map(|_| connect(addr)).collect();
    let mut linger = connect(addr);
    let mut linger_body = connect(addr);
    let mut slow = connect(addr);
    let sent = Instant::now();
    for s in &mut fast {
        s.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    }
    linger.write_all(b"GET /linger HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    linger_body.write_all(b"GET /linger-body HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    for s in &mut fast {
        assert_eq!(read_responses(s, 1)[0].1, b"GET /fast\n");
    }
    assert_eq!(read_responses(&mut linger, 1)[0].1, b"GET /linger\n");
    assert_eq!(read_responses(&mut linger_body, 1)[0].1, b"GET /linger-body\n");
    let prompt_done = sent.elapsed();
    assert_eq!(read_responses(&mut slow, 1)[0].1, b"GET /slow\n");
    let slow_done = sent.elapsed();
    // The slow request and the lingering code sleep 500 ms each; the rest took some 200 µs
    // a request.
    assert!(slow_done >= Duration::from_millis(500), "{slow_done:?}");
    assert!(prompt_done < Duration::from_millis(250), "{prompt_done:?} (slow {slow_done:?})");
    server.handle().shutdown();
    server.join(Duration::from_secs(5));
}

/// A client that sends requests and never reads its responses stalls no other client of an
/// application that runs one thread at a time: the rest of a held response that its socket
/// cannot take is written by the poller as room appears, not by an app thread that would wait
/// on that client between requests (where no other thread is let in to serve).
#[test]
fn a_client_that_does_not_read_stalls_no_one() {
    let (server, addr) = serve(serialized(Duration::from_micros(100)), 4);
    let deaf = connect(addr);
    rustix::net::sockopt::set_socket_recv_buffer_size(&deaf, 4096).unwrap();
    deaf.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let deaf_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::scope(|scope| {
        let done = deaf_done.clone();
        let sender = scope.spawn(move || {
            // 4 KB responses, until both sockets' buffers are full and the server stops
            // reading this client's requests (the write then times out).
            let mut deaf = deaf;
            let request = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "d".repeat(4000));
            for _ in 0..20_000 {
                if deaf.write_all(request.as_bytes()).is_err() {
                    break;
                }
            }
            done.store(true, Ordering::Relaxed);
            deaf
        });
        // Others keep requests waiting meanwhile (so responses are held), and go on for 300
        // requests each once the deaf client's buffers are full.
        let clients: Vec<_> = (0..4)
            .map(|client| {
                let done = deaf_done.clone();
                scope.spawn(move || {
                    let mut s = connect(addr);
                    let mut after = 0;
                    for i in 0..50_000 {
                        let path = format!("/c{client}/r{i}");
                        let (_, body) = get(&mut s, &path);
                        assert_eq!(body, format!("GET {path}\n").into_bytes());
                        if done.load(Ordering::Relaxed) {
                            after += 1;
                            if after == 300 {
                                return Instant::now();
                            }
                        }
                    }
                    panic!("the deaf client's buffers never filled");
                })
            })
            .collect();
        let finished: Vec<Instant> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        drop(sender.join().unwrap());
        // Each read_responses allows 10 s; an app thread waiting on the deaf client would hold
        // the others up for the I/O timeout (60 s).
        assert_eq!(finished.len(), 4);
    });
    server.handle().shutdown();
    server.join(Duration::from_secs(5));
}

/// A held response that a client's socket cannot take at once, with the client's next
/// requests already read along with the last one (none left in the socket): once the poller
/// has written the rest, it hands the connection to the app threads for the requests it holds,
/// rather than waiting for bytes that will not come. (On a host whose default socket send
/// buffer takes all twenty responses, nothing is left for the poller and the test shows less.)
#[test]
fn a_held_rest_written_by_the_poller_is_followed_by_the_requests_buffered_behind_it() {
    // Over a Unix socket, whose send buffer (some 200 KB) does not grow as TCP's does: twenty
    // 12 KB responses do not fit in it while the client sleeps.
    let dir = wsgi_testkit::TempDir::new("adapter-std-held");
    let path = dir.0.join("s");
    let tcp = Listener::bind_tcp("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let unix = Listener::bind_unix(&path).unwrap();
    let mut config = ServerConfig::default();
    config.threads = 4;
    let server = start(serialized(Duration::from_micros(100)), vec![tcp, unix], config).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Others keep requests waiting, so that responses are held.
        for client in 0..4 {
            let stop = &stop;
            scope.spawn(move || {
                let mut s = connect(addr);
                for i in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let path = format!("/c{client}/r{i}");
                    assert_eq!(get(&mut s, &path).1, format!("GET {path}\n").as_bytes());
                }
            });
        }
        // The others stop when the rounds end, or fail.
        let _stop = OnDrop(|| stop.store(true, Ordering::Relaxed));
        for round in 0..5 {
            let mut c = wsgi_testkit::Client::new(UnixStream::connect(&path).unwrap());
            // Small requests: all twenty arrive in the server's first read.
            let paths: Vec<String> = (0..20).map(|i| format!("/pad/{round}/{i}")).collect();
            let requests: String =
                paths.iter().map(|p| format!("GET {p} HTTP/1.1\r\nHost: x\r\n\r\n")).collect();
            c.send(requests.as_bytes());
            std::thread::sleep(Duration::from_millis(300));
            let reading = Instant::now();
            let got = c.responses(paths.len());
            let took = reading.elapsed();
            for (path, response) in paths.iter().zip(got) {
                assert!(response.body.starts_with(format!("GET {path}\n").as_bytes()));
                assert_eq!(response.body.len(), 12_000);
            }
            // Some 240 KB on a local socket: milliseconds. A connection left waiting for bytes
            // that had already arrived would get no further (the client's 10 s read timeout).
            assert!(took < Duration::from_secs(3), "round {round}: {took:?}");
        }
    });
    server.handle().shutdown();
    server.join(Duration::from_secs(5));
}

/// Runs its closure when dropped, a test's failure included.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}
