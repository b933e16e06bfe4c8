"""SeaweedFS filer webhook: one JSON per filer change, in the filer's terms.

``{"event_type": ..., "key": <full path>, "message": {"old_entry": ...,
"new_entry": ..., "new_parent_path": ...}}``. The filer reports the old path
in ``key`` whenever there is an old entry (delete, update, rename) and the
new path otherwise; the new path of a rename is ``new_parent_path`` plus the
new entry's name. S3 buckets live under ``/buckets/<bucket>/``; paths are
plain text, not form-encoded.

Which ``event_type`` a change gets differs between SeaweedFS releases (4.48
labels an in-place overwrite "update" although ``new_parent_path`` is set),
so the old and new paths are compared instead of trusting the label.

In a versioned bucket the S3 gateway keeps every version of ``<key>`` as a
file ``<key>.versions/v_<version id>`` (``s3_constants.VersionsFolder`` and
``getVersionFileName`` in ``weed/s3api``), so those paths stand for
``<key>``. A filer event that cannot be understood is a fault: the request
carries one event, and a 4xx would only make the filer retry it.
"""
import base64
import binascii
import re
from datetime import datetime, timezone

from ..events import Action, Intake, ObjectEvent, clean_etag
from .errors import PayloadError, clip, describe, is_utf8, require_object, require_string

BUCKETS_ROOT = "/buckets/"
EVENT_TYPES = ("create", "update", "delete", "rename")
S3_ETAG = "Seaweed-X-Amz-ETag"
VERSION_FILE = re.compile(r"(?P<key>.+)\.versions/v_[^/]+", re.DOTALL)


def parse_seaweed_event(doc):
    """Object events for one filer change; directories and internals ignored."""
    try:
        return _parse_change(doc)
    except PayloadError as exc:
        return Intake(faults=[exc.message])


def _parse_change(doc):
    kind = require_string(doc, "event_type", "SeaweedFS event")
    if kind not in EVENT_TYPES:
        raise PayloadError(f"SeaweedFS event_type {clip(kind)} is not one of "
                           f"{', '.join(EVENT_TYPES)}.")
    key = require_string(doc, "key", "SeaweedFS event")
    message = require_object(doc.get("message"), "SeaweedFS event.message")
    old = optional_entry(message, "old_entry")
    new = optional_entry(message, "new_entry")
    if old is None and new is None:
        raise PayloadError("SeaweedFS event.message has neither old_entry nor new_entry.")
    old_path = key if old is not None else None
    new_path = new_entry_path(message, new, key) if new is not None else None
    intake = Intake()
    if old_path is not None and old_path != new_path:
        add_change(intake, old_path, old, Action.REMOVED)
    if new_path is not None:
        # The same content written again in place may carry new user
        # metadata (a metadata-only CopyObject): its ETag pins nothing then.
        same_content = old_path == new_path and entry_etag(old) == entry_etag(new)
        add_change(intake, new_path, new, Action.CREATED, etag_pins=not same_content)
    return intake


def optional_entry(message, name):
    entry = message.get(name)
    if entry is None:
        return None
    return require_object(entry, f"SeaweedFS event.message.{name}")


def new_entry_path(message, new, key):
    """Where the new entry lives: ``new_parent_path``/name, else ``key``."""
    parent = message.get("new_parent_path")
    if parent is None or parent == "":
        return key
    if not isinstance(parent, str) or not is_utf8(parent):
        raise PayloadError(
            f"SeaweedFS event.message.new_parent_path must be a string, not {describe(parent)}.")
    name = require_string(new, "name", "SeaweedFS event.message.new_entry")
    return parent.rstrip("/") + "/" + name


def add_change(intake, path, entry, action, etag_pins=True):
    """Append the event for ``path``, or the reason it means nothing to S3.

    Removing a version file of a versioned bucket may show an older
    version again (``may_restore``); removing a plain object restores nothing.
    """
    if entry.get("is_directory") is True:
        # Only real objects are S3 keys; the filer also reports the implied
        # directories. Empty files have no chunks, so chunks prove nothing.
        intake.ignored.append("seaweedfs directory entry")
        return
    location = split_bucket_path(path)
    if location is None:
        intake.ignored.append("seaweedfs path is not an object in a bucket")
        return
    bucket, key = location
    if action is Action.REMOVED:
        intake.events.append(ObjectEvent(bucket=bucket, key=key, action=action,
                                         may_restore=is_version_file(path)))
    else:
        intake.events.append(ObjectEvent(bucket=bucket, key=key, action=action,
                                         time=modification_time(entry),
                                         etag=entry_etag(entry) if etag_pins else None))


def is_version_file(path):
    """Whether ``path`` (under /buckets/) is one version of a versioned object."""
    return VERSION_FILE.fullmatch(path[len(BUCKETS_ROOT):].partition("/")[2]) is not None


def split_bucket_path(path):
    """(bucket, key) for ``/buckets/<bucket>/<key>``, else None.

    Bucket names cannot start with a dot, so ``/buckets/.system/...`` and
    similar are the filer's own bookkeeping, not objects. A version file
    ``<key>.versions/v_<id>`` is a version of ``<key>``.
    """
    if not path.startswith(BUCKETS_ROOT):
        return None
    bucket, _, key = path[len(BUCKETS_ROOT):].partition("/")
    if not bucket or bucket.startswith(".") or not key:
        return None
    version = VERSION_FILE.fullmatch(key)
    if version:
        key = version.group("key")
    return bucket, key


def entry_etag(entry):
    """The ETag SeaweedFS's S3 gateway answers for this entry, or None.

    The gateway keeps it base64-encoded in ``extended["Seaweed-X-Amz-ETag"]``
    (multipart ETags included, checked against SeaweedFS 4.48); a file
    written through the filer only has its MD5 (``attributes.md5``, base64),
    which is then its ETag in hex.
    """
    extended = entry.get("extended")
    tag = _base64(extended.get(S3_ETAG)) if isinstance(extended, dict) else None
    if tag is not None:
        return clean_etag(tag.decode("ascii", "replace"))
    attributes = entry.get("attributes")
    digest = _base64(attributes.get("md5")) if isinstance(attributes, dict) else None
    return digest.hex() if digest is not None and len(digest) == 16 else None


def _base64(value):
    if not isinstance(value, str) or len(value) > 256:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def modification_time(entry):
    """The entry's mtime (whole seconds since the epoch) as aware UTC."""
    attributes = entry.get("attributes")
    seconds = attributes.get("mtime") if isinstance(attributes, dict) else None
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
