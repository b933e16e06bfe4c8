"""Whether the events heard since a dataset's last sync tell anything new.

A sync reads S3, and while it reads, the last writes of a copy keep
arriving: dtool writes the proto-dataset's ``dtool`` object early, and its
event starts a sync at once (:func:`.keys.completes_dataset`); the README,
tags, annotations, manifest and the final ``dtool`` object follow, and their
events make the entry due again. Senders also deliver events twice. A second
full read of S3 for such events would find what the first one found.

So the inbox entry keeps what it *heard* since its last claim (each event's
object key, its ETag if the sender gave one, and whether it was a removal),
and the worker keeps what its last sync *saw* (every object that sync read
or listed, with the ETag S3 answered, the keys S3 said were missing, the
prefixes it listed completely, and what it found: a frozen dataset, a
proto-dataset or none). When every heard event is one the last sync saw,
the entry is done without a request to S3 (:attr:`.Outcome.COVERED`):

- a creation is seen when the sync read that key with the same ETag (the
  same content, whatever the order in which events and reads happened),
  and saw it in no other state while it read (:attr:`Seen.changed`: then
  which content the index got is not known);
- a removal is seen when the sync found that key missing, or listed the
  folder it was in without finding it, or found the dataset gone; that
  holds only for a removal that restores nothing. A removal that may have
  brought an older version back (:attr:`.events.ObjectEvent.may_restore`:
  a versioned bucket's delete of one version) is kept as a creation
  without an ETag, which nothing covers.

An ETag pins an object's content, not its user metadata, and dtool-s3
reads the admin metadata from the ``dtool`` object's user metadata: the
formats leave the ETag out of a copy's event (``CopyObject`` may replace
the metadata only), so a copy is never covered.

The rule is the same whatever the sync found: a README written to a
proto-dataset after its sync looked is not seen, though it cannot make the
dataset indexed while it stays a proto-dataset, because the event does not
say that it stays one; when the event that froze it was lost, that sync
is what finds the dataset frozen.

Anything else needs a sync: a creation without an ETag (the
Elasticsearch routes), a key or ETag the sync did not see, an entry whose
last sync failed or never finished, a reconcile finding or a resync (they
carry no event), or more events than :data:`HEARD_LIMIT` holds. None of
this trusts the sender with more than it could do anyway: a forged event
that names a seen ETag costs nothing, and any other one costs a sync.
"""
import json
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, List, Optional

from .states import DatasetKind

#: What an entry heard is not known (too many events, a failed or lost
#: sync, a finding without an event, a row older than this column).
UNKNOWN = "!"
#: Characters of heard events kept per entry; beyond that the entry just syncs.
HEARD_LIMIT = 16384
#: Characters of a sync's record kept; a dataset with more tags and
#: annotations than that is simply synced for every event.
SEEN_LIMIT = 65536


@dataclass(frozen=True)
class Heard:
    """One event, as the inbox entry keeps it."""
    key: str
    etag: Optional[str]
    removed: bool


def heard_line(target) -> str:
    """The text one event adds to its entry (a line of JSON), or UNKNOWN.

    A removal that may have brought an older version back is, for all a
    sync could have seen, the creation of content nobody named: it is kept
    as a creation without an ETag, which nothing covers.
    """
    if not target.key:
        return UNKNOWN
    if target.removed and target.may_restore:
        action, etag = "C", ""
    else:
        action, etag = "R" if target.removed else "C", target.etag or ""
    return json.dumps([action, etag, target.key], separators=(",", ":")) + "\n"


def heard_text(targets: Iterable) -> str:
    """What a batch of events of one dataset adds, bounded by HEARD_LIMIT."""
    lines = [heard_line(target) for target in targets]
    if UNKNOWN in lines:
        return UNKNOWN
    text = "".join(lines)
    return UNKNOWN if len(text) > HEARD_LIMIT else text


def parse_heard(text) -> Optional[List[Heard]]:
    """The events of an entry's text, or None when they are not known."""
    if not text or text == UNKNOWN or not isinstance(text, str):
        return None
    heard = []
    for line in text.splitlines():
        try:
            action, etag, key = json.loads(line)
        except (ValueError, TypeError):
            return None
        if action not in ("C", "R") or not isinstance(key, str) or not isinstance(etag, str):
            return None
        heard.append(Heard(key, etag or None, action == "R"))
    return heard


def kind_mark(kind: DatasetKind) -> str:
    """The text by which :meth:`Seen.to_text` says what its sync found.

    No object key can spell it inside the JSON: there every ``"`` of a key
    is escaped. The inbox looks for it in SQL: an edit of a dataset whose
    last sync found it frozen skips the debounce (:mod:`.db.due`).
    """
    return json.dumps({"kind": kind.value}, separators=(",", ":"))[1:-1]


@dataclass(frozen=True)
class Seen:
    """What one sync read of a dataset in S3."""
    kind: DatasetKind
    objects: Dict[str, str] = field(default_factory=dict)  # key -> ETag
    missing: FrozenSet[str] = frozenset()  # keys S3 answered 404 for
    listed: FrozenSet[str] = frozenset()   # prefixes listed to the end
    # keys S3 showed in two states during the sync (two ETags, present and
    # missing): which one the index got is not known
    changed: FrozenSet[str] = frozenset()

    def to_text(self) -> Optional[str]:
        """JSON for the inbox row; None when over SEEN_LIMIT (nothing kept)."""
        text = json.dumps({"kind": self.kind.value, "objects": self.objects,
                           "missing": sorted(self.missing), "listed": sorted(self.listed),
                           "changed": sorted(self.changed)},
                          sort_keys=True, separators=(",", ":"))
        return text if len(text) <= SEEN_LIMIT else None

    @classmethod
    def from_text(cls, text) -> Optional["Seen"]:
        if not text:
            return None
        try:
            doc = json.loads(text)
            return cls(DatasetKind(doc["kind"]), dict(doc["objects"]),
                       frozenset(doc["missing"]), frozenset(doc["listed"]),
                       frozenset(doc.get("changed", ())))
        except (ValueError, TypeError, KeyError):
            return None

    def covers(self, event: Heard) -> bool:
        """Whether this sync already saw what ``event`` tells."""
        if event.key in self.changed:
            return False
        if event.removed:
            if self.kind is DatasetKind.ABSENT:
                return True  # nothing is left to remove from the index
            return event.key not in self.objects and (
                event.key in self.missing
                or any(event.key.startswith(prefix) for prefix in self.listed))
        return event.etag is not None and self.objects.get(event.key) == event.etag


def covered(seen_text, heard_text_) -> bool:
    """True when the entry needs no sync: its last sync saw every event it heard."""
    seen = Seen.from_text(seen_text)
    heard = parse_heard(heard_text_)
    if seen is None or not heard:
        return False
    return all(seen.covers(event) for event in heard)
