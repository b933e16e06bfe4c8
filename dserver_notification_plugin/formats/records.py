"""S3 event records, the shape shared by AWS, MinIO, StorageGRID and s3rver.

A body ``{"Records": [...]}`` may carry any number of records (AWS batches
them); every one is read. MinIO's webhook adds top-level ``EventName`` and
``Key`` copied from its single record; the record stays the source of truth.
"""
from datetime import datetime, timezone
from urllib.parse import unquote_plus

from ..events import Action, Intake, ObjectEvent
from .errors import PayloadError, describe, require_object, require_string

# Event-name families (after dropping MinIO's "s3:" prefix) that change
# which objects exist. AWS reports lifecycle expiry under its own family.
_FAMILIES = {
    "ObjectCreated": Action.CREATED,
    "ObjectRemoved": Action.REMOVED,
    "LifecycleExpiration": Action.REMOVED,
}

TEST_EVENT = "s3:TestEvent"


def parse_s3_event(doc, where="body"):
    """An S3 event body: ``Records`` of any length, or an ``s3:TestEvent``."""
    require_object(doc, where)
    if "Records" in doc:
        return parse_records(doc["Records"], f"{where}.Records")
    if doc.get("Event") == TEST_EVENT:
        return Intake(ignored=["s3:TestEvent"])
    raise PayloadError(f"{where} must hold 'Records' (an S3 event) or be an s3:TestEvent.")


def parse_records(records, where="Records"):
    """Every record in ``records``; access and other events become ``ignored``."""
    if not isinstance(records, list):
        raise PayloadError(f"{where} must be an array, not {describe(records)}.")
    intake = Intake()
    for index, record in enumerate(records):
        event, ignored = parse_record(record, f"{where}[{index}]")
        if event is not None:
            intake.events.append(event)
        else:
            intake.ignored.append(ignored)
    return intake


def parse_record(record, where):
    """(ObjectEvent, None) for a creation or removal, else (None, event name)."""
    require_object(record, where)
    name = require_string(record, "eventName", where)
    action = action_of(name)
    s3 = require_object(record.get("s3"), f"{where}.s3")
    bucket = require_string(require_object(s3.get("bucket"), f"{where}.s3.bucket"),
                            "name", f"{where}.s3.bucket")
    obj = require_object(s3.get("object"), f"{where}.s3.object")
    key = decode_key(require_string(obj, "key", f"{where}.s3.object"), where)
    if action is None:
        return None, name
    sequencer = obj.get("sequencer")
    return ObjectEvent(bucket=bucket, key=key, action=action,
                       time=parse_time(record.get("eventTime")),
                       sequencer=sequencer if isinstance(sequencer, str) else None), None


def action_of(event_name):
    """CREATED, REMOVED or None for an event name with or without ``s3:``."""
    if event_name.startswith("s3:"):
        event_name = event_name[3:]
    return _FAMILIES.get(event_name.split(":", 1)[0])


def decode_key(raw, where):
    """Undo S3's form encoding: ``my+data%2Fx`` is the key ``my data/x``.

    S3, MinIO and StorageGRID encode keys in records like an HTML form, so
    ``+`` stands for a space and a literal plus arrives as ``%2B``;
    ``unquote`` would leave the ``+`` and produce a key that does not exist.
    """
    try:
        key = unquote_plus(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise PayloadError(f"{where}.s3.object.key {raw!r} does not decode to UTF-8.")
    if not key:
        raise PayloadError(f"{where}.s3.object.key {raw!r} decodes to an empty key.")
    return key


def parse_time(value):
    """An ISO-8601 time as aware UTC, or None when missing or unreadable.

    A bad time must not lose the event: the time only orders events.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        return None
