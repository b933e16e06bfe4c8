"""The plugin's one Blueprint: notification intake for every dialect.

Every route is behind the guard (networks, then secret), reads at most
``DSERVER_NOTIFY_MAX_BODY_BYTES``, and answers JSON. Intake answers 202
only after the relevant events are committed to the inbox.
"""
import json
import logging
import urllib.request
import uuid

from dservercore import utils_auth
from dservercore.utils_auth import get_jwt_identity, jwt_required
from flask import current_app, jsonify, make_response, request
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields
from sqlalchemy.exc import SQLAlchemyError

from . import elastic
from .formats import PayloadError, parse_webhook
from .guard import guard_request
from .intake import accept

logger = logging.getLogger(__name__)

bp = Blueprint("notification", __name__, url_prefix="",
               description="Receive S3 event notifications and keep the index in sync.")


class IntakeResultSchema(Schema):
    accepted = fields.Integer(metadata={"description": "events stored for a sync"})
    ignored = fields.Integer(
        metadata={"description": "events that cannot change the index (access events, "
                                 "data items, unmapped buckets, non-dtool keys) and records "
                                 "that could not be understood (logged as warnings)"})


def _document_intake(view):
    """OpenAPI: what an intake route answers."""
    for status, description in (
            (400, "the body is no notification at all; the message names the problem"),
            (401, "a secret is configured and the request carries no valid one"),
            (403, "client outside DSERVER_NOTIFY_ALLOW_ACCESS_FROM, or unlisted SNS topic"),
            (413, "body larger than DSERVER_NOTIFY_MAX_BODY_BYTES"),
            (415, "unsupported content type"),
            (503, "the inbox database is unavailable; retry later")):
        view = bp.alt_response(status, description=description)(view)
    return bp.alt_response(202, schema=IntakeResultSchema,
                           description="stored; answered after the commit")(view)


def extension():
    from . import EXTENSION_KEY
    return current_app.extensions[EXTENSION_KEY]


@bp.before_request
def _guard():
    if request.endpoint == "notification.status":
        return None  # admins read it from anywhere, with their dserver JWT
    ext = extension()
    refusal = guard_request(ext.settings, ext.rejection_log)
    if refusal is not None:
        ext.stats.add("refused")
    return refusal


def read_body():
    """The request body, refusing (413) anything over the configured limit."""
    limit = extension().settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        abort(413, message=f"body of {request.content_length} bytes exceeds the "
                           f"limit of {limit} bytes")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        abort(413, message=f"body exceeds the limit of {limit} bytes")
    return body


@bp.errorhandler(SQLAlchemyError)
def _store_unavailable(exc):
    """The database is down or busy: 503, so the sender keeps the event and retries."""
    logger.error("notification store unavailable: %s", exc)
    return make_response(jsonify({"code": 503, "status": "Service Unavailable",
                                  "message": "notification store unavailable; retry later"}),
                         503)


def accepted_response(intake):
    accepted, ignored = accept(extension(), intake)
    return make_response(jsonify({"accepted": accepted, "ignored": ignored}), 202)


def payload_error(exc):
    abort(exc.status, message=exc.message)


@bp.route("/webhook/notify", methods=["POST", "HEAD"], strict_slashes=False,
          defaults={"path": ""})
@bp.route("/webhook/notify/<path:path>", methods=["POST", "HEAD"])
@_document_intake
def notify(path):
    """Receive S3 event notifications.

    Accepts S3 event records (MinIO webhook, AWS, Ceph RGW, NooBaa;
    every record), AWS SNS HTTP deliveries (text/plain envelopes,
    subscription confirmation for the topics in DSERVER_NOTIFY_SNS_TOPICS),
    AWS EventBridge events from API destinations, NetApp StorageGRID SNS
    form posts, SeaweedFS filer webhooks and NooBaa's connection tests; a
    JSON body may have no Content-Type. Answers 202 with the numbers of
    accepted and ignored events once they are stored; a record that cannot
    be understood is ignored and logged, not refused. HEAD answers 200
    (MinIO probes liveness with it).
    """
    if request.method == "HEAD":
        return make_response("", 200)
    try:
        intake = parse_webhook(read_body(), request.content_type)
    except PayloadError as exc:
        payload_error(exc)
    if intake.sns_confirmation is not None:
        return confirm_subscription(intake.sns_confirmation)
    return accepted_response(intake)


def confirm_subscription(confirmation):
    """Confirm an SNS subscription, but only for topics the operator listed.

    Confirming means fetching a URL the request names, so an unlisted topic
    is refused rather than followed.
    """
    if confirmation.topic_arn not in extension().settings.sns_topics:
        logger.warning("refused SNS subscription to unlisted topic %r; add it to "
                       "DSERVER_NOTIFY_SNS_TOPICS to accept it", confirmation.topic_arn)
        abort(403, message="SNS topic is not listed in DSERVER_NOTIFY_SNS_TOPICS")
    try:
        with urllib.request.urlopen(confirmation.subscribe_url, timeout=10) as answer:
            answer.read()
    except OSError as exc:
        logger.warning("could not confirm SNS subscription to %s: %s",
                       confirmation.topic_arn, exc)
        abort(502, message="could not reach the SNS SubscribeURL")
    logger.info("confirmed SNS subscription to %s", confirmation.topic_arn)
    return jsonify({"confirmed": confirmation.topic_arn})


@bp.route("/elastic-search/", methods=["GET", "HEAD", "PUT", "POST", "DELETE"],
          defaults={"path": ""}, strict_slashes=False)
@bp.route("/elastic-search/<path:path>", methods=["GET", "HEAD", "PUT", "POST", "DELETE"])
@_document_intake
def elastic_search(path):
    """Elasticsearch-style targets: MinIO's Elasticsearch target and
    StorageGRID's search integration.

    Answers the start-up calls of an Elasticsearch 7.x client, takes
    documents (``PUT <index>/_doc/<id>`` namespace format, ``POST
    <index>/_doc`` access format, StorageGRID ``<index>/<type>/<id>``) as
    object creations, and deletions of remembered document ids as
    removals.
    """
    route = elastic.classify(request.method, path)
    if route.kind == "info":
        return elastic.es_response(elastic.INFO_DOCUMENT)
    if route.kind == "resolve":
        return elastic.es_response(elastic.resolve_document(route.index))
    if route.kind == "index":
        return elastic.es_response({"acknowledged": True, "shards_acknowledged": True,
                                    "index": route.index})
    if route.kind == "exists":
        return elastic.es_response({}, status=200)
    if route.kind == "exists_doc":
        found = elastic.known_object(route.doc_id, extension()) is not None
        return elastic.es_response({"_id": route.doc_id, "found": found},
                                   status=200 if found else 404)
    if route.kind == "document_or_index" and not request.content_length:
        return elastic.es_response({"acknowledged": True, "index": route.index})
    try:
        if route.kind in ("document", "document_or_index"):
            return _document(route)
        if route.kind == "delete":
            return _delete_document(route)
    except PayloadError as exc:
        payload_error(exc)
    abort(400, message=f"unsupported Elasticsearch request {request.method} /{path}")


def _document(route):
    doc = elastic.json_document(read_body())
    doc_id = route.doc_id or uuid.uuid4().hex
    intake = elastic.intake_for_document(doc)
    elastic.remember(doc_id, intake, extension())
    response = accepted_response(intake)
    body = json.loads(response.get_data())
    body.update({"_index": route.index, "_id": doc_id, "result": "created"})
    return elastic.es_response(body, status=201)


def _delete_document(route):
    intake = elastic.intake_for_deletion(route.doc_id, extension())
    if intake is None:
        # MinIO only deletes what HEAD said exists; an unknown id is no
        # error worth a retry loop.
        return elastic.es_response({"_index": route.index, "_id": route.doc_id,
                                    "result": "not_found"}, status=200)
    response = accepted_response(intake)
    elastic.forget(route.doc_id, extension())
    body = json.loads(response.get_data())
    body.update({"_index": route.index, "_id": route.doc_id, "result": "deleted"})
    return elastic.es_response(body, status=200)


# --- operations: status for dserver admins, metrics for Prometheus ---------------

@bp.route("/webhook/status", methods=["GET"])
@jwt_required()
def status():
    """How the sync is doing, as JSON; for dserver admins only.

    Event counters since this process started and in total, inbox entries
    by state, the age of the oldest waiting entry and the last error of
    each dead entry. Not behind the notification guard: it needs a dserver
    admin's token instead (401 without one, 403 for other users).
    """
    from .status import gather_status
    username = get_jwt_identity()
    if not utils_auth.user_exists(username):
        abort(401, message="unknown user")
    if not utils_auth.has_admin_rights(username):
        abort(403, message="only dserver admins may read the notification status")
    return jsonify(gather_status(extension()))


@bp.route("/webhook/metrics", methods=["GET"])
def metrics():
    """Prometheus text exposition; guarded like the notification routes."""
    from prometheus_client import CONTENT_TYPE_LATEST
    from .status import metrics_text
    body = metrics_text(extension())
    return make_response(body, 200, {"Content-Type": CONTENT_TYPE_LATEST})
