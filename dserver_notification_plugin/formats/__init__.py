"""Payload adapters: every wire dialect in, :class:`ObjectEvent` lists out.

Pure functions over bytes and parsed JSON, no Flask and no database, so
each dialect is tested against captured payloads without a server. The
only exception that leaves this package is :class:`PayloadError`.

One module per dialect: ``records`` (S3 event records: AWS, MinIO,
StorageGRID, Ceph, NooBaa, s3rver) with ``event_names`` (what each
sender's event names mean), ``sns`` (SNS envelopes), ``eventbridge``
(EventBridge events), ``storagegrid`` (form posts and search-integration
documents), ``seaweed`` (filer webhook), ``documents`` (choosing among them
for a parsed JSON document, wherever it came from) and ``webhook`` (bytes
and content type of POST /webhook/notify -> a document).
"""
from ..events import Intake
from .documents import parse_document
from .errors import PayloadError, require_object
from .records import KeyEncoding, parse_records
from .storagegrid import parse_storagegrid_search_document
from .webhook import parse_webhook

__all__ = [
    "KeyEncoding",
    "PayloadError",
    "parse_document",
    "parse_webhook",
    "parse_records_document",
    "parse_storagegrid_search_document",
]


def parse_records_document(doc) -> Intake:
    """A document from MinIO's Elasticsearch target: ``{"Records": [...]}``.

    The "namespace" format PUTs it to ``<index>/_doc/<id>`` and the "access"
    format POSTs it to ``<index>/_doc``; the body is the same.
    """
    require_object(doc, "document")
    if "Records" not in doc:
        raise PayloadError(
            "document has no 'Records' array (expected MinIO's {\"Records\": [...]}).")
    return parse_records(doc["Records"], "document.Records")
