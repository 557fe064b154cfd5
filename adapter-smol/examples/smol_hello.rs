//! Serves a Rust "hello" application (no Python) on a smol executor run on the main thread, on
//! 127.0.0.1:8000 or the address given as the first argument.
//!
//! ```text
//! cargo run -p adapter-smol --example smol_hello -- 127.0.0.1:8000
//! curl http://127.0.0.1:8000/
//! ```

use std::net::TcpListener;
use std::sync::Arc;

use adapter_smol::{Listener, Server, ServerConfig};
use async_executor::Executor;
use wsgi_core::{Job, ResponseHead};

/// Answers every request with a greeting, echoing the request body if there is one.
fn hello(mut job: Job) {
    let mut body = b"Hello from adapter-smol\n".to_vec();
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
    let listener = Listener::from_std_tcp(TcpListener::bind(&addr)?)?;
    println!("serving on http://{addr}");
    let executor = Arc::new(Executor::new());
    let server = Server::new(executor.clone(), hello, ServerConfig::default())?;
    // A real server wires SIGTERM to `server.handle().shutdown()`; this one runs until killed.
    async_io::block_on(executor.run(server.serve(vec![listener])));
    Ok(())
}
