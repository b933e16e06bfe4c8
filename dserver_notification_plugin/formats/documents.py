"""Any notification document, already parsed from JSON -> :class:`Intake`.

The entry point for every producer that holds a parsed document: the
webhook route, the Elasticsearch-style route's documents, and consumers of
queues whose messages carry the same documents (SQS bodies are S3 events,
SNS envelopes or EventBridge events). The top-level shape tells the
dialects apart:

- ``Type``: an SNS envelope (AWS, moto);
- ``Records``: S3 event records (AWS, MinIO, StorageGRID, Ceph, NooBaa);
- ``Event: s3:TestEvent``: AWS's test event sent without SNS;
- ``detail-type`` and ``detail``: an EventBridge event (API destinations);
- ``event_type``: a SeaweedFS filer event;
- the JSON string ``"test notification"``: NooBaa's connection test
  before NooBaa 5.19.
"""
from .errors import PayloadError, describe
from .eventbridge import is_eventbridge_event, parse_eventbridge_event
from .records import TEST_EVENT, KeyEncoding, parse_s3_event
from .seaweed import parse_seaweed_event
from .sns import parse_sns_envelope
from ..events import Intake

NOOBAA_TEST = "test notification"


def parse_document(doc, default_encoding=KeyEncoding.UNKNOWN):
    """The :class:`Intake` of one notification document.

    ``default_encoding`` is how keys are escaped in S3 records whose
    ``eventSource`` names no known sender. :class:`PayloadError` when
    ``doc`` is no notification at all.
    """
    if doc == NOOBAA_TEST:
        return Intake(ignored=["noobaa test notification"])
    if not isinstance(doc, dict):
        raise PayloadError(f"body must be a JSON object, not {describe(doc)}.")
    if "Type" in doc:
        return parse_sns_envelope(doc)
    if "Records" in doc or doc.get("Event") == TEST_EVENT:
        return parse_s3_event(doc, default_encoding=default_encoding)
    if is_eventbridge_event(doc):
        return parse_eventbridge_event(doc)
    if "event_type" in doc:
        return parse_seaweed_event(doc)
    raise PayloadError(
        "body is not a known notification: expected an S3 event ('Records'), an SNS "
        "envelope ('Type'), an s3:TestEvent ('Event'), an EventBridge event "
        "('detail-type') or a SeaweedFS event ('event_type').")
