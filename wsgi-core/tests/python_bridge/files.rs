//! `wsgi.file_wrapper`: a real file goes to the driver's zero-copy path when it has one and is
//! iterated when it does not; a file-like object without a descriptor is iterated; the file is
//! closed once either way.

use std::fs;

use crate::harness::{BOTH, Client, Raw, TestApp, Validated, chunked, response};

const FILES: &str = r#"
import os

HERE = os.path.dirname(os.path.abspath(__file__))


class Tracked:
    """A file that records close(), with fileno() and tell() so a server may send it itself."""

    def __init__(self, f):
        self.f = f

    def read(self, n=-1):
        return self.f.read(n)

    def fileno(self):
        return self.f.fileno()

    def tell(self):
        return self.f.tell()

    def close(self):
        event("file close")
        self.f.close()


class TrackedBytes(io.BytesIO):
    def close(self):
        event("bytesio close")
        super().close()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    headers = [("Content-Type", "application/octet-stream")]
    if path == "/bytesio":
        filelike = TrackedBytes(b"0123456789" * 1000)
    else:
        f = open(os.path.join(HERE, "data.bin"), "rb")
        if path == "/file":
            f.seek(100)
        elif path == "/file-range":
            headers.append(("Content-Length", "10"))
        filelike = Tracked(f)
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](filelike, 4096)
"#;

fn data() -> Vec<u8> {
    (0..10_000u32).map(|i| (i * 13 % 256) as u8).collect()
}

fn files_app(name: &str) -> TestApp {
    let app = TestApp::new(name, FILES);
    fs::write(app.dir.join("data.bin"), data()).unwrap();
    app
}

const HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n";

fn blocks(data: &[u8]) -> Vec<&[u8]> {
    data.chunks(4096).collect()
}

#[test]
fn a_real_file_is_sent_zero_copy_when_the_driver_can() {
    let app = files_app("t_files_sendfile");
    let data = data();
    let with_length = response(&format!("{HEAD}Content-Length: 9900\r\n"), &data[100..]);
    // From the file's current position to its end, with the length the bridge now knows.
    let served = app.serve(Raw, &Client::get("/file").with_sendfile());
    served.assert_wire(&with_length);
    served.assert_quiet();
    assert_eq!(served.files, [(100, 9900)]);
    assert_eq!(served.events, ["file close"]);

    // The validator's iterator hides the wrapper: iterated, in the app's block size.
    let served = app.serve(Validated, &Client::get("/file").with_sendfile());
    let chunked_head = format!("{HEAD}Transfer-Encoding: chunked\r\n");
    served.assert_wire(&response(&chunked_head, &chunked(&blocks(&data[100..]))));
    served.assert_quiet();
    assert_eq!(served.files, []);
    assert_eq!(served.events, ["file close"]);
}

#[test]
fn a_real_file_is_iterated_when_the_driver_cannot_send_it() {
    let app = files_app("t_files_iterated");
    let data = data();
    let served = app.serve(Raw, &Client::get("/file"));
    served.assert_wire(&response(&format!("{HEAD}Content-Length: 9900\r\n"), &data[100..]));
    served.assert_quiet();
    assert_eq!(served.events, ["file close"]);

    let served = app.serve(Validated, &Client::get("/file"));
    let chunked_head = format!("{HEAD}Transfer-Encoding: chunked\r\n");
    served.assert_wire(&response(&chunked_head, &chunked(&blocks(&data[100..]))));
    served.assert_quiet();
    assert_eq!(served.events, ["file close"]);
}

#[test]
fn a_file_with_a_content_length_sends_no_more_than_it() {
    let app = files_app("t_files_range");
    let data = data();
    let wanted = response(&format!("{HEAD}Content-Length: 10\r\n"), &data[..10]);
    for v in BOTH {
        for client in [Client::get("/file-range"), Client::get("/file-range").with_sendfile()] {
            let served = app.serve(v, &client);
            served.assert_wire(&wanted);
            served.assert_quiet();
            let zero_copy = v == Raw && client.sendfile;
            assert_eq!(served.files, if zero_copy { vec![(0, 10)] } else { vec![] });
            assert_eq!(served.events, ["file close"]);
        }
    }
}

#[test]
fn a_file_like_without_a_descriptor_is_iterated() {
    let app = files_app("t_files_bytesio");
    let data = b"0123456789".repeat(1000);
    let wanted =
        response(&format!("{HEAD}Transfer-Encoding: chunked\r\n"), &chunked(&blocks(&data)));
    for v in BOTH {
        for client in [Client::get("/bytesio"), Client::get("/bytesio").with_sendfile()] {
            let served = app.serve(v, &client);
            served.assert_wire(&wanted);
            served.assert_quiet();
            assert_eq!(served.files, []);
            assert_eq!(served.events, ["bytesio close"]);
        }
    }
}
