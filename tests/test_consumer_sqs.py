"""The SQS consumer against moto_server's real queues, with an in-process dserver.

moto delivers the bucket's own notifications to the queue (S3 -> SQS); the
tests drive the consumer one long poll at a time (``poll_once``) or run its
thread, and look at what a user would: the queue's depth, its dead-letter
queue, the inbox, the index and ``flask notification status``.
"""
import json
import logging
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.dserver import dserver_env, prepare_index_for_server
from devstack.ports import free_port, python_env, wait_until
from devstack.sqs import consumer_env, create_queue, notify_queue

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = "dserver_notification"
PATIENCE = 60.0


@pytest.fixture
def queue(moto):
    return create_queue(moto, visibility_timeout=2, max_receive_count=2)


@pytest.fixture
def aws_env(moto, queue, monkeypatch):
    """boto3 reads endpoint, credentials and region from the environment."""
    env = consumer_env(moto, queue)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def sqs_app(make_app, bucket, queue, aws_env, moto):
    notify_queue(moto, bucket.name, queue)
    return make_app([bucket], notify={
        "DSERVER_NOTIFY_SQS_QUEUE_URLS": queue.url})


def consumer_of(app):
    [consumer] = app.extensions[EXTENSION].consumers
    return consumer


def eventually(condition, what, timeout=PATIENCE):
    return wait_until(condition, what, timeout, interval=0.2)


def stop_consumer(consumer, queue):
    """Stop the consumer's thread before the next test, without waiting out
    its long poll of 20 s: once it is asked to end, an s3:TestEvent (which
    the consumer deletes like any message it understands) makes SQS answer
    at once."""
    consumer.stop(timeout=0)
    queue.send(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"}))
    consumer.stop(timeout=PATIENCE)
    assert not consumer.running


def consume_until_empty(consumer, queue):
    """Poll until the queue holds nothing, visible or in flight."""
    def empty():
        consumer.poll_once(wait_seconds=1)
        return queue.depth() == (0, 0)
    eventually(empty, f"{queue.url} emptied")


def cli(app, *args):
    return app.test_cli_runner().invoke(args=["notification", *args])


def queue_figures(app):
    """The queue's part of ``flask notification status --json``."""
    result = cli(app, "status", "--json")
    assert result.exit_code == 0, result.output
    [figures] = json.loads(result.output)["queues"]
    return figures


def inbox_uris(app):
    return [entry.dataset_uri for entry in app.extensions[EXTENSION].inbox.entries()]


def test_a_copied_dataset_goes_from_the_queue_to_the_index(sqs_app, bucket, queue, drain,
                                                          search, auth_headers):
    uri = bucket.put_dataset("from-the-queue", items=2)
    consume_until_empty(consumer_of(sqs_app), queue)
    assert inbox_uris(sqs_app) == [uri]
    figures = queue_figures(sqs_app)
    assert figures["total"]["received"] > 1  # the s3:TestEvent and every object
    assert figures["total"]["deleted"] == figures["total"]["received"]
    assert figures["total"]["left_for_redrive"] == 0
    drain(sqs_app)
    client = sqs_app.test_client()
    assert search(client, auth_headers(sqs_app), base_uris=[bucket.base_uri]) == [uri]


def test_a_malformed_message_is_left_for_the_dead_letter_queue(sqs_app, bucket, queue):
    queue.send("this is no notification")
    uri = bucket.put_dataset("beside-a-bad-message", items=1)
    consumer = consumer_of(sqs_app)

    def redriven():
        consumer.poll_once(wait_seconds=1)
        return queue.dead_letters() == ["this is no notification"]
    # The queue's redrive policy, not the consumer, moves it after 2 receives.
    eventually(redriven, "malformed message in the dead-letter queue")
    consume_until_empty(consumer, queue)
    assert inbox_uris(sqs_app) == [uri]
    figures = queue_figures(sqs_app)
    assert figures["total"]["left_for_redrive"] == 2
    assert figures["total"]["deleted"] == figures["total"]["received"] - 2


def test_a_message_whose_certificate_sns_lacks_holds_back_nothing(make_app, bucket, queue,
                                                                  aws_env, moto, sns):
    """Issue 23: its certificate fetch fails (404); the rest of every batch
    is committed and deleted, and the message itself is redriven."""
    from devstack.sns import sign
    notify_queue(moto, bucket.name, queue)
    app = make_app([bucket], notify={"DSERVER_NOTIFY_SQS_QUEUE_URLS": queue.url,
                                     "DSERVER_NOTIFY_SNS_HOSTS": sns.origin,
                                     "DSERVER_NOTIFY_SNS_TIMEOUT_SECONDS": "2"})
    cert_path = "/SimpleNotificationService-not-there.pem"
    envelope = sign(sns.signed({"Records": []}), sns.key, sns.origin + cert_path)
    queue.send(json.dumps(envelope))
    asked_before = sns.hits.count(cert_path)  # the fake SNS serves the whole session
    uri = bucket.put_dataset("beside-a-missing-certificate", items=1)
    consumer = consumer_of(app)

    def redriven():
        consumer.poll_once(wait_seconds=1)
        return len(queue.dead_letters()) == 1
    eventually(redriven, "the message with the missing certificate dead-lettered")
    consume_until_empty(consumer, queue)
    assert inbox_uris(app) == [uri]
    figures = queue_figures(app)
    assert figures["total"]["left_for_redrive"] == 2
    assert figures["total"]["deleted"] == figures["total"]["received"] - 2
    assert sns.hits.count(cert_path) == asked_before + 1  # asked once, then remembered


def test_messages_left_again_and_again_write_one_warning(sqs_app, queue, caplog):
    """Issue 23: a line per left message and receive let a sender fill the log."""
    caplog.set_level(logging.WARNING, logger="dserver_notification_plugin.consumer")
    for n in range(3):
        queue.send(f"no notification {n}")
    consumer = consumer_of(sqs_app)

    def redriven():
        consumer.poll_once(wait_seconds=1)
        return len(queue.dead_letters()) == 3
    eventually(redriven, "the three messages in the dead-letter queue")
    assert queue_figures(sqs_app)["total"]["left_for_redrive"] == 6  # each received twice
    lines = [r.getMessage() for r in caplog.records if "left SQS message" in r.getMessage()]
    assert len(lines) == 1, lines


# The commit is blocked by locking the SQLite file from outside; PostgreSQL
# has no such lock a test can hold without the plugin's own connections.
# Each write waits out the driver's busy timeout: 0.5 s here, not 5 s.
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_nothing_is_deleted_while_the_database_is_locked(make_app, bucket, queue, aws_env,
                                                         moto):
    notify_queue(moto, bucket.name, queue)
    sqs_app = make_app([bucket], notify={
        "DSERVER_NOTIFY_SQS_QUEUE_URLS": queue.url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"timeout": 0.5}}})
    uri = bucket.put_dataset("waits-for-the-database", items=1)
    assert inbox_uris(sqs_app) == []
    database = sqs_app.env_for_tests["SQLALCHEMY_DATABASE_URI"][len("sqlite:///"):]
    lock = sqlite3.connect(database, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    consumer = consumer_of(sqs_app)
    try:
        consumer.start()
        eventually(lambda: "locked" in (consumer.last_error or ""), "the consumer fails")
        visible, in_flight = queue.depth()
        assert visible + in_flight > 0  # nothing was deleted
        lock.execute("ROLLBACK")
        assert inbox_uris(sqs_app) == []
        eventually(lambda: queue.depth() == (0, 0) and inbox_uris(sqs_app) == [uri],
                   "the consumer recovers by itself")
    finally:
        lock.close()
        stop_consumer(consumer, queue)
    assert queue.dead_letters() == []
    assert queue_figures(sqs_app)["total"]["errors"] >= 1


def test_a_full_inbox_holds_the_messages_in_the_queue_not_the_dead_letter_queue(
        make_app, bucket, queue, aws_env, moto, drain):
    notify_queue(moto, bucket.name, queue)
    app = make_app([bucket], notify={"DSERVER_NOTIFY_SQS_QUEUE_URLS": queue.url,
                                     "DSERVER_NOTIFY_MAX_PENDING": "1"})
    consumer = consumer_of(app)
    waiting = bucket.put_dataset("fills-the-inbox", items=1)
    consume_until_empty(consumer, queue)
    assert inbox_uris(app) == [waiting]  # one dataset waits: the inbox is full
    held = bucket.put_dataset("waits-in-the-queue", items=1)
    try:
        consumer.start()
        eventually(lambda: "MAX_PENDING" in (consumer.last_error or ""),
                   "the consumer is refused by the full inbox")
        # Receiving on would push the messages past maxReceiveCount=2 within
        # a few visibility timeouts (2 s each).
        time.sleep(10)
        assert queue.dead_letters() == []
        assert sum(queue.depth()) > 0
        assert inbox_uris(app) == [waiting]
        drain(app)  # the workers make room
        eventually(lambda: queue.depth() == (0, 0) and held in inbox_uris(app),
                   "the consumer takes the messages once there is room")
    finally:
        stop_consumer(consumer, queue)
    assert queue.dead_letters() == []


def test_an_unreachable_queue_is_reported_in_status_and_metrics(make_app, bucket, queue,
                                                                aws_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{free_port()}")
    app = make_app([bucket], notify={"DSERVER_NOTIFY_SQS_QUEUE_URLS": queue.url})
    consumer = consumer_of(app)
    consumer.start()
    try:
        eventually(lambda: queue_figures(app)["total"]["errors"] >= 1,
                   "a failed round counted")
    finally:
        consumer.stop(timeout=PATIENCE)  # let its long poll end before the next test
    figures = queue_figures(app)
    assert "EndpointConnectionError" in figures["last_error"]
    metrics = app.test_client().get("/webhook/metrics").get_data(as_text=True)
    errors = [sample.value for family in text_string_to_metric_families(metrics)
              for sample in family.samples
              if sample.name == "dserver_notification_queue_messages_total"
              and sample.labels == {"queue": queue.url, "kind": "errors"}]
    assert errors and errors[0] >= 1


def test_consume_needs_a_queue(app):
    result = cli(app, "consume")
    assert result.exit_code == 2
    assert "DSERVER_NOTIFY_SQS_QUEUE_URLS" in result.output


def test_flask_notification_consume_fills_the_inbox_and_stops_on_sigterm(
        tmp_path, mongo, moto, bucket, queue, aws_env):
    notify_queue(moto, bucket.name, queue)
    env = dserver_env(tmp_path, mongo.uri, {bucket.name: bucket.base_uri},
                      {**aws_env, **bucket.env})
    prepare_index_for_server(env, [bucket.base_uri])
    env["DSERVER_NOTIFY_WORKER"] = "off"
    bucket.put_dataset("from-the-command", items=1)
    flask = [sys.executable, "-m", "flask", "--app", "dservercore:create_app()",
             "notification"]
    consume = subprocess.Popen([*flask, "consume"], env=python_env(env), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        eventually(lambda: queue.depth() == (0, 0), "the command emptied the queue")
    finally:
        consume.terminate()
        output, _ = consume.communicate(timeout=PATIENCE)
    assert consume.returncode == 0, output
    status = subprocess.run([*flask, "status", "--json"], env=python_env(env),
                            cwd=ROOT, capture_output=True, text=True, check=True)
    report = json.loads(status.stdout)
    assert report["inbox"]["pending"] == 1
    [figures] = report["queues"]
    assert figures["total"]["deleted"] == figures["total"]["received"] > 1
