//! adapter-tokio serving Rust closures over real loopback sockets (no Python): keep-alive,
//! pipelining, request and response bodies larger than the socket buffers, `100 Continue`,
//! graceful shutdown, `serve_connection` and Unix sockets.
//!
//! The server runs on a tokio runtime on a background thread; the client is a blocking std
//! socket with read timeouts on the test thread.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use adapter_tokio::{Handle, Listener, Server};
use wsgi_core::{Application, Job};
use wsgi_testkit::*;

// ---------------------------------------------------------------------------------------------
// The server, on a runtime on its own thread

/// How the listener is made.
enum Bind {
    /// `tokio::net::TcpListener::bind`, then `Listener::from`.
    Tokio,
    /// A std listener through `Listener::from_std_tcp`.
    StdTcp,
    /// A std Unix listener at this path through `Listener::from_std_unix`.
    Unix(PathBuf),
}

fn runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    let mut builder = if multi_thread {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().unwrap()
}

struct Running {
    handle: Handle,
    /// The TCP address (`None` for a Unix listener).
    addr: Option<SocketAddr>,
    /// Gets a message when `serve` returns.
    served: mpsc::Receiver<()>,
    thread: JoinHandle<()>,
}

fn start<A: Application>(app: A, bind: Bind, multi_thread: bool) -> Running {
    let (ready_tx, ready) = mpsc::channel();
    let (served_tx, served) = mpsc::channel();
    let thread = thread::spawn(move || {
        runtime(multi_thread).block_on(async move {
            let (listener, addr) = match bind {
                Bind::Tokio => {
                    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = l.local_addr().unwrap();
                    (Listener::from(l), Some(addr))
                }
                Bind::StdTcp => {
                    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                    let addr = l.local_addr().unwrap();
                    (Listener::from_std_tcp(l).unwrap(), Some(addr))
                }
                Bind::Unix(path) => {
                    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
                    (Listener::from_std_unix(l, Some(path)).unwrap(), None)
                }
            };
            let server = Server::new(app, config()).unwrap();
            ready_tx.send((server.handle(), addr)).unwrap();
            server.serve(vec![listener]).await;
            served_tx.send(()).unwrap();
        });
    });
    let (handle, addr) = ready.recv_timeout(READ_TIMEOUT).expect("the server never started");
    Running { handle, addr, served, thread }
}

impl Running {
    fn connect(&self) -> Client<TcpStream> {
        Client::new(TcpStream::connect(self.addr.unwrap()).unwrap())
    }

    /// Shuts the server down and asserts `serve` returns within `STOP_WITHIN`.
    fn stop(self) {
        let stopping = Instant::now();
        self.handle.shutdown();
        self.served.recv_timeout(STOP_WITHIN).expect("serve did not return after shutdown");
        assert!(stopping.elapsed() < STOP_WITHIN, "{:?}", stopping.elapsed());
        self.thread.join().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn keep_alive_answers_each_request_in_order_on_one_connection() {
    let server = start(app, Bind::Tokio, false);
    let mut c = server.connect();
    for path in ["/a", "/b", "/c"] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let r = c.response();
        r.assert_ok(format!("GET {path}\n").as_bytes());
        assert_eq!(r.header("Connection"), None, "{}", r.head);
        assert!(r.header("Date").is_some(), "{}", r.head);
    }
    // A response without a Content-Length is chunked, and the connection stays open.
    c.send(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response();
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"), "{}", r.head);
    r.assert_ok(b"one,two,three");
    c.send(b"GET /d HTTP/1.1\r\nHost: x\r\n\r\n");
    c.response().assert_ok(b"GET /d\n");
    server.stop();
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let server = start(app, Bind::StdTcp, true);
    let mut c = server.connect();
    c.send(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let got = c.responses(3);
    got[0].assert_ok(b"GET /a\n");
    got[1].assert_ok(b"POST /b\nhello");
    got[2].assert_ok(b"one,two,three");
    // Still open afterwards.
    c.send(b"GET /e HTTP/1.1\r\nHost: x\r\n\r\n");
    c.response().assert_ok(b"GET /e\n");
    server.stop();
}

#[test]
fn a_1_mib_upload_with_content_length_is_echoed_intact() {
    let server = start(app, Bind::Tokio, false);
    let mut c = server.connect();
    let data = pattern(1 << 20);
    c.send(
        format!("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", data.len())
            .as_bytes(),
    );
    // The first pieces come slowly, so the app thread finds the socket empty and waits on the
    // connection's task for bytes.
    for (i, piece) in data.chunks(64 << 10).enumerate() {
        if i < 4 {
            thread::sleep(Duration::from_millis(30));
        }
        c.send(piece);
    }
    let mut expected = b"POST /up\n".to_vec();
    expected.extend_from_slice(&data);
    c.response().assert_ok(&expected);
    // The connection is kept for the next request.
    c.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    c.response().assert_ok(b"GET /after\n");
    server.stop();
}

#[test]
fn a_chunked_upload_is_echoed_intact() {
    let server = start(app, Bind::Tokio, true);
    let mut c = server.connect();
    let data = pattern(1 << 20);
    c.send(b"PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    // Chunks of uneven sizes, the first ones slowly.
    for (i, piece) in data.chunks(100_000).enumerate() {
        if i < 4 {
            thread::sleep(Duration::from_millis(30));
        }
        c.send(format!("{:x}\r\n", piece.len()).as_bytes());
        c.send(piece);
        c.send(b"\r\n");
    }
    c.send(b"0\r\n\r\n");
    let mut expected = b"PUT /up\n".to_vec();
    expected.extend_from_slice(&data);
    c.response().assert_ok(&expected);
    c.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    c.response().assert_ok(b"GET /after\n");
    server.stop();
}

#[test]
fn an_8_mib_response_read_slowly_arrives_intact() {
    let (sent_tx, sent) = mpsc::channel();
    let server = start(
        move |job: Job| {
            let big = job.environ.get("PATH_INFO") == Some("/big");
            app(job);
            if big {
                sent_tx.send(()).unwrap();
            }
        },
        Bind::Tokio,
        false,
    );
    let mut c = server.connect();
    c.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    // The socket buffers fill (a few MiB on loopback) and the app thread's writes would block:
    // the rest is queued to the connection's task, and the app waits for the client.
    thread::sleep(Duration::from_millis(300));
    assert!(sent.try_recv().is_err(), "8 MiB went out before the client read anything");
    for _ in 0..8 {
        c.more();
        thread::sleep(Duration::from_millis(20));
    }
    let r = c.response();
    assert_eq!(r.header("Content-Length"), Some(BIG.to_string().as_str()), "{}", r.head);
    r.assert_ok(&pattern(BIG));
    // The same connection serves the next request.
    c.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    c.response().assert_ok(b"GET /after\n");
    server.stop();
}

#[test]
fn expect_100_continue_gets_the_interim_response_when_the_app_reads() {
    let server = start(app, Bind::Tokio, true);
    let mut c = server.connect();
    c.send(b"POST /ask HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let interim = c.response();
    assert_eq!(interim.head, "HTTP/1.1 100 Continue");
    assert!(c.buf.is_empty(), "more than the interim response: {:?}", c.text());
    c.send(b"hello");
    c.response().assert_ok(b"POST /ask\nhello");
    server.stop();
}

#[test]
fn shutdown_lets_the_slow_request_in_flight_finish_with_connection_close() {
    let (started_tx, started) = mpsc::channel();
    let server = start(
        move |job: Job| {
            if job.environ.get("PATH_INFO") == Some("/slow") {
                started_tx.send(()).unwrap();
            }
            app(job);
        },
        Bind::Tokio,
        true,
    );
    // An idle kept-alive connection is closed at shutdown.
    let mut idle = server.connect();
    idle.send(b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n");
    idle.response().assert_ok(b"GET /warm\n");

    let mut c = server.connect();
    c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    started.recv_timeout(READ_TIMEOUT).expect("the request never reached the app");
    let addr = server.addr.unwrap();
    let stopping = Instant::now();
    server.handle.shutdown();
    let r = c.response();
    r.assert_ok(b"GET /slow\n");
    assert_eq!(r.header("Connection"), Some("close"), "{}", r.head);
    c.assert_closed();
    idle.assert_closed();
    server.served.recv_timeout(STOP_WITHIN).expect("serve did not return after shutdown");
    assert!(stopping.elapsed() < STOP_WITHIN, "{:?}", stopping.elapsed());
    server.thread.join().unwrap();
    assert!(TcpStream::connect(addr).is_err(), "still accepting after shutdown");
}

#[test]
fn serve_connection_serves_one_accepted_stream_until_it_closes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let (served_tx, served) = mpsc::channel();
    let thread = thread::spawn(move || {
        runtime(false).block_on(async move {
            let server = Server::new(app, config()).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            server.serve_connection(stream.try_into().unwrap()).await;
            served_tx.send(()).unwrap();
        });
    });
    let mut c = Client::new(TcpStream::connect(addr).unwrap());
    let me = c.s.local_addr().unwrap();
    c.send(
        b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
    );
    let got = c.responses(2);
    got[0].assert_ok(format!("{}:{}", me.ip(), me.port()).as_bytes());
    got[1].assert_ok(b"POST /p\nhi");
    assert!(served.try_recv().is_err(), "serve_connection returned while the client was there");
    c.send(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = c.response();
    r.assert_ok(b"GET /last\n");
    assert_eq!(r.header("Connection"), Some("close"), "{}", r.head);
    c.assert_closed();
    served.recv_timeout(STOP_WITHIN).expect("serve_connection did not return after the close");
    thread.join().unwrap();
}

#[test]
fn a_unix_socket_listener_serves_and_its_path_is_removed() {
    let dir = TempDir::new("adapter-tokio-test");
    let path = dir.0.join("wsgi.sock");
    let server = start(app, Bind::Unix(path.clone()), false);
    let mut c = Client::new(UnixStream::connect(&path).unwrap());
    c.send(b"GET /u HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response();
    r.assert_ok(b"GET /u\n");
    c.send(b"POST /v HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    c.response().assert_ok(b"POST /v\nabc");
    // No peer address on a Unix socket.
    c.send(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n");
    c.response().assert_ok(b":");
    drop(c);
    server.stop();
    // The listener, given its path, removes it when dropped with the runtime.
    assert!(!path.exists(), "the socket file outlived the server");
}

// ---------------------------------------------------------------------------------------------
// Regressions found in review

#[test]
fn bodies_past_their_content_length_are_cut_and_the_app_is_told() {
    let server = start(app, Bind::Tokio, false);
    bodies_past_their_length(&mut server.connect());
    server.stop();
}

#[test]
fn a_bad_request_behind_a_served_one_is_answered_and_its_connection_closed() {
    let server = start(app, Bind::Tokio, false);
    bad_request_behind_a_served_one(&mut server.connect());
    assert_serves(server.connect());
    server.stop();
}

#[test]
fn a_request_half_received_behind_a_served_one_is_finished_by_its_task() {
    let server = start(app, Bind::Tokio, false);
    half_head_behind_a_served_one(&mut server.connect());
    server.stop();
}

#[test]
fn a_response_ended_without_its_head_is_aborted_and_the_server_stays_responsive() {
    let server = start(app, Bind::Tokio, false);
    let mut c = server.connect();
    c.send(b"GET /no-head HTTP/1.1\r\nHost: x\r\n\r\n");
    c.assert_closed();
    drop(c);
    // The aborted connection left nothing spinning: others are served, and the server stops.
    assert_serves(server.connect());
    server.stop();
}

#[test]
fn dropping_a_finished_job_never_waits_for_a_slow_reader() {
    let server = start(app, Bind::Tokio, false);
    let mut c = server.connect();
    c.send(b"GET /stream-drop HTTP/1.1\r\nHost: x\r\n\r\n");
    // Read slowly until the app's `send_end` returned: its last pieces are then still queued.
    let deadline = Instant::now() + DEADLINE;
    while STREAM_STAGE.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "send_end never returned");
        let mut chunk = vec![0; 64 << 10];
        let n = c.s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early");
        thread::sleep(Duration::from_millis(20));
    }
    // Not reading any more: dropping the job must not wait for the client.
    let dropped_by = Instant::now() + STOP_WITHIN;
    while STREAM_STAGE.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < dropped_by, "dropping the job waited for the client");
        thread::sleep(Duration::from_millis(5));
    }
    drop(c);
    server.stop();
}

#[test]
fn an_unread_body_is_drained_only_while_the_client_keeps_sending() {
    let server = start(app, Bind::Tokio, false);
    let mut c = server.connect();
    // 10 of the 1,000 bytes announced, then silence: after the response the server drains the
    // body, and gives up on the client after `io_timeout` (2 s here).
    c.send(b"POST /ignore-body HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789");
    c.response().assert_ok(b"ignored");
    c.assert_closed();
    server.stop();
}

#[test]
fn a_connection_that_comes_after_the_shutdown_gets_a_moment_not_the_head_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (served_tx, served) = mpsc::channel();
    let thread = thread::spawn(move || {
        runtime(false).block_on(async move {
            let server = Server::new(app, config()).unwrap();
            server.handle().shutdown();
            // A blocking std stream, accepted outside tokio: `try_from` makes it non-blocking.
            let (stream, _) = listener.accept().unwrap();
            server.serve_connection(stream.try_into().unwrap()).await;
            served_tx.send(()).unwrap();
        });
    });
    // A client that says nothing: the head timeout is 30 s, the shutdown grace 1 s.
    let mut c = Client::new(TcpStream::connect(addr).unwrap());
    served.recv_timeout(STOP_WITHIN).expect("the late connection was kept past the grace");
    c.assert_closed();
    thread.join().unwrap();
}
