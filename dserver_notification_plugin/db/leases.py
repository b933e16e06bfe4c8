"""Leases: one holder at a time, across every dserver host sharing the database.

A lease is a row (name, holder, expiry). Taking it is a compare-and-swap
``UPDATE ... WHERE name = ? AND (holder = me OR expires_at < now)``, and the
very first take an ``INSERT`` that fails with a duplicate key when another
process inserted first. Both are single statements, so they behave the same
on SQLite (one writer at a time) and on PostgreSQL (the row lock taken by the
update serialises concurrent takers). The holder renews its lease while it
works; when it dies, the row simply expires and the next process that asks
takes it over.

Expiry times come from each host's clock: hosts must agree on the time to
well within the lease duration (as NTP does).
"""
import secrets
from dataclasses import dataclass
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .database import now
from .processes import process_identity
from .tables import leases

@dataclass(frozen=True)
class LeaseInfo:
    """A lease row as read for status."""
    name: str
    holder: str
    acquired_at: float
    expires_at: float

    def active(self, at=None):
        return self.expires_at >= (now() if at is None else at)


class Lease:
    """The lease called ``name``, as seen by this process."""

    def __init__(self, db, name, duration, holder=None):
        self.db = db
        self.name = name
        self.duration = duration
        self._fixed_holder = holder
        self._for_identity = None
        self._holder = None

    @property
    def holder(self):
        """``host:pid:token/token``: this process's identity (:mod:`.processes`;
        recomputed after a fork, never reused by a restarted container that
        gets the same pid), then one of this lease object's own. A process
        that stops beating loses its leases (:func:`.processes.holder_of`)."""
        if self._fixed_holder is not None:
            return self._fixed_holder
        if self._for_identity != process_identity():
            self._for_identity = process_identity()
            self._holder = f"{self._for_identity}/{secrets.token_hex(3)}"
        return self._holder

    def acquire(self, at=None) -> bool:
        """Take the lease if it is free or expired, or renew it if ours."""
        if self._fixed_holder is None:
            self.db.register_process()
        at = now() if at is None else at
        c = leases.c
        mine_or_expired = sa.and_(c.name == self.name,
                                  sa.or_(c.holder == self.holder, c.expires_at < at))
        with self.db.transaction() as conn:
            taken = conn.execute(leases.update().where(mine_or_expired).values(
                acquired_at=sa.case((c.holder == self.holder, c.acquired_at), else_=at),
                holder=self.holder, expires_at=at + self.duration)).rowcount
        if taken:
            return True
        try:
            with self.db.transaction() as conn:
                conn.execute(leases.insert().values(
                    name=self.name, holder=self.holder, acquired_at=at,
                    expires_at=at + self.duration))
        except IntegrityError:  # the row exists: someone else holds the lease
            return False
        return True

    def renew(self, at=None) -> bool:
        """Extend the lease if this process still holds it; False if it was lost."""
        at = now() if at is None else at
        c = leases.c
        with self.db.transaction() as conn:
            return conn.execute(leases.update().where(
                sa.and_(c.name == self.name, c.holder == self.holder))
                .values(expires_at=at + self.duration)).rowcount == 1

    def release(self, at=None):
        """Let another process take over at once (when stopping cleanly)."""
        at = now() if at is None else at
        c = leases.c
        with self.db.transaction() as conn:
            conn.execute(leases.update().where(
                sa.and_(c.name == self.name, c.holder == self.holder))
                .values(expires_at=at - 1))

    def current(self) -> Optional[LeaseInfo]:
        """The lease row, whoever holds it (maybe expired), or None."""
        with self.db.transaction() as conn:
            row = conn.execute(sa.select(leases).where(leases.c.name == self.name)) \
                .mappings().first()
        return None if row is None else LeaseInfo(**row)
