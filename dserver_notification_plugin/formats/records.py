"""S3 event records, the shape shared by AWS, MinIO, StorageGRID, Ceph and NooBaa.

A body ``{"Records": [...]}`` may carry any number of records (AWS batches
them); every one is read, and a record that cannot be understood is
counted as a fault without costing its neighbours. MinIO's webhook adds
top-level ``EventName`` and ``Key`` copied from its single record; the
record stays the source of truth.

Keys are escaped differently by each sender, told apart by ``eventSource``:
AWS (``aws:s3``), MinIO (``minio:s3``) and StorageGRID (``sgws:s3``)
form-encode them; Ceph (``ceph:s3``) and NooBaa (``<system name>:s3``,
``noobaa:s3`` by default) send them as they are.
"""
from datetime import datetime, timezone
from enum import Enum
from urllib.parse import unquote_plus

from ..events import Intake, ObjectEvent, clean_etag
from .errors import PayloadError, clip, describe, require_object, require_string
from .event_names import classify_event_name

TEST_EVENT = "s3:TestEvent"


class KeyEncoding(str, Enum):
    FORM = "form"        # "my+data%2Fx" is the key "my data/x"
    RAW = "raw"          # the key as it is
    UNKNOWN = "unknown"  # decode as a form if that works, else keep it raw


SENDER_KEY_ENCODINGS = {
    "aws:s3": KeyEncoding.FORM,
    "minio:s3": KeyEncoding.FORM,
    "sgws:s3": KeyEncoding.FORM,
    "ceph:s3": KeyEncoding.RAW,
    "noobaa:s3": KeyEncoding.RAW,
}


def parse_s3_event(doc, where="body", default_encoding=KeyEncoding.UNKNOWN):
    """An S3 event body: ``Records`` of any length, or an ``s3:TestEvent``.

    ``default_encoding`` applies to records whose ``eventSource`` does not
    name a known sender.
    """
    require_object(doc, where)
    if "Records" in doc:
        return parse_records(doc["Records"], f"{where}.Records", default_encoding)
    if doc.get("Event") == TEST_EVENT:
        return Intake(ignored=[TEST_EVENT])
    raise PayloadError(f"{where} must hold 'Records' (an S3 event) or be an s3:TestEvent.")


def parse_records(records, where="Records", default_encoding=KeyEncoding.UNKNOWN):
    """Every record in ``records``; what is not a change becomes ignored.

    Only a ``Records`` that is not an array makes the whole body bad; a bad
    record becomes a fault and the others are still read.
    """
    if not isinstance(records, list):
        raise PayloadError(f"{where} must be an array, not {describe(records)}.")
    intake = Intake()
    for index, record in enumerate(records):
        try:
            intake.extend(parse_record(record, f"{where}[{index}]", default_encoding))
        except PayloadError as exc:
            intake.faults.append(exc.message)
    return intake


def parse_record(record, where, default_encoding=KeyEncoding.UNKNOWN):
    """The :class:`Intake` of one record; :class:`PayloadError` if unreadable."""
    require_object(record, where)
    if "eventName" not in record and record.get("Event") == TEST_EVENT:
        return Intake(ignored=[TEST_EVENT])  # NooBaa's test, shaped as a record
    name = require_string(record, "eventName", where)
    action, reason, is_fault = classify_event_name(name)
    if action is None:
        return Intake(faults=[reason]) if is_fault else Intake(ignored=[reason])
    s3 = require_object(record.get("s3"), f"{where}.s3")
    bucket = require_string(require_object(s3.get("bucket"), f"{where}.s3.bucket"),
                            "name", f"{where}.s3.bucket")
    obj = require_object(s3.get("object"), f"{where}.s3.object")
    raw_key = require_string(obj, "key", f"{where}.s3.object")
    key = decode_key(raw_key, key_encoding(record, default_encoding), f"{where}.s3.object.key")
    sequencer = obj.get("sequencer")
    return Intake(events=[ObjectEvent(
        bucket=bucket, key=key, action=action, time=parse_time(record.get("eventTime")),
        sequencer=sequencer if isinstance(sequencer, str) else None,
        etag=None if is_copy(name) else clean_etag(obj.get("eTag")),
        may_restore=may_restore(name, obj.get("versionId")))])


def is_copy(name):
    """``ObjectCreated:Copy`` (AWS, MinIO, Ceph): the copy keeps the source's
    ETag but may carry new user metadata, which dtool-s3 reads the admin
    metadata from; its ETag says nothing about what changed."""
    return name.lower().endswith("objectcreated:copy")


def may_restore(name, version_id):
    """Whether a removal may bring an older version back.

    AWS, MinIO and Ceph name the version a removal acted on (``versionId``)
    on versioned buckets only; there a permanent delete of a version (a
    delete marker's or the newest one's) shows the version before it. A
    delete marker created hides the object and restores nothing.
    """
    if name.lower().endswith(("deletemarkercreated", "deletionmarkercreated")):
        return False
    return version_id not in (None, "")


def key_encoding(record, default_encoding):
    """How the sender named by ``eventSource`` escapes keys."""
    source = record.get("eventSource")
    if isinstance(source, str):
        return SENDER_KEY_ENCODINGS.get(source.lower(), default_encoding)
    return default_encoding


def decode_key(raw, encoding, where="key"):
    """The exact object key for a key as the sender wrote it.

    Form encoding is undone like an HTML form's, so ``+`` stands for a
    space and a literal plus arrives as ``%2B``; ``unquote`` would leave
    the ``+`` and produce a key that does not exist. A raw key is never
    decoded: ``a+b%41`` is a legal key. When the sender is unknown and the
    key does not decode, it cannot have been form-encoded, so it is raw.
    """
    if encoding is KeyEncoding.RAW:
        return raw
    try:
        return unquote_plus(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        if encoding is KeyEncoding.UNKNOWN:
            return raw
        raise PayloadError(f"{where} {clip(raw)} does not decode to UTF-8.")


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
