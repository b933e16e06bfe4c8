"""Amazon SNS HTTP(S) deliveries: a JSON envelope sent as ``text/plain``.

``Type`` says what the envelope is. A ``Notification`` carries the S3 event
(or an ``s3:TestEvent``, or an EventBridge event when the topic is an
EventBridge rule's target) as a JSON *string* in ``Message``; a message
that is none of these (a topic shared with other publishers) is a fault,
not a bad request. A
``SubscriptionConfirmation`` is returned to the route, which decides whether
to confirm it: confirming means fetching a URL, so it is never done here.
Every intake keeps its envelope, whose topic and signature the route
checks (``sns_trust``) before it stores or confirms anything.
"""
from urllib.parse import urlsplit

from ..events import Intake, SnsConfirmation
from .errors import PayloadError, load_json_text, require_string

_IGNORED_TYPES = {"UnsubscribeConfirmation": "sns unsubscribe confirmation"}


def parse_sns_envelope(doc):
    """The events of an SNS ``Notification``, or the confirmation to decide on."""
    intake = _parse_by_type(doc)
    intake.sns_envelope = doc
    return intake


def _parse_by_type(doc):
    kind = require_string(doc, "Type", "SNS envelope")
    if kind == "Notification":
        return parse_notification(doc)
    if kind == "SubscriptionConfirmation":
        return Intake(sns_confirmation=parse_confirmation(doc))
    if kind in _IGNORED_TYPES:
        return Intake(ignored=[_IGNORED_TYPES[kind]])
    raise PayloadError(
        f"SNS envelope Type {kind!r} is not Notification, SubscriptionConfirmation "
        "or UnsubscribeConfirmation.")


def parse_notification(doc):
    from .documents import parse_document  # documents dispatches to this module

    message = require_string(doc, "Message", "SNS envelope")
    try:
        inner = load_json_text(message, "SNS Message")
        if isinstance(inner, dict) and "Type" in inner:
            raise PayloadError("SNS Message is itself an SNS envelope.")
        return parse_document(inner)
    except PayloadError as exc:
        return Intake(faults=[exc.message])


def parse_confirmation(doc):
    topic_arn = require_string(doc, "TopicArn", "SNS SubscriptionConfirmation")
    url = require_string(doc, "SubscribeURL", "SNS SubscriptionConfirmation")
    if not is_web_url(url):
        raise PayloadError(
            f"SNS SubscriptionConfirmation.SubscribeURL {url!r} is not an http(s) URL.")
    return SnsConfirmation(topic_arn=topic_arn, subscribe_url=url)


def is_web_url(url):
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False

