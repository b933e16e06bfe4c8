"""How a process takes due inbox rows: two ways to the same promise.

Each due row goes to exactly one process, and a row whose claim is older
than the claim timeout (its process vanished) is taken again.

- PostgreSQL: one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP
  LOCKED) RETURNING``: claimers skip each other's rows instead of waiting
  for them or colliding on them.
- Any other database (SQLite): read candidates, then a compare-and-swap
  ``UPDATE ... WHERE state = <seen state>`` per row; only the process
  whose update matched owns the row.

These are the statements of :meth:`.Inbox.claim`, kept apart so that
the benchmark can time both ways on PostgreSQL.
"""
import functools
from dataclasses import dataclass, fields
from typing import List, Optional

import sqlalchemy as sa

from ..coverage import UNKNOWN
from ..states import State
from .database import now
from .processes import live_owners_since
from .tables import inbox

c = inbox.c
#: Candidates a compare-and-swap claim reads beyond its limit. Every claimer
#: reads the same rows in due order: one that loses the first ones to
#: another takes the next instead of coming back empty, which would send
#: its sync thread to sleep for a poll interval while entries are due.
SPARE_CANDIDATES = 8
#: The events an entry heard up to its claim, which the claim empties.
#: A stale claim's sync never finished: what it heard is not known any more.
HEARD_BEFORE = "heard_before"
_heard_before = sa.case((c.state == State.PROCESSING.value, UNKNOWN), else_=c.heard)


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
    heard: Optional[str]  # the events heard before this claim (coverage.py)
    seen: Optional[str]   # what the last sync read

    @classmethod
    def from_row(cls, row):
        values = {f.name: row[f.name] for f in fields(cls) if f.name != "heard"}
        return cls(heard=row[HEARD_BEFORE], **values)


def due_order(row):
    return row["due_at"], row["id"]


@dataclass(frozen=True)
class Claimable:
    """Which rows a claim may take: a WHERE clause built once per kind of
    claim, with bound parameters, and the values a claim binds to them.

    A worker claims many times a second under load; building the clause
    and its statement anew each time (and SQLAlchemy's cache key of it)
    made a claim cost 1.15 ms of the claimer's CPU, 0.33 ms once built
    (PostgreSQL, 2026-12-03).
    """
    kind: tuple  # (ignore_due, owners_checked): which clause, the key of its statements
    params: dict

    @property
    def clause(self):
        return _claimable_clause(*self.kind)


def claimable(at, claim_timeout, ignore_due=False, alive_within=None) -> Claimable:
    """The rows a claim at ``at`` may take.

    ``ignore_due`` skips the debounce of pending rows, never the backoff of
    failed ones: a drain must not spin on an entry that keeps failing.
    ``alive_within``: a claim older than the timeout stays with an owner
    that beat within these seconds (:mod:`.processes`): its sync still runs.
    """
    params = {"claim_at": at, "stale_before": at - claim_timeout}
    if alive_within is not None:
        params["alive_since"] = at - alive_within
    return Claimable((bool(ignore_due), alive_within is not None), params)


@functools.lru_cache(maxsize=None)
def _claimable_clause(ignore_due, owners_checked):
    at = sa.bindparam("claim_at")
    pending = c.state == State.PENDING.value
    if not ignore_due:
        pending = sa.and_(pending, c.due_at <= at)
    retry_due = sa.and_(c.state == State.FAILED.value, c.due_at <= at)
    stale = sa.and_(c.state == State.PROCESSING.value,
                    c.claimed_at < sa.bindparam("stale_before"))
    if owners_checked:
        stale = sa.and_(stale, c.claimed_by.not_in(
            live_owners_since(sa.bindparam("alive_since"))))
    return sa.or_(pending, retry_due, stale)


def _taken_values(owner, at):
    return dict(state=State.PROCESSING.value, claimed_by=owner, claimed_at=at,
                claimed_generation=c.generation, attempts=c.attempts + 1, heard="",
                urgent=False)


def claim_skip_locked(conn, where: Claimable, limit, owner, at) -> List[dict]:
    """PostgreSQL: claim up to ``limit`` rows in one statement; return them."""
    statement = _skip_locked_statement(where.kind, limit)
    return list(conn.execute(statement, dict(where.params, claim_owner=owner,
                                             claimed_now=at)).mappings())


@functools.lru_cache(maxsize=64)
def _skip_locked_statement(kind, limit):
    chosen = (sa.select(c.id, _heard_before.label(HEARD_BEFORE)).where(_claimable_clause(*kind))
              .order_by(c.due_at).limit(limit).with_for_update(skip_locked=True)).subquery()
    # UPDATE ... FROM the locked rows: RETURNING then shows what they heard
    # before this statement emptied it.
    taken = _taken_values(sa.bindparam("claim_owner"), sa.bindparam("claimed_now"))
    return (inbox.update().where(c.id == chosen.c.id).values(**taken)
            .returning(*inbox.c, chosen.c[HEARD_BEFORE]))


def claim_compare_and_swap(conn, where, limit, owner, at) -> List[dict]:
    """Any database: read candidates, take each with a compare-and-swap
    until ``limit`` are taken."""
    candidates = conn.execute(
        sa.select(c.id, c.state, c.claimed_at, c.generation, _heard_before.label(HEARD_BEFORE))
        .where(where.clause).order_by(c.due_at).limit(limit + SPARE_CANDIDATES),
        where.params).mappings().all()
    heard = {}
    for row in candidates:
        if len(heard) == limit:
            break
        if _take(conn, row, owner, at):
            heard[row["id"]] = row[HEARD_BEFORE]
    if not heard:
        return []
    rows = conn.execute(sa.select(inbox).where(c.id.in_(heard))).mappings()
    return [dict(row, **{HEARD_BEFORE: heard[row["id"]]}) for row in rows]


def _take(conn, row, owner, at):
    """Compare-and-swap one candidate row to ``processing``; True if ours.

    The same generation too: then what it heard is what the candidate read.
    """
    same_state = sa.and_(c.id == row["id"], c.state == row["state"],
                         c.generation == row["generation"])
    if row["state"] == State.PROCESSING.value:
        same_state = sa.and_(same_state, c.claimed_at == row["claimed_at"])
    result = conn.execute(inbox.update().where(same_state).values(**_taken_values(owner, at)))
    return result.rowcount == 1


def claim_rows(conn, where, limit, owner, at) -> List[dict]:
    """The best way for ``conn``'s database."""
    way = claim_skip_locked if conn.dialect.name == "postgresql" else claim_compare_and_swap
    return way(conn, where, limit, owner, at)


def next_due_at(conn, claim_timeout, alive_within=None, at=None):
    """When the next row becomes claimable (maybe in the past), or None.

    One statement: the earliest due time of a waiting row, and the
    earliest moment a current claim of an owner not known alive expires.
    """
    at = now() if at is None else at
    params = {} if alive_within is None else {"alive_since": at - alive_within}
    due, oldest_claim = conn.execute(_next_due_statement(alive_within is not None),
                                     params).one()
    expiry = None if oldest_claim is None else oldest_claim + claim_timeout
    candidates = [t for t in (due, expiry) if t is not None]
    return min(candidates) if candidates else None


@functools.lru_cache(maxsize=None)
def _next_due_statement(owners_checked):
    waiting = sa.select(sa.func.min(c.due_at)).where(
        c.state.in_([State.PENDING.value, State.FAILED.value])).scalar_subquery()
    stale = [c.state == State.PROCESSING.value]
    if owners_checked:
        stale.append(c.claimed_by.not_in(live_owners_since(sa.bindparam("alive_since"))))
    claimed = sa.select(sa.func.min(c.claimed_at)).where(*stale).scalar_subquery()
    return sa.select(waiting, claimed)
