#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The CGI part of the WSGI environ, per PEP 3333 ("the environ dictionary"), RFC 3875 (the CGI
//! variables it borrows) and DESIGN.md. Each request goes in as bytes through a [`Connection`];
//! each row names the rule it checks.

use std::net::SocketAddr;
use std::time::Instant;

use wsgi_core::{
    CgiKey, Config, Connection, EnvKey, Environ, Event, RequestHead, Scheme, ServerInfo,
};

/// Feeds `request` to a fresh connection and returns the head it reports.
fn head(request: &[u8]) -> RequestHead {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), now);
    conn.handle_input(request, now);
    match conn.poll_event() {
        Ok(Some(Event::Request(head))) => head,
        other => panic!("no request head for {:?}: {other:?}", String::from_utf8_lossy(request)),
    }
}

fn environ_with(request: &[u8], server: &ServerInfo) -> Environ {
    Environ::new(head(request), server)
}

fn environ(request: &[u8]) -> Environ {
    environ_with(request, &ServerInfo::default())
}

/// `GET <target> HTTP/1.1` with a Host, so only the target varies.
fn get(target: &[u8]) -> Vec<u8> {
    let mut r = b"GET ".to_vec();
    r.extend_from_slice(target);
    r.extend_from_slice(b" HTTP/1.1\r\nHost: example.com\r\n\r\n");
    r
}

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn path_info_is_percent_decoded_then_latin1() {
    let rows: &[(&[u8], &str)] = &[
        // RFC 3875 §4.1.5: PATH_INFO is the decoded path.
        (b"/", "/"),
        (b"/plain/path", "/plain/path"),
        // PEP 3333 native strings: the decoded bytes are read as latin-1, never as UTF-8.
        (b"/caf%C3%A9", "/caf\u{C3}\u{A9}"),
        // RFC 3986 §2.1: hex digits in an escape are case-insensitive.
        (b"/caf%c3%a9", "/caf\u{C3}\u{A9}"),
        // RFC 3875 §4.1.5: every escape is decoded, `%2F` included (as gunicorn and wsgiref do).
        (b"/a%2Fb", "/a/b"),
        (b"/a%2fb", "/a/b"),
        (b"/a%20b", "/a b"),
        (b"/%41%42", "/AB"),
        // Each escaped byte is one latin-1 character: 0xFF is U+00FF.
        (b"/%FF", "/\u{FF}"),
        // A decoded NUL is a byte like any other (the app sees what the client encoded).
        (b"/a%00b", "/a\u{0}b"),
        // `+` means a space only in form data, never in a path.
        (b"/a+b", "/a+b"),
        // An encoded `?` belongs to the path, not to the query.
        (b"/%3F?q", "/?"),
        // Invalid escapes are kept exactly as sent.
        (b"/%zz", "/%zz"),
        (b"/%4", "/%4"),
        (b"/%4/x", "/%4/x"),
        (b"/%", "/%"),
        (b"/%g1", "/%g1"),
        // A lone `%` before a valid escape: the `%` stays, the escape decodes.
        (b"/%%41", "/%A"),
        // Raw non-ASCII bytes in the target are read as latin-1, one character per byte.
        (b"/caf\xC3\xA9", "/caf\u{C3}\u{A9}"),
        (b"/\xE2\x82\xAC", "/\u{E2}\u{82}\u{AC}"),
        // The query is not part of PATH_INFO.
        (b"/p?x=%41", "/p"),
    ];
    for &(target, want) in rows {
        let env = environ(&get(target));
        assert_eq!(
            env.get("PATH_INFO"),
            Some(want),
            "target {:?}",
            String::from_utf8_lossy(target)
        );
    }
}

#[test]
fn raw_bytes_that_are_not_utf8_are_refused() {
    // RFC 3986 §2 and RFC 9112 §3.2 allow no raw non-ASCII byte in a target; the tokenizer
    // tolerates UTF-8 sequences (above) but answers 400 to anything else rather than guess.
    for target in [&b"/\xE9t\xE9"[..], b"/a\xFF", b"/p?q=\xE9"] {
        let now = Instant::now();
        let mut conn = Connection::new(Config::default(), now);
        conn.handle_input(&get(target), now);
        let err = conn.poll_event().unwrap_err();
        assert_eq!(err.status(), 400, "{target:?}");
    }
}

#[test]
fn query_string_is_raw() {
    let rows: &[(&[u8], &str)] = &[
        // PEP 3333 / RFC 3875 §4.1.7: QUERY_STRING is sent still percent-encoded.
        (b"/p?a=%41&b=c+d", "a=%41&b=c+d"),
        (b"/p?%zz", "%zz"),
        // Only the first `?` separates; the rest is query.
        (b"/p?a?b", "a?b"),
        (b"/p?a=/b/", "a=/b/"),
        // No `?`, or an empty query: "" (PEP 3333: may be empty, but present).
        (b"/p", ""),
        (b"/p?", ""),
        // Raw non-ASCII bytes are latin-1 like every native string.
        (b"/p?q=\xC3\xA9", "q=\u{C3}\u{A9}"),
    ];
    for &(target, want) in rows {
        let env = environ(&get(target));
        assert_eq!(
            env.get("QUERY_STRING"),
            Some(want),
            "target {:?}",
            String::from_utf8_lossy(target)
        );
    }
}

#[test]
fn script_name_and_path_info_split_at_the_root_path() {
    // (configured root, target, SCRIPT_NAME, PATH_INFO)
    let rows: &[(&str, &[u8], &str, &str)] = &[
        // No root: SCRIPT_NAME is "" and PATH_INFO the whole path (PEP 3333).
        ("", b"/x", "", "/x"),
        ("/", b"/x", "", "/x"),
        // Under the root: SCRIPT_NAME is the root, PATH_INFO the rest.
        ("/app", b"/app/x", "/app", "/x"),
        ("/app", b"/app/x/y", "/app", "/x/y"),
        ("/a/b", b"/a/b/c", "/a/b", "/c"),
        // The root itself: PATH_INFO "" (PEP 3333 url_reconstruction gives back `/app`).
        ("/app", b"/app", "/app", ""),
        ("/app", b"/app/", "/app", "/"),
        // The query never takes part in the split.
        ("/app", b"/app?q=1", "/app", ""),
        // A path segment boundary is required: `/apple` is not under `/app`.
        ("/app", b"/apple", "", "/apple"),
        ("/app", b"/other", "", "/other"),
        ("/app", b"/", "", "/"),
        // The configured root is normalised: trailing `/` dropped, leading `/` added.
        ("/app/", b"/app/x", "/app", "/x"),
        ("/app/", b"/app", "/app", ""),
        ("app", b"/app/x", "/app", "/x"),
        // The split is made on the decoded path (what the app sees in PATH_INFO).
        ("/app", b"/ap%70/x", "/app", "/x"),
    ];
    for &(root, target, script, path) in rows {
        let server = ServerInfo::default().with_root_path(root);
        let env = environ_with(&get(target), &server);
        let t = String::from_utf8_lossy(target);
        assert_eq!(env.get("SCRIPT_NAME"), Some(script), "root {root:?}, target {t:?}");
        assert_eq!(env.get("PATH_INFO"), Some(path), "root {root:?}, target {t:?}");
    }
}

#[test]
fn non_ascii_root_path_is_compared_as_latin1() {
    // PEP 3333: SCRIPT_NAME is a native string (bytes read as latin-1). A root `/café` names the
    // URL path `/caf%C3%A9` (RFC 3987 §3.1: UTF-8, then percent-encoded), so it must match that
    // request, and SCRIPT_NAME must hold the same latin-1 text as PATH_INFO would.
    let server = ServerInfo::default().with_root_path("/caf\u{E9}");
    let env = environ_with(&get(b"/caf%C3%A9/x"), &server);
    assert_eq!(env.get("SCRIPT_NAME"), Some("/caf\u{C3}\u{A9}"));
    assert_eq!(env.get("PATH_INFO"), Some("/x"));
}

#[test]
fn root_path_is_normalised() {
    let rows: &[(&str, &str)] = &[
        ("", ""),   // the root
        ("/", ""),  // the root
        ("//", ""), // the root
        ("/app", "/app"),
        ("/app/", "/app"),  // trailing `/` removed
        ("/app//", "/app"), // all trailing `/` removed
        ("app", "/app"),    // leading `/` added
        ("/a/b/", "/a/b"),
    ];
    for &(root, want) in rows {
        assert_eq!(ServerInfo::default().with_root_path(root).root_path(), want, "{root:?}");
    }
}

#[test]
fn absolute_form_target_supplies_host_name_and_port() {
    // RFC 9112 §3.2.2: with an absolute-form target the server ignores Host and uses the
    // target's authority.
    let env = environ(b"GET http://example.com:8080/p?q HTTP/1.1\r\nHost: other.org\r\n\r\n");
    assert_eq!(env.get("SERVER_NAME"), Some("example.com"));
    assert_eq!(env.get("SERVER_PORT"), Some("8080"));
    assert_eq!(env.get("HTTP_HOST"), Some("example.com:8080"));
    assert_eq!(env.get("PATH_INFO"), Some("/p"));
    assert_eq!(env.get("QUERY_STRING"), Some("q"));
    assert_eq!(env.get("RAW_URI"), Some("http://example.com:8080/p?q"));
    // The Host header does not come back as a second HTTP_HOST.
    assert_eq!(env.iter().filter(|(k, _)| *k == "HTTP_HOST").count(), 1);

    // (request, SERVER_NAME, SERVER_PORT, HTTP_HOST, PATH_INFO)
    let rows: &[(&[u8], &str, &str, &str, &str)] = &[
        // No port in the authority: the scheme's default (RFC 9110 §4.2.1).
        (
            b"GET http://example.com/p HTTP/1.1\r\nHost: x\r\n\r\n",
            "example.com",
            "80",
            "example.com",
            "/p",
        ),
        // An empty path in absolute form means `/` (RFC 9112 §3.2.2).
        (
            b"GET http://example.com HTTP/1.1\r\nHost: x\r\n\r\n",
            "example.com",
            "80",
            "example.com",
            "/",
        ),
        (
            b"GET http://example.com?a HTTP/1.1\r\nHost: x\r\n\r\n",
            "example.com",
            "80",
            "example.com",
            "/",
        ),
        // The scheme name is case-insensitive (RFC 3986 §3.1).
        (
            b"GET HTTP://example.com:81/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "example.com",
            "81",
            "example.com:81",
            "/",
        ),
        // HTTP/1.0 may send absolute form without Host.
        (b"GET http://h.test:9/a%20b HTTP/1.0\r\n\r\n", "h.test", "9", "h.test:9", "/a b"),
    ];
    for &(request, name, port, host, path) in rows {
        let env = environ(request);
        let r = String::from_utf8_lossy(request);
        assert_eq!(env.get("SERVER_NAME"), Some(name), "{r:?}");
        assert_eq!(env.get("SERVER_PORT"), Some(port), "{r:?}");
        assert_eq!(env.get("HTTP_HOST"), Some(host), "{r:?}");
        assert_eq!(env.get("PATH_INFO"), Some(path), "{r:?}");
    }
}

#[test]
fn asterisk_form_options() {
    // RFC 9112 §3.2.4: `OPTIONS *` targets the server as a whole; PATH_INFO carries the `*`.
    let env = environ(b"OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(env.get("REQUEST_METHOD"), Some("OPTIONS"));
    assert_eq!(env.get("PATH_INFO"), Some("*"));
    assert_eq!(env.get("SCRIPT_NAME"), Some(""));
    assert_eq!(env.get("QUERY_STRING"), Some(""));
    assert_eq!(env.get("RAW_URI"), Some("*"));
    // A root path does not apply to `*`.
    let server = ServerInfo::default().with_root_path("/app");
    let env = environ_with(b"OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n", &server);
    assert_eq!(env.get("PATH_INFO"), Some("*"));
    assert_eq!(env.get("SCRIPT_NAME"), Some(""));
}

#[test]
fn server_name_and_port() {
    let listener = ServerInfo::new(addr("10.1.2.3:8000"), None);
    let listener6 = ServerInfo::new(addr("[::1]:8443"), None);
    let https = ServerInfo::default().with_scheme(Scheme::Https);
    let https_unix = ServerInfo::new(None, None).with_scheme(Scheme::Https);
    let unix = ServerInfo::new(None, None);
    // (request, server, SERVER_NAME, SERVER_PORT)
    let rows: &[(&[u8], &ServerInfo, &str, &str)] = &[
        // PEP 3333 (url_reconstruction) and RFC 3875 §4.1.14: from Host when sent.
        (b"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", &listener, "example.com", "8080"),
        // A Host without a port means the scheme's default port (RFC 9110 §4.2).
        (b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", &listener, "example.com", "80"),
        (b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", &https, "example.com", "443"),
        (b"GET / HTTP/1.1\r\nHost: example.com:8443\r\n\r\n", &https, "example.com", "8443"),
        // An empty port (RFC 3986 §3.2.3 allows `host:`) is the default port too.
        (b"GET / HTTP/1.1\r\nHost: example.com:\r\n\r\n", &listener, "example.com", "80"),
        // IP literals: RFC 3875 §4.1.14 keeps IPv6 in brackets; the port follows the `]`.
        (b"GET / HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n", &listener, "[::1]", "8000"),
        (b"GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n", &listener, "[::1]", "80"),
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1:5000\r\n\r\n", &listener, "127.0.0.1", "5000"),
        // No Host (HTTP/1.0): the listening address.
        (b"GET / HTTP/1.0\r\n\r\n", &listener, "10.1.2.3", "8000"),
        // An empty Host (RFC 9112 §3.2: sent when there is no authority): the listening address.
        (b"GET / HTTP/1.1\r\nHost: \r\n\r\n", &listener, "10.1.2.3", "8000"),
        // No Host and no listening address (Unix socket): "localhost" and the default port.
        (b"GET / HTTP/1.0\r\n\r\n", &unix, "localhost", "80"),
        (b"GET / HTTP/1.0\r\n\r\n", &https_unix, "localhost", "443"),
        // HTTP/1.0 with a Host still uses it.
        (b"GET / HTTP/1.0\r\nHost: h.test:81\r\n\r\n", &unix, "h.test", "81"),
    ];
    for &(request, server, name, port) in rows {
        let env = environ_with(request, server);
        let r = String::from_utf8_lossy(request);
        assert_eq!(env.get("SERVER_NAME"), Some(name), "{r:?} on {server:?}");
        assert_eq!(env.get("SERVER_PORT"), Some(port), "{r:?} on {server:?}");
    }
    // RFC 3875 §4.1.14: an IPv6 listening address is named in brackets, as in a Host, so that
    // PEP 3333's url_reconstruction (SERVER_NAME + ':' + SERVER_PORT) gives a valid URL.
    let env = environ_with(b"GET / HTTP/1.0\r\n\r\n", &listener6);
    assert_eq!(env.get("SERVER_NAME"), Some("[::1]"));
    assert_eq!(env.get("SERVER_PORT"), Some("8443"));
}

#[test]
fn remote_addr_and_port_come_from_the_peer() {
    let request = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    // (peer, REMOTE_ADDR, REMOTE_PORT)
    let rows: &[(Option<SocketAddr>, &str, Option<&str>)] = &[
        // RFC 3875 §4.1.8: the client's address.
        (addr("192.0.2.7:54321"), "192.0.2.7", Some("54321")),
        // RFC 3875 §4.1.8: an IPv6 address is written without brackets.
        (addr("[2001:db8::1]:443"), "2001:db8::1", Some("443")),
        (addr("[::1]:1"), "::1", Some("1")),
        // No peer address (Unix socket): REMOTE_ADDR "" (PEP 3333 keeps it a string), no port.
        (None, "", None),
    ];
    for &(peer, ip, port) in rows {
        let server = ServerInfo::new(addr("127.0.0.1:80"), None).with_peer(peer);
        let env = environ_with(request, &server);
        assert_eq!(env.get("REMOTE_ADDR"), Some(ip), "{peer:?}");
        assert_eq!(env.get("REMOTE_PORT"), port, "{peer:?}");
    }
    // ServerInfo::new takes the peer too.
    let env = environ_with(request, &ServerInfo::new(None, addr("198.51.100.2:7")));
    assert_eq!(env.get("REMOTE_ADDR"), Some("198.51.100.2"));
    assert_eq!(env.get("REMOTE_PORT"), Some("7"));
    // A listener's ServerInfo made into a connection's with `with_addresses` (as drivers do
    // per accepted connection) gives the environ a ServerInfo built whole for it gives.
    let listener = ServerInfo::new(addr("127.0.0.1:80"), None)
        .with_scheme(Scheme::Https)
        .with_root_path("/app");
    for (local, peer) in [
        (addr("10.0.0.1:8443"), addr("192.0.2.7:54321")),
        (addr("[::1]:8443"), addr("[2001:db8::1]:5")),
        (None, None),
    ] {
        let request = b"GET /app/x HTTP/1.0\r\n\r\n";
        let whole = ServerInfo::new(local, peer).with_scheme(Scheme::Https).with_root_path("/app");
        let made = listener.clone().with_addresses(local, peer);
        let entries = |s: &ServerInfo| {
            let env = environ_with(request, s);
            env.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<Vec<_>>()
        };
        assert_eq!(entries(&made), entries(&whole), "{local:?} {peer:?}");
        let env = environ_with(request, &made);
        assert_eq!(env.get("SCRIPT_NAME"), Some("/app"));
        assert_eq!(env.scheme(), Scheme::Https);
    }
}

#[test]
fn content_type_and_length_only_when_sent() {
    // (request, CONTENT_TYPE, CONTENT_LENGTH)
    let rows: &[(&[u8], Option<&str>, Option<&str>)] = &[
        // PEP 3333: CONTENT_TYPE and CONTENT_LENGTH "may be empty or absent": absent if not sent.
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", None, None),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\nabc",
            Some("text/plain; charset=utf-8"),
            Some("3"),
        ),
        // A sent `Content-Length: 0` is present.
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", None, Some("0")),
        // Content-Type without a body.
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Type: a/b\r\n\r\n", Some("a/b"), None),
        // Equal repeated Content-Lengths (RFC 9112 §6.3) give one value.
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab", None, Some("2")),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2, 2\r\n\r\nab", None, Some("2")),
        // Field names are case-insensitive (RFC 9110 §5.1).
        (b"POST / HTTP/1.1\r\nHost: h\r\ncontent-type: x/y\r\ncontent-length: 1\r\n\r\na", Some("x/y"), Some("1")),
        // A chunked body has no length to report: no CONTENT_LENGTH (wsgi.input_terminated).
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: a/b\r\nTransfer-Encoding: chunked\r\n\r\n",
            Some("a/b"),
            None,
        ),
    ];
    for &(request, ctype, clen) in rows {
        let env = environ(request);
        let r = String::from_utf8_lossy(request);
        assert_eq!(env.get("CONTENT_TYPE"), ctype, "{r:?}");
        assert_eq!(env.get("CONTENT_LENGTH"), clen, "{r:?}");
        assert_eq!(env.content_length(), clen.map(|n| n.parse().unwrap()), "{r:?}");
        // PEP 3333 / RFC 3875 §4.1.18: never duplicated as HTTP_ variables.
        assert_eq!(env.get("HTTP_CONTENT_TYPE"), None, "{r:?}");
        assert_eq!(env.get("HTTP_CONTENT_LENGTH"), None, "{r:?}");
    }
    let env = environ(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(env.get("HTTP_TRANSFER_ENCODING"), Some("chunked"));
}

#[test]
fn http_variables_from_header_fields() {
    // (header lines, key, value)
    let rows: &[(&[u8], &str, Option<&str>)] = &[
        // RFC 3875 §4.1.18: upper case, `-` becomes `_`, prefixed with HTTP_.
        (b"X-Custom-Thing: v\r\n", "HTTP_X_CUSTOM_THING", Some("v")),
        (b"accept-language: fr\r\n", "HTTP_ACCEPT_LANGUAGE", Some("fr")),
        (b"Host: example.com\r\n", "HTTP_HOST", Some("example.com")),
        (b"Host: [::1]:8000\r\n", "HTTP_HOST", Some("[::1]:8000")),
        // The value is sent without its surrounding whitespace (RFC 9112 §5.1).
        (b"X-A:   padded \t \r\n", "HTTP_X_A", Some("padded")),
        (b"X-Empty:\r\n", "HTTP_X_EMPTY", Some("")),
        // Repeats are joined with "," in the order sent (RFC 9110 §5.3), any name case.
        (b"Accept: a/b\r\nAccept: c/d\r\n", "HTTP_ACCEPT", Some("a/b,c/d")),
        (b"X-A: 1\r\nx-a: 2\r\nX-a: 3\r\n", "HTTP_X_A", Some("1,2,3")),
        // Repeats are joined even with another field between them.
        (b"X-A: 1\r\nX-B: b\r\nX-A: 2\r\n", "HTTP_X_A", Some("1,2")),
        // Cookie repeats are joined with "; " (RFC 6265 §5.4: one Cookie field, "; " separated).
        (b"Cookie: a=1\r\nCookie: b=2\r\n", "HTTP_COOKIE", Some("a=1; b=2")),
        (b"cookie: a=1\r\nCOOKIE: b=2\r\n", "HTTP_COOKIE", Some("a=1; b=2")),
        // Names containing `_` are dropped: `X_Forwarded_For` must not pass as X-Forwarded-For.
        (b"X_Forwarded_For: 6.6.6.6\r\n", "HTTP_X_FORWARDED_FOR", None),
        (b"X-Forwarded-For: 1.2.3.4\r\n", "HTTP_X_FORWARDED_FOR", Some("1.2.3.4")),
        (
            b"X-Forwarded-For: 1.2.3.4\r\nX_Forwarded_For: 6.6.6.6\r\n",
            "HTTP_X_FORWARDED_FOR",
            Some("1.2.3.4"),
        ),
        (
            b"X_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.2.3.4\r\n",
            "HTTP_X_FORWARDED_FOR",
            Some("1.2.3.4"),
        ),
        (b"Content_Type: evil\r\n", "CONTENT_TYPE", None),
        // Non-ASCII bytes (obs-text, RFC 9110 §5.5) are kept, read as latin-1.
        (b"X-Name: caf\xE9\r\n", "HTTP_X_NAME", Some("caf\u{E9}")),
        (b"X-Name: caf\xC3\xA9\r\n", "HTTP_X_NAME", Some("caf\u{C3}\u{A9}")),
        (b"Cookie: n=\xFF\r\n", "HTTP_COOKIE", Some("n=\u{FF}")),
        // Values are not percent-decoded.
        (b"Referer: http://a/%41\r\n", "HTTP_REFERER", Some("http://a/%41")),
    ];
    for &(fields, key, want) in rows {
        let mut request = b"GET / HTTP/1.0\r\n".to_vec();
        request.extend_from_slice(fields);
        request.extend_from_slice(b"\r\n");
        let env = environ(&request);
        assert_eq!(env.get(key), want, "{:?}", String::from_utf8_lossy(fields));
    }
    // No `_` name leaves any trace in the environ.
    let env = environ(b"GET / HTTP/1.0\r\nX_Forwarded_For: 6.6.6.6\r\nA_B: c\r\n\r\n");
    assert!(env.iter().all(|(k, v)| !k.starts_with("HTTP_") && v != "6.6.6.6"), "{env:?}");
}

#[test]
fn protocol_method_and_raw_uri() {
    // (request, REQUEST_METHOD, SERVER_PROTOCOL, RAW_URI and REQUEST_URI)
    let rows: &[(&[u8], &str, &str, &str)] = &[
        // PEP 3333: REQUEST_METHOD always present; RFC 9110 §9.1: methods are case-sensitive.
        (b"GET /a%20b?c=%41 HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "HTTP/1.1", "/a%20b?c=%41"),
        (b"POST / HTTP/1.0\r\n\r\n", "POST", "HTTP/1.0", "/"),
        (b"DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n", "DELETE", "HTTP/1.1", "/x"),
        (b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", "HEAD", "HTTP/1.1", "/"),
        (b"PURGE /c HTTP/1.1\r\nHost: h\r\n\r\n", "PURGE", "HTTP/1.1", "/c"),
        (b"get / HTTP/1.1\r\nHost: h\r\n\r\n", "get", "HTTP/1.1", "/"),
        // RAW_URI/REQUEST_URI: the target exactly as sent (gunicorn, uWSGI), raw bytes latin-1.
        (
            b"GET /caf\xC3\xA9?x HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET",
            "HTTP/1.1",
            "/caf\u{C3}\u{A9}?x",
        ),
        (b"GET //double//slash HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "HTTP/1.1", "//double//slash"),
    ];
    for &(request, method, protocol, uri) in rows {
        let env = environ(request);
        let r = String::from_utf8_lossy(request);
        assert_eq!(env.get("REQUEST_METHOD"), Some(method), "{r:?}");
        assert_eq!(env.get("SERVER_PROTOCOL"), Some(protocol), "{r:?}");
        assert_eq!(env.get("RAW_URI"), Some(uri), "{r:?}");
        assert_eq!(env.get("REQUEST_URI"), Some(uri), "{r:?}");
    }
}

#[test]
fn iteration_order_and_len() {
    let server =
        ServerInfo::new(addr("127.0.0.1:8000"), addr("192.0.2.1:5555")).with_root_path("/app");
    let env = environ_with(
        b"POST /app/p%20q?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Type: text/plain\r\n\
          Content-Length: 2\r\nCookie: a=1\r\nX_Bad: no\r\nAccept: */*\r\nCookie: b=2\r\n\r\nhi",
        &server,
    );
    let got: Vec<(&str, &str)> = env.iter().collect();
    let want = [
        ("REQUEST_METHOD", "POST"),
        ("PATH_INFO", "/p q"),
        ("SCRIPT_NAME", "/app"),
        ("QUERY_STRING", "x=1"),
        ("RAW_URI", "/app/p%20q?x=1"),
        ("REQUEST_URI", "/app/p%20q?x=1"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("SERVER_NAME", "example.com"),
        ("SERVER_PORT", "80"),
        ("REMOTE_ADDR", "192.0.2.1"),
        ("REMOTE_PORT", "5555"),
        ("CONTENT_LENGTH", "2"),
        // Then the header-derived entries in the order their fields were first sent.
        ("HTTP_HOST", "example.com"),
        ("CONTENT_TYPE", "text/plain"),
        ("HTTP_COOKIE", "a=1; b=2"),
        ("HTTP_ACCEPT", "*/*"),
    ];
    assert_eq!(got, want);
    assert_eq!(env.len(), want.len());
    assert_eq!(env.iter().len(), want.len());
    assert!(!env.is_empty());
    // Each key appears once (a dict): joins never leave a second entry behind.
    let mut keys: Vec<&str> = env.iter().map(|(k, _)| k).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), env.len());

    // The smallest environ: a Unix-socket HTTP/1.0 GET without fields.
    let env = environ_with(b"GET / HTTP/1.0\r\n\r\n", &ServerInfo::new(None, None));
    let got: Vec<(&str, &str)> = env.iter().collect();
    assert_eq!(
        got,
        [
            ("REQUEST_METHOD", "GET"),
            ("PATH_INFO", "/"),
            ("SCRIPT_NAME", ""),
            ("QUERY_STRING", ""),
            ("RAW_URI", "/"),
            ("REQUEST_URI", "/"),
            ("SERVER_PROTOCOL", "HTTP/1.0"),
            ("SERVER_NAME", "localhost"),
            ("SERVER_PORT", "80"),
            ("REMOTE_ADDR", ""),
        ]
    );
    assert_eq!(env.len(), 10);
}

#[test]
fn entries_have_typed_keys() {
    let server = ServerInfo::new(None, addr("[::1]:9"));
    let env = environ_with(
        b"PUT /x HTTP/1.1\r\nHost: h:1\r\nContent-Type: a/b\r\nContent-Length: 1\r\nX-Y: z\r\n\r\n!",
        &server,
    );
    let got: Vec<(EnvKey<'_>, &str)> = env.entries().collect();
    let want = [
        (EnvKey::Cgi(CgiKey::RequestMethod), "PUT"),
        (EnvKey::Cgi(CgiKey::PathInfo), "/x"),
        (EnvKey::Cgi(CgiKey::ScriptName), ""),
        (EnvKey::Cgi(CgiKey::QueryString), ""),
        (EnvKey::Cgi(CgiKey::RawUri), "/x"),
        (EnvKey::Cgi(CgiKey::RequestUri), "/x"),
        (EnvKey::Cgi(CgiKey::ServerProtocol), "HTTP/1.1"),
        (EnvKey::Cgi(CgiKey::ServerName), "h"),
        (EnvKey::Cgi(CgiKey::ServerPort), "1"),
        (EnvKey::Cgi(CgiKey::RemoteAddr), "::1"),
        (EnvKey::Cgi(CgiKey::RemotePort), "9"),
        (EnvKey::Cgi(CgiKey::ContentLength), "1"),
        (EnvKey::Http("HTTP_HOST"), "h:1"),
        (EnvKey::Cgi(CgiKey::ContentType), "a/b"),
        (EnvKey::Http("HTTP_X_Y"), "z"),
    ];
    assert_eq!(got, want);
    assert_eq!(env.entries().len(), env.len());
    // The typed keys name the same strings `iter()` gives.
    for ((key, v1), (name, v2)) in env.entries().zip(env.iter()) {
        assert_eq!(key.as_str(), name);
        assert_eq!(v1, v2);
    }
    // Every CgiKey names its PEP 3333 / CGI variable.
    let names = [
        (CgiKey::RequestMethod, "REQUEST_METHOD"),
        (CgiKey::ScriptName, "SCRIPT_NAME"),
        (CgiKey::PathInfo, "PATH_INFO"),
        (CgiKey::QueryString, "QUERY_STRING"),
        (CgiKey::ContentType, "CONTENT_TYPE"),
        (CgiKey::ContentLength, "CONTENT_LENGTH"),
        (CgiKey::ServerName, "SERVER_NAME"),
        (CgiKey::ServerPort, "SERVER_PORT"),
        (CgiKey::ServerProtocol, "SERVER_PROTOCOL"),
        (CgiKey::RemoteAddr, "REMOTE_ADDR"),
        (CgiKey::RemotePort, "REMOTE_PORT"),
        (CgiKey::RawUri, "RAW_URI"),
        (CgiKey::RequestUri, "REQUEST_URI"),
    ];
    for (key, name) in names {
        assert_eq!(key.as_str(), name);
        assert_eq!(EnvKey::Cgi(key).as_str(), name);
    }
}

#[test]
fn scheme_names() {
    // PEP 3333 wsgi.url_scheme: "http" or "https"; http by default.
    assert_eq!(Scheme::Http.as_str(), "http");
    assert_eq!(Scheme::Https.as_str(), "https");
    assert_eq!(ServerInfo::default().scheme(), Scheme::Http);
    assert_eq!(ServerInfo::default().with_scheme(Scheme::Https).scheme(), Scheme::Https);
}

// ---------------------------------------------------------------------------------------------
// Proxy headers from trusted peers (Forwarded, X-Forwarded-*) and the PROXY protocol
// ---------------------------------------------------------------------------------------------

/// What a row expects of the environ: REMOTE_ADDR, REMOTE_PORT, wsgi.url_scheme, HTTP_HOST,
/// SERVER_NAME, SERVER_PORT, SCRIPT_NAME, PATH_INFO.
type Proxied<'a> =
    (&'a str, Option<&'a str>, Scheme, Option<&'a str>, &'a str, &'a str, &'a str, &'a str);

fn proxied_view(env: &Environ) -> Proxied<'_> {
    (
        env.get("REMOTE_ADDR").unwrap(),
        env.get("REMOTE_PORT"),
        env.scheme(),
        env.get("HTTP_HOST"),
        env.get("SERVER_NAME").unwrap(),
        env.get("SERVER_PORT").unwrap(),
        env.get("SCRIPT_NAME").unwrap(),
        env.get("PATH_INFO").unwrap(),
    )
}

#[test]
fn proxy_headers_from_trusted_peers() {
    use Scheme::{Http, Https};
    use std::sync::Arc;
    use wsgi_core::{ForwardedHeader, TrustedProxies};
    // Every header believed: what each does.
    let trusted = Some(Arc::new(
        TrustedProxies::parse("127.0.0.1,10.0.0.0/8").unwrap().believe(&ForwardedHeader::ALL),
    ));
    let via = |peer: &str| {
        ServerInfo::new(addr("127.0.0.1:8000"), addr(peer)).with_trusted_proxies(trusted.clone())
    };
    let req =
        |fields: &str| format!("GET /x HTTP/1.1\r\nHost: app.test\r\n{fields}\r\n").into_bytes();
    // No proxy header: nothing changes.
    let plain: Proxied<'_> =
        ("127.0.0.1", Some("5000"), Http, Some("app.test"), "app.test", "80", "", "/x");
    let rows: &[(&str, &str, Proxied<'_>)] = &[
        ("127.0.0.1:5000", "", plain),
        // nginx: `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for` and friends.
        (
            "127.0.0.1:5000",
            "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: www.example.com\r\n",
            (
                "203.0.113.9",
                None,
                Https,
                Some("www.example.com"),
                "www.example.com",
                "443",
                "",
                "/x",
            ),
        ),
        // The client's own additions on the left are not believed: the last untrusted hop is.
        (
            "127.0.0.1:5000",
            "X-Forwarded-For: 6.6.6.6, 203.0.113.9, 10.0.0.5\r\n",
            ("203.0.113.9", None, Http, Some("app.test"), "app.test", "80", "", "/x"),
        ),
        // Repeated X-Forwarded-For lines are one list.
        (
            "127.0.0.1:5000",
            "X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 10.0.0.7\r\n",
            ("198.51.100.1", None, Http, Some("app.test"), "app.test", "80", "", "/x"),
        ),
        // The proto and host the nearest proxy wrote (the last element); a port header.
        (
            "127.0.0.1:5000",
            "X-Forwarded-Proto: http, https\r\nX-Forwarded-Host: evil.test, shop.test:8443\r\n",
            (
                "127.0.0.1",
                Some("5000"),
                Https,
                Some("shop.test:8443"),
                "shop.test",
                "8443",
                "",
                "/x",
            ),
        ),
        (
            "127.0.0.1:5000",
            "X-Forwarded-Port: 8080\r\n",
            ("127.0.0.1", Some("5000"), Http, Some("app.test:8080"), "app.test", "8080", "", "/x"),
        ),
        // A prefix escaping a control byte, and a host without a name, are ignored.
        (
            "127.0.0.1:5000",
            "X-Forwarded-Prefix: /evil%00x\r\nX-Forwarded-Host: :80\r\n",
            ("127.0.0.1", Some("5000"), Http, Some("app.test"), "app.test", "80", "", "/x"),
        ),
        // A prefix the proxy stripped becomes SCRIPT_NAME (percent-decoded, trailing / dropped).
        (
            "127.0.0.1:5000",
            "X-Forwarded-Prefix: /caf%C3%A9/\r\n",
            ("127.0.0.1", Some("5000"), Http, Some("app.test"), "app.test", "80", "/cafÃ©", "/x"),
        ),
        // Invalid values are ignored one by one.
        (
            "127.0.0.1:5000",
            "X-Forwarded-For: not-an-ip\r\nX-Forwarded-Proto: gopher\r\nX-Forwarded-Host: a b\r\nX-Forwarded-Port: 99999\r\nX-Forwarded-Prefix: relative\r\n",
            ("127.0.0.1", Some("5000"), Http, Some("app.test"), "app.test", "80", "", "/x"),
        ),
        // RFC 7239 §7.1 and §4: Forwarded, with an IPv6 node and a port.
        (
            "10.1.1.1:5000",
            "Forwarded: for=\"[2001:db8:cafe::17]:4711\";proto=https;host=www.example.com\r\n",
            (
                "2001:db8:cafe::17",
                Some("4711"),
                Https,
                Some("www.example.com"),
                "www.example.com",
                "443",
                "",
                "/x",
            ),
        ),
        // Forwarded takes precedence over X-Forwarded-*; the hop's own proto/host are used.
        (
            "127.0.0.1:5000",
            "X-Forwarded-For: 198.51.100.1\r\nForwarded: for=192.0.2.43;proto=https, for=10.0.0.9;proto=http\r\n",
            ("192.0.2.43", None, Https, Some("app.test"), "app.test", "443", "", "/x"),
        ),
        // An obfuscated client: the address stays the proxy's.
        (
            "127.0.0.1:5000",
            "Forwarded: for=_hidden;proto=https\r\n",
            ("127.0.0.1", Some("5000"), Https, Some("app.test"), "app.test", "443", "", "/x"),
        ),
        // A malformed Forwarded is ignored: X-Forwarded-For still counts.
        (
            "127.0.0.1:5000",
            "Forwarded: for=192.0.2.1;for=192.0.2.2\r\nX-Forwarded-For: 198.51.100.1\r\n",
            ("198.51.100.1", None, Http, Some("app.test"), "app.test", "80", "", "/x"),
        ),
        // From an untrusted peer every proxy header is ignored.
        (
            "192.0.2.200:5000",
            "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nForwarded: for=1.2.3.4\r\nX-Forwarded-Prefix: /p\r\n",
            ("192.0.2.200", Some("5000"), Http, Some("app.test"), "app.test", "80", "", "/x"),
        ),
    ];
    for (peer, fields, want) in rows {
        let env = environ_with(&req(fields), &via(peer));
        assert_eq!(proxied_view(&env), *want, "{peer} {fields:?}");
        // The headers themselves stay in the environ for the application.
        if fields.contains("X-Forwarded-For") {
            assert!(env.get("HTTP_X_FORWARDED_FOR").is_some());
        }
    }
    // Without trusted proxies (the default), even a loopback peer's headers are ignored.
    let untrusting = ServerInfo::new(addr("127.0.0.1:8000"), addr("127.0.0.1:5000"));
    let env = environ_with(&req("X-Forwarded-For: 203.0.113.9\r\n"), &untrusting);
    assert_eq!(env.get("REMOTE_ADDR"), Some("127.0.0.1"));
    // A Unix-socket peer is trusted when any proxy is; REMOTE_PORT appears with a port.
    let unix = ServerInfo::new(None, None).with_trusted_proxies(trusted.clone());
    let env = environ_with(&req("Forwarded: for=\"192.0.2.1:99\"\r\n"), &unix);
    assert_eq!((env.get("REMOTE_ADDR"), env.get("REMOTE_PORT")), (Some("192.0.2.1"), Some("99")));
    // CGI variables stay ahead of the HTTP_ ones.
    let keys: Vec<_> = env.entries().map(|(k, _)| matches!(k, EnvKey::Cgi(_))).collect();
    assert!(keys.windows(2).all(|w| w[0] || !w[1]), "{keys:?}");
    // An HTTP/1.0 request without Host gets HTTP_HOST from X-Forwarded-Host.
    let env =
        environ_with(b"GET / HTTP/1.0\r\nX-Forwarded-Host: h.test:81\r\n\r\n", &via("127.0.0.1:1"));
    assert_eq!((env.get("HTTP_HOST"), env.get("SERVER_PORT")), (Some("h.test:81"), Some("81")));
    // With only the scheme forwarded, a Host without a port meant that scheme's default port;
    // an empty port (`host:`) is no port, as it is without proxies; a port the client sent
    // stays.
    for (host, port) in [("app.test", "443"), ("app.test:", "443"), ("app.test:8000", "8000")] {
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-Proto: https\r\n\r\n");
        let env = environ_with(request.as_bytes(), &via("127.0.0.1:1"));
        assert_eq!((env.scheme(), env.get("SERVER_PORT")), (Https, Some(port)), "{host}");
    }
}

#[test]
fn proxy_protocol_header_sets_the_addresses() {
    let now = Instant::now();
    let mut config = Config::default();
    config.proxy_protocol = true;
    let mut conn = Connection::new(config, now);
    conn.handle_input(
        b"PROXY TCP6 2001:db8::5 2001:db8::1 40000 443\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        now,
    );
    let Ok(Some(Event::Request(head))) = conn.poll_event() else { panic!() };
    let server = ServerInfo::new(addr("127.0.0.1:8000"), addr("127.0.0.1:5000"))
        .with_proxy_header(conn.proxy_header().unwrap());
    let env = Environ::new(head, &server);
    assert_eq!(env.get("REMOTE_ADDR"), Some("2001:db8::5"));
    assert_eq!(env.get("REMOTE_PORT"), Some("40000"));
    assert_eq!(env.scheme(), Scheme::Http);
    // Without a Host, SERVER_NAME comes from the destination the proxy was reached at.
    let mut conn = Connection::new(conn.config().clone(), now);
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x14".to_vec();
    v2.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 2, 0x9c, 0x40, 0x01, 0xbb]);
    v2.extend_from_slice(&[0x20, 0, 5, 1, 0, 0, 0, 0]);
    v2.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
    conn.handle_input(&v2, now);
    let Ok(Some(Event::Request(head))) = conn.poll_event() else { panic!() };
    let server = ServerInfo::new(addr("127.0.0.1:8000"), None)
        .with_proxy_header(conn.proxy_header().unwrap());
    let env = Environ::new(head, &server);
    assert_eq!(env.get("REMOTE_ADDR"), Some("192.0.2.1"));
    assert_eq!(env.get("SERVER_NAME"), Some("198.51.100.2"));
    assert_eq!(env.get("SERVER_PORT"), Some("443"));
    assert_eq!(env.scheme(), Scheme::Https);
}

#[test]
fn only_the_believed_proxy_headers_count() {
    use std::sync::Arc;
    use wsgi_core::{ForwardedHeader, TrustedProxies};
    let request = b"GET /x HTTP/1.1\r\nHost: app.test\r\n\
        Forwarded: for=1.2.3.4;proto=https;host=evil.example\r\n\
        X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\
        X-Forwarded-Host: evil.example\r\nX-Forwarded-Port: 1\r\nX-Forwarded-Prefix: /evil\r\n\r\n";
    let via = |trusted: TrustedProxies| {
        ServerInfo::new(addr("127.0.0.1:8000"), addr("127.0.0.1:5000"))
            .with_trusted_proxies(Some(Arc::new(trusted)))
    };
    // The default: X-Forwarded-For and -Proto, which nginx's usual configuration sets; a
    // client's Forwarded, -Host, -Port and -Prefix pass through nginx untouched and count not.
    let default = TrustedProxies::parse("127.0.0.1").unwrap();
    assert!(default.believes(ForwardedHeader::XForwardedFor));
    assert!(!default.believes(ForwardedHeader::Forwarded));
    let env = environ_with(request, &via(default));
    assert_eq!(
        proxied_view(&env),
        ("203.0.113.9", None, Scheme::Https, Some("app.test"), "app.test", "443", "", "/x")
    );
    // Only Forwarded believed.
    let only = TrustedProxies::parse("127.0.0.1").unwrap().believe(&[ForwardedHeader::Forwarded]);
    let env = environ_with(request, &via(only));
    assert_eq!(
        proxied_view(&env),
        ("1.2.3.4", None, Scheme::Https, Some("evil.example"), "evil.example", "443", "", "/x")
    );
    // None believed.
    let none = TrustedProxies::parse("127.0.0.1").unwrap().believe(&[]);
    let env = environ_with(request, &via(none));
    assert_eq!(env.get("REMOTE_ADDR"), Some("127.0.0.1"));
    assert_eq!(env.scheme(), Scheme::Http);
    // Header lists parse by name, in any case; unknown names are refused by name.
    assert_eq!(
        TrustedProxies::parse_headers(" X-Forwarded-Host ,forwarded").unwrap(),
        [ForwardedHeader::XForwardedHost, ForwardedHeader::Forwarded]
    );
    let e = TrustedProxies::parse_headers("x-forwarded-for,x-real-ip").unwrap_err().to_string();
    assert!(e.contains("\"x-real-ip\"") && e.contains("x-forwarded-prefix"), "{e}");
}
