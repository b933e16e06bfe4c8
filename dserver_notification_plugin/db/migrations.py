"""The versioned migrations of the plugin's tables, each step frozen.

:mod:`.tables` holds the *current* schema. A database catches up with it
through :data:`MIGRATIONS`, an ordered list of small steps; the number of
the last step applied is kept in ``notification_schema_version``.

Each step states its own DDL: the tables, columns and indexes as they were
when the step was written, never today's table objects. So a later step may
change or drop what an earlier one created, and step 1 means the same on
every database, whenever it runs. To change the schema, change the table in
:mod:`.tables` *and* append one step that says the change itself::

    Step(5, "inbox: remember the dataset's size",
         add_column("notification_inbox",
                    sa.Column("size", sa.BigInteger, nullable=False, server_default="0"))),

``tests/test_migrations.py`` checks that a database migrated step by step,
from every version, equals the tables of :mod:`.tables`.

Every step looks before it acts (creates a table or index only if missing,
adds a column only if absent), so the plugin's tables that predate versions
(version 0) get just what they lack. :func:`migrate` runs the missing steps
in one transaction that only one process at a time may hold:
``pg_advisory_xact_lock`` on PostgreSQL, an immediate (write-locked)
transaction on SQLite; so several hosts starting at once migrate once. It
runs on the database's first use in every process, and through ``flask
notification migrate``.
"""
import logging
import time
from dataclasses import dataclass
from typing import Callable, List

import sqlalchemy as sa

from .tables import schema_version

logger = logging.getLogger(__name__)

#: How long a SQLite migrator tries to switch the database to WAL while
#: another holds it.
WAL_SWITCH_SECONDS = 30.0
# Any constant: the key of the PostgreSQL advisory lock migrators share.
MIGRATION_LOCK_KEY = 0x64736E6D  # "dsnm"


# --- kinds of step ----------------------------------------------------------------

def create_tables(*tables: sa.Table) -> Callable:
    """A step that creates these tables (as the step defines them) if missing."""
    def apply(conn):
        for table in tables:
            table.create(conn, checkfirst=True)
    return apply


def add_column(table_name, column: sa.Column) -> Callable:
    """A step that adds ``column`` to a table unless a column of its name is there.

    A NOT NULL column needs a ``server_default`` for the rows already there.
    """
    sa.Table(table_name, sa.MetaData(), column)  # the DDL compiler wants its table

    def apply(conn):
        if column.name in {c["name"] for c in sa.inspect(conn).get_columns(table_name)}:
            return
        ddl = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {table_name} ADD COLUMN {ddl}")
    return apply


def add_index(table_name, index_name, *column_names, unique=False) -> Callable:
    """A step that creates an index on these columns if none of its name exists."""
    table = sa.Table(table_name, sa.MetaData(), *(sa.Column(n) for n in column_names))
    index = sa.Index(index_name, *(table.c[n] for n in column_names), unique=unique)

    def apply(conn):
        index.create(conn, checkfirst=True)
    return apply


def all_of(*steps) -> Callable:
    """One step made of several."""
    def apply(conn):
        for step in steps:
            step(conn)
    return apply


@dataclass(frozen=True)
class Step:
    version: int
    description: str
    apply: Callable


# --- the steps, as they were written ------------------------------------------------
# Never edit a step once released: databases out there have applied it.

def _step_1_tables():
    """The inbox, the document ids and the counters of 0.5's first schema."""
    frozen = sa.MetaData()
    inbox = sa.Table(
        "notification_inbox", frozen,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dataset_uri", sa.String(1024), nullable=False, unique=True),
        sa.Column("base_uri", sa.String(1024), nullable=False),
        sa.Column("uuid", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("claimed_generation", sa.Integer, nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("first_event_at", sa.Float, nullable=False),
        sa.Column("last_event_at", sa.Float, nullable=False),
        sa.Column("due_at", sa.Float, nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("last_outcome", sa.String(32)),
        sa.Column("fingerprint", sa.String(64)),
        sa.Column("claimed_by", sa.String(128)),
        sa.Column("claimed_at", sa.Float),
        sa.Column("finished_at", sa.Float))
    documents = sa.Table(
        "notification_es_documents", frozen,
        sa.Column("doc_id", sa.String(512), primary_key=True),
        sa.Column("bucket", sa.String(255), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False))
    counters = sa.Table(
        "notification_counters", frozen,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False))
    return inbox, documents, counters


def _step_3_tables():
    """The reconciler's tables: dataset signatures, pass cursor, leases."""
    frozen = sa.MetaData()
    datasets = sa.Table(
        "notification_datasets", frozen,
        sa.Column("dataset_uri", sa.String(1024), primary_key=True),
        sa.Column("base_uri", sa.String(1024), nullable=False, index=True),
        sa.Column("uuid", sa.String(64), nullable=False),
        sa.Column("prefix", sa.Text, nullable=False),
        sa.Column("registration_etag", sa.String(128)),
        sa.Column("signature", sa.String(64)),
        sa.Column("expected_signature", sa.String(64)),
        sa.Column("expected_at", sa.Float))
    cursor = sa.Table(
        "notification_reconcile_cursor", frozen,
        sa.Column("scope", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("base_uri", sa.String(1024)),
        sa.Column("after_uuid", sa.String(64)),
        sa.Column("checked", sa.BigInteger, nullable=False),
        sa.Column("missing", sa.BigInteger, nullable=False),
        sa.Column("extra", sa.BigInteger, nullable=False),
        sa.Column("changed", sa.BigInteger, nullable=False),
        sa.Column("s3_requests", sa.BigInteger, nullable=False),
        sa.Column("holder", sa.String(160)),
        sa.Column("updated_at", sa.Float))
    leases = sa.Table(
        "notification_leases", frozen,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(160), nullable=False),
        sa.Column("acquired_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False))
    return datasets, cursor, leases


def _step_5_tables():
    """Base URIs that need an operator: unreadable buckets, held removals."""
    return (sa.Table(
        "notification_attention", sa.MetaData(),
        sa.Column("base_uri", sa.String(1024), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("count", sa.Integer),
        sa.Column("total", sa.Integer),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("reporter", sa.String(160))),)


def _step_6_tables():
    """Processes known to be alive, with their heartbeats."""
    return (sa.Table(
        "notification_processes", sa.MetaData(),
        sa.Column("id", sa.String(160), primary_key=True),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False, index=True)),)


MIGRATIONS: List[Step] = [
    Step(1, "inbox, Elasticsearch document ids and counters",
         create_tables(*_step_1_tables())),
    Step(2, "inbox: index on (state, due_at) for claims",
         add_index("notification_inbox", "ix_notification_inbox_state_due_at",
                   "state", "due_at")),
    Step(3, "reconciler: dataset signatures, pass cursor, leases",
         create_tables(*_step_3_tables())),
    Step(4, "inbox: events heard since the last claim, what the last sync read, urgency",
         all_of(add_column("notification_inbox", sa.Column("heard", sa.Text)),
                add_column("notification_inbox", sa.Column("seen", sa.Text)),
                add_column("notification_inbox", sa.Column(
                    "urgent", sa.Boolean, nullable=False, server_default=sa.false())))),
    Step(5, "base URIs that need an operator: unreadable buckets, held removals",
         create_tables(*_step_5_tables())),
    Step(6, "processes and their heartbeats",
         create_tables(*_step_6_tables())),
    Step(7, "inbox: whether the open window is an edit's",
         add_column("notification_inbox", sa.Column(
             "edit_window", sa.Boolean, nullable=False, server_default=sa.false()))),
]

LATEST_VERSION = MIGRATIONS[-1].version


# --- running them -----------------------------------------------------------------

def current_version(conn) -> int:
    """The schema version of the database (0: the plugin's tables predate versions)."""
    if not sa.inspect(conn).has_table(schema_version.name):
        return 0
    return conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0


def migrate(engine, until=None) -> List[Step]:
    """Bring the database to :data:`LATEST_VERSION` (or to version ``until``,
    for tests); return the steps applied."""
    target = LATEST_VERSION if until is None else until
    if engine.dialect.name == "sqlite":
        _use_wal(engine)
    with engine.connect() as conn:
        if current_version(conn) >= target:
            return []  # the common case, without taking any lock
    with _exclusive(engine) as conn:
        version = current_version(conn)  # again: another process may have migrated
        missing = [step for step in MIGRATIONS if version < step.version <= target]
        if missing:
            schema_version.create(conn, checkfirst=True)
        for step in missing:
            logger.info("notification schema: step %d, %s", step.version, step.description)
            step.apply(conn)
            conn.execute(schema_version.insert().values(
                version=step.version, description=step.description, applied_at=time.time()))
    return missing


def _use_wal(engine, timeout=WAL_SWITCH_SECONDS):
    """Put a SQLite database in WAL mode (it stays so, in the file).

    WAL lets the HTTP workers append to the inbox while a worker thread
    reads it, instead of failing with "database is locked". Switching needs
    the database to itself for a moment, and SQLite answers "locked" at once
    rather than waiting when another process holds it (hosts starting at
    once: one switches, the others then find WAL on); so look first, and
    try again until ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with engine.connect() as conn:
                if conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal":
                    return
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
                return
        except sa.exc.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class _exclusive:
    """A transaction only one migrator at a time holds, on SQLite or PostgreSQL.

    PostgreSQL: a transaction-scoped advisory lock (DDL is transactional
    there too). SQLite: ``BEGIN IMMEDIATE`` takes the write lock at once,
    and the driver's busy timeout makes the others wait for it.
    """

    def __init__(self, engine):
        self.engine = engine

    def __enter__(self):
        if self.engine.dialect.name == "sqlite":
            # Driver-level autocommit, so that our own BEGIN is the only one.
            self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self.conn.exec_driver_sql("BEGIN IMMEDIATE")
            return self.conn
        self.conn = self.engine.connect()
        self.transaction = self.conn.begin()
        if self.engine.dialect.name == "postgresql":
            self.conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            if self.engine.dialect.name == "sqlite":
                self.conn.exec_driver_sql("COMMIT" if exc_type is None else "ROLLBACK")
            elif exc_type is None:
                self.transaction.commit()
            else:
                self.transaction.rollback()
        finally:
            self.conn.close()
        return False
