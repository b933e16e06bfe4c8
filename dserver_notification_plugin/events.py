"""The common language of the plugin: one normalized S3 object event.

Every wire dialect (MinIO webhook, AWS records, SNS envelopes, StorageGRID,
SeaweedFS, Elasticsearch-style targets) is translated into a list of
:class:`ObjectEvent`; nothing past the formats stage sees a raw payload.
"""
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
    one; ``sequencer`` is the sender's ordering token, if any.
    """
    bucket: str
    key: str
    action: Action
    time: Optional[datetime] = None
    sequencer: Optional[str] = None


@dataclass
class Intake:
    """What one request carried, after parsing and before translation.

    ``ignored`` holds a short reason for every record that was understood
    but is not an object creation or removal (access events, test events,
    directory entries ...), so the route can count and log them.
    ``sns_confirmation`` is set for an SNS SubscriptionConfirmation.
    ``sns_envelope`` is the SNS envelope (a dict) the records came in, if
    any: its topic and signature are checked before anything is stored.
    """
    events: List[ObjectEvent] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    sns_confirmation: Optional["SnsConfirmation"] = None
    sns_envelope: Optional[dict] = None


@dataclass(frozen=True)
class SnsConfirmation:
    topic_arn: str
    subscribe_url: str
