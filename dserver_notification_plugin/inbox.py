"""The durable inbox: one row per dataset, in dservercore's own SQL database.

A queue is a handful of operations on a table: ``enqueue`` (add or fold into
the dataset's row), ``claim`` (take due rows, atomically, by exactly one
process), ``finish``/``fail`` (done, retry later, or dead) and ``retry``
(revive dead rows). Every write is a single statement, so it is safe with
several gunicorn workers on SQLite and on PostgreSQL alike: a claim is a
compare-and-swap ``UPDATE ... WHERE state = <seen state>`` and only the
process whose update matched a row owns it.

States: ``pending`` (waiting for its due time), ``processing`` (claimed),
``failed`` (waiting for a retry), ``done`` and ``dead`` (gave up, kept with
its last error). A row in ``processing`` that receives new events bumps its
``generation``; when the claim finishes, a changed generation sends the row
back to ``pending`` instead of ``done``, so no event is lost to a race.
"""
import os
import socket
import time

import sqlalchemy as sa
from sqlalchemy.exc import DatabaseError, IntegrityError

STATES = ("pending", "processing", "failed", "done", "dead")

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

def process_id():
    # Recomputed after a fork: a gunicorn worker is not its master.
    return f"{socket.gethostname()}:{os.getpid()}"


def ensure_schema(engine):
    """Create the plugin's tables if missing; switch SQLite to WAL.

    WAL lets the HTTP workers append to the inbox while a worker thread
    reads it, instead of failing with "database is locked".
    """
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    for attempt in range(3):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except DatabaseError:
            # Several gunicorn workers start at once: another one may create a
            # table between our check and our CREATE. Check again.
            if attempt == 2:
                raise


def _upsert(dialect_name):
    if dialect_name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
        return insert
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
        return insert
    return None


def enqueue(conn, targets, now, debounce, max_delay):
    """Add one event per target, folding events of a dataset into its row.

    ``targets`` is an iterable of objects with ``uri``, ``base_uri`` and
    ``uuid``. A new event pushes the due time back by ``debounce`` but never
    beyond ``max_delay`` after the first event of the pending window, so a
    never-ending stream of writes still gets indexed.
    Returns the number of events written.
    """
    per_dataset = {}
    for target in targets:
        count, _ = per_dataset.get(target.uri, (0, target))
        per_dataset[target.uri] = (count + 1, target)
    for uri, (count, target) in sorted(per_dataset.items()):
        _enqueue_one(conn, target, count, now, debounce, max_delay)
    return sum(count for count, _ in per_dataset.values())


def _enqueue_one(conn, target, count, now, debounce, max_delay):
    insert = _upsert(conn.dialect.name)
    values = dict(
        dataset_uri=target.uri, base_uri=target.base_uri, uuid=target.uuid,
        state="pending", generation=1, claimed_generation=0, events=count,
        first_event_at=now, last_event_at=now, due_at=now + debounce, attempts=0)
    if insert is None:
        return _enqueue_portable(conn, values, count, now, debounce, max_delay)
    stmt = insert(inbox).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[inbox.c.dataset_uri],
        set_=_fold_assignments(count, now, debounce, max_delay))
    conn.execute(stmt)


def _fold_assignments(count, now, debounce, max_delay):
    """SET clause that folds ``count`` new events into an existing row."""
    c = inbox.c
    finished = c.state.in_(("done", "dead"))
    window_start = sa.case((finished, now), else_=c.first_event_at)
    # min(now + debounce, window_start + max_delay), portable SQL
    debounced = sa.case(
        (window_start + max_delay > now + debounce, now + debounce),
        else_=window_start + max_delay)
    return {
        "state": sa.case((finished, "pending"), else_=c.state),
        "generation": c.generation + 1,
        "events": sa.case((finished, count), else_=c.events + count),
        "first_event_at": window_start,
        "last_event_at": now,
        # A row waiting for a retry keeps its backoff.
        "due_at": sa.case((c.state == "failed", sa.case(
            (c.due_at > debounced, c.due_at), else_=debounced)), else_=debounced),
        "attempts": sa.case((finished, 0), else_=c.attempts),
    }


def _enqueue_portable(conn, values, count, now, debounce, max_delay):
    """Fallback for databases without INSERT ... ON CONFLICT."""
    result = conn.execute(
        inbox.update().where(inbox.c.dataset_uri == values["dataset_uri"])
        .values(**_fold_assignments(count, now, debounce, max_delay)))
    if result.rowcount == 0:
        try:
            with conn.begin_nested():
                conn.execute(inbox.insert().values(**values))
        except IntegrityError:
            conn.execute(
                inbox.update().where(inbox.c.dataset_uri == values["dataset_uri"])
                .values(**_fold_assignments(count, now, debounce, max_delay)))


def claim(conn, now, claim_timeout, limit=16, owner=None, ignore_due=False):
    """Claim up to ``limit`` due rows for this process; return them as dicts.

    Rows claimed by a process that vanished (SIGKILL, OOM) are reclaimed
    once their claim is older than ``claim_timeout``.
    """
    owner = owner or process_id()
    c = inbox.c
    # ``ignore_due`` skips the debounce of pending rows, never the backoff
    # of failed ones: a drain must not spin on an entry that keeps failing.
    pending = c.state == "pending" if ignore_due else \
        sa.and_(c.state == "pending", c.due_at <= now)
    retry_due = sa.and_(c.state == "failed", c.due_at <= now)
    stale = sa.and_(c.state == "processing", c.claimed_at < now - claim_timeout)
    candidates = conn.execute(
        sa.select(c.id, c.state, c.claimed_at)
        .where(sa.or_(pending, retry_due, stale))
        .order_by(c.due_at).limit(limit)).all()
    claimed = []
    for row in candidates:
        same_state = sa.and_(c.id == row.id, c.state == row.state)
        if row.state == "processing":
            same_state = sa.and_(same_state, c.claimed_at == row.claimed_at)
        result = conn.execute(
            inbox.update().where(same_state).values(
                state="processing", claimed_by=owner, claimed_at=now,
                claimed_generation=c.generation, attempts=c.attempts + 1))
        if result.rowcount == 1:
            claimed.append(row.id)
    if not claimed:
        return []
    rows = conn.execute(sa.select(inbox).where(c.id.in_(claimed))).mappings().all()
    return [dict(r) for r in rows]


def finish(conn, entry, outcome, now, fingerprint=None):
    """Mark a claimed row done, or pending again if events arrived meanwhile."""
    c = inbox.c
    changed = c.generation != c.claimed_generation
    conn.execute(
        inbox.update()
        .where(sa.and_(c.id == entry["id"], c.claimed_by == entry["claimed_by"],
                       c.claimed_at == entry["claimed_at"]))
        .values(state=sa.case((changed, "pending"), else_="done"),
                attempts=sa.case((changed, 0), else_=c.attempts),
                last_outcome=outcome, last_error=None, finished_at=now,
                fingerprint=fingerprint if fingerprint is not None else c.fingerprint,
                claimed_by=None))


def fail(conn, entry, error, now, retry_at, max_attempts):
    """Record a failed attempt: retry at ``retry_at`` or give up (dead)."""
    c = inbox.c
    dead = entry["attempts"] >= max_attempts
    conn.execute(
        inbox.update()
        .where(sa.and_(c.id == entry["id"], c.claimed_by == entry["claimed_by"],
                       c.claimed_at == entry["claimed_at"]))
        .values(state="dead" if dead else "failed", due_at=retry_at,
                last_error=error[:4000], last_outcome="error", finished_at=now,
                claimed_by=None))
    return "dead" if dead else "failed"


def bury(conn, entry, error, now):
    """Give up at once on an error no retry can fix (kept as dead)."""
    return fail(conn, dict(entry, attempts=10**9), error, now, now, 1)


def retry(conn, now, ids=None):
    """Put dead rows (all, or those with the given ids) back in the queue."""
    c = inbox.c
    where = c.state == "dead"
    if ids:
        where = sa.and_(where, c.id.in_(list(ids)))
    result = conn.execute(
        inbox.update().where(where).values(
            state="pending", due_at=now, attempts=0, first_event_at=now))
    return result.rowcount


def state_counts(conn):
    rows = conn.execute(
        sa.select(inbox.c.state, sa.func.count()).group_by(inbox.c.state)).all()
    counts = {state: 0 for state in STATES}
    counts.update({state: n for state, n in rows})
    return counts


def oldest_pending_age(conn, now):
    oldest = conn.execute(
        sa.select(sa.func.min(inbox.c.first_event_at))
        .where(inbox.c.state.in_(("pending", "failed", "processing")))).scalar()
    return None if oldest is None else max(0.0, now - oldest)


def dead_entries(conn, limit=100):
    rows = conn.execute(
        sa.select(inbox.c.id, inbox.c.dataset_uri, inbox.c.attempts, inbox.c.last_error,
                  inbox.c.finished_at)
        .where(inbox.c.state == "dead").order_by(inbox.c.id).limit(limit)).mappings().all()
    return [dict(r) for r in rows]


def remember_es_document(conn, doc_id, bucket, key, now):
    insert = _upsert(conn.dialect.name)
    if insert is not None:
        stmt = insert(es_documents).values(doc_id=doc_id, bucket=bucket, key=key, updated_at=now)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=[es_documents.c.doc_id],
            set_={"bucket": bucket, "key": key, "updated_at": now}))
        return
    conn.execute(es_documents.delete().where(es_documents.c.doc_id == doc_id))
    conn.execute(es_documents.insert().values(
        doc_id=doc_id, bucket=bucket, key=key, updated_at=now))


def recall_es_document(conn, doc_id):
    row = conn.execute(
        sa.select(es_documents.c.bucket, es_documents.c.key)
        .where(es_documents.c.doc_id == doc_id)).first()
    return None if row is None else (row.bucket, row.key)


def forget_es_document(conn, doc_id):
    conn.execute(es_documents.delete().where(es_documents.c.doc_id == doc_id))


def add_counters(conn, deltas):
    """Add in-process counter deltas to the persisted totals."""
    for name, delta in deltas.items():
        if not delta:
            continue
        updated = conn.execute(
            counters.update().where(counters.c.name == name)
            .values(value=counters.c.value + delta))
        if updated.rowcount == 0:
            try:
                with conn.begin_nested():
                    conn.execute(counters.insert().values(name=name, value=delta))
            except IntegrityError:
                conn.execute(counters.update().where(counters.c.name == name)
                             .values(value=counters.c.value + delta))


def counter_totals(conn):
    return {name: value for name, value in conn.execute(
        sa.select(counters.c.name, counters.c.value)).all()}


def now():
    return time.time()
