//! Serves a Rust "hello" application (no Python) on a current-thread tokio runtime, on
//! 127.0.0.1:8000 or the address given as the first argument, until Ctrl-C.
//!
//! ```text
//! cargo run -p adapter-tokio --example tokio_hello -- 127.0.0.1:8000
//! curl http://127.0.0.1:8000/
//! ```

use adapter_tokio::{Server, ServerConfig};
use wsgi_core::{Job, ResponseHead};

/// Answers every request with a greeting, echoing the request body if there is one.
fn hello(mut job: Job) {
    let mut body = b"Hello from adapter-tokio\n".to_vec();
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("serving on http://{}", listener.local_addr()?);
    let server = Server::new(hello, ServerConfig::default())?;
    let handle = server.handle();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            handle.shutdown();
        }
    });
    server.serve(vec![listener.into()]).await;
    Ok(())
}
