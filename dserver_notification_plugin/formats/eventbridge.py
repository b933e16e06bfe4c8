"""Amazon EventBridge events from S3, as an API destination POSTs them.

A bucket with EventBridge enabled sends every object event to the
account's default event bus; a rule can forward them to an *API
destination*, which POSTs each event, unchanged, as JSON::

    {"version": "0", "detail-type": "Object Created", "source": "aws.s3",
     "time": "...", "resources": ["arn:aws:s3:::<bucket>"],
     "detail": {"bucket": {"name": ...}, "object": {"key": ..., "sequencer": ...},
                "reason": "PutObject", ...}}

Unlike S3 event records, EventBridge events carry object keys as they are,
not form-encoded. The same events arrive from an SQS queue or an SNS topic
that is the rule's target.
"""
from ..events import Action, Intake, ObjectEvent, clean_etag
from .errors import PayloadError, clip, require_object, require_string
from .records import parse_time

SOURCE = "aws.s3"
DETAIL_TYPES = {
    "Object Created": Action.CREATED,
    "Object Deleted": Action.REMOVED,
}
# The other S3 detail types: understood, and no object appears or goes.
UNCHANGING_DETAIL_TYPES = frozenset({
    "Object Restore Initiated", "Object Restore Completed", "Object Restore Expired",
    "Object Storage Class Changed", "Object Access Tier Changed", "Object ACL Updated",
    "Object Tags Added", "Object Tags Deleted",
})


def is_eventbridge_event(doc):
    return isinstance(doc, dict) and "detail-type" in doc and "detail" in doc


def parse_eventbridge_event(doc):
    """The event of one EventBridge event; other sources and types are ignored."""
    require_object(doc, "EventBridge event")
    try:
        return Intake(**_parse(doc))
    except PayloadError as exc:
        return Intake(faults=[exc.message])


def _parse(doc):
    source = require_string(doc, "source", "EventBridge event")
    detail_type = require_string(doc, "detail-type", "EventBridge event")
    if source != SOURCE:
        return {"faults": [f"EventBridge event from source {clip(source)}, not {SOURCE}"]}
    if detail_type in UNCHANGING_DETAIL_TYPES:
        return {"ignored": [f"EventBridge {detail_type}"]}
    if detail_type not in DETAIL_TYPES:
        return {"faults": [f"unknown EventBridge detail-type {clip(detail_type)}"]}
    detail = require_object(doc.get("detail"), "EventBridge event.detail")
    bucket = require_string(require_object(detail.get("bucket"), "EventBridge detail.bucket"),
                            "name", "EventBridge detail.bucket")
    obj = require_object(detail.get("object"), "EventBridge detail.object")
    key = require_string(obj, "key", "EventBridge detail.object")
    sequencer = obj.get("sequencer")
    return {"events": [ObjectEvent(
        bucket=bucket, key=key, action=DETAIL_TYPES[detail_type], time=parse_time(doc.get("time")),
        sequencer=sequencer if isinstance(sequencer, str) else None,
        # A copy keeps the ETag but may carry new user metadata (records.is_copy).
        etag=None if detail.get("reason") == "CopyObject" else clean_etag(obj.get("etag")),
        # "Object Deleted" says which: a delete marker created restores nothing;
        # a version named on a versioned bucket may show an older one again.
        may_restore=detail.get("deletion-type") != "Delete Marker Created"
        and obj.get("version-id") not in (None, ""))]}
