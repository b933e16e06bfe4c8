"""Speak just enough Elasticsearch for the targets that think we are one.

MinIO's Elasticsearch target checks the cluster at start-up, creates its
index, then indexes one document per event (``namespace`` format: PUT
``<index>/_doc/<id>``, the id standing for the object; ``access`` format:
POST ``<index>/_doc``). On removal in the namespace format it sends HEAD and
DELETE for the id, with no body, so we remember which object each id stood
for. StorageGRID's search integration PUTs/POSTs one JSON document per
object to ``<index>/<type>/<id>`` and DELETEs it on removal.
"""
from dataclasses import dataclass
from typing import Optional

from flask import jsonify, make_response

from dservercore import sql_db

from . import inbox
from .events import Action, Intake, ObjectEvent
from .formats import PayloadError, parse_records_document, parse_storagegrid_search_document
from .formats.errors import require_object
from .formats.webhook import decode_json_body

# What an Elasticsearch 7.x cluster answers on GET /; clients (MinIO's
# go-elasticsearch 7.12+) check the version and the product header.
INFO_DOCUMENT = {
    "name": "dserver-notification",
    "cluster_name": "dserver-notification",
    "cluster_uuid": "dserver-notification-plugin",
    "version": {
        "number": "7.17.0",
        "build_flavor": "default",
        "build_type": "tar",
        "lucene_version": "8.11.1",
        "minimum_wire_compatibility_version": "6.8.0",
        "minimum_index_compatibility_version": "6.0.0-beta1",
    },
    "tagline": "You Know, for Search",
}


@dataclass(frozen=True)
class EsRoute:
    kind: str  # info | resolve | index | exists | document | delete | unsupported
    index: str = ""
    doc_id: Optional[str] = None


def classify(method, path):
    """Which Elasticsearch call a method and path (below /elastic-search/) are."""
    path = path.strip("/")
    if not path:
        return EsRoute("info" if method in ("GET", "HEAD") else "unsupported")
    if path.startswith("_resolve/index/") and method == "GET":
        return EsRoute("resolve", index=path[len("_resolve/index/"):])
    if "/_doc/" in path:
        index, doc_id = path.rsplit("/_doc/", 1)
        return _doc_route(method, index, doc_id)
    if path.endswith("/_doc") and method == "POST":
        return EsRoute("document", index=path[:-len("/_doc")])
    segments = path.split("/", 2)
    # StorageGRID: <index>/<type>/<id>, where the id is "<bucket>_<key>" and
    # the key may hold slashes (the server decodes %2F before we see it).
    if method in ("PUT", "POST") and len(segments) == 3:
        # an empty body is index creation
        return EsRoute("document_or_index", index=segments[0], doc_id=segments[2])
    if method == "DELETE" and len(segments) == 3:
        return EsRoute("delete", index=segments[0], doc_id=segments[2])
    if method == "PUT":
        return EsRoute("index", index=path)
    if method in ("HEAD", "GET"):
        return EsRoute("exists", index=path)
    return EsRoute("unsupported", index=path)


def _doc_route(method, index, doc_id):
    if method in ("PUT", "POST"):
        return EsRoute("document", index=index, doc_id=doc_id)
    if method == "DELETE":
        return EsRoute("delete", index=index, doc_id=doc_id)
    if method in ("HEAD", "GET"):
        return EsRoute("exists_doc", index=index, doc_id=doc_id)
    return EsRoute("unsupported", index=index, doc_id=doc_id)


def es_response(body, status=200):
    response = make_response(jsonify(body), status)
    response.headers["X-Elastic-Product"] = "Elasticsearch"
    return response


def resolve_document(index):
    return {"indices": [{"name": index, "attributes": ["open"]}],
            "aliases": [], "data_streams": []}


def json_document(body):
    """The request body as a JSON object, with the webhook's decoding rules."""
    doc = decode_json_body(body)
    require_object(doc, "document")
    return doc


def intake_for_document(doc):
    if "Records" in doc:
        return parse_records_document(doc)
    if "bucket" in doc or "key" in doc:
        return parse_storagegrid_search_document(doc)
    raise PayloadError("document has neither 'Records' (MinIO) nor "
                       "'bucket' and 'key' (StorageGRID)")


def remember(doc_id, intake, extension):
    """Remember the object a document id stands for, for a later DELETE."""
    if not intake.events:
        return
    event = intake.events[0]
    extension.ensure_schema()
    with sql_db.engine.begin() as conn:
        inbox.remember_es_document(conn, doc_id, event.bucket, event.key, inbox.now())


def known_object(doc_id, extension):
    extension.ensure_schema()
    with sql_db.engine.begin() as conn:
        return inbox.recall_es_document(conn, doc_id)


def intake_for_deletion(doc_id, extension):
    """The removal a DELETE of ``doc_id`` means, or None if unknown."""
    found = known_object(doc_id, extension) or _storagegrid_id(doc_id, extension)
    if found is None:
        return None
    bucket, key = found
    return Intake(events=[ObjectEvent(bucket=bucket, key=key, action=Action.REMOVED)])


def _storagegrid_id(doc_id, extension):
    # StorageGRID names documents "<bucket>_<key>"; only trust mapped buckets.
    for bucket in sorted(extension.settings.bucket_to_base_uri, key=len, reverse=True):
        if doc_id.startswith(bucket + "_") and len(doc_id) > len(bucket) + 1:
            return bucket, doc_id[len(bucket) + 1:]
    return None


def forget(doc_id, extension):
    with sql_db.engine.begin() as conn:
        inbox.forget_es_document(conn, doc_id)
