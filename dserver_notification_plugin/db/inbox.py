"""The inbox: the queue of datasets to sync, one row per dataset.

A queue is a handful of operations on a table: ``enqueue`` (add or fold
into the dataset's row), ``claim`` (take due rows, atomically, by exactly
one process), ``finish``/``fail`` (done, retry later, or dead) and
``requeue_dead``.
Every write is a single statement, so it is safe with several gunicorn
workers and several hosts, on SQLite and on PostgreSQL alike: claims are
``FOR UPDATE SKIP LOCKED`` on PostgreSQL and a compare-and-swap elsewhere
(:mod:`.claims`). ``finish`` and ``fail`` say whether the row was still
owned: a claim that expired may have been taken by another process.

A row in ``processing`` that receives new events bumps its ``generation``;
when the claim finishes, a changed generation sends the row back to
``pending`` instead of ``done``, so no event is lost to a race.

The claim statements themselves are in :mod:`.claims`, the rules of
when an entry is due in :mod:`.due`; :class:`Inbox` is what the rest of
the plugin talks to.
"""
from dataclasses import dataclass, fields
from typing import Iterable, List, Optional

import sqlalchemy as sa

from ..coverage import UNKNOWN, heard_text
from ..states import WAITING_STATES, State
from ..wakeup import Alarm
from . import claims
from .claims import Claim
from .database import announce_due, chunks, now, upsert
from .due import fold_assignments, new_row_due
from .processes import process_identity
from .tables import inbox

#: An entry due within this long is this process's to claim when one of its
#: sync threads sleeps: the other processes are not woken for it, only to
#: find it taken (in a load run of 3 hosts with 2 gunicorn workers each,
#: not waking them cut the hosts' CPU by a third; docs/benchmarks.rst).
LOCAL_WAKE_SECONDS = 0.25

ERROR_TEXT_LIMIT = 4000
#: ``finish(seen=KEEP)``: leave what the last sync read as it is.
KEEP = object()


class WaitingCapReached(Exception):
    """``max_waiting`` datasets wait already; ``refused`` were not added (after
    ``written`` events for others were committed). The intake turns it into
    :class:`..intake.InboxFull`, its answer to the sender."""

    def __init__(self, refused, written):
        super().__init__(f"{len(refused)} datasets not added: the inbox is full")
        self.refused = refused
        self.written = written


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


class Inbox:
    """The queue of datasets to sync, on the plugin's :class:`.Database`."""

    def __init__(self, db):
        self.db = db
        # Rung after every enqueue; the worker of this process sleeps on it.
        self.alarm = Alarm()

    # the queue ----------------------------------------------------------------------
    def enqueue(self, targets, debounce, max_delay, at=None, max_waiting=None,
                due_now=(), edits=(), edit_delay=0.0) -> int:
        """Add one event per target, folding events of a dataset into its row.

        ``targets`` are objects with ``uri``, ``base_uri`` and ``uuid``. A new
        event pushes the due time back by ``debounce`` but never beyond
        ``max_delay`` after the first event of the pending window, so a
        never-ending stream of writes still gets indexed; an entry already
        due stays due. Datasets whose URI is in ``due_now`` are due at once;
        those in ``edits`` (their events here are all README, tag or
        annotation events) after ``edit_delay`` when their entry is done and
        its last sync found them frozen and indexed, when they have no entry
        and the reconciler's ledger holds them indexed, or when their open
        window is an edit's (:mod:`.due`).
        Workers are woken for the earliest due time: this process's through
        :attr:`alarm`, the others' through ``NOTIFY`` on PostgreSQL, unless
        the entry is due within :data:`LOCAL_WAKE_SECONDS` and a sync thread
        of this process sleeps to take it (:meth:`.Alarm.promise_wake`).
        Returns the number of events written.

        With ``max_waiting``, datasets not yet waiting are added only while
        fewer than that many wait; events for datasets already waiting are
        always folded in. Whatever was written is committed, then
        :class:`WaitingCapReached` names the datasets that were not.
        """
        at = now() if at is None else at
        per_dataset = {}
        for target in targets:
            per_dataset.setdefault(target.uri, []).append(target)
        due_times, refused = [], []
        with self.db.transaction() as conn:
            if max_waiting is not None:
                hold_the_cap(conn)
                refused = _over_the_cap(conn, sorted(per_dataset), max_waiting)
                for uri in refused:
                    del per_dataset[uri]
            for uri, events in sorted(per_dataset.items()):
                urgent, target, heard = uri in due_now, events[0], heard_text(events)
                due_at, edit_window = new_row_due(uri, at, debounce, urgent, uri in edits,
                                                  edit_delay)
                values = dict(
                    dataset_uri=uri, base_uri=target.base_uri, uuid=target.uuid,
                    state=State.PENDING.value, generation=1, claimed_generation=0,
                    events=len(events), first_event_at=at, last_event_at=at,
                    due_at=due_at, attempts=0, heard=heard, urgent=urgent,
                    edit_window=edit_window)
                fold = fold_assignments(len(events), at, debounce, max_delay, urgent, heard,
                                        edit=uri in edits, edit_delay=edit_delay)
                due_times.append(upsert(conn, inbox, values, inbox.c.dataset_uri, fold,
                                        returning=inbox.c.due_at))
            if per_dataset:
                earliest = min((t for t in due_times if t is not None), default=at)
                if earliest > at + LOCAL_WAKE_SECONDS or not self.alarm.promise_wake():
                    announce_due(conn, earliest)
        if per_dataset:
            self.alarm.ring(earliest)
        written = sum(len(events) for events in per_dataset.values())
        if refused:
            raise WaitingCapReached(refused, written)
        return written

    def claim(self, claim_timeout, limit=16, ignore_due=False, owner=None,
              at=None) -> List[Claim]:
        """Claim up to ``limit`` due rows for this process (see :mod:`.claims`).

        Rows claimed by a process that vanished (SIGKILL, OOM) are reclaimed
        once their claim is older than ``claim_timeout``. ``ignore_due``
        skips the debounce of pending rows, never the backoff of failed
        ones: a drain must not spin on an entry that keeps failing.
        """
        if owner is None:
            self.db.register_process()  # claims belong to processes known alive
            owner = process_identity()
        at = now() if at is None else at
        where = claims.claimable(at, claim_timeout, ignore_due, self.db.alive_within)
        with self.db.transaction() as conn:
            rows = claims.claim_rows(conn, where, limit, owner, at)
        return [Claim.from_row(row) for row in sorted(rows, key=claims.due_order)]

    def release(self, taken: Iterable[Claim], at=None) -> int:
        """Give claims back unprocessed (a stopping worker): due now, for anyone."""
        at = now() if at is None else at
        released = 0
        with self.db.transaction() as conn:
            for claim in taken:
                released += conn.execute(inbox.update().where(_owned(claim)).values(
                    state=State.PENDING.value, due_at=at, claimed_by=None,
                    heard=UNKNOWN)).rowcount
            if released:
                announce_due(conn, at)
        return released

    def any_claimable(self, claim_timeout, ignore_due=False, at=None) -> bool:
        """Whether a claim now could take a row: a claim that took none may
        only have lost a race to another claimer (SQLite's compare-and-swap)."""
        at = now() if at is None else at
        where = claims.claimable(at, claim_timeout, ignore_due, self.db.alive_within)
        with self.db.transaction() as conn:
            return conn.execute(sa.select(inbox.c.id).where(where.clause).limit(1),
                                where.params).first() is not None

    def next_due_at(self, claim_timeout):
        """When the next entry becomes claimable (maybe already), or None."""
        with self.db.transaction() as conn:
            return claims.next_due_at(conn, claim_timeout, self.db.alive_within)

    def finish(self, claim: Claim, outcome, fingerprint=None, seen=KEEP, at=None) -> bool:
        """Mark a claimed row done, or pending again if events arrived meanwhile.

        ``seen`` is what the sync read (:class:`~.coverage.Seen`, or None
        when not known); KEEP leaves the last record. False when the claim
        was lost (expired and taken by another process): then nothing is
        written.
        """
        c = inbox.c
        changed = c.generation != c.claimed_generation
        with self.db.transaction() as conn:
            result = conn.execute(inbox.update().where(_owned(claim)).values(
                state=sa.case((changed, State.PENDING.value), else_=State.DONE.value),
                attempts=sa.case((changed, 0), else_=c.attempts),
                last_outcome=str(outcome), last_error=None,
                finished_at=now() if at is None else at,
                fingerprint=fingerprint if fingerprint is not None else c.fingerprint,
                seen=c.seen if seen is KEEP else (seen.to_text() if seen else None),
                claimed_by=None))
        return result.rowcount == 1

    def hold_claim(self, claim: Claim, session) -> bool:
        """Lock the claimed row in ``session``'s open transaction and say
        whether the claim still holds.

        Until that transaction ends no other process can take the row (a
        row lock on PostgreSQL, the database's write lock on SQLite), so
        index writes committed in it are the claim owner's: a sync whose
        claim was taken over writes nothing, one whose claim holds writes
        before the next owner reads S3.
        """
        c = inbox.c
        return session.execute(inbox.update().where(_owned(claim))
                               .values(claimed_by=c.claimed_by)).rowcount == 1

    def fail(self, claim: Claim, error, retry_at, max_attempts, give_up=False,
             at=None) -> Optional[State]:
        """Record a failed attempt: retry at ``retry_at`` (FAILED) or give up
        (DEAD: attempts used up, or ``give_up`` for errors no retry can fix).

        Returns the new state, or None when the claim was lost.
        """
        state = State.DEAD if give_up or claim.attempts >= max_attempts else State.FAILED
        with self.db.transaction() as conn:
            # What it heard before the claim is gone: the retry must sync.
            result = conn.execute(inbox.update().where(_owned(claim)).values(
                state=state.value, due_at=retry_at, last_error=str(error)[:ERROR_TEXT_LIMIT],
                last_outcome="error", finished_at=now() if at is None else at,
                claimed_by=None, heard=UNKNOWN))
        return state if result.rowcount == 1 else None

    def requeue_dead(self, ids=None, at=None) -> int:
        """Put dead rows (all, or those with the given ids) back in the queue."""
        at = now() if at is None else at
        c = inbox.c
        where = c.state == State.DEAD.value
        if ids:
            where = sa.and_(where, c.id.in_(list(ids)))
        with self.db.transaction() as conn:
            result = conn.execute(inbox.update().where(where).values(
                state=State.PENDING.value, due_at=at, attempts=0, first_event_at=at,
                heard=UNKNOWN))
            if result.rowcount:
                announce_due(conn, at)
        if result.rowcount:
            self.alarm.ring(at)
        return result.rowcount

    def forget_fingerprints(self, uris: Iterable[str], unless_synced_since=None):
        """Make sync register these datasets again instead of calling them
        unchanged, or their events seen.

        ``unless_synced_since``: not for an entry being synced now or whose
        last sync ended after that moment. What was seen of the index then
        (the reconciler's view: search documents without the SQL row) may
        have been that sync's registration half done; it is whole now.
        """
        c = inbox.c
        where = sa.true()
        if unless_synced_since is not None:
            where = sa.and_(c.state != State.PROCESSING.value, sa.or_(
                c.finished_at.is_(None), c.finished_at < unless_synced_since))
        with self.db.transaction() as conn:
            for chunk in chunks(sorted(uris)):
                conn.execute(inbox.update().where(c.dataset_uri.in_(chunk), where)
                             .values(fingerprint=None, seen=None))

    def purge_done(self, older_than, at=None) -> int:
        """Delete rows done for longer than ``older_than`` seconds.

        A dataset's next event simply creates its row again (its first sync
        then registers it once more instead of calling it unchanged).
        """
        cutoff = (now() if at is None else at) - older_than
        c = inbox.c
        with self.db.transaction() as conn:
            result = conn.execute(inbox.delete().where(
                sa.and_(c.state == State.DONE.value, c.finished_at < cutoff)))
        return result.rowcount

    def purge_dead(self, ids=None) -> int:
        """Delete dead rows (all, or those with the given ids): an operator's
        decision that they need no sync."""
        where = inbox.c.state == State.DEAD.value
        if ids:
            where = sa.and_(where, inbox.c.id.in_(list(ids)))
        with self.db.transaction() as conn:
            result = conn.execute(inbox.delete().where(where))
        return result.rowcount

    # reading the queue -----------------------------------------------------------
    def entries(self, uris: Optional[Iterable[str]] = None) -> List[Entry]:
        """Inbox rows (all, or those of the given dataset URIs), by id."""
        with self.db.transaction() as conn:
            if uris is None:
                rows = conn.execute(sa.select(inbox).order_by(inbox.c.id)).mappings().all()
            else:
                rows = [row for chunk in chunks(sorted(uris)) for row in conn.execute(
                    sa.select(inbox).where(inbox.c.dataset_uri.in_(chunk))).mappings()]
        return [Entry.from_row(row) for row in rows]

    def state_counts(self):
        with self.db.transaction() as conn:
            rows = conn.execute(
                sa.select(inbox.c.state, sa.func.count()).group_by(inbox.c.state)).all()
        counts = {state: 0 for state in State}
        counts.update({State(state): n for state, n in rows})
        return counts

    def waiting_count(self) -> int:
        """How many datasets wait in the inbox (what ``max_waiting`` caps)."""
        with self.db.transaction() as conn:
            return _waiting_count(conn)

    def oldest_waiting_age(self, at=None):
        """Seconds since the first event of the oldest waiting entry, or None."""
        with self.db.transaction() as conn:
            oldest = conn.execute(
                sa.select(sa.func.min(inbox.c.first_event_at))
                .where(_is_waiting())).scalar()
        return None if oldest is None else max(0.0, (now() if at is None else at) - oldest)

    def dead_entries(self, limit=100) -> List[Entry]:
        with self.db.transaction() as conn:
            rows = conn.execute(
                sa.select(inbox).where(inbox.c.state == State.DEAD.value)
                .order_by(inbox.c.id).limit(limit)).mappings().all()
        return [Entry.from_row(row) for row in rows]


# --- statements -------------------------------------------------------------------

#: PostgreSQL advisory lock key of the cap on waiting datasets ("cap" in ASCII).
CAP_LOCK_KEY = 0x636170


def hold_the_cap(conn):
    """Make counting the waiting rows and adding new ones one step: until
    this transaction ends, no other capped enqueue counts.

    Without it, concurrent requests each saw room and all inserted.
    PostgreSQL: a transaction-scoped advisory lock; every statement after
    it sees what earlier holders committed (READ COMMITTED). SQLite: a
    write that changes nothing takes the database's write lock first, so
    the count is read under it (pysqlite opens the transaction only at the
    first write, and a count read before it may be stale).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(CAP_LOCK_KEY)))
    else:
        conn.execute(inbox.update().where(inbox.c.id == -1).values(id=inbox.c.id))


def _over_the_cap(conn, uris, max_waiting) -> List[str]:
    """The datasets among ``uris`` (sorted) that would push the number of
    waiting rows past ``max_waiting``; those already waiting never do."""
    c = inbox.c
    waiting = _waiting_count(conn)
    if waiting + len(uris) <= max_waiting:
        return []
    already = set()
    for chunk in chunks(uris):
        already.update(conn.execute(sa.select(c.dataset_uri).where(
            sa.and_(c.dataset_uri.in_(chunk), _is_waiting()))).scalars())
    new = [uri for uri in uris if uri not in already]
    room = max(0, max_waiting - waiting)
    return new[room:]


def _is_waiting():
    """The condition of an inbox row in one of :data:`.WAITING_STATES`."""
    return inbox.c.state.in_([state.value for state in WAITING_STATES])


def _waiting_count(conn) -> int:
    return conn.execute(
        sa.select(sa.func.count()).select_from(inbox).where(_is_waiting())).scalar()


def _owned(claim: Claim):
    """The row is still the one this claim took: same owner, same claim time."""
    c = inbox.c
    return sa.and_(c.id == claim.id, c.state == State.PROCESSING.value,
                   c.claimed_by == claim.claimed_by, c.claimed_at == claim.claimed_at)
