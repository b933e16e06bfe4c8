"""What the reconciler remembers: each dataset's listing signature, and its pass.

``notification_datasets`` holds one row per dataset the reconciler has seen:
its dataset prefix (the body of ``dtool-<uuid>``, so a pass need not read it
again while the registration key's ETag stays the same) and two listing
signatures. ``signature`` always describes what the index holds: every sync that
registers or verifies the dataset records the signature of what it read
itself (:meth:`.dtool_private.Reads.signature`, the same digest a listing
gives), and one that could not tell (an object that changed while it read,
too many keys) records none, so that the next pass checks the dataset
again. A pass that lists the recorded signature has nothing to do; any
other listing, a revert to an older state included, is a finding.
``expected_signature`` is what a pass listed when it put the dataset into
the inbox (shown for operators; no sync trusts it). No S3 request is ever
spent on the bookkeeping.

``notification_reconcile_cursor`` holds one row per scope (the background
reconciler): when its pass started and ended, where it is (base URI and the
last dataset UUID checked) and its figures, so an interrupted pass resumes
instead of starting again.
"""
from dataclasses import dataclass, fields
from typing import Dict, Iterable, Optional

import sqlalchemy as sa

from ..states import FIGURES, Figures, Outcome
from .database import chunks, now, upsert
from .tables import cursors, datasets

#: Outcomes after which the index reflects what S3 held when the sync ran.
_REFLECTED = (Outcome.REGISTERED, Outcome.UNCHANGED)
#: Outcomes after which there is no dataset to remember.
_GONE = (Outcome.DELETED, Outcome.ABSENT)


@dataclass(frozen=True)
class Known:
    """What the ledger holds about one dataset."""
    prefix: str
    registration_etag: Optional[str]
    signature: Optional[str]


@dataclass(frozen=True)
class PassState:
    """A pass of one scope: running (``finished_at`` None) or the last one."""
    scope: str
    started_at: float
    finished_at: Optional[float]
    base_uri: Optional[str]
    after_uuid: Optional[str]
    holder: Optional[str]
    updated_at: Optional[float]
    counted: Figures  # so far

    @classmethod
    def from_row(cls, row):
        counted = Figures(**{name: int(row[name]) for name in FIGURES})
        return cls(counted=counted,
                   **{f.name: row[f.name] for f in fields(cls) if f.name != "counted"})

    def figures(self):
        return self.counted.as_dict()


class Ledger:
    """The reconciler's tables, on the plugin's :class:`.Database`."""

    def __init__(self, db):
        self.db = db

    # datasets ----------------------------------------------------------------------
    def known(self, uris: Iterable[str]) -> Dict[str, Known]:
        c = datasets.c
        with self.db.transaction() as conn:
            rows = [row for chunk in chunks(sorted(uris)) for row in conn.execute(
                sa.select(c.dataset_uri, c.prefix, c.registration_etag, c.signature)
                .where(c.dataset_uri.in_(chunk)))]
        return {row.dataset_uri: Known(row.prefix, row.registration_etag, row.signature)
                for row in rows}

    def remember_prefix(self, target, prefix, registration_etag):
        """Record a dataset's prefix, read from its registration key."""
        values = dict(dataset_uri=target.uri, base_uri=target.base_uri, uuid=target.uuid,
                      prefix=prefix, registration_etag=registration_etag)
        with self.db.transaction() as conn:
            upsert(conn, datasets, values, datasets.c.dataset_uri,
                    {"prefix": prefix, "registration_etag": registration_etag})

    def expect(self, signatures: Dict[str, str], at=None):
        """Record what a pass listed for datasets it puts into the inbox."""
        at = now() if at is None else at
        c = datasets.c
        with self.db.transaction() as conn:
            for uri, signature in sorted(signatures.items()):
                conn.execute(datasets.update().where(c.dataset_uri == uri).values(
                    expected_signature=signature, expected_at=at))

    def settle(self, uri, outcome, signature=None):
        """After a finished sync of ``uri`` that left the index holding what
        ``signature`` describes (None: not known, the next pass verifies)."""
        c = datasets.c
        with self.db.transaction() as conn:
            if outcome in _GONE:
                conn.execute(datasets.delete().where(c.dataset_uri == uri))
            elif outcome in _REFLECTED:
                conn.execute(datasets.update().where(c.dataset_uri == uri).values(
                    signature=signature, expected_signature=None))

    def forget(self, uris: Iterable[str]):
        """Drop the rows of datasets gone from their bucket."""
        with self.db.transaction() as conn:
            for chunk in chunks(sorted(uris)):
                conn.execute(datasets.delete().where(datasets.c.dataset_uri.in_(chunk)))

    # the pass cursor --------------------------------------------------------------
    def pass_state(self, scope) -> Optional[PassState]:
        with self.db.transaction() as conn:
            row = conn.execute(sa.select(cursors).where(cursors.c.scope == scope)) \
                .mappings().first()
        return None if row is None else PassState.from_row(row)

    def start_pass(self, scope, holder, at=None) -> PassState:
        at = now() if at is None else at
        fresh = dict(started_at=at, finished_at=None, base_uri=None, after_uuid=None,
                     holder=holder, updated_at=at, **{name: 0 for name in FIGURES})
        with self.db.transaction() as conn:
            upsert(conn, cursors, dict(scope=scope, **fresh), cursors.c.scope, fresh)
        return self.pass_state(scope)

    def advance(self, scope, base_uri, after_uuid, added, holder, at=None):
        """Move the cursor past ``after_uuid`` of ``base_uri`` and add figures."""
        c = cursors.c
        values = {name: getattr(c, name) + int(added.get(name, 0)) for name in FIGURES}
        with self.db.transaction() as conn:
            conn.execute(cursors.update().where(c.scope == scope).values(
                base_uri=base_uri, after_uuid=after_uuid, holder=holder,
                updated_at=now() if at is None else at, **values))

    def finish_pass(self, scope, at=None):
        at = now() if at is None else at
        with self.db.transaction() as conn:
            conn.execute(cursors.update().where(cursors.c.scope == scope).values(
                finished_at=at, updated_at=at, base_uri=None, after_uuid=None))
