"""Elasticsearch-style targets: which call a request is, and what a document says.

MinIO's Elasticsearch target checks the cluster at start-up, creates its
index, then indexes one document per event (``namespace`` format: PUT
``<index>/_doc/<id>``, the id standing for the object; ``access`` format:
POST ``<index>/_doc``). On removal in the namespace format it sends HEAD and
DELETE for the id, with no body, so the route remembers which object each id
stood for. StorageGRID's search integration PUTs/POSTs one JSON document per
object to ``<index>/<type>/<id>`` and DELETEs it on removal.

Pure functions: the route answers, and the store remembers document ids.
"""
from dataclasses import dataclass
from enum import Enum
from typing import Iterable, Optional

from .errors import PayloadError, require_object
from .records import parse_records
from .storagegrid import parse_storagegrid_search_document
from .webhook import decode_json_body


class EsCall(Enum):
    INFO = "info"                            # GET / : cluster info
    RESOLVE = "resolve"                      # GET _resolve/index/<index>
    CREATE_INDEX = "index"                   # PUT <index>
    INDEX_EXISTS = "exists"                  # HEAD/GET <index>
    DOCUMENT_EXISTS = "exists_doc"           # HEAD/GET <index>/_doc/<id>
    DOCUMENT = "document"                    # PUT/POST a document
    DOCUMENT_OR_INDEX = "document_or_index"  # StorageGRID path; an empty body creates the index
    DELETE = "delete"                        # DELETE a document by id
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class EsRoute:
    call: EsCall
    index: str = ""
    doc_id: Optional[str] = None


def classify(method, path) -> EsRoute:
    """Which Elasticsearch call a method and path (below /elastic-search/) are."""
    path = path.strip("/")
    if not path:
        return EsRoute(EsCall.INFO if method in ("GET", "HEAD") else EsCall.UNSUPPORTED)
    if path.startswith("_resolve/index/") and method == "GET":
        return EsRoute(EsCall.RESOLVE, index=path[len("_resolve/index/"):])
    if "/_doc/" in path:
        index, doc_id = path.rsplit("/_doc/", 1)
        return _doc_route(method, index, doc_id)
    if path.endswith("/_doc") and method == "POST":
        return EsRoute(EsCall.DOCUMENT, index=path[:-len("/_doc")])
    segments = path.split("/", 2)
    # StorageGRID: <index>/<type>/<id>, where the id is "<bucket>_<key>" and
    # the key may hold slashes (the server decodes %2F before we see it).
    if method in ("PUT", "POST") and len(segments) == 3:
        return EsRoute(EsCall.DOCUMENT_OR_INDEX, index=segments[0], doc_id=segments[2])
    if method == "DELETE" and len(segments) == 3:
        return EsRoute(EsCall.DELETE, index=segments[0], doc_id=segments[2])
    if method == "PUT":
        return EsRoute(EsCall.CREATE_INDEX, index=path)
    if method in ("HEAD", "GET"):
        return EsRoute(EsCall.INDEX_EXISTS, index=path)
    return EsRoute(EsCall.UNSUPPORTED, index=path)


def _doc_route(method, index, doc_id):
    if method in ("PUT", "POST"):
        return EsRoute(EsCall.DOCUMENT, index=index, doc_id=doc_id)
    if method == "DELETE":
        return EsRoute(EsCall.DELETE, index=index, doc_id=doc_id)
    if method in ("HEAD", "GET"):
        return EsRoute(EsCall.DOCUMENT_EXISTS, index=index, doc_id=doc_id)
    return EsRoute(EsCall.UNSUPPORTED, index=index, doc_id=doc_id)


def parse_records_document(doc):
    """A document from MinIO's Elasticsearch target: ``{"Records": [...]}``.

    The "namespace" format PUTs it to ``<index>/_doc/<id>`` and the "access"
    format POSTs it to ``<index>/_doc``; the body is the same.
    """
    require_object(doc, "document")
    if "Records" not in doc:
        raise PayloadError(
            "document has no 'Records' array (expected MinIO's {\"Records\": [...]}).")
    return parse_records(doc["Records"], "document.Records")


def parse_document(body):
    """The :class:`Intake` of one indexed document (MinIO records or StorageGRID)."""
    doc = require_object(decode_json_body(body), "document")
    if "Records" in doc:
        return parse_records_document(doc)
    if "bucket" in doc or "key" in doc:
        return parse_storagegrid_search_document(doc)
    raise PayloadError("document has neither 'Records' (MinIO) nor "
                       "'bucket' and 'key' (StorageGRID)")


def storagegrid_object(doc_id, buckets: Iterable[str]):
    """``(bucket, key)`` from a StorageGRID document id ``<bucket>_<key>``.

    Only mapped ``buckets`` are believed, longest first, since bucket names
    may themselves contain ``_``-free prefixes of each other.
    """
    for bucket in sorted(buckets, key=len, reverse=True):
        if doc_id.startswith(bucket + "_") and len(doc_id) > len(bucket) + 1:
            return bucket, doc_id[len(bucket) + 1:]
    return None
