"""The application of the fault and abuse tests (tests/e2e/test_faults*.py, test_smuggling.py).

Routes (PATH_INFO); anything else is served by apps/conformance.py:
  /fail/<stage>   an application that fails at one stage of a WSGI exchange (STAGES below). Each
                  records "close <stage>" when the server calls its result's close().
  /id/<id>        records "hit <id> <pid>" (the request was executed), sleeps ?ms=N milliseconds
                  (default 0) and answers "<id>\n" with a Content-Length: the signal tests match
                  what the app executed against what the clients received.
  /smuggled...    records "smuggled <method> <path>": a request that must never be executed
                  (the smuggling corpus hides it in bodies and ambiguous framing).
  /soak           a small fixed answer; POST bodies are read to their end.
  /called/<route> records "called <tag>" (?tag=T), then serves conformance.py's /<route>: with
                  its "close <tag>" records, the tests match calls and close()s.

Records go to records.log in the directory named by E2E_STATE_DIR (see conformance.py).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import conformance  # noqa: E402  (the sibling module, found through the line above)
from conformance import params, read_body, record  # noqa: E402


class Result:
    """A result iterable that yields `items` (raising any exception among them) and records
    its close(); `close_raises` makes close() itself fail."""

    def __init__(self, stage, items, close_raises=False):
        self.stage, self.items, self.close_raises = stage, items, close_raises

    def __iter__(self):
        for item in self.items:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self):
        record(f"close {self.stage}")
        if self.close_raises:
            raise RuntimeError(f"e2e: close() of {self.stage} fails")


def boom(stage):
    return RuntimeError(f"e2e: {stage} fails")


def text_head(start_response, length=None):
    headers = [("Content-Type", "text/plain")]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    return start_response("200 OK", headers)


def call_raises(environ, start_response):
    raise boom("call")


def start_response_bad_status(environ, start_response):
    start_response("OK", [("Content-Type", "text/plain")])
    return Result("start-response-bad-status", [b"unreachable\n"])


def start_response_bad_header(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Bad", "a\r\nInjected: 1")])
    return Result("start-response-bad-header", [b"unreachable\n"])


def start_response_hop_by_hop(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked")])
    return Result("start-response-hop-by-hop", [b"unreachable\n"])


def start_response_not_a_list(environ, start_response):
    start_response("200 OK", "Content-Type: text/plain")
    return Result("start-response-not-a-list", [b"unreachable\n"])


def start_response_twice(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return Result("start-response-twice", [b"unreachable\n"])


def first_item_raises(environ, start_response):
    text_head(start_response)
    return Result("first-item", [boom("first-item")])


def generator_raises_before_yield(environ, start_response):
    text_head(start_response)
    raise boom("generator-first")
    yield b"unreachable\n"  # noqa: unreachable - makes this a generator


def middle_item_raises(environ, start_response):
    text_head(start_response)
    return Result("middle-item", [b"first\n", b"second\n", boom("middle-item"), b"never\n"])


def middle_item_raises_with_length(environ, start_response):
    text_head(start_response, length=100)
    return Result("middle-item-length", [b"x" * 40, boom("middle-item-length")])


def close_raises(environ, start_response):
    text_head(start_response, length=9)
    return Result("close", [b"complete\n"], close_raises=True)


def str_item(environ, start_response):
    text_head(start_response)
    return Result("str-item", ["text"])


def str_item_after_bytes(environ, start_response):
    text_head(start_response)
    return Result("str-item-after-bytes", [b"bytes first\n", "then text"])


def returns_none(environ, start_response):
    text_head(start_response)
    return None


def returns_int(environ, start_response):
    text_head(start_response)
    return 42


def generator_without_start_response(environ, start_response):
    yield b"no head\n"


def short_body(environ, start_response):
    text_head(start_response, length=100)
    return Result("short-body", [b"only ten\n\n"])


def long_body(environ, start_response):
    text_head(start_response, length=5)
    return Result("long-body", [b"exactly five and more\n"])


def long_body_large(environ, start_response):
    # Chunks large enough that a server may write them from the app's buffer, not a copy.
    text_head(start_response, length=20000)
    return Result("long-body-large", [b"a" * 16384, b"b" * 16384, b"c" * 16384])


def write_str(environ, start_response):
    write = text_head(start_response)
    write("text through write()")
    return Result("write-str", [b"unreachable\n"])


def write_then_raise(environ, start_response):
    write = text_head(start_response)
    write(b"written\n")
    raise boom("write-then-raise")


def exc_info_after_head(environ, start_response):
    write = text_head(start_response)
    write(b"head is out\n")
    try:
        raise boom("exc-info-after-head")
    except RuntimeError:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                       sys.exc_info())
    return Result("exc-info-after-head", [b"unreachable\n"])


def input_read_bad_argument(environ, start_response):
    environ["wsgi.input"].read("all of it")
    text_head(start_response)
    return Result("input-read-bad-argument", [b"unreachable\n"])


def input_raises_in_iterator(environ, start_response):
    text_head(start_response)

    def body():
        yield b"reading\n"
        environ["wsgi.input"].read("all of it")
        yield b"unreachable\n"
    return Result("input-raises-in-iterator", body())


# stage -> the application failing there. The tests (test_faults.py) hold what the client
# must see for each one.
STAGES = {
    "call": call_raises,
    "start-response-bad-status": start_response_bad_status,
    "start-response-bad-header": start_response_bad_header,
    "start-response-hop-by-hop": start_response_hop_by_hop,
    "start-response-not-a-list": start_response_not_a_list,
    "start-response-twice": start_response_twice,
    "first-item": first_item_raises,
    "generator-first": generator_raises_before_yield,
    "middle-item": middle_item_raises,
    "middle-item-length": middle_item_raises_with_length,
    "close": close_raises,
    "str-item": str_item,
    "str-item-after-bytes": str_item_after_bytes,
    "returns-none": returns_none,
    "returns-int": returns_int,
    "generator-without-start-response": generator_without_start_response,
    "short-body": short_body,
    "long-body": long_body,
    "long-body-large": long_body_large,
    "write-str": write_str,
    "write-then-raise": write_then_raise,
    "exc-info-after-head": exc_info_after_head,
    "input-read-bad-argument": input_read_bad_argument,
    "input-raises-in-iterator": input_raises_in_iterator,
}


def executed(environ, start_response, request_id):
    record(f"hit {request_id} {os.getpid()}")
    ms = int(params(environ).get("ms", "0"))
    if ms:
        time.sleep(ms / 1000)
    body = f"{request_id}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def smuggled(environ, start_response):
    record(f"smuggled {environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
    body = b"smuggled\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def soak(environ, start_response):
    if environ.get("CONTENT_LENGTH") or environ.get("HTTP_TRANSFER_ENCODING"):
        read_body(environ)
    body = b"soaked\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/fail/"):
        return STAGES[path[len("/fail/"):]](environ, start_response)
    if path.startswith("/id/"):
        return executed(environ, start_response, path[len("/id/"):])
    if path.startswith("/smuggled"):
        return smuggled(environ, start_response)
    if path == "/soak":
        return soak(environ, start_response)
    if path.startswith("/called/"):
        record(f"called {params(environ).get('tag')}")
        environ["PATH_INFO"] = path[len("/called"):]
    return conformance.application(environ, start_response)
