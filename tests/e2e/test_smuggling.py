"""The request-smuggling and malformed-request corpus (corpus/smuggling.py) sent to the running
server: each case on a fresh connection gets its exact status; an error closes the connection
with nothing more read; an accepted case is read exactly as its framing says (the next request
on the connection is answered as itself); and no request hidden in a case ever runs.

(This suite replaces the former test_malformed.py, whose cases are all in the corpus.)
"""

import json
import sys

import pytest

from support import HERE, HttpReader, request_bytes

sys.path.insert(0, str(HERE / "corpus"))
from smuggling import CASES  # noqa: E402  (the corpus directory, added to the path above)


def smuggled_records(server):
    return [r for r in server.records() if r.startswith("smuggled ")]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case(fault_server, case):
    assert case.source, "every case names its source"
    with fault_server.connect() as s:
        s.sendall(case.raw)
        reader = HttpReader(s)
        responses = [reader.read_response()]
        responses += [reader.read_response() for _ in case.then]
        statuses = [r.status for r in responses]
        assert statuses == [case.status] + case.then, (case.name, responses)
        first, last = responses[0], responses[-1]
        assert all(r.version == "HTTP/1.1" for r in responses), responses
        if case.echo:
            env = json.loads(first.body)
            for key, value in case.echo.items():
                seen = env["body"]["size"] if key == "body" else env.get(key)
                assert seen == value, (case.name, key, seen, env)
        if last.status >= 400:
            # An error answer closes: whatever was sent after the bad request is never read.
            assert last.has_token("Connection", "close"), last
            assert reader.closed(), f"{case.name}: the connection stayed open after {last.status}"
        elif last.has_token("Connection", "close"):
            assert reader.closed()
        else:
            # Nothing was left over: the next request on the connection is answered as itself.
            s.sendall(request_bytes("GET", "/fixed"))
            after = reader.read_response()
            assert after.status == 200 and after.body == b"hello, fixed\n", (case.name, after)
    hits = [r for r in smuggled_records(fault_server) if r.endswith(f"/smuggled/{case.name}")]
    assert not hits, f"{case.name}: a smuggled request ran: {hits}"


def test_no_smuggled_request_ever_ran(fault_server):
    """After the corpus (pytest runs the file in order): the app never saw /smuggled."""
    r = fault_server.exchange(request_bytes("GET", "/fixed"))
    assert r.status == 200
    assert smuggled_records(fault_server) == []
