"""How a process takes due inbox rows: two ways to the same promise.

Each due row goes to exactly one process, and a row whose claim is older
than the claim timeout (its process vanished) is taken again.

- PostgreSQL: one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP
  LOCKED) RETURNING``: claimers skip each other's rows instead of waiting
  for them or colliding on them.
- Any other database (SQLite): read candidates, then a compare-and-swap
  ``UPDATE ... WHERE state = <seen state>`` per row; only the process
  whose update matched owns the row.

These are the statements of :meth:`store.Store.claim`, kept apart so that
the benchmark can time both ways on PostgreSQL.
"""
from dataclasses import dataclass, fields
from typing import List, Optional

import sqlalchemy as sa

from .schema import inbox
from .states import State

c = inbox.c


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

    @classmethod
    def from_row(cls, row):
        return cls(**{f.name: row[f.name] for f in fields(cls)})


def due_order(row):
    return row["due_at"], row["id"]


def claimable(at, claim_timeout, ignore_due=False):
    """WHERE clause of the rows a claim at ``at`` may take.

    ``ignore_due`` skips the debounce of pending rows, never the backoff of
    failed ones: a drain must not spin on an entry that keeps failing.
    """
    pending = c.state == State.PENDING.value
    if not ignore_due:
        pending = sa.and_(pending, c.due_at <= at)
    retry_due = sa.and_(c.state == State.FAILED.value, c.due_at <= at)
    stale = sa.and_(c.state == State.PROCESSING.value, c.claimed_at < at - claim_timeout)
    return sa.or_(pending, retry_due, stale)


def _taken_values(owner, at):
    return dict(state=State.PROCESSING.value, claimed_by=owner, claimed_at=at,
                claimed_generation=c.generation, attempts=c.attempts + 1)


def claim_skip_locked(conn, where, limit, owner, at) -> List[dict]:
    """PostgreSQL: claim up to ``limit`` rows in one statement; return them."""
    chosen = (sa.select(c.id).where(where).order_by(c.due_at).limit(limit)
              .with_for_update(skip_locked=True))
    return list(conn.execute(
        inbox.update().where(c.id.in_(chosen.scalar_subquery()))
        .values(**_taken_values(owner, at)).returning(*inbox.c)).mappings())


def claim_compare_and_swap(conn, where, limit, owner, at) -> List[dict]:
    """Any database: read candidates, take each with a compare-and-swap."""
    candidates = conn.execute(
        sa.select(c.id, c.state, c.claimed_at).where(where)
        .order_by(c.due_at).limit(limit)).all()
    claimed = [row.id for row in candidates if _take(conn, row, owner, at)]
    if not claimed:
        return []
    return list(conn.execute(sa.select(inbox).where(c.id.in_(claimed))).mappings())


def _take(conn, row, owner, at):
    """Compare-and-swap one candidate row to ``processing``; True if ours."""
    same_state = sa.and_(c.id == row.id, c.state == row.state)
    if row.state == State.PROCESSING.value:
        same_state = sa.and_(same_state, c.claimed_at == row.claimed_at)
    result = conn.execute(inbox.update().where(same_state).values(**_taken_values(owner, at)))
    return result.rowcount == 1


def claim_rows(conn, where, limit, owner, at) -> List[dict]:
    """The best way for ``conn``'s database."""
    way = claim_skip_locked if conn.dialect.name == "postgresql" else claim_compare_and_swap
    return way(conn, where, limit, owner, at)


def next_due_at(conn, claim_timeout):
    """When the next row becomes claimable (maybe in the past), or None.

    One statement: the earliest due time of a waiting row, and the
    earliest moment a current claim expires.
    """
    waiting = sa.select(sa.func.min(c.due_at)).where(
        c.state.in_([State.PENDING.value, State.FAILED.value])).scalar_subquery()
    claimed = sa.select(sa.func.min(c.claimed_at)).where(
        c.state == State.PROCESSING.value).scalar_subquery()
    due, oldest_claim = conn.execute(sa.select(waiting, claimed)).one()
    expiry = None if oldest_claim is None else oldest_claim + claim_timeout
    candidates = [t for t in (due, expiry) if t is not None]
    return min(candidates) if candidates else None
