"""Hostile senders at the routes (issue 14), in-process.

SNS confirmation without request forgery, signed SNS messages, browsers,
the caps on records and waiting datasets, one log line per request,
settings that say when they leave a door open, and the Elasticsearch
document memory. The behaviours that depend on the server (client
addresses over real sockets, a Unix-socket proxy, deadlines under
gunicorn, moto as SNS) are in test_security_live.py.
"""
import json
import logging
import socket
import time

import pytest

from devstack.payloads import minio_webhook_body
from devstack.sns import TOPIC, sign

SNS_TYPE = "text/plain; charset=UTF-8"
UUIDS = [f"{n:08d}-1111-4111-8111-111111111111" for n in range(10)]


def inbox_rows(app):
    return app.extensions["dserver_notification"].inbox.entries()


def record(bucket, key, event="s3:ObjectCreated:Put"):
    return {"eventName": event, "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}


def s3_event(bucket, keys):
    return {"Records": [record(bucket, key) for key in keys]}



@pytest.fixture
def sns_app(make_app, bucket, sns):
    """SNS signed by the fake, topic listed, verification on (the default)."""
    def factory(**notify):
        settings = {"DSERVER_NOTIFY_SNS_TOPICS": TOPIC, "DSERVER_NOTIFY_SNS_HOSTS": sns.origin,
                    "DSERVER_NOTIFY_SNS_TIMEOUT_SECONDS": "1"}
        settings.update({f"DSERVER_NOTIFY_{k.upper()}": v for k, v in notify.items()})
        return make_app([bucket], notify=settings)
    return factory


def post_sns(client, envelope):
    return client.post("/webhook/notify", data=json.dumps(envelope), content_type=SNS_TYPE)


def assert_json_error(answer, status):
    assert answer.status_code == status, answer.data[:300]
    body = answer.get_json()
    assert body["code"] == status and body["message"]
    return body["message"]


# --- 1. subscription confirmation: no request forgery ---------------------------------

def test_a_signed_confirmation_at_the_allowed_host_is_confirmed(sns_app, sns):
    sns.mode = "ok"
    client = sns_app().test_client()
    before = len(sns.hits)
    answer = post_sns(client, sns.confirmation())
    assert answer.status_code == 200 and answer.get_json() == {"confirmed": TOPIC}
    paths = sns.hits[before:]
    assert paths[0].endswith(".pem")  # the certificate first, then the confirmation
    assert paths[1].startswith("/?Action=ConfirmSubscription&TopicArn=")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_internal_hosts_are_never_fetched_and_ports_cannot_be_told_apart(sns_app, sns):
    client = sns_app(sns_verify="off").test_client()
    open_port, closed_port = sns.server.server_port + 0, free_port()
    answers = []
    before = len(sns.hits)
    for url in (f"http://localhost:{open_port}/?Action=ConfirmSubscription&TopicArn={TOPIC}"
                "&Token=t",
                f"http://127.0.0.2:{open_port}/", f"http://127.0.0.1:{closed_port}/",
                f"http://169.254.169.254/latest/meta-data/?Action=ConfirmSubscription",
                f"https://sns.eu-central-1.amazonaws.com.evil.example/?Action=Confirm"):
        answer = post_sns(client, sns.confirmation(url=url))
        answers.append((answer.status_code, answer.get_json()["message"]))
    assert len(set(answers)) == 1 and answers[0][0] == 403, answers
    assert sns.hits[before:] == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/", "http://[::1/", "https://",
                                 "http://a b/"])
def test_a_malformed_subscribe_url_is_a_4xx_not_a_500(sns_app, sns, url):
    client = sns_app(sns_verify="off").test_client()
    answer = post_sns(client, sns.confirmation(url=url))
    assert answer.status_code in (400, 403)
    assert answer.is_json and answer.get_json()["message"]


@pytest.mark.parametrize("mode", ["redirect", "huge", "error"])
def test_redirects_floods_and_errors_of_the_host_are_502(sns_app, sns, mode):
    client = sns_app().test_client()
    sns.mode = mode
    try:
        message = assert_json_error(post_sns(client, sns.confirmation()), 502)
    finally:
        sns.mode = "ok"
    assert message == "could not confirm the subscription at SNS"


def test_a_slow_host_costs_at_most_the_deadline(sns_app, sns):
    client = sns_app(sns_verify="off").test_client()
    sns.mode = "slow"
    started = time.monotonic()
    try:
        assert_json_error(post_sns(client, sns.confirmation()), 502)
    finally:
        sns.mode = "ok"
    assert time.monotonic() - started < 3


def test_unlisted_topics_are_refused_and_nothing_is_fetched(make_app, bucket, sns):
    client = make_app([bucket], notify={"DSERVER_NOTIFY_SNS_HOSTS": sns.origin}).test_client()
    before = len(sns.hits)
    assert_json_error(post_sns(client, sns.confirmation()), 403)  # no topic listed at all
    assert sns.hits[before:] == []


# --- 2. signed notifications ---------------------------------------------------------

def test_signed_notifications_are_stored_and_tampered_ones_refused(sns_app, sns, bucket,
                                                                    caplog):
    app = sns_app()
    client = app.test_client()
    event = minio_webhook_body(bucket.name, f"{UUIDS[0]}/dtool")
    for version in ("1", "2"):
        answer = post_sns(client, sns.signed(event, version=version))
        assert answer.status_code == 202 and answer.get_json()["accepted"] == 1
    forged = sns.signed(minio_webhook_body(bucket.name, f"{UUIDS[0]}/dtool"))
    forged["Message"] = json.dumps(minio_webhook_body(bucket.name, f"{UUIDS[1]}/dtool"))
    assert "does not verify" in assert_json_error(post_sns(client, forged), 403)
    stranger = sign(sns.signed(event), sns.other_key, sns.cert_url)
    assert_json_error(post_sns(client, stranger), 403)
    elsewhere = sign(sns.signed(event), sns.key,
                     "https://sns.eu-central-1.amazonaws.com.evil.example/x.pem")
    assert_json_error(post_sns(client, elsewhere), 403)
    other_topic = sns.signed(event, topic=TOPIC + "-other")
    assert "not listed" in assert_json_error(post_sns(client, other_topic), 403)
    unsigned = {k: v for k, v in sns.signed(event).items() if not k.startswith("Sig")}
    assert_json_error(post_sns(client, unsigned), 403)
    assert [row.uuid for row in inbox_rows(app)] == [UUIDS[0]]
    assert "refused notification" in caplog.text


def test_without_listed_topics_any_signed_topic_is_accepted(make_app, bucket, sns):
    client = make_app([bucket], notify={"DSERVER_NOTIFY_SNS_HOSTS": sns.origin}).test_client()
    event = minio_webhook_body(bucket.name, f"{UUIDS[0]}/dtool")
    assert post_sns(client, sns.signed(event, topic=TOPIC + "-2")).status_code == 202
    tampered = sns.signed(event, topic=TOPIC + "-2")
    tampered["Subject"] = "added"
    assert post_sns(client, tampered).status_code == 403


def test_verification_off_accepts_unsigned_messages_and_says_so(make_app, bucket, caplog,
                                                                auth_headers):
    caplog.set_level(logging.WARNING)
    app = make_app([bucket], notify={"DSERVER_NOTIFY_SNS_VERIFY": "off"})
    assert "SNS_VERIFY is off" in caplog.text
    client = app.test_client()
    envelope = {"Type": "Notification", "TopicArn": TOPIC, "MessageId": "m",
                "Timestamp": "t",
                "Message": json.dumps(minio_webhook_body(bucket.name, f"{UUIDS[0]}/dtool"))}
    assert post_sns(client, envelope).status_code == 202
    status = client.get("/webhook/status", headers=auth_headers(app)).get_json()
    assert any("SNS_VERIFY is off" in warning for warning in status["warnings"])


# --- 4. a bounded inbox ---------------------------------------------------------------

def test_more_records_than_the_limit_is_413_and_stores_nothing(make_app, bucket):
    app = make_app([bucket], notify={"DSERVER_NOTIFY_MAX_RECORDS": "5"})
    client = app.test_client()
    body = s3_event(bucket.name, [f"{uuid}/dtool" for uuid in UUIDS[:6]])
    message = assert_json_error(client.post("/webhook/notify", json=body), 413)
    assert "MAX_RECORDS" in message
    assert inbox_rows(app) == []
    body = s3_event(bucket.name, [f"{uuid}/dtool" for uuid in UUIDS[:5]])
    assert client.post("/webhook/notify", json=body).status_code == 202


def test_default_limit_stops_one_request_from_filling_the_inbox(app, client, bucket):
    keys = [f"{n:08d}-2222-4222-8222-222222222222/dtool" for n in range(1001)]
    answer = client.post("/webhook/notify", json=s3_event(bucket.name, keys))
    assert_json_error(answer, 413)
    assert inbox_rows(app) == []


def test_a_full_inbox_refuses_new_datasets_and_folds_waiting_ones(make_app, bucket):
    app = make_app([bucket], notify={"DSERVER_NOTIFY_MAX_PENDING": "2"})
    client = app.test_client()

    def post(*uuids):
        return client.post("/webhook/notify",
                           json=s3_event(bucket.name, [f"{u}/dtool" for u in uuids]))

    assert post(UUIDS[0], UUIDS[1]).status_code == 202
    full = post(UUIDS[2])
    assert "MAX_PENDING" in assert_json_error(full, 503)
    assert full.headers["Retry-After"] == "60"
    assert post(UUIDS[0]).status_code == 202  # already waiting: folded in
    mixed = post(UUIDS[1], UUIDS[3])
    assert mixed.status_code == 503
    rows = {row.uuid: row.events for row in inbox_rows(app)}
    assert rows == {UUIDS[0]: 2, UUIDS[1]: 2}  # the waiting one of the mixed request counted
    # once the backlog is synced, new datasets are taken again
    inbox = app.extensions["dserver_notification"].inbox
    for claim in inbox.claim(60, ignore_due=True):
        inbox.finish(claim, "registered")
    assert post(UUIDS[2], UUIDS[3]).status_code == 202


def test_the_worker_purges_done_entries_after_the_retention(make_app, bucket):
    app = make_app([bucket], notify={"DSERVER_NOTIFY_DONE_RETENTION_SECONDS": "100"})
    ext = app.extensions["dserver_notification"]
    client = app.test_client()
    client.post("/webhook/notify", json=s3_event(bucket.name, [f"{UUIDS[0]}/dtool",
                                                               f"{UUIDS[1]}/dtool"]))
    claims = ext.inbox.claim(60, ignore_due=True)
    ext.inbox.finish(claims[0], "absent", at=time.time() - 101)
    ext.inbox.fail(claims[1], "boom", time.time(), 1, give_up=True, at=time.time() - 1000)
    assert ext.worker.purge_done() == 1
    assert [row.state.value for row in inbox_rows(app)] == ["dead"]  # dead rows stay


# --- 5. one log line per request -----------------------------------------------------------

def test_ignored_records_give_one_bounded_warning_per_request(app, client, bucket, caplog):
    caplog.set_level(logging.DEBUG, logger="dserver_notification_plugin.intake")
    huge_key = "k" * 200_000
    records = [record("elsewhere", f"{UUIDS[0]}/dtool") for _ in range(600)] + \
        [record(bucket.name, f"notes-{n}.txt") for n in range(299)] + \
        [record(bucket.name, huge_key)]
    answer = client.post("/webhook/notify", json={"Records": records})
    assert answer.get_json() == {"accepted": 0, "ignored": 900}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    line = warnings[0]
    assert "ignored 900 record(s)" in line
    assert "600 in bucket elsewhere (bucket has no base URI mapping" in line
    assert f"299 in bucket {bucket.name} (key is not a dtool object" in line
    assert "1 (unreadable: key longer than 1024 bytes" in line  # no S3 holds it (issue 23)
    assert len(line) < 1000
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG
             and r.getMessage().startswith(("ignored created", "unreadable record"))]
    assert len(debug) == 900 and max(len(r.getMessage()) for r in debug) < 2000
    # the same again within the interval: counted, not written
    caplog.clear()
    client.post("/webhook/notify", json={"Records": records})
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_benign_ignored_records_stay_at_debug_level(app, client, bucket, caplog):
    caplog.set_level(logging.INFO)
    body = s3_event(bucket.name, [f"{UUIDS[0]}/data/{n:040x}" for n in range(50)])
    assert client.post("/webhook/notify", json=body).get_json()["ignored"] == 50
    assert "ignored" not in caplog.text


# --- 6. settings that fail open say so --------------------------------------------------------

def test_open_settings_are_warned_about_at_start_and_in_status(make_app, bucket, caplog,
                                                               auth_headers):
    caplog.set_level(logging.WARNING)
    app = make_app([bucket], notify={"DSERVER_NOTIFY_ALLOW_ACCESS_FROM": "10.0.0.0/8",
                                     "DSERVER_NOTIFY_TRUSTED_PROXIES": "0.0.0.0/0"})
    assert "no secret is set" in caplog.text and "every client can choose" in caplog.text
    status = app.test_client().get("/webhook/status", headers=auth_headers(app)).get_json()
    assert len(status["warnings"]) == 2
    quiet = make_app([bucket], notify={"DSERVER_NOTIFY_ALLOW_ACCESS_FROM": "10.0.0.0/8",
                                       "DSERVER_NOTIFY_AUTH_TOKEN": "t0ken"})
    status = quiet.test_client().get("/webhook/status", headers=auth_headers(quiet)).get_json()
    assert status["warnings"] == []


# --- 7. browsers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"}, {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
])
def test_requests_a_browser_sends_for_a_web_page_are_refused(app, client, bucket, headers):
    body = json.dumps(minio_webhook_body(bucket.name, f"{UUIDS[0]}/dtool"))
    answer = client.post("/webhook/notify", data=body, content_type="text/plain",
                         headers=headers)
    assert "browser" in assert_json_error(answer, 403)
    assert client.options("/webhook/notify", headers=headers).status_code == 403
    assert inbox_rows(app) == []
    plain = client.post("/webhook/notify", data=body, content_type="text/plain",
                        headers={"Sec-Fetch-Site": "none"})
    assert plain.status_code == 202


# --- 8. Elasticsearch document memory ---------------------------------------------------------------

def test_only_documents_of_datasets_are_remembered(app, client, bucket):
    documents = app.extensions["dserver_notification"].documents

    def put(doc_id, bucket_name, key):
        doc = {"Records": [record(bucket_name, key)]}
        return client.put(f"/elastic-search/notify/all/_doc/{doc_id}", json=doc)

    assert put("unmapped", "elsewhere", f"{UUIDS[0]}/dtool").status_code == 201
    assert put("foreign", bucket.name, "notes.txt").status_code == 201
    assert put("item", bucket.name, f"{UUIDS[0]}/data/{'a' * 40}").status_code == 201
    assert put("readme", bucket.name, f"{UUIDS[0]}/README.yml").status_code == 201
    remembered = {doc_id for doc_id in ("unmapped", "foreign", "item", "readme")
                  if documents.recall(doc_id)}
    assert remembered == {"readme"}
    assert client.post("/elastic-search/notify/all/_doc",
                       json={"Records": [record(bucket.name, f"{UUIDS[1]}/dtool")]}
                       ).status_code == 201
    assert client.head("/elastic-search/notify/all/_doc/unmapped").status_code == 404


def test_document_ids_longer_than_the_column_are_400(app, client, bucket):
    long_id = "x" * 513
    doc = {"Records": [record(bucket.name, f"{UUIDS[0]}/dtool")]}
    for answer in (client.put(f"/elastic-search/notify/all/_doc/{long_id}", json=doc),
                   client.head(f"/elastic-search/notify/all/_doc/{long_id}"),
                   client.delete(f"/elastic-search/notify/all/_doc/{long_id}"),
                   client.put(f"/elastic-search/idx/type/{bucket.name}_{long_id}", json=doc)):
        assert answer.status_code == 400
    assert inbox_rows(app) == []
    assert client.put(f"/elastic-search/notify/all/_doc/{'x' * 512}", json=doc) \
        .status_code == 201
