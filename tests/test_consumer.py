"""SQS message bodies and batches, without a server: what is committed and
deleted, and what is left in the queue for its redrive policy.

Bodies are moto_server's captured SQS messages (S3 -> SQS), SNS
envelopes (what S3 -> SNS -> SQS delivers without raw message delivery)
and an EventBridge event of the corpus (what EventBridge -> SQS delivers);
provenance in tests/data/README.md and tests/data/corpus/index.toml.
"""
import json
import logging
from pathlib import Path

import pytest

from dserver_notification_plugin.consumer import (
    QUEUE_COUNTERS, counter_name, read_batch, region_in_url)
from dserver_notification_plugin.config import load_settings
from dserver_notification_plugin.events import Action
from dserver_notification_plugin.formats import PayloadError
from dserver_notification_plugin.formats.queue import parse_queue_message
from dserver_notification_plugin.sns_trust import SnsTrust

DATA = Path(__file__).parent / "data" / "formats"
EVENTBRIDGE = "../corpus/aws/eventbridge-object-created-dtool.json"
EVENTBRIDGE_KEY = "lab+shared 100%/c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f/dtool"
LIMIT = 1 << 20
MOTO_TOPIC = "arn:aws:sns:us-east-1:123456789012:s3-events"  # of the moto-sns captures


def body(name):
    return (DATA / name).read_text()


def trusting(**settings):
    """The SNS checks of an app with these settings (``sns_verify="off"`` ...)."""
    return SnsTrust(load_settings(
        {f"DSERVER_NOTIFY_{name.upper()}": value for name, value in settings.items()}, {}))


def message(number, text):
    return {"MessageId": f"m{number}", "ReceiptHandle": f"r{number}", "Body": text,
            "Attributes": {"ApproximateReceiveCount": "1"}}


@pytest.mark.parametrize("name, events, ignored", [
    ("moto-sqs/moto-sqs-001.json", [], ["s3:TestEvent"]),
    ("moto-sqs/moto-sqs-002.json", [("notif", "a/b.txt", Action.CREATED)], []),
    ("moto-sqs/moto-sqs-003.json", [("notif", "a/b.txt", Action.REMOVED)], []),
    ("moto-sns/moto-sns-001.json", [], ["s3:TestEvent"]),
    ("moto-sns/moto-sns-002.json", [("notif-sns", "ds/README.yml", Action.CREATED)], []),
    (EVENTBRIDGE, [("dtool-corpus", EVENTBRIDGE_KEY, Action.CREATED)], []),
])
def test_bodies_from_s3_and_from_sns_envelopes(name, events, ignored):
    intake = parse_queue_message(body(name), LIMIT)
    assert [(e.bucket, e.key, e.action) for e in intake.events] == events
    assert intake.ignored == ignored


@pytest.mark.parametrize("text, complaint", [
    ("", "empty"),
    ("   ", "empty"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"hello": "world"}', "not a known notification"),
    ('{"Records": "nope"}', "must be an array"),
])
def test_bodies_that_are_no_notification_are_refused_with_a_reason(text, complaint):
    with pytest.raises(PayloadError) as error:
        parse_queue_message(text, LIMIT)
    assert complaint in error.value.message


def test_a_body_over_the_limit_is_refused_before_parsing():
    text = body("moto-sqs/moto-sqs-002.json")
    with pytest.raises(PayloadError) as error:
        parse_queue_message(text, len(text.encode()) - 1)
    assert "exceeds the limit" in error.value.message
    assert parse_queue_message(text, len(text.encode())).events


def test_a_batch_commits_the_good_messages_and_leaves_the_bad_ones():
    readable = json.loads(body("moto-sqs/moto-sqs-002.json"))["Records"][0]
    half_readable = json.dumps({"Records": [readable, {"eventName": "ObjectCreated:Put"}]})
    confirmation = json.dumps({
        "Type": "SubscriptionConfirmation", "TopicArn": "arn:aws:sns:us-east-1:1:t",
        "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"})
    messages = [message(1, body("moto-sqs/moto-sqs-001.json")),
                message(2, "{not json"),
                message(3, body("moto-sqs/moto-sqs-002.json")),
                message(4, confirmation),
                message(5, body("moto-sns/moto-sns-003.json")),
                {"MessageId": "m6", "ReceiptHandle": "r6"},  # no body at all
                message(7, json.dumps({"Type": "Notification", "TopicArn": MOTO_TOPIC,
                                       "Message": "{broken"})),
                message(8, half_readable)]
    listed = f"{MOTO_TOPIC},arn:aws:sns:us-east-1:1:t"
    batch = read_batch(messages, LIMIT, 1000, trusting(sns_verify="off", sns_topics=listed).check)
    assert [m["MessageId"] for m in batch.done] == ["m1", "m3", "m5"]
    assert [m["MessageId"] for m, _ in batch.left] == ["m2", "m4", "m6", "m7", "m8"]
    reasons = dict((m["MessageId"], why) for m, why in batch.left)
    assert "not valid JSON" in reasons["m2"]
    assert "subscription confirmation" in reasons["m4"]
    assert "empty" in reasons["m6"]
    assert "unreadable record" in reasons["m7"] and "not valid JSON" in reasons["m7"]
    assert "unreadable record" in reasons["m8"]
    # The readable record of a half-readable message is committed all the same.
    assert [(e.bucket, e.key, e.action) for e in batch.intake.events] == [
        ("notif", "a/b.txt", Action.CREATED), ("notif-sns", "ds/README.yml", Action.REMOVED),
        ("notif", "a/b.txt", Action.CREATED)]
    assert batch.intake.ignored == ["s3:TestEvent"]
    assert len(batch.intake.faults) == 2


def test_region_comes_from_an_aws_queue_url_only():
    assert region_in_url("https://sqs.eu-central-1.amazonaws.com/123456789012/q") == \
        "eu-central-1"
    assert region_in_url("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q") == \
        "cn-north-1"
    assert region_in_url("http://127.0.0.1:5000/123456789012/q") is None
    assert region_in_url("https://sqs.eu-central-1.amazonaws.com.evil.org/1/q") is None


def test_each_queue_has_its_own_counters_that_fit_the_counters_table():
    long_url = "https://sqs.eu-central-1.amazonaws.com/123456789012/" + "q" * 80
    names = {counter_name(url, kind) for url in (long_url, long_url + "2")
             for kind in QUEUE_COUNTERS}
    assert len(names) == 2 * len(QUEUE_COUNTERS)
    assert max(len(name) for name in names) <= 64


@pytest.mark.parametrize("settings, left", [
    ({"sns_verify": "off"}, None),
    ({"sns_verify": "off", "sns_topics": MOTO_TOPIC}, None),
    ({"sns_verify": "off", "sns_topics": "arn:aws:sns:us-east-1:1:other"}, "not listed"),
    # moto's signature is no real one, and no certificate host is reachable
    # in this test: refused like a forged message, or the round fails.
    ({"sns_verify": "on", "sns_hosts": "http://127.0.0.1:9"}, "SigningCertURL"),
])
def test_sns_envelopes_from_the_queue_pass_the_webhook_checks(settings, left):
    messages = [message(1, body("moto-sns/moto-sns-002.json")),
                message(2, body("moto-sqs/moto-sqs-002.json"))]  # no SNS: not checked
    batch = read_batch(messages, LIMIT, 1000, trusting(**settings).check)
    if left is None:
        assert [m["MessageId"] for m in batch.done] == ["m1", "m2"]
    else:
        assert [m["MessageId"] for m in batch.done] == ["m2"]
        [(refused, reason)] = batch.left
        assert refused["MessageId"] == "m1" and left in reason


def test_no_commit_exceeds_the_record_limit_of_one_notification():
    record = json.loads(body("moto-sqs/moto-sqs-002.json"))["Records"][0]
    sizes = [1, 2, 3, 1, 4]  # records per message
    messages = [message(n, json.dumps({"Records": [record] * size}))
                for n, size in enumerate(sizes)] + [
        message(9, json.dumps({"Records": [record] * 5}))]  # over the limit alone
    batch = read_batch(messages, LIMIT, 4, trusting(sns_verify="off").check)
    assert [m["MessageId"] for m, _ in batch.left] == ["m9"]
    assert "exceed the limit of 4" in batch.left[0][1]
    groups = [len(group.events) for group in batch.commit_groups(4)]
    assert groups == [3, 4, 4] and sum(groups) == sum(sizes)


# --- issue 23: every failure of one message stays with that message ----------------------

def signed_messages(sns):
    """A message signed with a certificate the SNS host does not have, a
    genuine one, and one with a SignatureVersion no parser expects."""
    from devstack.sns import sign
    missing = sign(sns.signed({"Records": []}), sns.key,
                   sns.origin + "/SimpleNotificationService-gone.pem")
    odd = sns.signed({"Records": []})
    odd["SignatureVersion"] = ["1"]
    return [message(1, json.dumps(missing)), message(2, json.dumps(sns.signed({"Records": []}))),
            message(3, json.dumps(odd)), message(4, body("moto-sqs/moto-sqs-002.json"))]


def test_a_certificate_sns_does_not_have_leaves_only_its_message(sns, caplog):
    checker = trusting(sns_hosts=sns.origin, sns_timeout_seconds="2")
    for _ in range(2):  # the queue shows the batch again: same outcome, no traceback
        batch = read_batch(signed_messages(sns), LIMIT, 1000, checker.check)
        assert [m["MessageId"] for m in batch.done] == ["m2", "m4"]
        reasons = dict((m["MessageId"], why) for m, why in batch.left)
        assert "no such signing certificate" in reasons["m1"]
        assert "SignatureVersion" in reasons["m3"]
    assert not [r for r in caplog.records if r.exc_info]


def test_an_unreachable_sns_leaves_only_the_messages_it_signed(sns):
    checker = trusting(sns_hosts="http://127.0.0.1:9", sns_timeout_seconds="1")
    envelope = sign_at(sns, "http://127.0.0.1:9/SimpleNotificationService-x.pem")
    batch = read_batch([message(1, json.dumps(envelope)),
                        message(2, body("moto-sqs/moto-sqs-002.json"))],
                       LIMIT, 1000, checker.check)
    assert [m["MessageId"] for m in batch.done] == ["m2"]
    assert "could not fetch" in batch.left[0][1]


def sign_at(sns, cert_url):
    from devstack.sns import sign
    return sign(sns.signed({"Records": []}), sns.key, cert_url)


def test_a_failing_check_logs_one_traceback_per_kind_and_minute(caplog):
    def broken_check(envelope):
        raise RuntimeError("a bug in a check")
    messages = [message(n, body("moto-sns/moto-sns-002.json")) for n in range(5)]
    with caplog.at_level(logging.ERROR, logger="dserver_notification_plugin.consumer"):
        for _ in range(3):
            batch = read_batch(messages, LIMIT, 1000, broken_check)
            assert not batch.done
            assert [why for _, why in batch.left] == ["parser failed: RuntimeError"] * 5
    # at most one: an earlier test of this process may have spent the minute's line
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) <= 1
