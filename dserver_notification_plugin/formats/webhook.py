"""POST /webhook/notify: pick the dialect from the content type and shape.

All dialects arrive at one URL because storage systems are configured with
one endpoint each and some (SNS) cannot be told to set a content type that
names the dialect. The content type separates StorageGRID's form posts from
JSON; for JSON, :func:`~.documents.parse_document` tells the rest apart by
their top-level keys. NooBaa posts without any content type, and it sends
raw keys, so a JSON body without one reads keys of unknown senders raw.
"""
from .documents import parse_document
from .errors import PayloadError, load_json_text
from .records import KeyEncoding
from .storagegrid import parse_storagegrid_form

FORM_TYPE = "application/x-www-form-urlencoded"
# SNS delivers its JSON envelope as text/plain; charset=UTF-8.
JSON_TYPES = ("application/json", "text/plain")


def parse_webhook(body, content_type):
    """The :class:`Intake` of one webhook request; :class:`PayloadError` if bad."""
    media = media_type(content_type)
    if media == FORM_TYPE:
        return parse_storagegrid_form(body)
    if media is None:
        return parse_document(decode_json_body(body), KeyEncoding.RAW)
    if media in JSON_TYPES or media.endswith("+json"):
        return parse_document(decode_json_body(body))
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
