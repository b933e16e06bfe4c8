"""The plugin's tables and their versioned migrations.

The tables below are the *current* schema. A database catches up with it
through :data:`MIGRATIONS`, an ordered list of small steps; the number of
the last step applied is kept in ``notification_schema_version``.

To change the schema, change the table below and append one step::

    Step(3, "inbox: remember the dataset's size",
         add_column("notification_inbox", "size")),

Every step is idempotent on its own (it looks before it acts), because a
fresh database gets the current tables from step 1 already, and later steps
then find their work done. :func:`migrate` runs the missing steps in one
transaction that only one process at a time may hold: ``pg_advisory_xact_lock``
on PostgreSQL, an immediate (write-locked) transaction on SQLite; so several
hosts starting at once migrate once. It runs on the store's first use in
every process, and through ``flask notification migrate``.
"""
import logging
import time
from dataclasses import dataclass
from typing import Callable, List

import sqlalchemy as sa

logger = logging.getLogger(__name__)

metadata = sa.MetaData()

inbox = sa.Table(
    "notification_inbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dataset_uri", sa.String(1024), nullable=False, unique=True),
    sa.Column("base_uri", sa.String(1024), nullable=False),
    sa.Column("uuid", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("generation", sa.Integer, nullable=False, default=0),
    sa.Column("claimed_generation", sa.Integer, nullable=False, default=0),
    sa.Column("events", sa.Integer, nullable=False, default=0),
    sa.Column("first_event_at", sa.Float, nullable=False),
    sa.Column("last_event_at", sa.Float, nullable=False),
    sa.Column("due_at", sa.Float, nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    sa.Column("last_outcome", sa.String(32)),
    sa.Column("fingerprint", sa.String(64)),
    sa.Column("claimed_by", sa.String(128)),
    sa.Column("claimed_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    # The events heard since the last claim, and what the last sync read
    # (coverage.py): NULL means not known, and costs a sync.
    sa.Column("heard", sa.Text),
    sa.Column("seen", sa.Text),
    # Made due at once (a dtool event) since the last claim: later events
    # do not debounce it again.
    sa.Column("urgent", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    # What a claim looks for: waiting rows in due order.
    sa.Index("ix_notification_inbox_state_due_at", "state", "due_at"),
)

# Elasticsearch-style targets delete by document id and send no body, so we
# remember which object each id stood for.
es_documents = sa.Table(
    "notification_es_documents", metadata,
    sa.Column("doc_id", sa.String(512), primary_key=True),
    sa.Column("bucket", sa.String(255), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

#: Longest Elasticsearch document id the plugin remembers (its column's size).
MAX_DOC_ID_LENGTH = es_documents.c.doc_id.type.length

# Totals across processes and restarts, flushed periodically by each worker.
counters = sa.Table(
    "notification_counters", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False, default=0),
)

# The reconciler's memory (ledger.py) and its lease (leases.py).
datasets = sa.Table(
    "notification_datasets", metadata,
    sa.Column("dataset_uri", sa.String(1024), primary_key=True),
    sa.Column("base_uri", sa.String(1024), nullable=False, index=True),
    sa.Column("uuid", sa.String(64), nullable=False),
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("registration_etag", sa.String(128)),
    sa.Column("signature", sa.String(64)),
    sa.Column("expected_signature", sa.String(64)),
    sa.Column("expected_at", sa.Float),
)

cursors = sa.Table(
    "notification_reconcile_cursor", metadata,
    sa.Column("scope", sa.String(64), primary_key=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("base_uri", sa.String(1024)),
    sa.Column("after_uuid", sa.String(64)),
    sa.Column("checked", sa.BigInteger, nullable=False, default=0),
    sa.Column("missing", sa.BigInteger, nullable=False, default=0),
    sa.Column("extra", sa.BigInteger, nullable=False, default=0),
    sa.Column("changed", sa.BigInteger, nullable=False, default=0),
    sa.Column("s3_requests", sa.BigInteger, nullable=False, default=0),
    sa.Column("holder", sa.String(160)),
    sa.Column("updated_at", sa.Float),
)

leases = sa.Table(
    "notification_leases", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(160), nullable=False),
    sa.Column("acquired_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

# What an operator must look at, per base URI (attention.py): a bucket that
# cannot be read, removals a reconcile pass held back.
attention = sa.Table(
    "notification_attention", metadata,
    sa.Column("base_uri", sa.String(1024), primary_key=True),
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("count", sa.Integer),
    sa.Column("total", sa.Integer),
    sa.Column("since", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("reporter", sa.String(160)),
)

# Processes known to be alive (processes.py): every claim owner and lease
# holder, with its last heartbeat.
processes = sa.Table(
    "notification_processes", metadata,
    sa.Column("id", sa.String(160), primary_key=True),
    sa.Column("role", sa.String(64), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False, index=True),
)


# One row per applied step; the highest version is the schema's.
schema_version = sa.Table(
    "notification_schema_version", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)

#: How long a SQLite migrator tries to switch the database to WAL while
#: another holds it.
WAL_SWITCH_SECONDS = 30.0
# Any constant: the key of the PostgreSQL advisory lock migrators share.
MIGRATION_LOCK_KEY = 0x64736E6D  # "dsnm"


# --- steps ------------------------------------------------------------------------

def create_tables(*names) -> Callable:
    """A step that creates the named tables (current definition) if missing."""
    def apply(conn):
        metadata.create_all(conn, tables=[metadata.tables[n] for n in names], checkfirst=True)
    return apply


def add_column(table_name, column_name) -> Callable:
    """A step that adds one column of the current definition if missing.

    A NOT NULL column needs a ``server_default`` for the rows already there.
    """
    def apply(conn):
        if column_name in {c["name"] for c in sa.inspect(conn).get_columns(table_name)}:
            return
        column = metadata.tables[table_name].c[column_name]
        ddl = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {table_name} ADD COLUMN {ddl}")
    return apply


def add_index(table_name, index_name) -> Callable:
    """A step that creates one index of the current definition if missing."""
    def apply(conn):
        [index] = [i for i in metadata.tables[table_name].indexes if i.name == index_name]
        index.create(conn, checkfirst=True)
    return apply


def _steps(*steps) -> Callable:
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


MIGRATIONS: List[Step] = [
    Step(1, "inbox, Elasticsearch document ids and counters",
         create_tables("notification_inbox", "notification_es_documents",
                       "notification_counters")),
    Step(2, "inbox: index on (state, due_at) for claims",
         add_index("notification_inbox", "ix_notification_inbox_state_due_at")),
    Step(3, "reconciler: dataset signatures, pass cursor, leases",
         create_tables("notification_datasets", "notification_reconcile_cursor",
                       "notification_leases")),
    Step(4, "inbox: events heard since the last claim, what the last sync read, urgency",
         _steps(add_column("notification_inbox", "heard"),
                add_column("notification_inbox", "seen"),
                add_column("notification_inbox", "urgent"))),
    Step(5, "base URIs that need an operator: unreadable buckets, held removals",
         create_tables("notification_attention")),
    Step(6, "processes and their heartbeats",
         create_tables("notification_processes")),
]

LATEST_VERSION = MIGRATIONS[-1].version


# --- running them -----------------------------------------------------------------

def current_version(conn) -> int:
    """The schema version of the database (0: the plugin's tables predate versions)."""
    if not sa.inspect(conn).has_table(schema_version.name):
        return 0
    return conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0


def migrate(engine) -> List[Step]:
    """Bring the database to :data:`LATEST_VERSION`; return the steps applied."""
    if engine.dialect.name == "sqlite":
        _use_wal(engine)
    with engine.connect() as conn:
        if current_version(conn) >= LATEST_VERSION:
            return []  # the common case, without taking any lock
    with _exclusive(engine) as conn:
        version = current_version(conn)  # again: another process may have migrated
        missing = [step for step in MIGRATIONS if step.version > version]
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
