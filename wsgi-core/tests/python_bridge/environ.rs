//! The environ dict the application receives: the `wsgi.*` keys, truthful for the options, every
//! CGI value a `str`, nothing from the process environment, a fresh dict per request.

use wsgi_core::python::PyOptions;
use wsgi_core::{Scheme, ServerInfo};

use crate::harness::{BOTH, Client, TestApp, body};

/// Answers with one `key=repr(value)` line per environ entry (the streams and the file
/// wrapper by what they can do), then what the test checks about the whole dict.
const REPORT: &str = r#"
import os


def app(environ, start_response):
    lines = []
    for key in sorted(environ):
        value = environ[key]
        if key == "wsgi.input":
            value = all(hasattr(value, m) for m in ("read", "readline", "readlines", "__iter__"))
        elif key == "wsgi.errors":
            value = all(hasattr(value, m) for m in ("write", "writelines", "flush"))
        elif key == "wsgi.file_wrapper":
            value = callable(value)
        lines.append(f"{key}={value!r}")
    lines.append(f"process environ keys={sorted(set(environ) & set(os.environ))!r}")
    lines.append(f"CGI value types={sorted({type(v).__name__ for k, v in environ.items() if '.' not in k})!r}")
    lines.append(f"mutation seen={'bridge.mutated' in environ!r}")
    environ["bridge.mutated"] = True
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["\n".join(lines).encode("latin-1")]
"#;

fn report(app: &TestApp, v: crate::harness::Variant, client: &Client) -> Vec<String> {
    let served = app.serve(v, client);
    served.assert_quiet();
    let text: String = body(&served.wire).iter().map(|&b| char::from(b)).collect();
    text.lines().map(str::to_owned).collect()
}

#[track_caller]
fn assert_has(lines: &[String], wanted: &[&str]) {
    for w in wanted {
        assert!(lines.iter().any(|l| l == w), "{w:?} not in\n{}", lines.join("\n"));
    }
}

#[test]
fn environ_holds_the_wsgi_keys_and_only_str_cgi_values() {
    let app = TestApp::new("t_environ", REPORT);
    let request = b"POST /caf%C3%A9/x?q=1&r=%20 HTTP/1.1\r\nHost: example.com:8080\r\n\
        Content-Type: text/plain\r\nContent-Length: 5\r\nX-Custom: a\r\nX-Custom: b\r\n\r\nhello";
    for v in BOTH {
        let lines = report(&app, v, &Client::new(&[request]));
        assert_has(
            &lines,
            &[
                "wsgi.version=(1, 0)",
                "wsgi.url_scheme='http'",
                "wsgi.input=True",
                "wsgi.errors=True",
                "wsgi.file_wrapper=True",
                "wsgi.multithread=True",
                "wsgi.multiprocess=False",
                "wsgi.run_once=False",
                "wsgi.input_terminated=True",
                concat!("SERVER_SOFTWARE='wsgi-core/", env!("CARGO_PKG_VERSION"), "'"),
                "REQUEST_METHOD='POST'",
                "SCRIPT_NAME=''",
                "PATH_INFO='/cafÃ©/x'",
                "QUERY_STRING='q=1&r=%20'",
                "SERVER_PROTOCOL='HTTP/1.1'",
                "SERVER_NAME='example.com'",
                "SERVER_PORT='8080'",
                "REMOTE_ADDR='10.0.0.7'",
                "CONTENT_TYPE='text/plain'",
                "CONTENT_LENGTH='5'",
                "HTTP_HOST='example.com:8080'",
                "HTTP_X_CUSTOM='a,b'",
                "process environ keys=[]",
                "CGI value types=['str']",
                "mutation seen=False",
            ],
        );
        for absent in ["PATH=", "HOME=", "HTTP_CONTENT_TYPE=", "HTTP_CONTENT_LENGTH="] {
            assert!(!lines.iter().any(|l| l.starts_with(absent)), "{absent} leaked in");
        }
    }
}

#[test]
fn each_request_gets_a_fresh_environ() {
    let app = TestApp::new("t_environ_fresh", REPORT);
    let get = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    for v in BOTH {
        // Two requests on one connection: the first one's mutation is not in the second's dict.
        let served = app.serve(v, &Client::new(&[get, get]));
        served.assert_quiet();
        assert_eq!(served.text().matches("mutation seen=False").count(), 2);
    }
}

#[test]
fn wsgi_flags_follow_the_options_and_the_scheme_follows_the_server() {
    let options = PyOptions {
        multithread: false,
        multiprocess: true,
        server_software: "bridge-tests/9".to_owned(),
        ..PyOptions::default()
    };
    let app = TestApp::with_options("t_environ_options", REPORT, &options);
    let https = ServerInfo::default().with_scheme(Scheme::Https);
    for v in BOTH {
        let lines = report(&app, v, &Client::get("/").with_server(https.clone()));
        assert_has(
            &lines,
            &[
                "wsgi.multithread=False",
                "wsgi.multiprocess=True",
                "wsgi.run_once=False",
                "wsgi.url_scheme='https'",
                "SERVER_SOFTWARE='bridge-tests/9'",
                "SERVER_PORT='443'",
                "REMOTE_ADDR=''",
            ],
        );
    }
}
