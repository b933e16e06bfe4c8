"""Every payload of the corpus through the formats stage (no server).

The corpus (tests/data/corpus, provenance in its index.toml and README.md)
holds notifications as their senders really write them; here each one must
yield exactly the object events its index lists, with keys decoded as that
sender escapes them, and exactly the listed number of faults.
"""
import json

import pytest

from dserver_notification_plugin.formats import elastic, parse_webhook
from tests.corpus import CORPUS, PAYLOADS

pytestmark = pytest.mark.unit

SENDERS = {"AWS S3", "AWS SNS", "AWS EventBridge", "Ceph RGW", "MinIO",
           "MinIO (Elasticsearch target)", "StorageGRID", "SeaweedFS", "NooBaa"}


def parse(payload):
    if payload.path.startswith("/webhook/notify"):
        return parse_webhook(payload.body, payload.content_type)
    assert payload.path.startswith("/elastic-search/") and payload.method in ("PUT", "POST")
    return elastic.parse_document(payload.body)


@pytest.mark.parametrize("payload", PAYLOADS, ids=[p.file for p in PAYLOADS])
def test_corpus_payload_yields_its_events(payload):
    intake = parse(payload)
    events = [(e.bucket, e.key, e.action.value) for e in intake.events]
    assert events == [tuple(e) for e in payload.events]
    assert len(intake.faults) == payload.faults, intake.faults
    if payload.status == 403:  # an SNS subscription to an unlisted topic
        assert intake.sns_confirmation is not None


def test_corpus_covers_every_sender_and_is_large_enough():
    assert len(PAYLOADS) >= 60
    assert {p.sender for p in PAYLOADS} == SENDERS
    assert sum(p.accepted for p in PAYLOADS) >= 40
    files = {str(path.relative_to(CORPUS)) for path in CORPUS.rglob("*")
             if path.is_file() and path.suffix in (".json", ".txt")}
    assert files == {p.file for p in PAYLOADS}, "every corpus file has an index entry"


def test_every_accepted_dataset_is_named_by_its_events():
    """The expectations agree with each other: a dataset URI comes from an event key."""
    for payload in PAYLOADS:
        uuids = {uri.rsplit("/", 1)[1] for uri in payload.datasets}
        assert len(uuids) == payload.accepted, payload.file
        assert all(any(uuid in key for _, key, _ in payload.events) for uuid in uuids)


def test_raw_key_senders_keep_plus_and_percent():
    """Ceph, NooBaa and EventBridge keys with '+' or '%' arrive unchanged."""
    raw_senders = {"Ceph RGW", "NooBaa", "AWS EventBridge"}
    tricky = 0
    for payload in PAYLOADS:
        if payload.sender not in raw_senders:
            continue
        sent = json.dumps(json.loads(payload.body))
        for _, key, _ in payload.events:
            assert json.dumps(key) in sent, (payload.file, key)  # the key as sent, undecoded
            tricky += ("+" in key or "%" in key)
    assert tricky >= 5
