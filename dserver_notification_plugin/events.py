"""The common language of the plugin: one normalized S3 object event.

Every wire dialect (MinIO webhook, AWS records, SNS envelopes, StorageGRID,
SeaweedFS, Elasticsearch-style targets) is translated into a list of
:class:`ObjectEvent`; nothing past the formats stage sees a raw payload.
"""
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import List, Optional


class Action(str, Enum):
    CREATED = "created"
    REMOVED = "removed"


@dataclass(frozen=True)
class ObjectEvent:
    """One object written or removed in a bucket.

    ``key`` is the exact object key, already decoded from whatever escaping
    the dialect applies. ``time`` is timezone-aware UTC when the sender gave
    one; ``sequencer`` is the sender's ordering token, if any. ``etag`` is
    the written object's ETag as the sender gave it (see :func:`clean_etag`),
    if any: it lets the worker tell an event its last sync has already seen.
    A sender leaves it out when the same ETag may come with new user
    metadata (a copy: ``CopyObject`` can replace the metadata only).

    ``may_restore`` (removals only): the removal may have brought an older
    version of the object back, as removing a delete marker or the newest
    version of a versioned bucket's object does. Only a sender that says the
    bucket keeps no versions there, or that a delete marker was created,
    makes it False.
    """
    bucket: str
    key: str
    action: Action
    time: Optional[datetime] = None
    sequencer: Optional[str] = None
    etag: Optional[str] = None
    may_restore: bool = True


#: S3's limit on the length of a key, in bytes of UTF-8.
MAX_KEY_BYTES = 1024
#: Longer bucket names are no S3 bucket (S3 allows 63; other stores more).
MAX_BUCKET_LENGTH = 255


def impossible_object(event: ObjectEvent) -> Optional[str]:
    """Why no S3 store can hold ``event``'s object, or None.

    No S3 key or bucket name holds NUL or a lone surrogate (PostgreSQL
    cannot store either, and would fail the request for ever), and no key
    is longer than 1 KiB: such a record is unreadable, whoever sent it.
    """
    if "\x00" in event.key or "\x00" in event.bucket:
        return "key or bucket name holds NUL"
    try:
        event.bucket.encode("utf-8")
        key_bytes = len(event.key.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: no database takes it
        return "key or bucket name is not valid Unicode text"
    if key_bytes > MAX_KEY_BYTES:
        return f"key longer than {MAX_KEY_BYTES} bytes"
    if len(event.bucket) > MAX_BUCKET_LENGTH:
        return f"bucket name longer than {MAX_BUCKET_LENGTH} characters"
    return None


#: Longer "ETags" are no S3 ETag (an MD5 in hex, with "-<parts>" for multipart
#: uploads); they are dropped rather than stored.
ETAG_LIMIT = 128
_ETAG = re.compile(r"[0-9A-Za-z_.:+/=-]+")


def clean_etag(value) -> Optional[str]:
    """An ETag in the one form senders and S3 answers are compared in:
    without quotes, lower case; None for anything that is not an ETag."""
    if not isinstance(value, str):
        return None
    value = value.strip().strip('"').lower()
    if not value or len(value) > ETAG_LIMIT or not _ETAG.fullmatch(value):
        return None
    return value


@dataclass
class Intake:
    """What one request carried, after parsing and before translation.

    ``ignored`` holds a short reason for every record that was understood
    but is not an object creation or removal (access events, test events,
    directory entries ...), so the route can count and log them.
    ``faults`` holds a short reason for every record that could not be
    understood (a missing field, a key that does not decode, an unknown
    event name): it is ignored too, so that one bad record never sinks the
    others of its request, but logged as a warning, because someone should
    look at it. ``sns_confirmation`` is set for an SNS SubscriptionConfirmation.
    ``sns_envelope`` is the SNS envelope (a dict) the records came in, if
    any: its topic and signature are checked before anything is stored.
    """
    events: List[ObjectEvent] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    faults: List[str] = field(default_factory=list)
    sns_confirmation: Optional["SnsConfirmation"] = None
    sns_envelope: Optional[dict] = None

    @property
    def records(self) -> int:
        """How many records the notification carried, read or not: what
        DSERVER_NOTIFY_MAX_RECORDS limits."""
        return len(self.events) + len(self.ignored) + len(self.faults)

    def extend(self, other: "Intake") -> None:
        """Add what ``other`` carried (one record's outcome) to this intake."""
        self.events.extend(other.events)
        self.ignored.extend(other.ignored)
        self.faults.extend(other.faults)


@dataclass(frozen=True)
class SnsConfirmation:
    topic_arn: str
    subscribe_url: str
