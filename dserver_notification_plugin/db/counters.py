"""Counter totals across processes and restarts.

Each process counts in memory (:class:`..tally.Tally`) and adds its deltas
here every few seconds, so the totals survive restarts and add up over every
gunicorn worker and host.
"""
import sqlalchemy as sa

from .database import upsert
from .tables import counters


class Counters:
    """The persisted totals, on the plugin's :class:`.Database`."""

    def __init__(self, db):
        self.db = db

    def add(self, deltas):
        """Add in-process counter deltas to the persisted totals."""
        with self.db.transaction() as conn:
            for name, delta in sorted(deltas.items()):
                if delta:
                    upsert(conn, counters, {"name": name, "value": delta}, counters.c.name,
                           {"value": counters.c.value + delta})

    def totals(self):
        with self.db.transaction() as conn:
            return {name: value for name, value in conn.execute(
                sa.select(counters.c.name, counters.c.value)).all()}
