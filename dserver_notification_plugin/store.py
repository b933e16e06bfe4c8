"""The plugin's tables in dservercore's SQL database, and every query on them.

The inbox is a queue of one row per dataset, and a queue is a handful of
operations on a table: ``enqueue`` (add or fold into the dataset's row),
``claim`` (take due rows, atomically, by exactly one process),
``finish``/``fail`` (done, retry later, or dead) and ``requeue_dead``.
Every write is a single statement, so it is safe with several gunicorn
workers on SQLite and on PostgreSQL alike: a claim is a compare-and-swap
``UPDATE ... WHERE state = <seen state>`` and only the process whose update
matched a row owns it. ``finish`` and ``fail`` say whether the row was still
owned: a claim that expired may have been taken by another process.

A row in ``processing`` that receives new events bumps its ``generation``;
when the claim finishes, a changed generation sends the row back to
``pending`` instead of ``done``, so no event is lost to a race.

All SQL of the plugin lives in this module; :class:`Store` is the one object
the rest of the plugin talks to.
"""
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Iterable, List, Optional

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .schema import counters, es_documents, inbox, migrate
from .states import FINISHED_STATES, WAITING_STATES, State

ERROR_TEXT_LIMIT = 4000
# Databases limit the number of bound parameters in one statement.
IN_CLAUSE_CHUNK = 500


def process_id():
    # Recomputed after a fork: a gunicorn worker is not its master.
    return f"{socket.gethostname()}:{os.getpid()}"


def now():
    return time.time()


@dataclass(frozen=True)
class Claim:
    """An inbox row this process has claimed; ``finish`` or ``fail`` it."""
    id: int
    dataset_uri: str
    base_uri: str
    uuid: str
    attempts: int
    fingerprint: Optional[str]
    first_event_at: float
    claimed_by: str
    claimed_at: float


@dataclass(frozen=True)
class Entry:
    """An inbox row as read for status, reports and tests."""
    id: int
    dataset_uri: str
    base_uri: str
    uuid: str
    state: State
    events: int
    first_event_at: float
    last_event_at: float
    due_at: float
    attempts: int
    last_error: Optional[str]
    last_outcome: Optional[str]
    fingerprint: Optional[str]
    claimed_by: Optional[str]
    finished_at: Optional[float]

    @classmethod
    def from_row(cls, row):
        values = {f.name: row[f.name] for f in fields(cls)}
        values["state"] = State(values["state"])
        return cls(**values)


class Store:
    """The plugin's tables, created on first use, and their operations.

    Takes an ``engine`` directly, or an ``app`` whose dservercore SQLAlchemy
    engine it uses (inside an app context, pushed when there is none).
    """

    def __init__(self, app=None, engine=None):
        if (app is None) == (engine is None):
            raise ValueError("give either an app or an engine")
        self.app = app
        self._engine = engine
        self._schema_lock = threading.Lock()
        self._schema_ready = False

    # connections ----------------------------------------------------------------
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

    def dispose_inherited_connections(self):
        """After a fork: drop the parent's pooled connections, never share them."""
        if self._engine is not None:
            self._engine.dispose(close=False)
            return
        from dservercore import sql_db
        with self.app.app_context():
            for engine in sql_db.engines.values():
                engine.dispose(close=False)

    # the queue ----------------------------------------------------------------------
    def enqueue(self, targets, debounce, max_delay, at=None) -> int:
        """Add one event per target, folding events of a dataset into its row.

        ``targets`` are objects with ``uri``, ``base_uri`` and ``uuid``. A new
        event pushes the due time back by ``debounce`` but never beyond
        ``max_delay`` after the first event of the pending window, so a
        never-ending stream of writes still gets indexed. Returns the
        number of events written.
        """
        at = now() if at is None else at
        per_dataset = {}
        for target in targets:
            count, _ = per_dataset.get(target.uri, (0, target))
            per_dataset[target.uri] = (count + 1, target)
        with self.transaction() as conn:
            for uri, (count, target) in sorted(per_dataset.items()):
                values = dict(
                    dataset_uri=uri, base_uri=target.base_uri, uuid=target.uuid,
                    state=State.PENDING.value, generation=1, claimed_generation=0,
                    events=count, first_event_at=at, last_event_at=at,
                    due_at=at + debounce, attempts=0)
                _upsert(conn, inbox, values, inbox.c.dataset_uri,
                        _fold_assignments(count, at, debounce, max_delay))
        return sum(count for count, _ in per_dataset.values())

    def claim(self, claim_timeout, limit=16, ignore_due=False, owner=None,
              at=None) -> List[Claim]:
        """Claim up to ``limit`` due rows for this process.

        Rows claimed by a process that vanished (SIGKILL, OOM) are reclaimed
        once their claim is older than ``claim_timeout``. ``ignore_due``
        skips the debounce of pending rows, never the backoff of failed
        ones: a drain must not spin on an entry that keeps failing.
        """
        owner = owner or process_id()
        at = now() if at is None else at
        c = inbox.c
        pending = c.state == State.PENDING.value
        if not ignore_due:
            pending = sa.and_(pending, c.due_at <= at)
        retry_due = sa.and_(c.state == State.FAILED.value, c.due_at <= at)
        stale = sa.and_(c.state == State.PROCESSING.value, c.claimed_at < at - claim_timeout)
        with self.transaction() as conn:
            candidates = conn.execute(
                sa.select(c.id, c.state, c.claimed_at)
                .where(sa.or_(pending, retry_due, stale))
                .order_by(c.due_at).limit(limit)).all()
            claimed = [row.id for row in candidates
                       if self._take(conn, row, owner, at)]
            if not claimed:
                return []
            rows = conn.execute(sa.select(inbox).where(c.id.in_(claimed))).mappings().all()
        return [Claim(id=r["id"], dataset_uri=r["dataset_uri"], base_uri=r["base_uri"],
                      uuid=r["uuid"], attempts=r["attempts"], fingerprint=r["fingerprint"],
                      first_event_at=r["first_event_at"], claimed_by=r["claimed_by"],
                      claimed_at=r["claimed_at"]) for r in rows]

    @staticmethod
    def _take(conn, row, owner, at):
        """Compare-and-swap one candidate row to ``processing``; True if ours."""
        c = inbox.c
        same_state = sa.and_(c.id == row.id, c.state == row.state)
        if row.state == State.PROCESSING.value:
            same_state = sa.and_(same_state, c.claimed_at == row.claimed_at)
        result = conn.execute(inbox.update().where(same_state).values(
            state=State.PROCESSING.value, claimed_by=owner, claimed_at=at,
            claimed_generation=c.generation, attempts=c.attempts + 1))
        return result.rowcount == 1

    def finish(self, claim: Claim, outcome, fingerprint=None, at=None) -> bool:
        """Mark a claimed row done, or pending again if events arrived meanwhile.

        False when the claim was lost (expired and taken by another process):
        then nothing is written.
        """
        c = inbox.c
        changed = c.generation != c.claimed_generation
        with self.transaction() as conn:
            result = conn.execute(inbox.update().where(_owned(claim)).values(
                state=sa.case((changed, State.PENDING.value), else_=State.DONE.value),
                attempts=sa.case((changed, 0), else_=c.attempts),
                last_outcome=str(outcome), last_error=None,
                finished_at=now() if at is None else at,
                fingerprint=fingerprint if fingerprint is not None else c.fingerprint,
                claimed_by=None))
        return result.rowcount == 1

    def fail(self, claim: Claim, error, retry_at, max_attempts, give_up=False,
             at=None) -> Optional[State]:
        """Record a failed attempt: retry at ``retry_at`` (FAILED) or give up
        (DEAD: attempts used up, or ``give_up`` for errors no retry can fix).

        Returns the new state, or None when the claim was lost.
        """
        state = State.DEAD if give_up or claim.attempts >= max_attempts else State.FAILED
        with self.transaction() as conn:
            result = conn.execute(inbox.update().where(_owned(claim)).values(
                state=state.value, due_at=retry_at, last_error=str(error)[:ERROR_TEXT_LIMIT],
                last_outcome="error", finished_at=now() if at is None else at,
                claimed_by=None))
        return state if result.rowcount == 1 else None

    def requeue_dead(self, ids=None, at=None) -> int:
        """Put dead rows (all, or those with the given ids) back in the queue."""
        at = now() if at is None else at
        c = inbox.c
        where = c.state == State.DEAD.value
        if ids:
            where = sa.and_(where, c.id.in_(list(ids)))
        with self.transaction() as conn:
            result = conn.execute(inbox.update().where(where).values(
                state=State.PENDING.value, due_at=at, attempts=0, first_event_at=at))
        return result.rowcount

    def forget_fingerprints(self, uris: Iterable[str]):
        """Make sync register these datasets again instead of calling them unchanged."""
        with self.transaction() as conn:
            for chunk in _chunks(sorted(uris)):
                conn.execute(inbox.update().where(inbox.c.dataset_uri.in_(chunk))
                             .values(fingerprint=None))

    # reading the queue -----------------------------------------------------------
    def entries(self, uris: Optional[Iterable[str]] = None) -> List[Entry]:
        """Inbox rows (all, or those of the given dataset URIs), by id."""
        with self.transaction() as conn:
            if uris is None:
                rows = conn.execute(sa.select(inbox).order_by(inbox.c.id)).mappings().all()
            else:
                rows = [row for chunk in _chunks(sorted(uris)) for row in conn.execute(
                    sa.select(inbox).where(inbox.c.dataset_uri.in_(chunk))).mappings()]
        return [Entry.from_row(row) for row in rows]

    def state_counts(self):
        with self.transaction() as conn:
            rows = conn.execute(
                sa.select(inbox.c.state, sa.func.count()).group_by(inbox.c.state)).all()
        counts = {state: 0 for state in State}
        counts.update({State(state): n for state, n in rows})
        return counts

    def oldest_waiting_age(self, at=None):
        """Seconds since the first event of the oldest waiting entry, or None."""
        with self.transaction() as conn:
            oldest = conn.execute(
                sa.select(sa.func.min(inbox.c.first_event_at))
                .where(inbox.c.state.in_([s.value for s in WAITING_STATES]))).scalar()
        return None if oldest is None else max(0.0, (now() if at is None else at) - oldest)

    def dead_entries(self, limit=100) -> List[Entry]:
        with self.transaction() as conn:
            rows = conn.execute(
                sa.select(inbox).where(inbox.c.state == State.DEAD.value)
                .order_by(inbox.c.id).limit(limit)).mappings().all()
        return [Entry.from_row(row) for row in rows]

    # Elasticsearch document ids --------------------------------------------------
    def remember_document(self, doc_id, bucket, key):
        with self.transaction() as conn:
            values = dict(doc_id=doc_id, bucket=bucket, key=key, updated_at=now())
            _upsert(conn, es_documents, values, es_documents.c.doc_id,
                    {"bucket": bucket, "key": key, "updated_at": values["updated_at"]})

    def recall_document(self, doc_id):
        """``(bucket, key)`` a document id stood for, or None."""
        with self.transaction() as conn:
            row = conn.execute(
                sa.select(es_documents.c.bucket, es_documents.c.key)
                .where(es_documents.c.doc_id == doc_id)).first()
        return None if row is None else (row.bucket, row.key)

    def forget_document(self, doc_id):
        with self.transaction() as conn:
            conn.execute(es_documents.delete().where(es_documents.c.doc_id == doc_id))

    # counters --------------------------------------------------------------------
    def add_counters(self, deltas):
        """Add in-process counter deltas to the persisted totals."""
        with self.transaction() as conn:
            for name, delta in sorted(deltas.items()):
                if delta:
                    _upsert(conn, counters, {"name": name, "value": delta}, counters.c.name,
                            {"value": counters.c.value + delta})

    def counter_totals(self):
        with self.transaction() as conn:
            return {name: value for name, value in conn.execute(
                sa.select(counters.c.name, counters.c.value)).all()}


# --- statements -------------------------------------------------------------------

def _owned(claim: Claim):
    """The row is still the one this claim took: same owner, same claim time."""
    c = inbox.c
    return sa.and_(c.id == claim.id, c.state == State.PROCESSING.value,
                   c.claimed_by == claim.claimed_by, c.claimed_at == claim.claimed_at)


def _fold_assignments(count, at, debounce, max_delay):
    """SET clause that folds ``count`` new events into an existing row."""
    c = inbox.c
    finished = c.state.in_([s.value for s in FINISHED_STATES])
    window_start = sa.case((finished, at), else_=c.first_event_at)
    # min(at + debounce, window_start + max_delay), portable SQL
    debounced = sa.case(
        (window_start + max_delay > at + debounce, at + debounce),
        else_=window_start + max_delay)
    return {
        "state": sa.case((finished, State.PENDING.value), else_=c.state),
        "generation": c.generation + 1,
        "events": sa.case((finished, count), else_=c.events + count),
        "first_event_at": window_start,
        "last_event_at": at,
        # A row waiting for a retry keeps its backoff.
        "due_at": sa.case((c.state == State.FAILED.value, sa.case(
            (c.due_at > debounced, c.due_at), else_=debounced)), else_=debounced),
        "attempts": sa.case((finished, 0), else_=c.attempts),
    }


def _upsert(conn, table, values, key_column, assignments):
    """INSERT ``values``, or apply ``assignments`` to the row with the same key.

    SQLite and PostgreSQL (dservercore's databases) do it in one statement;
    any other database updates first and inserts when nothing matched.
    """
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        conn.execute(insert(table).values(**values).on_conflict_do_update(
            index_elements=[key_column], set_=assignments))
        return
    key_matches = key_column == values[key_column.name]
    if conn.execute(table.update().where(key_matches).values(**assignments)).rowcount:
        return
    try:
        with conn.begin_nested():
            conn.execute(table.insert().values(**values))
    except IntegrityError:  # inserted by another process meanwhile
        conn.execute(table.update().where(key_matches).values(**assignments))


def _chunks(items, size=IN_CLAUSE_CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]
