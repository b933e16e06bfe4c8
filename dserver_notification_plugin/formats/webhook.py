"""POST /webhook/notify: pick the dialect from the content type and shape.

All dialects arrive at one URL because storage systems are configured with
one endpoint each and some (SNS) cannot be told to set a content type that
names the dialect. The content type separates StorageGRID's form posts from
JSON; for JSON, the top-level keys separate the rest:

- ``Type``: an SNS envelope (AWS, moto);
- ``Records``: an S3 event (AWS, MinIO's webhook, StorageGRID, s3rver);
- ``Event: s3:TestEvent``: AWS's test event sent without SNS;
- ``event_type``: a SeaweedFS filer event.
"""
from .errors import PayloadError, describe, load_json_text
from .records import TEST_EVENT, parse_s3_event
from .seaweed import parse_seaweed_event
from .sns import parse_sns_envelope
from .storagegrid import parse_storagegrid_form

FORM_TYPE = "application/x-www-form-urlencoded"
# SNS delivers its JSON envelope as text/plain; charset=UTF-8.
JSON_TYPES = ("application/json", "text/plain")


def parse_webhook(body, content_type):
    """The :class:`Intake` of one webhook request; :class:`PayloadError` if bad."""
    media = media_type(content_type)
    if media == FORM_TYPE:
        return parse_storagegrid_form(body)
    if media is None or media in JSON_TYPES or media.endswith("+json"):
        return parse_json_document(decode_json_body(body))
    raise PayloadError(
        f"content type {media!r} is not supported; send application/json, "
        f"text/plain (SNS) or {FORM_TYPE} (StorageGRID).", status=415)


def media_type(content_type):
    """``text/plain`` from ``text/plain; charset=UTF-8``; None when absent."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def decode_json_body(body):
    if not body:
        raise PayloadError("body is empty; expected a JSON object.")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"body is not valid UTF-8 (byte {exc.start}).")
    return load_json_text(text, "body")


def parse_json_document(doc):
    if not isinstance(doc, dict):
        raise PayloadError(f"body must be a JSON object, not {describe(doc)}.")
    if "Type" in doc:
        return parse_sns_envelope(doc)
    if "Records" in doc or doc.get("Event") == TEST_EVENT:
        return parse_s3_event(doc)
    if "event_type" in doc:
        return parse_seaweed_event(doc)
    raise PayloadError(
        "body is not a known notification: expected an S3 event ('Records'), an SNS "
        "envelope ('Type'), an s3:TestEvent ('Event') or a SeaweedFS event ('event_type').")
