"""Sender-specific rules of the formats stage: event names, key encodings,
EventBridge, NooBaa, SeaweedFS version files, documents from queues.

The corpus (tests/test_corpus.py) checks real payloads; these tests pin the
rules themselves, including the cases no real payload shows.
"""
import json

import pytest

from dserver_notification_plugin.events import Action
from dserver_notification_plugin.formats import KeyEncoding, parse_document, parse_webhook
from dserver_notification_plugin.formats.event_names import classify_event_name
from dserver_notification_plugin.formats.records import decode_key

pytestmark = pytest.mark.unit

C, R = Action.CREATED, Action.REMOVED
JSON = "application/json"


def record(name="ObjectCreated:Put", key="k", source=None, bucket="b"):
    rec = {"eventName": name, "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}
    if source is not None:
        rec["eventSource"] = source
    return rec


def events_of(intake):
    return [(e.bucket, e.key, e.action) for e in intake.events]


@pytest.mark.parametrize("name,action", [
    ("ObjectCreated:Put", C), ("s3:ObjectCreated:Put", C), ("ObjectRemoved:Delete", R),
    ("ObjectLifecycle:Expiration:Current", R), ("s3:ObjectLifecycle:Expiration:Current", R),
    ("ObjectLifecycle:Expiration:DeleteMarker", R), ("LifecycleExpiration:Delete", R),
    ("LifecycleExpiration:DeleteMarkerCreated", R), ("s3:LifecycleDelMarkerExpiration:Delete", R),
    ("ObjectSynced:Create", C), ("ObjectSynced:Delete", R),
    ("ObjectSynced:DeletionMarkerCreated", R), ("Replication:Create", C),
    ("ReducedRedundancyLostObject", R),
])
def test_event_names_that_change_objects(name, action):
    assert classify_event_name(name) == (action, None, False)


@pytest.mark.parametrize("name", [
    "ObjectLifecycle:Expiration:Noncurrent", "ObjectLifecycle:Expiration:NonCurrent",
    "ObjectLifecycle:Expiration:AbortMPU", "ObjectLifecycle:Transition:Current",
    "ObjectLifecycle:Transition:Noncurrent", "LifecycleTransition", "IntelligentTiering",
    "s3:ObjectAccessed:Get", "ObjectRestore:Completed", "ObjectTagging:Put", "ObjectAcl:Put",
    "Replication:OperationFailedReplication", "s3:Replication:OperationCompletedReplication",
    "s3:ObjectTransition:Complete", "s3:Scanner:ManyVersions", "s3:TestEvent",
])
def test_event_names_that_change_nothing_are_ignored_not_faults(name):
    action, reason, is_fault = classify_event_name(name)
    assert action is None and not is_fault and name in reason


@pytest.mark.parametrize("name", ["ObjectShredded:Put", "ObjectCreatedPut", "Objectcreated",
                                  "ObjectLifecycle:Expiration:Someday", "x" * 500])
def test_unknown_event_names_are_short_faults(name):
    action, reason, is_fault = classify_event_name(name)
    assert action is None and is_fault and reason.startswith("unknown event name")
    assert len(reason) < 100


@pytest.mark.parametrize("raw,encoding,key", [
    ("my+data%2Fx", KeyEncoding.FORM, "my data/x"),
    ("my+data%2Fx", KeyEncoding.RAW, "my+data%2Fx"),
    ("my+data%2Fx", KeyEncoding.UNKNOWN, "my data/x"),
    ("100%e9", KeyEncoding.UNKNOWN, "100%e9"),     # does not decode: it was raw
    ("50%", KeyEncoding.FORM, "50%"),              # a lone % is left alone
])
def test_key_decoding_per_encoding(raw, encoding, key):
    assert decode_key(raw, encoding) == key


def test_form_encoded_key_that_does_not_decode_is_a_fault():
    from dserver_notification_plugin.formats import PayloadError
    with pytest.raises(PayloadError, match="does not decode"):
        decode_key("100%e9", KeyEncoding.FORM)


@pytest.mark.parametrize("source,key", [
    ("aws:s3", "a b+c"), ("minio:s3", "a b+c"), ("sgws:s3", "a b+c"), ("MinIO:S3", "a b+c"),
    ("ceph:s3", "a+b%2Bc"), ("noobaa:s3", "a+b%2Bc"),
    ("my-rgw:s3", "a b+c"),  # unknown sender with a JSON content type: decodes, as S3 does
])
def test_event_source_decides_the_key_encoding(source, key):
    body = json.dumps({"Records": [record(key="a+b%2Bc", source=source)]}).encode()
    assert events_of(parse_webhook(body, JSON)) == [("b", key, C)]


def test_unknown_sender_undecodable_key_falls_back_to_the_raw_key():
    body = json.dumps({"Records": [record(key="r%e9sum%e9/x", source="somebody:s3")]}).encode()
    intake = parse_webhook(body, JSON)
    assert events_of(intake) == [("b", "r%e9sum%e9/x", C)] and intake.faults == []


def test_without_content_type_unknown_senders_are_read_raw():
    """NooBaa posts without Content-Type, with eventSource '<system name>:s3'."""
    body = json.dumps({"Records": [record(key="a+b", source="ocs-storagecluster:s3"),
                                   record(key="a+b", source="aws:s3")]}).encode()
    assert events_of(parse_webhook(body, None)) == [("b", "a+b", C), ("b", "a b", C)]


def test_noobaa_connection_tests_are_acknowledged():
    assert parse_webhook(b'"test notification"', None).ignored == ["noobaa test notification"]
    new_test = {"Records": [{"Service": "NooBaa", "Event": "s3:TestEvent", "Bucket": "b"}]}
    intake = parse_webhook(json.dumps(new_test).encode(), None)
    assert intake.ignored == ["s3:TestEvent"] and intake.faults == []


def eventbridge(detail_type="Object Created", source="aws.s3", key="a+b c%20", **detail):
    return {"version": "0", "detail-type": detail_type, "source": source,
            "time": "2021-11-12T00:00:00Z",
            "detail": {"bucket": {"name": "b"}, "object": {"key": key, "sequencer": "61"},
                       **detail}}


def test_eventbridge_events_carry_raw_keys():
    created = parse_document(eventbridge())
    assert events_of(created) == [("b", "a+b c%20", C)]
    assert created.events[0].sequencer == "61" and created.events[0].time.year == 2021
    assert events_of(parse_document(eventbridge("Object Deleted"))) == [("b", "a+b c%20", R)]


def test_eventbridge_other_types_sources_and_shapes():
    assert parse_document(eventbridge("Object Tags Added")).ignored == [
        "EventBridge Object Tags Added"]
    for doc, named in ((eventbridge("Object Teleported"), "detail-type"),
                       (eventbridge(source="aws.ec2"), "aws.ec2"),
                       ({**eventbridge(), "detail": {"bucket": {"name": "b"}}}, "detail.object")):
        intake = parse_document(doc)
        assert intake.events == [] and named in intake.faults[0], intake.faults


def test_eventbridge_event_inside_sns_and_sqs_bodies():
    """An EventBridge rule may target an SNS topic or an SQS queue."""
    envelope = {"Type": "Notification", "Message": json.dumps(eventbridge())}
    assert events_of(parse_webhook(json.dumps(envelope).encode(), "text/plain")) == [
        ("b", "a+b c%20", C)]
    assert events_of(parse_document(json.loads(json.dumps(eventbridge())))) == [
        ("b", "a+b c%20", C)]


def seaweed(kind, key, **message):
    return json.dumps({"event_type": kind, "key": key, "message": message}).encode()


@pytest.mark.parametrize("path,key", [
    ("/buckets/b/ds/dtool.versions/v_0123abc", "ds/dtool"),
    ("/buckets/b/a b+c.versions/v_x", "a b+c"),
    ("/buckets/b/x.versions/y.versions/v_1", "x.versions/y"),
    ("/buckets/b/logs/backup.versions/2023", "logs/backup.versions/2023"),  # no v_: a real key
    ("/buckets/b/k.versions/v_1/deeper", "k.versions/v_1/deeper"),
])
def test_seaweed_version_files_stand_for_their_key(path, key):
    intake = parse_webhook(seaweed("create", path, new_entry={"name": path.rsplit("/", 1)[1]}),
                           JSON)
    assert events_of(intake) == [("b", key, C)]
    removed = parse_webhook(seaweed("delete", path, old_entry={"name": "x"}), JSON)
    assert events_of(removed) == [("b", key, R)]


def test_documents_that_are_no_notification_are_payload_errors():
    from dserver_notification_plugin.formats import PayloadError
    for doc in ("another string", 3, None, [], {"detail-type": "Object Created"}, {"x": 1}):
        with pytest.raises(PayloadError):
            parse_document(doc)
