"""A corpus of request-smuggling and malformed requests, each with its source and the answer
RFC 9112 (and this server's "reject, never guess" framing, DESIGN.md) requires.

Each case is the exact bytes of one connection. Many carry a request to /smuggled/<name> where
only a desynchronised parser would find one: inside a body, behind an ambiguous framing, or right
after a request that must be rejected (after an error response the connection closes, so nothing
that follows may run). The app (apps/faults.py) records every /smuggled request; none may ever
run. test_smuggling.py sends each case on a fresh connection to the running server.

Fields of a case:
  raw      the bytes sent;
  status   the first response's status;
  echo     for an accepted case, what /echo must report: {"PATH_INFO": ..., "body": size, ...};
  then     the statuses of the responses that follow on the same connection, if any;
  source   where the case comes from: an RFC 9112/9110 section, or published research
           (Kettle 2019: James Kettle, "HTTP Desync Attacks: Request Smuggling Reborn", Black Hat
           USA 2019; Kettle 2025: "HTTP/1.1 must die: the desync endgame", Black Hat USA 2025;
           PortSwigger: the Web Security Academy's request-smuggling labs and TE obfuscations;
           Klein 2004/2020: Amit Klein, "HTTP Request Smuggling" (Watchfire, 2005 with Linhart,
           Heled, Orrin) and "HTTP Request Smuggling in 2020"; llhttp, h11 and hyper: cases of
           their test suites).
"""

from dataclasses import dataclass, field


def smuggled(name):
    """The request a desynchronised parser would run: it must never reach the app."""
    return b"GET /smuggled/%s HTTP/1.1\r\nHost: x\r\n\r\n" % name.encode()


@dataclass
class Case:
    name: str
    raw: bytes
    status: int
    source: str
    echo: dict = field(default_factory=dict)
    then: list = field(default_factory=list)


def post(name, headers, body, target=None, version=b"HTTP/1.1"):
    """A POST to /echo/<name> with raw header lines (bytes, CRLF added) and a raw body."""
    target = target or b"/echo/" + name.encode()
    return (b"POST " + target + b" " + version + b"\r\nHost: x\r\n"
            + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body)


def head(name, lines, request_line=None):
    """A GET with raw header lines; `request_line` replaces the default one."""
    request_line = request_line or b"GET /echo/" + name.encode() + b" HTTP/1.1"
    return request_line + b"\r\n" + b"".join(h + b"\r\n" for h in lines) + b"\r\n"


CASES = []


def case(name, raw, status, source, then=(), **echo):
    CASES.append(Case(name, raw, status, source, echo, list(then)))


S = smuggled
CHUNKED_SMUGGLE = lambda n: b"0\r\n\r\n" + S(n)  # noqa: E731 - a chunked end, then a request

# --- CL.TE and TE.CL: both framings in one request ------------------------------------------
for n, hs in {
    "cl-te": [b"Content-Length: 44", b"Transfer-Encoding: chunked"],
    "te-cl": [b"Transfer-Encoding: chunked", b"Content-Length: 44"],
    "cl-te-zero": [b"Content-Length: 0", b"Transfer-Encoding: chunked"],
}.items():
    case(n, post(n, hs, CHUNKED_SMUGGLE(n)), 400,
         "RFC 9112 6.1, 6.3 (3), 11.2; Kettle 2019 (CL.TE, TE.CL): a request with both is "
         "rejected, never read by either framing")

# --- Transfer-Encoding obfuscations (PortSwigger, Kettle 2019), each also with a Content-Length
TE_OBFUSCATED = {
    "te-xchunked": (b"Transfer-Encoding: xchunked", 400),
    "te-chunked-x": (b"Transfer-Encoding: chunkedx", 400),
    "te-space-before-colon": (b"Transfer-Encoding : chunked", 400),
    "te-vertical-tab": (b"Transfer-Encoding:\x0bchunked", 400),
    "te-form-feed": (b"Transfer-Encoding:\x0cchunked", 400),
    "te-nul": (b"Transfer-Encoding: chunked\x00", 400),
    "te-chunked-identity": (b"Transfer-Encoding: chunked, identity", 400),
    "te-identity-chunked": (b"Transfer-Encoding: identity, chunked", 501),
    "te-chunked-chunked": (b"Transfer-Encoding: chunked, chunked", 400),
    "te-duplicated-then-x": (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x", 400),
    "te-empty": (b"Transfer-Encoding:", 400),
    "te-quoted": (b'Transfer-Encoding: "chunked"', 400),
    "te-comma-only": (b"Transfer-Encoding: ,", 400),
    "te-obs-fold": (b"Transfer-Encoding:\r\n chunked", 400),
    "te-leading-space-line": (b" Transfer-Encoding: chunked", 400),
    "te-bare-lf-name": (b"X-A: a\nTransfer-Encoding: chunked", 400),
    "te-bare-cr-value": (b"Transfer-Encoding: chunked\rX: y", 400),
    "te-unicode-k": (b"Transfer-Encoding: chun\xe2\x84\xaaed", 400),
    "te-gzip-chunked": (b"Transfer-Encoding: gzip, chunked", 501),
}
for n, (line, status) in TE_OBFUSCATED.items():
    case(n, post(n, [line], CHUNKED_SMUGGLE(n)), status,
         "PortSwigger TE obfuscations; Kettle 2019; RFC 9112 6.1 (chunked must be the final "
         "coding, applied once, else 400; a known final chunked after an unknown coding is "
         "501), 5.1 (no whitespace before the colon), 5.2 (obs-fold), 2.2 (bare CR/LF), "
         "RFC 9110 5.5 (CTLs in values)")
    case(n + "-with-cl", post(n + "-with-cl", [line, b"Content-Length: 5"],
                              b"0\r\n\r\n" + S(n + "-with-cl")), 400,
         "the same obfuscation beside a Content-Length (CL.TE with a hidden TE): rejected, "
         "RFC 9112 6.1/6.3 (3)")
# Accepted TE spellings: the body is read as chunked, so what follows it is the next request.
for n, lines in {
    "te-empty-then-chunked": [b"Transfer-Encoding:", b"Transfer-Encoding: chunked"],
    "te-empty-element": [b"Transfer-Encoding: , chunked"],
}.items():
    case(n, post(n, lines, b"5\r\nhello\r\n0\r\n\r\n"), 200,
         "RFC 9110 5.6.1: empty list elements (and so an empty field line) are ignored, "
         "leaving a single final chunked (h11 reads it the same way)", body=5)
# An unknown field is no framing: the POST has no body and its would-be body is the next
# request, a malformed one ("0") that is rejected with the connection closed.
case("te-underscore", post("te-underscore", [b"Transfer_Encoding: chunked"],
                           CHUNKED_SMUGGLE("te-underscore")), 200,
     "RFC 9112 6.3 (7): no Transfer-Encoding or Content-Length means no body; Kettle 2019 "
     "(header-name mangling)", then=[400], body=0)

# --- Content-Length forms (RFC 9110 8.6: 1*DIGIT; RFC 9112 6.3 (5): invalid is 400) ----------
CL = {
    "cl-plus": (b"+5", 400),
    "cl-minus": (b"-5", 400),
    "cl-hex": (b"0x5", 400),
    "cl-letters": (b"12a", 400),
    "cl-space-inside": (b"1 0", 400),
    "cl-empty": (b"", 400),
    "cl-decimal-point": (b"5.0", 400),
    "cl-list-differing": (b"5, 6", 400),
    "cl-nul": (b"5\x00", 400),
    "cl-vertical-tab": (b"\x0b5", 400),
}
for n, (value, status) in CL.items():
    case(n, post(n, [b"Content-Length: " + value], b"hello" + S(n)), status,
         "RFC 9110 8.6 (Content-Length = 1*DIGIT), RFC 9112 6.3 (5): an invalid Content-Length "
         "is unrecoverable, 400 and close; Kettle 2019/2025 CL obfuscations")
case("cl-leading-zeros", post("cl-leading-zeros", [b"Content-Length: 005"], b"hello"), 200,
     "RFC 9110 8.6: 1*DIGIT, so leading zeros are a valid length (5)", body=5)
case("cl-trailing-space", post("cl-trailing-space", [b"Content-Length: 5 "], b"hello"), 200,
     "RFC 9112 5.1: OWS around a field value is not part of it", body=5)
for n, value in {"cl-overflow-u64": b"99999999999999999999999",
                 "cl-over-limit": b"1000000000000"}.items():
    case(n, post(n, [b"Content-Length: " + value], b"hello" + S(n)), 413,
         "RFC 9110 8.6 (overflow must be anticipated), 15.5.14: a declared body over the "
         "server's limit (1 GiB by default) is refused with 413")
for n, lines in {"cl-list-same": [b"Content-Length: 5, 5"],
                 "cl-duplicate-same": [b"Content-Length: 5", b"Content-Length: 5"]}.items():
    case(n, post(n, lines, b"hello"), 200,
         "RFC 9110 8.6: identical Content-Length values (a list or repeated lines) MAY be read "
         "as that one value", body=5)
case("cl-duplicate-differing",
     post("cl-duplicate-differing", [b"Content-Length: 5", b"Content-Length: 44"],
          b"hello" + S("cl-duplicate-differing")), 400,
     "RFC 9112 6.3 (5): differing Content-Length values are an unrecoverable error; "
     "Klein 2005 (double Content-Length)")

# --- chunked body syntax (RFC 9112 7.1) ------------------------------------------------------
CHUNKS = {
    "chunk-size-0x": (b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-not-hex": (b"zz\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-negative": (b"-5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-plus": (b"+5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-overflow": (b"10000000000000005\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-space-inside": (b"5 5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-empty": (b"\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-lf-only": (b"5\nhello\r\n0\r\n\r\n", 400),
    "chunk-data-lf-only": (b"5\r\nhello\n0\r\n\r\n", 400),
    "chunk-size-bare-cr": (b"5\rhello\r\n0\r\n\r\n", 400),
    "chunk-data-longer": (b"5\r\nhello!!\r\n0\r\n\r\n", 400),
    "chunk-ext-nul": (b"5;a\x00b\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-ext-bare-lf": (b"5;a\nb\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-ext-no-name": (b"5;\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-last-lf-only": (b"5\r\nhello\r\n0\n\n", 400),
    "chunk-ext-too-long": (b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n", 400),
    "trailer-obs-fold": (b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n", 400),
    "trailer-no-colon": (b"5\r\nhello\r\n0\r\nX-T\r\n\r\n", 400),
}
for n, (body, status) in CHUNKS.items():
    case(n, post(n, [b"Transfer-Encoding: chunked"], body + S(n)), status,
         "RFC 9112 7.1 (chunk-size = 1*HEXDIG, CRLF after size and data), 7.1.1 (chunk-ext "
         "tokens), 7.1.2 (trailer fields); Kettle 2025 and llhttp's chunk cases (0x, "
         "overflow, LF-only, bare CR)")
ACCEPTED_CHUNKS = {
    "chunk-size-leading-zeros": (b"0005\r\nhello\r\n0\r\n\r\n", 5),
    "chunk-size-uppercase-hex": (b"A\r\nhellohello\r\n0\r\n\r\n", 10),
    "chunk-ext": (b'5;name=value;q="quoted"\r\nhello\r\n0\r\n\r\n', 5),
    "chunk-ext-bws": (b"5 ; name = value\r\nhello\r\n0\r\n\r\n", 5),
    "chunk-trailer": (b"5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n", 5),
    # Framing fields in the trailer change nothing (RFC 9110 6.5.1: a recipient must not
    # use a trailer field that affects framing), so the hidden request stays in the body.
    "chunk-te-in-trailer": (b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n"
                            b"Content-Length: 44\r\n\r\n", 5),
    "chunk-hides-request": (b"%x\r\n" % len(S("chunk-hides-request"))
                            + S("chunk-hides-request") + b"\r\n0\r\n\r\n",
                            len(S("chunk-hides-request"))),
}
for n, (body, size) in ACCEPTED_CHUNKS.items():
    case(n, post(n, [b"Transfer-Encoding: chunked"], body), 200,
         "RFC 9112 7.1 (leading zeros and either case of hex digits are 1*HEXDIG), 7.1.1 "
         "(chunk extensions ignored), 7.1.2 / RFC 9110 6.5.1 (trailers never frame)", body=size)
case("te-case-insensitive", post("te-case-insensitive", [b"Transfer-Encoding: Chunked"],
                                 b"5\r\nhello\r\n0\r\n\r\n"), 200,
     "RFC 9112 7: transfer-coding names are case-insensitive", body=5)
case("te-tab-ows", post("te-tab-ows", [b"Transfer-Encoding:\tchunked\t"],
                        b"5\r\nhello\r\n0\r\n\r\n"), 200,
     "RFC 9112 5.1, RFC 9110 5.6.3: OWS (SP / HTAB) around a field value", body=5)
case("cl-hides-request", post("cl-hides-request",
                              [b"Content-Length: %d" % len(S("cl-hides-request"))],
                              S("cl-hides-request")), 200,
     "Klein 2005, Kettle 2019: a request inside a Content-Length body is body bytes",
     body=len(S("cl-hides-request")))
case("cl-hides-request-unread", post("cl-hides-request-unread",
                                     [b"Content-Length: %d" % len(S("cl-hides-request-unread"))],
                                     S("cl-hides-request-unread"), target=b"/fixed"), 200,
     "Kettle 2019 (CL.0): a body the app does not read is still skipped, never parsed as a "
     "request")
case("get-with-cl-body", head("get-with-cl-body",
                              [b"Host: x", b"Content-Length: %d" % len(S("get-with-cl-body"))])
     + S("get-with-cl-body"), 200,
     "RFC 9112 6.3: framing never depends on the method (a GET's Content-Length is honoured; "
     "Kettle 2025 '0.CL')", body=len(S("get-with-cl-body")))

# --- HTTP/1.0 with Transfer-Encoding (RFC 9112 6.1: faulty framing) ---------------------------
case("http10-te", post("http10-te", [b"Transfer-Encoding: chunked"], CHUNKED_SMUGGLE("http10-te"),
                       version=b"HTTP/1.0"), 400,
     "RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing")

# --- field syntax (RFC 9112 5, RFC 9110 5.5) ---------------------------------------------------
FIELDS = {
    "space-before-colon": b"X-A : b",
    "tab-before-colon": b"X-A\t: b",
    "obs-fold": b"X-A: a\r\n b",
    "obs-fold-tab": b"X-A: a\r\n\tb",
    "nul-in-value": b"X-A: a\x00b",
    "ctl-in-value": b"X-A: a\x01b",
    "del-in-value": b"X-A: a\x7fb",
    "bare-cr-in-value": b"X-A: a\rb",
    "bare-lf-line": b"X-A: a\nX-B: b",
    "empty-name": b": b",
    "space-in-name": b"X A: b",
    "no-colon": b"X-A b",
    "nul-in-name": b"X-\x00A: b",
    "non-ascii-name": b"X-\xc3\xa9: b",
    "leading-space-first-field": b" X-A: b",
}
for n, line in FIELDS.items():
    case(n, head(n, [b"Host: x", line]) + S(n), 400,
         "RFC 9112 5.1 (no whitespace before the colon), 5.2 (obs-fold rejected), 2.2 (bare CR, "
         "bare LF), RFC 9110 5.1 (field-name = token), 5.5 (no CTL in values); h11/llhttp cases")
case("obs-text-in-value", head("obs-text-in-value", [b"Host: x", b"X-A: caf\xe9"]), 200,
     "RFC 9110 5.5: obs-text (0x80-0xFF) is allowed in field values (latin-1 in the environ)")

# --- Host (RFC 9112 3.2, 3.2.2) ----------------------------------------------------------------
HOSTS = {
    "host-missing": ([], 400),
    "host-duplicate": ([b"Host: a", b"Host: b"], 400),
    "host-duplicate-same": ([b"Host: a", b"Host: a"], 400),
    "host-list": ([b"Host: a, b"], 400),
    "host-space-inside": ([b"Host: a b"], 400),
    "host-userinfo": ([b"Host: user@a"], 400),
    "host-bad-port": ([b"Host: a:8x"], 400),
    "host-slash": ([b"Host: a/b"], 400),
}
for n, (lines, status) in HOSTS.items():
    case(n, head(n, lines) + S(n), status,
         "RFC 9112 3.2: a server MUST respond 400 to an HTTP/1.1 request without a Host, with "
         "more than one, or with an invalid one (RFC 9110 7.2, 4.2.3: uri-host [ : port ])")
case("host-empty", head("host-empty", [b"Host:"]), 200,
     "RFC 9112 3.2: an empty Host is allowed when the target has no authority")
case("absolute-form-host-mismatch",
     head("absolute-form-host-mismatch", [b"Host: other.example"],
          request_line=b"GET http://target.example/echo/absolute-form-host-mismatch HTTP/1.1"),
     200, "RFC 9112 3.2.2: with an absolute-form target the server uses the target's host and "
     "ignores Host", PATH_INFO="/echo/absolute-form-host-mismatch")
case("absolute-form-userinfo",
     head("absolute-form-userinfo", [b"Host: x"],
          request_line=b"GET http://user@x/echo/absolute-form-userinfo HTTP/1.1") + S(
         "absolute-form-userinfo"), 400,
     "RFC 9110 4.2.4: userinfo in an http URI is invalid in a request target")

# --- request line (RFC 9112 3, 2.3) ------------------------------------------------------------
LINES = {
    "http09": (b"GET /echo/http09", 400),
    "http2-preface": (b"PRI * HTTP/2.0\r\n\r\nSM", 505),
    "http20": (b"GET /echo/http20 HTTP/2.0", 505),
    "http30": (b"GET /echo/http30 HTTP/3.0", 505),
    "http-lowercase": (b"GET /echo/http-lowercase http/1.1", 400),
    "http-two-digit-minor": (b"GET /echo/x HTTP/1.10", 400),
    "double-space-after-method": (b"GET  /echo/x HTTP/1.1", 400),
    "double-space-before-version": (b"GET /echo/x  HTTP/1.1", 400),
    "tab-separator": (b"GET\t/echo/x HTTP/1.1", 400),
    "trailing-space": (b"GET /echo/x HTTP/1.1 ", 400),
    "leading-space": (b" GET /echo/x HTTP/1.1", 400),
    "no-version": (b"GET /echo/x ", 400),
    "space-in-target": (b"GET /echo/a b HTTP/1.1", 400),
    "nul-in-target": (b"GET /echo/a\x00b HTTP/1.1", 400),
    "fragment-in-target": (b"GET /echo/x#frag HTTP/1.1", 400),
    "relative-target": (b"GET echo/x HTTP/1.1", 400),
    "asterisk-with-get": (b"GET * HTTP/1.1", 400),
    "method-bad-char": (b"G(ET /echo/x HTTP/1.1", 400),
    "method-empty": (b" /echo/x HTTP/1.1", 400),
    "request-line-lf-only": (b"GET /echo/x HTTP/1.1\nHost: x", 400),
}
for n, (line, status) in LINES.items():
    case(n, line + b"\r\nHost: x\r\n\r\n" + S(n), status,
         "RFC 9112 3 (request-line = method SP request-target SP HTTP-version, single SPs), "
         "2.3 (HTTP-version = HTTP/DIGIT.DIGIT, case-sensitive), 3.2 (target forms), 2.2 "
         "(CRLF), RFC 9110 6.2 (505 for an unsupported major version); Kettle 2025 (HTTP/0.9 "
         "and preface desyncs)")
case("connect-authority-form", b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n"
     + S("connect-authority-form"), 501,
     "RFC 9110 9.3.6, 15.6.2: a server that does not tunnel answers CONNECT with 501")
# RFC 9110 2.5 says a higher minor version SHOULD be served as 1.1; this server refuses it
# (the tokenizer accepts only HTTP/1.0 and HTTP/1.1): a refusal, never a different framing.
case("http-minor-higher", b"GET /echo/http-minor-higher HTTP/1.2\r\nHost: x\r\n\r\n"
     + S("http-minor-higher"), 505,
     "RFC 9110 2.5 (SHOULD serve as 1.1; deviation: refused with 505)")
# RFC 9112 3.2 wants URI characters; like nginx and gunicorn this server passes raw UTF-8
# through (its bytes as latin-1, PEP 3333; other raw bytes get 400), a decision wsgi-core's
# environ tests fix.
case("non-ascii-target", b"GET /echo/caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", 200,
     "RFC 9112 3 (SHOULD answer 400 to an invalid request-line; accepted as latin-1 bytes)",
     PATH_INFO="/echo/caf\u00c3\u00a9")
case("lowercase-method", b"get /echo/lowercase-method HTTP/1.1\r\nHost: x\r\n\r\n", 200,
     "RFC 9110 9.1: methods are case-sensitive tokens; 'get' is a valid, different method",
     REQUEST_METHOD="get")

# --- sizes (RFC 9112 3, RFC 9110 15.5.15, RFC 6585 5), at wsgi-serve's defaults ------------------
case("long-target", b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n" + S("long-target"),
     414, "RFC 9112 3: a request-line longer than the server's limit (--limit-request-line)")
case("too-many-fields", b"GET / HTTP/1.1\r\nHost: x\r\n"
     + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n" + S("too-many-fields"), 431,
     "RFC 6585 5: more fields than --limit-request-fields")
case("huge-field", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n"
     + S("huge-field"), 431, "RFC 6585 5: a field line longer than --limit-request-field_size")
