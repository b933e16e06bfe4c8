"""Named states, outcomes and figures, shared by the inbox, the worker, sync,
the reconciler and status.

String enums: their values are what the inbox table, the status JSON and
the Prometheus labels show, so they compare equal to those texts.
"""
from dataclasses import dataclass, fields
from enum import Enum


class State(str, Enum):
    """Where an inbox entry is in its life."""
    PENDING = "pending"        # waiting for its due time
    PROCESSING = "processing"  # claimed by one process
    FAILED = "failed"          # waiting for a retry after an error
    DONE = "done"              # synced; kept as the dataset's memory
    DEAD = "dead"              # gave up; kept with its last error until retried

    def __str__(self):
        return self.value


#: Entries someone still has to work on.
WAITING_STATES = (State.PENDING, State.FAILED, State.PROCESSING)
#: Entries nobody works on; a new event makes them pending again.
FINISHED_STATES = (State.DONE, State.DEAD)


class Outcome(str, Enum):
    """What processing an entry did. The first five come from sync."""
    REGISTERED = "registered"  # registered or updated in the index
    UNCHANGED = "unchanged"    # the index already held exactly this
    DELETED = "deleted"        # gone from S3, removed from the index
    ABSENT = "absent"          # gone from S3 and from the index already
    PROTO = "proto"            # a proto-dataset: left for the event that freezes it
    COVERED = "covered"        # every event since the last sync was one it saw
    RETRIED = "retried"        # failed; will be tried again
    DEAD = "dead"              # failed for good

    def __str__(self):
        return self.value


#: Outcomes of a successful sync (the entry is done).
SYNC_OUTCOMES = (Outcome.REGISTERED, Outcome.UNCHANGED, Outcome.DELETED,
                 Outcome.ABSENT, Outcome.PROTO)


class DatasetKind(str, Enum):
    """What S3 holds under a dataset URI right now."""
    FROZEN = "frozen"  # a dataset: index it
    PROTO = "proto"    # a proto-dataset still being written
    ABSENT = "absent"  # no admin metadata: no dataset (any more)

    def __str__(self):
        return self.value


class Drift(str, Enum):
    """How a reconcile pass found the index to disagree with S3."""
    MISSING = "missing"
    EXTRA = "extra"
    CHANGED = "changed"

    def __str__(self):
        return self.value


@dataclass
class Figures:
    """What a reconcile pass (or one chunk of it) counted.

    The one list of the figures: the pass cursor's columns, the ledger, the
    reconciler's counters, the status JSON and text and the metrics all
    take their names from here (:data:`FIGURES`). One figure per
    :class:`Drift`, by its value.
    """
    checked: int = 0
    missing: int = 0
    extra: int = 0
    changed: int = 0
    s3_requests: int = 0

    def count(self, finding):
        setattr(self, finding.drift.value, getattr(self, finding.drift.value) + 1)

    def add(self, other):
        for name in FIGURES:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self):
        return {name: getattr(self, name) for name in FIGURES}


#: The figures' names, in the order reports show them.
FIGURES = tuple(f.name for f in fields(Figures))
