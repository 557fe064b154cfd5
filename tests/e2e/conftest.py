"""Fixtures of the end-to-end conformance suite.

The suite builds nothing: the test command builds wsgi-serve and names it in WSGI_SERVE_BIN.
`--runtime` picks the I/O runtime every server of the suite runs with (`wsgi-serve --runtime`).
"""

import os
import shutil
import signal
from pathlib import Path

import pytest

from support import APPS, FIXTURES, Server

# No test may run longer than this (a safety net: every call has its own, shorter, timeout).
TEST_DEADLINE_SECONDS = 120


def pytest_addoption(parser):
    parser.addoption("--runtime", default="std",
                     help="wsgi-serve --runtime for every server of the suite (default: std)")


@pytest.fixture(scope="session")
def runtime(request):
    return request.config.getoption("--runtime")


@pytest.fixture(scope="session")
def wsgi_serve_bin():
    value = os.environ.get("WSGI_SERVE_BIN")
    if not value:
        pytest.fail("WSGI_SERVE_BIN is not set: build wsgi-serve (cargo build -p wsgi-serve) and "
                    "run WSGI_SERVE_BIN=$PWD/target/debug/wsgi-serve pytest tests/e2e "
                    "(scripts/test does both)", pytrace=False)
    path = Path(value)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"WSGI_SERVE_BIN={value} is not an executable file", pytrace=False)
    return path


@pytest.fixture(scope="session")
def curl():
    """The curl command (a real client the suite uses beside requests and httpx)."""
    path = shutil.which("curl")
    if not path:
        pytest.fail("curl is not installed: the suite uses it as a client (apt-get install curl)",
                    pytrace=False)
    return path


@pytest.fixture(scope="session")
def start_server(wsgi_serve_bin, runtime, tmp_path_factory):
    """A factory: start_server(app=..., chdir=..., threads=..., extra=[...]) -> Server.

    Every server it started is stopped (SIGTERM, then SIGKILL) when the session ends."""
    servers = []

    def start(name="server", **kwargs):
        server = Server(wsgi_serve_bin, runtime, tmp_path_factory.mktemp(name), **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        try:
            server.stop(timeout=20)
        except Exception:  # noqa: BLE001 - the session is ending; kill() already ran
            pass


@pytest.fixture(scope="session")
def server(start_server):
    """The suite's plain WSGI app (tests/e2e/apps/conformance.py), shared by most tests."""
    return start_server("conformance", app="conformance:application", chdir=APPS, threads=4)


@pytest.fixture(scope="session")
def fault_server(start_server):
    """The fault tests' app (tests/e2e/apps/faults.py): failing stages, counted ids, /smuggled."""
    return start_server("faults", app="faults:application", chdir=APPS, threads=4)


@pytest.fixture(scope="session")
def flask_server(start_server):
    return start_server("flask", app="flask_app:app", chdir=FIXTURES, threads=2)


@pytest.fixture(scope="session")
def django_server(start_server):
    return start_server("django", app="bridge_site.wsgi:application",
                        chdir=FIXTURES / "django_project", threads=2)


@pytest.fixture(autouse=True)
def _deadline():
    """Fails a test that runs longer than TEST_DEADLINE_SECONDS instead of hanging the run."""
    def expired(signum, frame):
        raise TimeoutError(f"test exceeded {TEST_DEADLINE_SECONDS}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_DEADLINE_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def served(server):
    """The shared server, checked to be alive after the test (the server keeps serving)."""
    yield server
    assert server.proc.poll() is None, f"the server died:\n{server.logs()}"
