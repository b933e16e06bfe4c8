"""Payload adapters: every wire dialect in, :class:`ObjectEvent` lists out.

Pure functions over bytes and parsed JSON, no Flask and no database, so
each dialect is tested against captured payloads without a server. The
only exception that leaves this package is :class:`PayloadError`.

One module per dialect: ``records`` (S3 event records: AWS, MinIO,
StorageGRID, s3rver), ``sns`` (SNS envelopes), ``storagegrid`` (form posts
and search-integration documents), ``seaweed`` (filer webhook) and
``webhook`` (choosing among them for POST /webhook/notify) and ``elastic``
(Elasticsearch-style calls and documents).
"""
from .elastic import parse_records_document
from .errors import PayloadError
from .storagegrid import parse_storagegrid_search_document
from .webhook import parse_webhook

__all__ = [
    "PayloadError",
    "parse_webhook",
    "parse_records_document",
    "parse_storagegrid_search_document",
]
