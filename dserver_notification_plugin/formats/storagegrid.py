"""NetApp StorageGRID: SNS-style form posts and search-integration documents.

StorageGRID's event notifications imitate the SNS *Publish API*, not SNS's
HTTP delivery: ``application/x-www-form-urlencoded`` with
``Action=Publish&Message=<S3 event JSON>&TopicArn=...&Version=2010-03-31``.
Its endpoint test posts ``Message=StorageGRID Test Message``, which is not
JSON and must be answered with 200.

Its *search integration* service instead PUTs one document per object
(``bucket``, ``key``, ``versionId``, ``size``, ``metadata``, ``tags``) to an
Elasticsearch-style path; receiving one means "this object exists now".
"""
from urllib.parse import parse_qs

from ..events import Action, Intake, ObjectEvent
from .errors import PayloadError, load_json_text, require_object, require_string
from .records import parse_s3_event

TEST_MESSAGE = "StorageGRID Test Message"


def parse_storagegrid_form(body):
    """The events in a StorageGRID ``Action=Publish`` form body."""
    form = decode_form(body)
    action = form.get("Action")
    if action is not None and action != "Publish":
        raise PayloadError(f"form field Action is {action!r}; only 'Publish' is understood.")
    if "Message" not in form:
        raise PayloadError("form body has no Message field (expected Action=Publish&Message=...).")
    message = form["Message"]
    if message.strip() == TEST_MESSAGE:
        return Intake(ignored=["storagegrid test message"])
    return parse_s3_event(load_json_text(message, "form field Message"), "form field Message")


def decode_form(body):
    """Form fields as a dict of their first values; bad encoding is a 400."""
    try:
        text = body.decode("utf-8")
        fields = parse_qs(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise PayloadError("form body is not valid UTF-8 after percent-decoding.")
    except ValueError as exc:
        raise PayloadError(f"form body is not a valid form ({exc}).")
    return {name: values[0] for name, values in fields.items()}


def parse_storagegrid_search_document(doc):
    """One CREATED event for a search-integration document.

    The document describes the object as it is now, so it is a creation (or
    an update, which is the same to the index). Its key is plain text: this
    service does not form-encode keys as event records do. Removals arrive
    as a bodiless DELETE, which the route maps back to the remembered key.
    """
    require_object(doc, "search document")
    bucket = require_string(doc, "bucket", "search document")
    key = require_string(doc, "key", "search document")
    return Intake(events=[ObjectEvent(bucket=bucket, key=key, action=Action.CREATED)])
