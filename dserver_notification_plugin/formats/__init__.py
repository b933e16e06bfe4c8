"""Payload adapters: every wire dialect in, :class:`ObjectEvent` lists out.

Pure functions over bytes and parsed JSON, no Flask and no database, so
each dialect is tested against captured payloads without a server. The
only exception that leaves this package is :class:`PayloadError`.

One module per dialect: ``records`` (S3 event records: AWS, MinIO,
StorageGRID, Ceph, NooBaa, s3rver) with ``event_names`` (what each
sender's event names mean), ``sns`` (SNS envelopes), ``eventbridge``
(EventBridge events), ``storagegrid`` (form posts and search-integration
documents), ``seaweed`` (filer webhook), ``documents`` (choosing among them
for a parsed JSON notification, wherever it came from: the webhook or a
queue's message), ``webhook`` (bytes and content type of POST
/webhook/notify -> a document), ``queue`` (an SQS message body -> a
document) and ``elastic`` (Elasticsearch-style calls and their indexed
documents).
"""
from .documents import parse_document
from .elastic import parse_records_document
from .errors import PayloadError
from .records import KeyEncoding
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
