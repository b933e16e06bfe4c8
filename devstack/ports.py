"""Ports, processes and logs: the plumbing every development server shares.

Each server is a subprocess in its own session, with its output appended to
a log file in its own temp dir and its own free ports, so that parallel
runs do not collide. One that dies while starting raises ``ServerError``
with its log tail; one left running when the interpreter exits is killed.
"""
import atexit
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
# The repository root: the directory that holds ``devstack``. A subprocess
# that imports devstack gets it on PYTHONPATH (see python_env).
ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent  # not resolved: the venv's python is a symlink


class ServerError(RuntimeError):
    """A development server failed to start or answer; the message holds its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, port))
        return True
    except OSError:
        return False


def free_port_pair(offset: int = 10000) -> int:
    """A free port p whose p+offset is free too (SeaweedFS's gRPC convention).

    Drawn below the kernel's ephemeral range so that p+offset stays valid.
    """
    for _ in range(500):
        port = random.randint(10000, 22000)
        if port_is_free(port) and port_is_free(port + offset):
            return port
    raise ServerError(f"no free port pair (p, p+{offset}) found")


def log_tail(path, lines: int = 40) -> str:
    """The last lines of a log file, or a note that there is none."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as error:
        return f"<no log at {path}: {error}>"
    return "\n".join(text.splitlines()[-lines:])


def wait_for_port(host: str, port: int, timeout: float, proc=None, log_path=None) -> None:
    """Wait until host:port accepts TCP connections.

    Fails at once, with the log tail, if ``proc`` (a Popen) has exited; that
    is far more useful than a timeout when the server crashed on start.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerError(
                f"{proc.args[0]} exited with code {proc.returncode} before "
                f"listening on {host}:{port}. Log tail:\n{log_tail(log_path)}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServerError(f"nothing listens on {host}:{port} after {timeout} s. "
                      f"Log tail:\n{log_tail(log_path)}")


def wait_until(condition, what: str, timeout: float = 30.0, interval: float = 0.1):
    """Poll ``condition`` until it returns something truthy, and return that.

    Raises AssertionError naming ``what`` and the last value seen after
    ``timeout`` seconds: tests on a loaded machine wait patiently, and a
    failure still ends.
    """
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s: {what} (last value: {value!r})")


def find_executable(name: str) -> str:
    """An executable from the venv's bin (next to sys.executable), else PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServerError(f"executable {name!r} not found in {VENV_BIN} or on PATH")
    return found


def python_env(env=None) -> dict:
    """os.environ plus ``env``, with the repository root first on PYTHONPATH.

    For a subprocess that runs devstack code (``python -m devstack.mongo``,
    ``prepare_index_in_subprocess``) whatever its working directory is.
    """
    full = dict(os.environ, **(env or {}))
    paths = [str(ROOT), *filter(None, full.get("PYTHONPATH", "").split(os.pathsep))]
    full["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return full


_LIVE_PROCESSES = set()


def start_process(args, log_path, cwd=None, env=None) -> subprocess.Popen:
    """Start a server with stdout and stderr appended to log_path.

    In a session of its own: a Ctrl-C in the terminal is ours to handle, and
    ``os.killpg(proc.pid, ...)`` reaches the server and its children only.
    """
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(a) for a in args], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=cwd, env=env, start_new_session=True)
    _LIVE_PROCESSES.add(proc)
    return proc


def stop_process(proc, term_timeout: float = 5.0) -> None:
    """SIGTERM, wait up to term_timeout, then SIGKILL (this PID only; 0: SIGKILL now)."""
    if proc is not None and proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM if term_timeout else signal.SIGKILL)
            proc.wait(term_timeout or 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    _LIVE_PROCESSES.discard(proc)


@atexit.register
def _stop_leftovers() -> None:
    """Never leave a server behind when a script or test run aborts."""
    for proc in list(_LIVE_PROCESSES):
        stop_process(proc, term_timeout=0)


class Server:
    """Shared plumbing: one subprocess, one temp dir holding its log.

    Subclasses implement ``start()`` (returning self) and may set
    ``TERM_TIMEOUT``; ``stop()`` and the context manager come from here.
    """

    TERM_TIMEOUT = 5.0

    def __init__(self):
        self.port = None
        self.proc = None
        self._tmp = None
        self.log_path = None

    def start(self):
        raise NotImplementedError

    def _make_tmp(self, prefix: str, log_name: str) -> None:
        self._tmp = tempfile.mkdtemp(prefix=prefix)
        self.log_path = Path(self._tmp, log_name)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and remove the temp dir."""
        stop_process(self.proc, self.TERM_TIMEOUT)
        self.proc = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)
