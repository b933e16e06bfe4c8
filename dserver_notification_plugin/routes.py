"""The plugin's one Blueprint: notification intake for every dialect.

Every route is behind the guard (browsers, networks, then secret), reads
at most ``DSERVER_NOTIFY_MAX_BODY_BYTES``, and answers JSON. SNS envelopes
are checked (topic, signature) before anything is stored or fetched.
Intake answers 202 only after the relevant events are committed to the
inbox; the inbox's limits answer 413 or 503 (see intake.py).
"""
import logging
import uuid

from dservercore import utils_auth
from dservercore.utils_auth import get_jwt_identity, jwt_required
from flask import g, jsonify, make_response, request
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields
from sqlalchemy.exc import SQLAlchemyError

from .events import Action, Intake, ObjectEvent, impossible_object
from .formats import PayloadError, parse_webhook
from .formats.elastic import EsCall, classify, parse_document, storagegrid_object
from .globals import current_notification
from .guard import guard_request
from .intake import IntakeRefused, accept
from .keys import DatasetTarget, translate
from .logbudget import describe_database_error, with_suppressed
from .responses import ErrorSchema, error_response
from .sns_trust import SnsRefusal
from .db import MAX_DOC_ID_LENGTH

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
            (403, "client outside DSERVER_NOTIFY_ALLOW_ACCESS_FROM, a browser request, "
                  "forwarding headers that disagree, an unlisted SNS topic, an SNS "
                  "message whose signature does not verify or a signing certificate SNS "
                  "does not have, or anything but a signed SNS message when "
                  "DSERVER_NOTIFY_REQUIRE_SNS is on"),
            (413, "body larger than DSERVER_NOTIFY_MAX_BODY_BYTES, or more records than "
                  "DSERVER_NOTIFY_MAX_RECORDS; nothing was stored"),
            (409, "an Elasticsearch document id that names another object already"),
            (415, "unsupported content type"),
            (502, "SNS could not be reached to confirm a subscription or fetch a "
                  "signing certificate"),
            (503, "the inbox database is unavailable, DSERVER_NOTIFY_MAX_PENDING "
                  "datasets wait already, or too many SNS signing certificates were "
                  "fetched this minute (with Retry-After); retry later")):
        view = bp.alt_response(status, schema=ErrorSchema, description=description)(view)
    return bp.alt_response(202, schema=IntakeResultSchema,
                           description="stored; answered after the commit")(view)


@bp.before_request
def _guard():
    """Browsers and networks first (403), then the shared secret (401); see guard.py."""
    if request.endpoint == "notification.status":
        return None  # admins read it from anywhere, with their dserver JWT
    ext = current_notification
    refusal = guard_request(ext.settings, ext.rejection_log, ext.warn_once)
    if refusal is not None:
        ext.tally.add("refused")
    return refusal


def read_body():
    """The request body, refusing (413) anything over the configured limit."""
    limit = current_notification.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        abort(413, message=f"body of {request.content_length} bytes exceeds the "
                           f"limit of {limit} bytes")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        abort(413, message=f"body exceeds the limit of {limit} bytes")
    return body


@bp.errorhandler(SQLAlchemyError)
def _store_unavailable(exc):
    """The database is down or busy: 503, so the sender keeps the event and retries.

    Logged within a budget (senders retry, and each retry fails alike) and
    without the statement and its parameters, which hold what senders wrote.
    """
    counts = current_notification.store_log.admit(type(exc).__name__)
    if counts is not None:
        message, args = with_suppressed("notification store unavailable: %s",
                                        [describe_database_error(exc)], counts, "failures")
        logger.error(message, *args)
    return error_response(503, "notification store unavailable; retry later")


@bp.errorhandler(IntakeRefused)
def _intake_refused(exc):
    """Too many records (413, nothing stored) or a full inbox (503 with
    Retry-After: the sender keeps the event and sends it again)."""
    logger.debug("notification refused by the inbox: %s", exc.message)
    return error_response(exc.status, exc.message, exc.headers)


@bp.errorhandler(SnsRefusal)
def _sns_refused(exc):
    """An SNS message or URL the plugin does not trust, or SNS unreachable."""
    ext = current_notification
    ext.tally.add("refused")
    client = g.get("notification_client") or request.remote_addr or "unix socket"
    ext.rejection_log.log(client, exc.message, exc.detail)
    return error_response(exc.status, exc.message, exc.headers)


UNSIGNED = "only signed SNS messages are accepted (DSERVER_NOTIFY_REQUIRE_SNS)"


def refuse_unsigned():
    """403 for a notification that is no SNS envelope, with REQUIRE_SNS on."""
    ext = current_notification
    ext.tally.add("refused")
    ext.rejection_log.log(g.get("notification_client") or "unknown", UNSIGNED)
    return error_response(403, UNSIGNED)


def accepted_response(intake):
    result = accept(current_notification, intake)
    return make_response(jsonify({"accepted": result.accepted, "ignored": result.ignored}), 202)


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
    if intake.sns_envelope is None and current_notification.settings.require_sns:
        return refuse_unsigned()
    if intake.sns_envelope is not None:
        current_notification.sns.check(intake.sns_envelope)  # topic, signature
    if intake.sns_confirmation is not None:
        return confirm_subscription(intake.sns_confirmation)
    return accepted_response(intake)


def confirm_subscription(confirmation):
    """Confirm an SNS subscription to a listed topic, at SNS only.

    The topic was checked with the envelope; the SubscribeURL must be a
    ConfirmSubscription call for that topic at an SNS host
    (DSERVER_NOTIFY_SNS_HOSTS), fetched once with a deadline: see
    sns_trust.py.
    """
    current_notification.sns.confirm(confirmation)
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
    if current_notification.settings.require_sns:
        return refuse_unsigned()
    route = classify(request.method, path)
    if route.doc_id is not None:
        check_doc_id(route.doc_id)
    answer = _es_answers.get(route.call)
    if answer is not None:
        return answer(route)
    if route.call is EsCall.DOCUMENT_OR_INDEX and not request.content_length:
        return es_response({"acknowledged": True, "index": route.index})
    try:
        if route.call in (EsCall.DOCUMENT, EsCall.DOCUMENT_OR_INDEX):
            return _index_document(route)
        if route.call is EsCall.DELETE:
            return _delete_document(route)
    except PayloadError as exc:
        payload_error(exc)
    abort(400, message=f"unsupported Elasticsearch request {request.method} /{path}")


def check_doc_id(doc_id):
    """400 for an id no store could remember: too long, or holding NUL."""
    if len(doc_id) > MAX_DOC_ID_LENGTH:
        abort(400, message=f"document id of {len(doc_id)} characters exceeds the "
                           f"limit of {MAX_DOC_ID_LENGTH}")
    if "\x00" in doc_id:
        abort(400, message="document id holds NUL")


# What an Elasticsearch 7.x cluster answers on GET /; clients (MinIO's
# go-elasticsearch 7.12+) check the version and the product header.
ES_INFO = {
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


def es_response(body, status=200):
    response = make_response(jsonify(body), status)
    response.headers["X-Elastic-Product"] = "Elasticsearch"
    return response


def _document_exists(route):
    found = current_notification.documents.recall(route.doc_id) is not None
    return es_response({"_id": route.doc_id, "found": found}, status=200 if found else 404)


# Calls answered without touching the inbox.
_es_answers = {
    EsCall.INFO: lambda route: es_response(ES_INFO),
    EsCall.RESOLVE: lambda route: es_response(
        {"indices": [{"name": route.index, "attributes": ["open"]}],
         "aliases": [], "data_streams": []}),
    EsCall.CREATE_INDEX: lambda route: es_response(
        {"acknowledged": True, "shards_acknowledged": True, "index": route.index}),
    EsCall.INDEX_EXISTS: lambda route: es_response({}),
    EsCall.DOCUMENT_EXISTS: _document_exists,
}


def _index_document(route):
    ext = current_notification
    intake = parse_document(read_body())
    for event in intake.events:  # one document is one object: all or nothing
        problem = impossible_object(event)
        if problem is not None:
            raise PayloadError(f"document names no S3 object: {problem}")
    doc_id = route.doc_id or uuid.uuid4().hex
    if route.doc_id and intake.events:
        refuse_re_pointing(route.doc_id, intake.events[0])
    result = accept(ext, intake)
    if route.doc_id and intake.events:
        # Remembered for a later bodiless DELETE of this id, but only when
        # the object belongs to a dataset of a mapped bucket: nothing else
        # can ever change the index. (Ids from POST <index>/_doc are ours
        # and never deleted.)
        event = intake.events[0]
        if isinstance(translate(event, ext.settings.bucket_to_base_uri), DatasetTarget) \
                and named_by_id(doc_id) is None:
            ext.documents.remember(doc_id, event.bucket, event.key)
    return es_response({"accepted": result.accepted, "ignored": result.ignored,
                        "_index": route.index, "_id": doc_id, "result": "created"}, status=201)


def refuse_re_pointing(doc_id, event):
    """409 for a document naming another object than the id remembers: a
    DELETE of the id must reach what it named first (a sender's ids stand
    for one object each)."""
    known = current_notification.documents.recall(doc_id)
    if known is not None and known != (event.bucket, event.key):
        abort(409, message="document id names another object already; ids are not "
                           "re-pointed")


def named_by_id(doc_id):
    """``(bucket, key)`` of a dataset object that a StorageGRID id
    ``<bucket>_<key>`` names by itself, else None. Such an id is read, never
    looked up: no later document can make it name something else."""
    settings = current_notification.settings
    found = storagegrid_object(doc_id, settings.bucket_to_base_uri)
    if found is None:
        return None
    event = ObjectEvent(bucket=found[0], key=found[1], action=Action.REMOVED)
    target = translate(event, settings.bucket_to_base_uri)
    return found if isinstance(target, DatasetTarget) else None


def _delete_document(route):
    ext = current_notification
    found = named_by_id(route.doc_id) or ext.documents.recall(route.doc_id)
    if found is None:
        # MinIO only deletes what HEAD said exists; an unknown id is no
        # error worth a retry loop.
        return es_response({"_index": route.index, "_id": route.doc_id,
                            "result": "not_found"}, status=200)
    bucket, key = found
    result = accept(ext, Intake(events=[ObjectEvent(bucket=bucket, key=key,
                                                    action=Action.REMOVED)]))
    ext.documents.forget(route.doc_id)
    return es_response({"accepted": result.accepted, "ignored": result.ignored,
                        "_index": route.index, "_id": route.doc_id, "result": "deleted"})


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
    return jsonify(gather_status(current_notification))


@bp.route("/webhook/metrics", methods=["GET"])
def metrics():
    """Prometheus text exposition; guarded like the notification routes."""
    from prometheus_client import CONTENT_TYPE_LATEST
    body = current_notification.metrics.text()
    return make_response(body, 200, {"Content-Type": CONTENT_TYPE_LATEST})
