"""The plugin's tables as they are now: what the code reads and writes.

A database reaches this shape through the frozen steps of
:mod:`.migrations`; a test checks that a database migrated step by step
equals these tables. To change them, change them here *and* append a step
there that states the change as its own DDL.
"""
import sqlalchemy as sa

from ..states import FIGURES

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
    # The open window was opened by an edit (db/due.py) and has heard only
    # edits since: a further edit keeps it short.
    sa.Column("edit_window", sa.Boolean, nullable=False, default=False,
              server_default=sa.false()),
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
    # the pass's figures so far, one column each
    *(sa.Column(name, sa.BigInteger, nullable=False, default=0) for name in FIGURES),
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
