"""systemd socket activation (LISTEN_FDS / LISTEN_PID) and the pid file (--pid)."""

import os
import signal
import socket
import subprocess
import time

import pytest
import requests

from support import APPS, TIMEOUT, process_tree, wait_until


class Activated:
    """wsgi-serve started as systemd starts a socket-activated service: a listening loopback
    socket on descriptor 3, LISTEN_FDS=1 and LISTEN_PID set to the service's own pid."""

    def __init__(self, binary, runtime, workdir, workers):
        self.error_log = workdir / "error.log"
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        # --bind names a socket that cannot be bound: it must not be tried.
        args = [str(binary), "conformance:application", "--chdir", str(APPS),
                "--runtime", runtime, "--workers", str(workers), "--threads", "2",
                "--bind", "unix:/nonexistent-dir/never.sock",
                "--error-logfile", str(self.error_log), "--graceful-timeout", "5"]
        env = dict(os.environ)
        env.pop("WSGI_SERVE_WORKER", None)
        pid = os.fork()
        if pid == 0:  # the child: becomes wsgi-serve, whatever happens
            try:
                os.dup2(listener.fileno(), 3)
                os.set_inheritable(3, True)
                env.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="web")
                os.execve(args[0], args, env)
            finally:
                os._exit(127)
        listener.close()
        self.pid = pid
        self.status = None

    def get(self, path, timeout=TIMEOUT):
        return requests.get(f"http://127.0.0.1:{self.port}{path}",
                            headers={"Connection": "close"}, timeout=timeout)

    def ready(self):
        try:
            return self.get("/fixed", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def exited(self):
        if self.status is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status is not None

    def stop(self):
        if not self.exited():
            os.kill(self.pid, signal.SIGTERM)
            if not wait_until(self.exited, 20):
                for p in reversed(process_tree(self.pid)):
                    os.kill(p, signal.SIGKILL)
                wait_until(self.exited, TIMEOUT)
        return self.status

    def log(self):
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""


@pytest.mark.parametrize("workers", [1, 2])
def test_socket_activation_serves_the_passed_socket(wsgi_serve_bin, runtime, tmp_path, workers):
    server = Activated(wsgi_serve_bin, runtime, tmp_path, workers)
    try:
        assert wait_until(server.ready, 60), server.log()
        assert wait_until(lambda: len(process_tree(server.pid)) == 1 + workers), server.log()
        for _ in range(10):
            r = server.get("/fixed")
            assert r.status_code == 200 and r.text == "hello, fixed\n"
        log = server.log()
        assert "socket activation: serving the 1 socket systemd passed (web) instead of --bind" \
            in log, log
        # The variables were for the supervisor only: a worker's environ has none of them.
        assert server.get("/echo").json()["listen_env"] == []
    finally:
        code = server.stop()
    assert code == 0, server.log()


def test_listen_fds_for_another_process_is_ignored(wsgi_serve_bin, runtime, tmp_path):
    """LISTEN_PID naming another process (a parent's leftover): --bind is used as usual."""
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    number = port.getsockname()[1]
    port.close()
    env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID="1")
    proc = subprocess.Popen(
        [str(wsgi_serve_bin), "--bind", f"127.0.0.1:{number}", "--runtime", runtime,
         "--error-logfile", str(tmp_path / "error.log")],
        env=env, stdin=subprocess.DEVNULL)
    try:
        def answered():
            try:
                return requests.get(f"http://127.0.0.1:{number}/", timeout=2).status_code == 200
            except requests.RequestException:
                return False
        assert wait_until(answered, 60)
        assert "socket activation" not in (tmp_path / "error.log").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_pid_file_is_written_and_removed(start_server, tmp_path):
    pid_file = tmp_path / "run" / "wsgi.pid"
    pid_file.parent.mkdir()
    server = start_server("pidfile", app="conformance:application", chdir=APPS,
                          extra=["--pid", str(pid_file), "--workers", "2"])
    assert pid_file.read_text() == f"{server.proc.pid}\n"
    # Only the file itself: written beside it, then renamed.
    assert os.listdir(pid_file.parent) == ["wsgi.pid"]
    # What init scripts do with it.
    os.kill(int(pid_file.read_text()), signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0, server.logs()
    assert not pid_file.exists()


def test_pid_file_that_cannot_be_written_is_a_clear_error(wsgi_serve_bin, tmp_path):
    started = time.monotonic()
    done = subprocess.run(
        [str(wsgi_serve_bin), "--bind", "127.0.0.1:0", "--pid", "/nonexistent-dir/wsgi.pid"],
        capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode != 0
    assert "cannot write the pid file /nonexistent-dir/wsgi.pid" in done.stderr, done.stderr
    assert time.monotonic() - started < TIMEOUT
