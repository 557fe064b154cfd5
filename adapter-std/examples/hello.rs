//! Serves a Rust "hello" application (no Python) on 127.0.0.1:8000, or the address given as the
//! first argument, until Ctrl-C.
//!
//! ```text
//! cargo run -p adapter-std --example hello -- 127.0.0.1:8000
//! curl http://127.0.0.1:8000/
//! ```

use std::time::Duration;

use adapter_std::{Listener, ServerConfig, start};
use wsgi_core::{Job, ResponseHead};

/// Answers every request with a greeting, echoing the request body if there is one.
fn hello(mut job: Job) {
    let mut body = b"Hello from adapter-std\n".to_vec();
    while let Ok(Some(piece)) = job.io.read_body() {
        body.extend_from_slice(&piece);
    }
    let length = body.len().to_string();
    let head = ResponseHead::from_wsgi(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", length.as_str())],
    );
    let Ok(head) = head else { return job.io.abort() };
    let _ = job.io.send_head(&head).and_then(|()| job.io.send_body(&body));
    let _ = job.io.send_end();
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8000".to_owned());
    let listener = Listener::bind_tcp(&addr)?;
    println!("serving on {}", listener.describe());
    let server = start(hello, vec![listener], ServerConfig::default())?;
    let handle = server.handle();
    // Runs until the process is killed; a real server wires SIGTERM to `handle.shutdown()`.
    std::thread::sleep(Duration::from_secs(u64::MAX / 4));
    handle.shutdown();
    server.join(Duration::from_secs(5));
    Ok(())
}
