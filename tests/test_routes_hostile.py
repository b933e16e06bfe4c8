"""Hostile senders at the routes, second round (issue 23), in-process.

Malformed SNS envelopes answer 4xx, never 500; a deployment that takes
only SNS refuses everything unsigned; a proxy on this host that nobody
declared is reported; database trouble is logged within a budget and
without what senders wrote; the cap on waiting datasets holds under
concurrency; Elasticsearch document ids cannot be re-pointed, and keys
that no S3 holds are refused.
"""
import json
import logging
import sqlite3

import pytest

from devstack.payloads import minio_webhook_body
from devstack.sns import TOPIC

pytestmark = pytest.mark.integration

SNS_TYPE = "text/plain; charset=UTF-8"
UUIDS = [f"{n:08d}-2323-4323-8323-232323232323" for n in range(10)]
EXTENSION = "dserver_notification"


def inbox_rows(app):
    return app.extensions[EXTENSION].inbox.entries()


def record(bucket, key, event="s3:ObjectCreated:Put"):
    return {"eventName": event, "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}


def assert_json_error(answer, status):
    assert answer.status_code == status, answer.data[:300]
    body = answer.get_json()
    assert body["code"] == status and body["message"]
    return body["message"]


def post_sns(client, envelope):
    return client.post("/webhook/notify", data=json.dumps(envelope), content_type=SNS_TYPE)


@pytest.fixture
def sns_app(make_app, bucket, sns):
    """SNS signed by the fake, verification on (the default)."""
    def factory(**notify):
        settings = {"DSERVER_NOTIFY_SNS_HOSTS": sns.origin,
                    "DSERVER_NOTIFY_SNS_TIMEOUT_SECONDS": "1"}
        settings.update({f"DSERVER_NOTIFY_{k.upper()}": v for k, v in notify.items()})
        return make_app([bucket], notify=settings)
    return factory


def errors_logged(caplog):
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# --- 1. malformed SNS envelopes: 4xx, not 500 -------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("SignatureVersion", []), ("SignatureVersion", {}), ("SignatureVersion", ["1"]),
    ("SignatureVersion", {"1": "2"}), ("Signature", []), ("SigningCertURL", {}),
    ("TopicArn", [TOPIC]),
])
def test_an_envelope_field_of_another_type_is_a_4xx(sns_app, sns, bucket, caplog, field, value):
    app = sns_app()
    envelope = sns.signed(minio_webhook_body(bucket.name, f"{UUIDS[0]}/dtool"))
    envelope[field] = value
    answer = post_sns(app.test_client(), envelope)
    assert 400 <= answer.status_code < 500, answer.data[:300]
    assert answer.get_json()["message"]
    assert inbox_rows(app) == []
    assert errors_logged(caplog) == []


def test_a_certificate_sns_does_not_have_is_refused_and_asked_for_once(sns_app, sns, bucket):
    from devstack.sns import sign
    client = sns_app().test_client()
    envelope = sign(sns.signed(minio_webhook_body(bucket.name, f"{UUIDS[0]}/dtool")),
                    sns.key, sns.origin + "/SimpleNotificationService-none.pem")
    before = len(sns.hits)
    for _ in range(3):
        assert "no such signing certificate" in assert_json_error(post_sns(client, envelope), 403)
    assert len(sns.hits) == before + 1


def test_certificate_fetches_beyond_the_limit_are_503_with_retry_after(sns_app, sns, bucket):
    app = sns_app()
    app.extensions[EXTENSION].sns.fetch_limit.per_minute = 0  # the minute's fetches spent
    body = minio_webhook_body(bucket.name, f"{UUIDS[0]}/dtool")
    answer = post_sns(app.test_client(), sns.signed(body))
    assert "retry later" in assert_json_error(answer, 503)
    assert answer.headers["Retry-After"] == "60"
    assert inbox_rows(app) == []


# --- also noticed: a deployment that receives only SNS ----------------------------------------

def test_require_sns_refuses_everything_unsigned(sns_app, sns, bucket):
    app = sns_app(require_sns="on", sns_topics=TOPIC)
    client = app.test_client()
    body = minio_webhook_body(bucket.name, f"{UUIDS[0]}/dtool")
    assert "REQUIRE_SNS" in assert_json_error(client.post("/webhook/notify", json=body), 403)
    form = {"Action": "Publish", "Message": json.dumps(body)}  # StorageGRID's unsigned SNS
    assert_json_error(client.post("/webhook/notify", data=form), 403)
    for answer in (client.put("/elastic-search/notify/all/_doc/d1", json=body),
                   client.put(f"/elastic-search/idx/type/{bucket.name}_{UUIDS[0]}/dtool",
                              json={"bucket": bucket.name, "key": f"{UUIDS[0]}/dtool"}),
                   client.delete("/elastic-search/notify/all/_doc/d1"),
                   client.get("/elastic-search/")):
        assert_json_error(answer, 403)
    unverified = {"Type": "Notification", "TopicArn": TOPIC, "MessageId": "m",
                  "Timestamp": "t", "Message": json.dumps(body)}
    assert post_sns(client, unverified).status_code == 403
    assert inbox_rows(app) == []
    # signed, but by a topic of someone else's account
    assert post_sns(client, sns.signed(body, topic=TOPIC + "-theirs")).status_code == 403
    assert inbox_rows(app) == []
    assert post_sns(client, sns.signed(body)).status_code == 202
    assert [row.uuid for row in inbox_rows(app)] == [UUIDS[0]]


def test_require_sns_needs_verification(make_app, bucket):
    from dserver_notification_plugin.config import ConfigError
    with pytest.raises(ConfigError, match="REQUIRE_SNS"):
        make_app([bucket], notify={"DSERVER_NOTIFY_REQUIRE_SNS": "on",
                                   "DSERVER_NOTIFY_SNS_TOPICS": TOPIC,
                                   "DSERVER_NOTIFY_SNS_VERIFY": "off"})


def test_a_wide_allow_list_is_quiet_only_with_a_secret_or_require_sns(make_app, bucket,
                                                                    auth_headers):
    def warnings(**notify):
        app = make_app([bucket], notify={"DSERVER_NOTIFY_ALLOW_ACCESS_FROM": "0.0.0.0/0",
                                         **notify})
        status = app.test_client().get("/webhook/status", headers=auth_headers(app))
        return status.get_json()["warnings"]
    [warning] = warnings()
    assert "REQUIRE_SNS" in warning
    assert warnings(DSERVER_NOTIFY_REQUIRE_SNS="on", DSERVER_NOTIFY_SNS_TOPICS=TOPIC) == []


# --- also noticed: a proxy on this host that TRUSTED_PROXIES forgot -------------------------------

def test_forwarding_headers_from_an_untrusted_loopback_peer_are_reported_once(
        app, client, bucket, caplog, auth_headers):
    caplog.set_level(logging.WARNING)
    body = minio_webhook_body(bucket.name, f"{UUIDS[0]}/dtool")
    for forwarded in ("203.0.113.7", "203.0.113.8", "198.51.100.1"):
        answer = client.post("/webhook/notify", json=body,
                             headers={"X-Forwarded-For": forwarded})
        assert answer.status_code == 202  # the peer is loopback, which is allowed
    lines = [r.getMessage() for r in caplog.records if "TRUSTED_PROXIES" in r.getMessage()]
    assert len(lines) == 1
    status = client.get("/webhook/status", headers=auth_headers(app)).get_json()
    assert any("loopback peer" in warning for warning in status["warnings"])


def test_no_report_without_forwarding_headers_or_with_the_proxy_trusted(
        make_app, bucket, auth_headers):
    body = minio_webhook_body(bucket.name, f"{UUIDS[0]}/dtool")
    plain = make_app([bucket])
    plain.test_client().post("/webhook/notify", json=body)
    trusted = make_app([bucket], notify={"DSERVER_NOTIFY_TRUSTED_PROXIES": "127.0.0.1"})
    trusted.test_client().post("/webhook/notify", json=body,
                               headers={"X-Forwarded-For": "127.0.0.1"})
    for app in (plain, trusted):
        status = app.test_client().get("/webhook/status", headers=auth_headers(app))
        assert status.get_json()["warnings"] == []


# --- also noticed: database trouble in the log --------------------------------------------------

# The store is made unavailable by locking the SQLite file from outside, once
# the plugin's tables exist (as on a server that has run for a while: else the
# first request's migration waits 30 s for the lock to switch to WAL). The
# driver's busy timeout, 5 s by default, is short here: each refused write
# waits for it.
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_store_trouble_is_logged_once_and_without_sql_parameters(make_app, bucket, caplog):
    app = make_app([bucket], notify={
        "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"timeout": 0.5}}})
    client = app.test_client()
    assert inbox_rows(app) == []  # migrated
    secret_prefix = "sender-wrote-this-"
    database = app.env_for_tests["SQLALCHEMY_DATABASE_URI"][len("sqlite:///"):]
    lock = sqlite3.connect(database, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        for n in range(2):
            key = f"{secret_prefix}{n}/{UUIDS[n]}/dtool"
            answer = client.post("/webhook/notify", json={"Records": [record(bucket.name, key)]})
            assert_json_error(answer, 503)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    lines = [r.getMessage() for r in caplog.records if "store unavailable" in r.getMessage()]
    assert len(lines) == 1
    assert "locked" in lines[0]
    assert secret_prefix not in caplog.text and "INSERT" not in caplog.text


# --- 4. Elasticsearch document ids cannot be re-pointed -----------------------------------------

def events_per_dataset(app):
    return {row.uuid: row.events for row in inbox_rows(app)}


def test_a_later_document_cannot_re_point_an_id(app, client, bucket):
    real, decoy = f"{UUIDS[1]}/README.yml", f"{UUIDS[2]}/README.yml"

    def put(key):
        return client.put("/elastic-search/notify/all/_doc/d1",
                          json={"Records": [record(bucket.name, key)]})

    assert put(real).status_code == 201
    second = put(decoy)
    assert second.status_code in (201, 409)
    before = events_per_dataset(app)
    assert client.delete("/elastic-search/notify/all/_doc/d1").status_code == 200
    after = events_per_dataset(app)
    assert after[UUIDS[1]] == before[UUIDS[1]] + 1  # the removal reached the dataset
    assert after.get(UUIDS[2]) == before.get(UUIDS[2])


def test_a_storagegrid_id_is_read_not_looked_up(app, client, bucket):
    real, decoy = f"{UUIDS[3]}/dtool", f"{UUIDS[4]}/dtool"
    path = f"/elastic-search/idx/type/{bucket.name}_{real}"
    answer = client.put(path, json={"bucket": bucket.name, "key": decoy})
    assert answer.status_code == 201
    before = events_per_dataset(app)
    assert client.delete(path).get_json()["result"] == "deleted"
    after = events_per_dataset(app)
    assert after[UUIDS[3]] == before.get(UUIDS[3], 0) + 1
    assert after.get(UUIDS[4]) == before.get(UUIDS[4])


# --- 5. and 7. keys no S3 holds: too long, or holding NUL ---------------------------------------

IMPOSSIBLE_KEYS = {
    "huge": "p" * 65536 + f"/{UUIDS[5]}/README.yml",
    "just over S3's limit": "é" * 500 + f"/{UUIDS[5]}/README.yml",  # 1,049 bytes
    "NUL": f"a\x00b/{UUIDS[5]}/README.yml",
}


@pytest.mark.parametrize("what", sorted(IMPOSSIBLE_KEYS))
def test_an_elasticsearch_document_for_a_key_no_s3_holds_is_400(app, client, bucket, what):
    key = IMPOSSIBLE_KEYS[what]
    doc = {"Records": [record(bucket.name, key)]}
    assert_json_error(client.put("/elastic-search/notify/all/_doc/k1", json=doc), 400)
    assert client.head("/elastic-search/notify/all/_doc/k1").status_code == 404
    storagegrid = {"bucket": bucket.name, "key": key}
    assert_json_error(client.put("/elastic-search/idx/type/some-id", json=storagegrid), 400)
    assert inbox_rows(app) == []


@pytest.mark.parametrize("what", sorted(IMPOSSIBLE_KEYS))
def test_a_record_for_a_key_no_s3_holds_is_unreadable_not_stored(app, client, bucket, what):
    good = f"{UUIDS[6]}/dtool"
    body = {"Records": [record(bucket.name, IMPOSSIBLE_KEYS[what]), record(bucket.name, good)]}
    for _ in range(2):  # a sender retries: the same answer, never a 5xx
        answer = client.post("/webhook/notify", json=body)
        assert answer.status_code == 202
        assert answer.get_json() == {"accepted": 1, "ignored": 1}
    assert [row.uuid for row in inbox_rows(app)] == [UUIDS[6]]


def test_document_ids_holding_nul_are_400(app, client, bucket):
    doc = {"Records": [record(bucket.name, f"{UUIDS[7]}/README.yml")]}
    for answer in (client.put("/elastic-search/notify/all/_doc/a%00b", json=doc),
                   client.head("/elastic-search/notify/all/_doc/a%00b"),
                   client.delete("/elastic-search/notify/all/_doc/a%00b"),
                   client.delete(f"/elastic-search/idx/type/{bucket.name}_a%00b")):
        assert answer.status_code == 400
    assert inbox_rows(app) == []
