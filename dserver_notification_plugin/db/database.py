"""The plugin's connection to dservercore's SQL database, and the SQL helpers
the table classes share.

:class:`Database` finds the engine (one given, or dservercore's inside an
app context, pushed when there is none), migrates the plugin's tables on
first use (:mod:`.migrations`), opens transactions and the LISTEN connection,
and drops inherited connections after a fork. The inbox, the ledger, the
leases, the Elasticsearch document ids and the counters are small classes
that build their statements on one :class:`Database`; :func:`upsert` and
:func:`chunks` are the helpers they share.
"""
import os
import socket
import threading
import time
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .migrations import migrate
from .tables import counters

#: The PostgreSQL channel on which enqueues announce when work is due
#: (read by :class:`..wakeup.Listener`).
CHANNEL = "dserver_notification"

# Databases limit the number of bound parameters in one statement.
IN_CLAUSE_CHUNK = 500


def process_id():
    # Recomputed after a fork: a gunicorn worker is not its master.
    return f"{socket.gethostname()}:{os.getpid()}"


def now():
    return time.time()


def upsert(conn, table, values, key_column, assignments, returning=None):
    """INSERT ``values``, or apply ``assignments`` to the row with the same key.

    SQLite and PostgreSQL (dservercore's databases) do it in one statement
    and give back the ``returning`` column of the row written; any other
    database updates first and inserts when nothing matched (returns None).
    """
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        statement = insert(table).values(**values).on_conflict_do_update(
            index_elements=[key_column], set_=assignments)
        if returning is None:
            conn.execute(statement)
            return None
        return conn.execute(statement.returning(returning)).scalar()
    key_matches = key_column == values[key_column.name]
    if conn.execute(table.update().where(key_matches).values(**assignments)).rowcount:
        return
    try:
        with conn.begin_nested():
            conn.execute(table.insert().values(**values))
    except IntegrityError:  # inserted by another process meanwhile
        conn.execute(table.update().where(key_matches).values(**assignments))
    return None


def announce_due(conn, due_at):
    """PostgreSQL: tell every listening worker (all hosts) when work is due.

    Sent with the enqueue's transaction, so it arrives after the commit,
    when the row is there to be claimed; identical ones are folded.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_notify(CHANNEL, repr(float(due_at)))))


def chunks(items, size=IN_CLAUSE_CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


class Database:
    """Takes an ``engine`` directly, or an ``app`` whose dservercore
    SQLAlchemy engine it uses (inside an app context, pushed when there is none)."""

    def __init__(self, app=None, engine=None):
        if (app is None) == (engine is None):
            raise ValueError("give either an app or an engine")
        self.app = app
        self._engine = engine
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        # Set by the extension (db/processes.py, heartbeat.py): a process joins
        # the live ones with its first claim or lease request, and a claim
        # whose owner beat within ``alive_within`` seconds is never taken.
        self.heartbeat = None
        self.alive_within = None

    def register_process(self):
        """Join the live processes before claiming or leasing (idempotent)."""
        if self.heartbeat is not None:
            self.heartbeat.ensure_running()

    @contextmanager
    def _engine_in_context(self):
        if self._engine is not None:
            yield self._engine
            return
        from dservercore import sql_db
        from flask import has_app_context
        if has_app_context():
            yield sql_db.engine
        else:
            with self.app.app_context():
                yield sql_db.engine

    def ready(self):
        """False until dservercore has set up its SQLAlchemy (after the extensions).

        Flask-SQLAlchemy registers itself a moment before its engines exist.
        """
        if self._engine is not None:
            return True
        if "sqlalchemy" not in self.app.extensions:
            return False
        from dservercore import sql_db
        with self.app.app_context():
            try:
                return bool(sql_db.engines)
            except KeyError:
                return False

    def check_writable(self):
        """Raise unless a write would go through now: an UPDATE that matches
        no row still needs the database's write lock."""
        with self.transaction() as conn:
            conn.execute(counters.update().where(counters.c.name == "")
                         .values(value=counters.c.value))

    @contextmanager
    def transaction(self):
        """One transaction on the plugin's tables (migrated on first use)."""
        with self._engine_in_context() as engine:
            self._ensure_schema(engine)
            with engine.begin() as conn:
                yield conn

    def migrate(self):
        """Bring the plugin's tables to the latest schema; return the steps applied."""
        with self._engine_in_context() as engine, self._schema_lock:
            applied = migrate(engine)
            self._schema_ready = True
        return applied

    def _ensure_schema(self, engine):
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                migrate(engine)
                self._schema_ready = True

    def listening_connection(self):
        """A connection of its own that LISTENs for :data:`CHANNEL`.

        None unless the database is PostgreSQL through psycopg 3 (the one
        driver whose notifications we read).
        """
        with self._engine_in_context() as engine:
            if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
                return None
            pooled = engine.raw_connection()
            connection = pooled.driver_connection
            pooled.detach()  # it will listen for as long as the process lives
        connection.rollback()
        connection.autocommit = True
        connection.execute(f"LISTEN {CHANNEL}")
        return connection

    def dispose_inherited_connections(self):
        """After a fork: drop the parent's pooled connections, never share them."""
        if self._engine is not None:
            self._engine.dispose(close=False)
            return
        from dservercore import sql_db
        with self.app.app_context():
            for engine in sql_db.engines.values():
                engine.dispose(close=False)
