"""Payload dialects -> ObjectEvents, checked against real captured payloads.

Fixtures are in tests/data/formats (provenance in tests/data/README.md).
"""
import json
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dserver_notification_plugin.events import Action, Intake, ObjectEvent
from dserver_notification_plugin.formats import (
    PayloadError, parse_records_document, parse_storagegrid_search_document, parse_webhook)

DATA = Path(__file__).parent / "data" / "formats"
UUID_MINIO = "49f0bf41-471b-4781-855e-161fe81ffb0d"
UUID_S3RVER = "8cbafb14-26c3-410e-9061-dfb3905946f2"
UUID_SEAWEED = "8e31eb6d-e207-4b4f-9f72-d4b0ca05437b"
C, R = Action.CREATED, Action.REMOVED
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def outcome(intake):
    """Events as (bucket, key, action) plus the ignored reasons, for comparing."""
    return [(e.bucket, e.key, e.action) for e in intake.events], intake.ignored


def captured_request(path):
    """(body bytes, content type) of a minio-2022 request capture."""
    capture = json.loads(path.read_text())
    return json.dumps(capture["body"]).encode(), capture["headers"].get("Content-Type")


def header_content_type(path):
    for line in path.with_suffix(".headers").read_text().splitlines():
        if line.lower().startswith("content-type:"):
            return line.split(":", 1)[1].strip()
    return None


# ---- MinIO (2022): webhook and Elasticsearch target ----------------------------------

MINIO_COPY_DIR = DATA / "minio-2022/webhook/copy_dataset_to_bucket"
MINIO_PREFIX = f"u/testuser/{UUID_MINIO}/"
MINIO_COPY = {  # file -> key written (None: an s3:ObjectAccessed:Get)
    "001": f"dtool-{UUID_MINIO}", "002": MINIO_PREFIX + "structure.json",
    "003": MINIO_PREFIX + "README.txt", "004": MINIO_PREFIX + "dtool",
    "005": MINIO_PREFIX + "data/a010ac3220426ba6ceb4a5a56bf7f5a908e078c8",
    "006": MINIO_PREFIX + "README.yml", "007": None, "008": MINIO_PREFIX + "manifest.json",
    "009": None, "010": MINIO_PREFIX + "dtool",
}


@pytest.mark.parametrize("number,key", sorted(MINIO_COPY.items()))
def test_minio_webhook_copy_yields_decoded_keys(number, key):
    body, content_type = captured_request(MINIO_COPY_DIR / f"{number}.json")
    events, ignored = outcome(parse_webhook(body, content_type))
    if key is None:
        assert (events, ignored) == ([], ["s3:ObjectAccessed:Get"])
    else:
        assert (events, ignored) == ([("test-bucket", key, C)], [])


def test_minio_webhook_event_carries_time_and_sequencer():
    body, content_type = captured_request(MINIO_COPY_DIR / "001.json")
    event = parse_webhook(body, content_type).events[0]
    assert event.time == datetime(2022, 2, 23, 16, 13, 27, 619000, tzinfo=timezone.utc)
    assert event.sequencer == "16D67651D0E38940"


def test_minio_webhook_reads_are_ignored():
    for path in sorted((DATA / "minio-2022/webhook/download_single_item").glob("*.json")):
        intake = parse_webhook(*captured_request(path))
        assert intake.events == [] and intake.ignored == ["s3:ObjectAccessed:Get"], path.name


MINIO_ES = {"001": f"dtool-{UUID_MINIO}", "002": MINIO_PREFIX + "structure.json",
            "003": MINIO_PREFIX + "README.txt", "004": MINIO_PREFIX + "dtool",
            "005": MINIO_PREFIX + "data/a010ac3220426ba6ceb4a5a56bf7f5a908e078c8",
            "006": MINIO_PREFIX + "README.yml", "011": MINIO_PREFIX + "manifest.json",
            "013": MINIO_PREFIX + "dtool"}


def test_minio_elasticsearch_documents():
    for path in sorted((DATA / "minio-2022/elasticsearch/copy_dataset_to_bucket").glob("*.json")):
        events, ignored = outcome(parse_records_document(json.loads(path.read_text())["body"]))
        key = MINIO_ES.get(path.stem)
        if key is None:
            assert events == [] and ignored[0].startswith("s3:ObjectAccessed:"), path.name
        else:
            assert (events, ignored) == ([("test-bucket", key, C)], []), path.name


# ---- moto: SNS envelopes and SQS bodies ----------------------------------------------

@pytest.mark.parametrize("number,expected", [
    ("001", ([], ["s3:TestEvent"])),
    ("002", ([("notif-sns", "ds/README.yml", C)], [])),
    ("003", ([("notif-sns", "ds/README.yml", R)], [])),
])
def test_moto_sns_envelopes(number, expected):
    path = DATA / f"moto-sns/moto-sns-{number}.json"
    assert header_content_type(path) == "text/plain; charset=UTF-8"
    assert outcome(parse_webhook(path.read_bytes(), header_content_type(path))) == expected


@pytest.mark.parametrize("number,expected", [
    ("001", ([], ["s3:TestEvent"])),
    ("002", ([("notif", "a/b.txt", C)], [])),
    ("003", ([("notif", "a/b.txt", R)], [])),
])
def test_moto_sqs_bodies(number, expected):
    body = (DATA / f"moto-sqs/moto-sqs-{number}.json").read_bytes()
    assert outcome(parse_webhook(body, JSON)) == expected


# ---- s3rver ---------------------------------------------------------------------------

S3RVER = [
    ("s3rver-test", "dir/hello.txt", C), ("s3rver-test", "dir/copy.txt", C),
    ("s3rver-test", "dir/copy.txt", R), ("s3rver-test", "dir/hello.txt", R),
    ("dtool-bucket", f"dtool-{UUID_S3RVER}", C),
] + [("dtool-bucket", f"{UUID_S3RVER}/{suffix}", C) for suffix in (
    "structure.json", "README.txt", "dtool", "data/3857b672471862eab426eba0622e44bd2cedbd5d",
    "README.yml", "tags/t1", "annotations/color.json", "manifest.json", "dtool")]


@pytest.mark.parametrize("number,expected", list(enumerate(S3RVER, start=1)))
def test_s3rver_events(number, expected):
    path = DATA / f"s3rver/s3rver-{number:03d}.json"
    assert outcome(parse_webhook(path.read_bytes(), header_content_type(path))) == ([expected], [])


# ---- SeaweedFS filer ------------------------------------------------------------------

SW_DIR, SW_INTERNAL = "seaweedfs directory entry", "seaweedfs path is not an object in a bucket"
SW_DS = f"{UUID_SEAWEED}/"
SEAWEED = {  # file number -> created/removed (bucket, key, action) or ignored reason
    1: SW_INTERNAL, 2: SW_DIR, 3: SW_DIR, 4: SW_DIR, 5: SW_DIR, 6: SW_INTERNAL, 7: SW_INTERNAL,
    8: SW_DIR, 9: SW_DIR, 10: ("sw-test", "dir/hello.txt", C), 11: ("sw-test", "dir/copy.txt", C),
    12: ("sw-test", "dir/copy.txt", R), 13: ("sw-test", "dir/hello.txt", R), 14: SW_DIR,
    15: SW_INTERNAL, 16: SW_INTERNAL, 17: ("dtool-bucket", f"dtool-{UUID_SEAWEED}", C),
    18: ("dtool-bucket", SW_DS + "structure.json", C), 19: SW_DIR,
    20: ("dtool-bucket", SW_DS + "README.txt", C), 21: ("dtool-bucket", SW_DS + "dtool", C),
    22: ("dtool-bucket", SW_DS + "data/3857b672471862eab426eba0622e44bd2cedbd5d", C),
    23: SW_DIR, 24: ("dtool-bucket", SW_DS + "README.yml", C), 25: SW_DIR,
    26: ("dtool-bucket", SW_DS + "tags/t1", C),  # an empty file: no chunks, still an object
    27: ("dtool-bucket", SW_DS + "annotations/color.json", C), 28: SW_DIR,
    29: ("dtool-bucket", SW_DS + "manifest.json", C),
    30: ("dtool-bucket", SW_DS + "dtool", C),  # "update": overwritten in place
}


@pytest.mark.parametrize("number,expected", sorted(SEAWEED.items()))
def test_seaweed_filer_events(number, expected):
    path = DATA / f"seaweed/seaweed-{number:03d}.json"
    events, ignored = outcome(parse_webhook(path.read_bytes(), header_content_type(path)))
    if isinstance(expected, str):
        assert (events, ignored) == ([], [expected])
    else:
        assert (events, ignored) == ([expected], [])


def seaweed_body(event_type, key, **message):
    return json.dumps({"event_type": event_type, "key": key, "message": message}).encode()


def test_seaweed_rename_removes_old_and_creates_new():
    body = seaweed_body("rename", "/buckets/b/old name+x", old_entry={"name": "old name+x"},
                        new_entry={"name": "dtool"}, new_parent_path="/buckets/b/p/" + UUID_MINIO)
    assert outcome(parse_webhook(body, JSON)) == (
        [("b", "old name+x", R), ("b", f"p/{UUID_MINIO}/dtool", C)], [])


def test_seaweed_unknown_event_type_and_missing_entries_are_faults():
    for body, named in ((seaweed_body("chmod", "/buckets/b/k", new_entry={"name": "k"}), "chmod"),
                        (seaweed_body("create", "/buckets/b/k"), "neither")):
        intake = parse_webhook(body, JSON)
        assert intake.events == [] and len(intake.faults) == 1 and named in intake.faults[0]


# ---- StorageGRID (constructed from documentation) --------------------------------------

def test_storagegrid_test_message_is_acknowledged():
    body = (DATA / "storagegrid/form-test-message.txt").read_bytes()
    assert outcome(parse_webhook(body, FORM)) == ([], ["storagegrid test message"])


def test_storagegrid_form_decodes_form_and_key_layers():
    body = (DATA / "storagegrid/form-object-created.txt").read_bytes()
    assert outcome(parse_webhook(body, FORM + "; charset=UTF-8")) == (
        [("test-bucket", f"my data/{UUID_MINIO}/README.yml", C)], [])


def test_storagegrid_form_without_message_or_with_other_action():
    for body in (b"Action=Publish&TopicArn=x", b"Action=Subscribe&Message=%7B%7D"):
        with pytest.raises(PayloadError) as error:
            parse_webhook(body, FORM)
        assert error.value.status == 400


def test_storagegrid_search_document_means_created():
    doc = json.loads((DATA / "storagegrid/search-document.json").read_text())
    assert parse_storagegrid_search_document(doc).events == [
        ObjectEvent("test", "SGWS/Tagging.txt", C)]
    for missing in ("bucket", "key"):
        with pytest.raises(PayloadError, match=missing):
            parse_storagegrid_search_document({k: v for k, v in doc.items() if k != missing})


# ---- records in general ----------------------------------------------------------------

def record(name="ObjectCreated:Put", bucket="b", key="k", **extra):
    return {"eventName": name, "s3": {"bucket": {"name": bucket}, "object": {"key": key}}, **extra}


def records_body(*records):
    return json.dumps({"Records": list(records)}).encode()


def test_every_record_is_read_and_keys_are_form_decoded():
    body = records_body(record(key="my+data%2Fx"), record("s3:ObjectRemoved:Delete", key="a%2Bb"),
                        record(key="%C3%A4%20%E2%82%AC"), record("ObjectAccessed:Head"),
                        record("LifecycleExpiration:Delete", key="z"),
                        record("s3:ObjectRemoved:DeleteMarkerCreated", key="d"))
    assert outcome(parse_webhook(body, JSON)) == (
        [("b", "my data/x", C), ("b", "a+b", R), ("b", "ä €", C), ("b", "z", R), ("b", "d", R)],
        ["ObjectAccessed:Head"])


def test_event_time_and_sequencer_are_tolerant():
    cases = [("2022-02-23T16:13:27Z", datetime(2022, 2, 23, 16, 13, 27, tzinfo=timezone.utc)),
             ("2022-02-23T17:13:27+01:00", datetime(2022, 2, 23, 16, 13, 27, tzinfo=timezone.utc)),
             ("yesterday", None), (12, None)]
    for text, expected in cases:
        event = parse_webhook(records_body(record(eventTime=text)), JSON).events[0]
        assert event.time == expected
    body = records_body({"eventName": "ObjectCreated:Put",
                         "s3": {"bucket": {"name": "b"}, "object": {"key": "k", "sequencer": 5}}})
    assert parse_webhook(body, None).events[0].sequencer is None


def test_records_that_are_not_an_array_make_the_body_bad():
    for doc in ({"Records": {}}, {"Records": "nope"}):
        with pytest.raises(PayloadError, match="Records must be an array") as error:
            parse_webhook(json.dumps(doc).encode(), JSON)
        assert error.value.status == 400
        with pytest.raises(PayloadError):
            parse_records_document(doc)


@pytest.mark.parametrize("bad,named", [
    (3, "Records[1] must be a JSON object"),
    ({"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "k"}}}, "Records[1].s3.bucket"),
    (record(key=""), "Records[1].s3.object.key"),
    ({"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {}}},
     "Records[1].s3.object.key is missing"),
    (record(key="%FF", eventSource="aws:s3"), "UTF-8"),
    ({"s3": {}}, "Records[1].eventName"),
    (record("ObjectShredded:Put"), "unknown event name 'ObjectShredded:Put'"),
])
def test_a_bad_record_is_a_fault_that_spares_its_neighbours(bad, named):
    doc = {"Records": [record(key="first"), bad, record(key="last")]}
    for intake in (parse_webhook(json.dumps(doc).encode(), JSON), parse_records_document(doc)):
        assert [e.key for e in intake.events] == ["first", "last"]
        assert len(intake.faults) == 1 and named in intake.faults[0], intake.faults
        assert len(intake.faults[0]) < 200


# ---- SNS control messages, content types, shapes ---------------------------------------

def test_sns_subscription_confirmation_is_returned_not_fetched():
    doc = {"Type": "SubscriptionConfirmation", "TopicArn": "arn:aws:sns:us-east-1:1:t",
           "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"}
    intake = parse_webhook(json.dumps(doc).encode(), "text/plain; charset=UTF-8")
    assert intake.events == [] and intake.sns_confirmation.topic_arn == doc["TopicArn"]
    assert intake.sns_confirmation.subscribe_url == doc["SubscribeURL"]
    for bad in ({**doc, "SubscribeURL": "file:///etc/passwd"}, {**doc, "TopicArn": None}):
        with pytest.raises(PayloadError):
            parse_webhook(json.dumps(bad).encode(), "text/plain")


def test_sns_unsubscribe_is_ignored_and_unknown_type_refused():
    assert parse_webhook(b'{"Type": "UnsubscribeConfirmation"}', JSON).ignored == [
        "sns unsubscribe confirmation"]
    with pytest.raises(PayloadError, match="Type"):
        parse_webhook(b'{"Type": "Gossip"}', JSON)
    # a topic shared with other publishers: not an S3 event, but a valid delivery
    intake = parse_webhook(b'{"Type": "Notification", "Message": "not json"}', JSON)
    assert intake.events == [] and "SNS Message is not valid JSON" in intake.faults[0]


def test_aws_test_event_without_sns_is_ignored():
    body = b'{"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}'
    assert outcome(parse_webhook(body, JSON)) == ([], ["s3:TestEvent"])


@pytest.mark.parametrize("body,content_type,status,named", [
    (b"{}", "application/xml", 415, "application/xml"),
    (b"\xff{}", JSON, 400, "UTF-8"),
    (b"{", JSON, 400, "JSON"),
    (b"", None, 400, "empty"),
    (b"[1]", JSON, 400, "array"),
    (b'{"hello": 1}', JSON, 400, "Records"),
    (b"Action=Publish&Message=%FF", FORM, 400, "UTF-8"),
])
def test_bad_bodies(body, content_type, status, named):
    with pytest.raises(PayloadError) as error:
        parse_webhook(body, content_type)
    assert error.value.status == status and named in error.value.message


# ---- no input raises anything but PayloadError -----------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["Records", "Type", "Message", "event_type", "key",
                                       "message", "s3", "bucket", "object", "name", "eventName",
                                       "new_entry", "old_entry", "new_parent_path", "Event",
                                       "TopicArn", "SubscribeURL", "eventTime", "sequencer"])
                      | st.text(max_size=8), children, max_size=5),
    max_leaves=20)
content_types = st.one_of(st.none(), st.sampled_from(
    [JSON, "text/plain; charset=UTF-8", FORM, "application/xml", "", ";", "TEXT/PLAIN"]),
    st.text(max_size=20))


def assert_valid(intake):
    assert isinstance(intake, Intake)
    assert all(isinstance(e, ObjectEvent) and e.bucket and e.key for e in intake.events)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, raw=st.binary(max_size=200), content_type=content_types,
       as_json=st.booleans())
def test_arbitrary_input_gives_intake_or_payload_error(value, raw, content_type, as_json):
    body = json.dumps(value).encode() if as_json else raw
    for parse, argument in ((lambda v: parse_webhook(body, content_type), None),
                            (parse_records_document, value),
                            (parse_storagegrid_search_document, value)):
        try:
            assert_valid(parse(argument))
        except PayloadError as error:
            assert error.status in (400, 413, 415) and error.message


texts = st.text(max_size=30)
near_valid = st.one_of(
    st.builds(lambda n, b, k, t, s: {"Records": [record(n, b, k, eventTime=t, s3x=s)]},
              st.sampled_from(["ObjectCreated:Put", "s3:ObjectRemoved:Delete", "x"]) | texts,
              texts | json_values, texts, texts | json_values, json_values),
    st.builds(lambda m: {"Type": "Notification", "Message": m},
              texts | st.builds(lambda k: json.dumps({"Records": [record(key=k)]}), texts)),
    st.builds(lambda a, u: {"Type": "SubscriptionConfirmation", "TopicArn": a, "SubscribeURL": u},
              json_values, texts),
    st.builds(lambda e, k, p, n, d: {
        "event_type": e, "key": k + n if isinstance(n, str) else k, "message": {
            "new_entry": {"name": n, "is_directory": d, "attributes": {"mtime": d}},
            "old_entry": {"name": n}, "new_parent_path": p}},
        st.sampled_from(["create", "update", "delete", "rename"]), st.just("/buckets/") | texts,
        st.just("/buckets/b/") | texts | json_values, texts | json_values,
        st.booleans() | json_values),
    st.builds(lambda t, src, b, k: {"detail-type": t, "source": src,
                                    "detail": {"bucket": {"name": b}, "object": {"key": k}}},
              st.sampled_from(["Object Created", "Object Deleted", "Object Tags Added"]) | texts,
              st.just("aws.s3") | texts, texts | json_values, texts | json_values),
    st.builds(lambda src, k: {"Records": [dict(record(key=k), eventSource=src)]},
              st.sampled_from(["aws:s3", "ceph:s3", "noobaa:s3"]) | json_values,
              texts.map(lambda t: t + "%") | texts))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=near_valid, content_type=st.sampled_from([JSON, "text/plain", None]))
def test_near_valid_documents_give_intake_or_payload_error(doc, content_type):
    for attempt in (lambda: parse_webhook(json.dumps(doc).encode(), content_type),
                    lambda: parse_webhook(urlencode({"Message": json.dumps(doc)}).encode(), FORM),
                    lambda: parse_records_document(doc)):
        try:
            assert_valid(attempt())
        except PayloadError as error:
            assert error.status == 400 and error.message


def test_objects_no_s3_store_holds_are_named():
    """Issue 23: NUL, lone surrogates, keys over S3's 1,024 bytes."""
    from dserver_notification_plugin.events import (
        Action, ObjectEvent, impossible_object)

    def problem(bucket, key):
        return impossible_object(ObjectEvent(bucket=bucket, key=key, action=Action.CREATED))

    assert problem("b", "k" * 1024) is None and problem("b", "é" * 512) is None
    assert "longer than 1024 bytes" in problem("b", "é" * 513)
    assert "NUL" in problem("b", "a\x00") and "NUL" in problem("b\x00", "a")
    assert "Unicode" in problem("b", "\ud800") and "Unicode" in problem("\udfff", "k")
    assert "bucket name longer" in problem("b" * 256, "k")
