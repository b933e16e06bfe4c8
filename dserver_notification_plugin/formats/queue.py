"""Amazon SQS message bodies: the documents of the webhook, as text.

A queue that a bucket notifies directly holds S3 event JSON (its first
message is an ``s3:TestEvent``); a queue subscribed to an SNS topic holds
SNS envelopes, or the S3 event itself when raw message delivery is on; a
queue that an EventBridge rule targets holds EventBridge events. A body has
no content type, so its top-level keys tell the dialects apart, exactly as
for a JSON webhook request (:func:`.documents.parse_document`).
"""
from .documents import parse_document
from .errors import PayloadError, load_json_text


def parse_queue_message(body, max_bytes):
    """The :class:`Intake` of one message body; :class:`PayloadError` if it
    is none of the documents above or larger than ``max_bytes``."""
    if not isinstance(body, str) or not body.strip():
        raise PayloadError("message body is empty; expected a JSON document.")
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise PayloadError(f"message body of {size} bytes exceeds the limit of "
                           f"{max_bytes} bytes.", status=413)
    return parse_document(load_json_text(body, "message body"))
