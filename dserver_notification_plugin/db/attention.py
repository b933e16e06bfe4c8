"""Base URIs an operator must look at, shared by every process.

Two kinds, one row per base URI and kind in ``notification_attention``:

- ``unreadable``: its bucket cannot be read (missing at the configured
  endpoint, access denied, endpoint not answering; :mod:`.evidence`). Written
  by the worker when a sync fails so and by the reconciler when it skips the
  base URI; removed when the reconciler lists the bucket again or a sync of
  that base URI reads it.
- ``removals_held``: a reconcile pass found more datasets gone than
  ``DSERVER_NOTIFY_RECONCILE_MAX_REMOVALS`` allows and removed none; removed
  when an operator confirms (``flask notification confirm-removals``) or a
  later pass finds few enough.
"""
from dataclasses import dataclass, fields
from typing import List, Optional

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .database import now
from .processes import process_identity
from .tables import attention

UNREADABLE = "unreadable"
REMOVALS_HELD = "removals_held"


@dataclass(frozen=True)
class Concern:
    base_uri: str
    kind: str
    reason: str
    count: Optional[int]
    total: Optional[int]
    since: float
    updated_at: float
    reporter: Optional[str]

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Attention:
    """The rows of ``notification_attention``, on the plugin's :class:`.Database`."""

    def __init__(self, db):
        self.db = db

    def raise_concern(self, base_uri, kind, reason, count=None, total=None, at=None):
        """Record (or refresh) a concern; ``since`` stays the first time."""
        at = now() if at is None else at
        values = dict(base_uri=base_uri, kind=kind, reason=reason, count=count, total=total,
                      since=at, updated_at=at, reporter=process_identity())
        refreshed = {k: v for k, v in values.items() if k not in ("base_uri", "kind", "since")}
        # Update first, insert when there was none: concerns are rare, and
        # this is the same on every database.
        with self.db.transaction() as conn:
            if conn.execute(attention.update().where(self._is(base_uri, kind))
                            .values(**refreshed)).rowcount:
                return
        try:
            with self.db.transaction() as conn:
                conn.execute(attention.insert().values(**values))
        except IntegrityError:  # another process recorded it meanwhile
            with self.db.transaction() as conn:
                conn.execute(attention.update().where(self._is(base_uri, kind))
                             .values(**refreshed))

    @staticmethod
    def _is(base_uri, kind):
        return sa.and_(attention.c.base_uri == base_uri, attention.c.kind == kind)

    def settle(self, base_uri, kind) -> bool:
        """The concern is over; True if there was one."""
        with self.db.transaction() as conn:
            return conn.execute(attention.delete().where(self._is(base_uri, kind))).rowcount > 0

    def concerns(self, kind=None) -> List[Concern]:
        query = sa.select(attention).order_by(attention.c.base_uri, attention.c.kind)
        if kind is not None:
            query = query.where(attention.c.kind == kind)
        with self.db.transaction() as conn:
            return [Concern(**row) for row in conn.execute(query).mappings()]
