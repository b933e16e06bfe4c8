"""Pull intake end to end: S3 -> (SNS or EventBridge ->) SQS -> live dserver,
which polls the queue.

moto_server plays S3, SNS, EventBridge and SQS and delivers the bucket's
notifications itself; the live gunicorn dserver is never called by the
storage side, it long-polls the queues (``DSERVER_NOTIFY_SQS_QUEUE_URLS``, with boto3 finding
moto through ``AWS_ENDPOINT_URL_SQS``). The index is observed through
dserver's HTTP API only.
"""
import sqlite3
import time
import uuid

import pytest
import requests

from devstack.datasets import Bucket
from devstack.dserver import LiveDserver, dserver_env, prepare_index_for_server
from devstack.sqs import (
    consumer_env, create_queue, notify_queue, notify_queue_through_eventbridge,
    notify_queue_through_sns)
from dserver_notification_plugin.background import FLUSH_INTERVAL_SECONDS

pytestmark = pytest.mark.e2e

ROUTES = ("s3-to-sqs", "sns-raw-delivery", "sns-envelope", "eventbridge")


def make_bucket(moto, stem):
    return Bucket(moto, f"e2e-{stem}-{uuid.uuid4().hex[:8]}")


def connect(moto, bucket, route, queue):
    if route == "s3-to-sqs":
        notify_queue(moto, bucket.name, queue)
    elif route == "eventbridge":
        notify_queue_through_eventbridge(moto, bucket.name, queue)
    else:
        notify_queue_through_sns(moto, bucket.name, queue,
                                 raw_delivery=route == "sns-raw-delivery")


@pytest.fixture(scope="module")
def routes(moto):
    """One bucket and one queue per way S3 can reach a queue."""
    wired = {}
    for route in ROUTES:
        bucket, queue = make_bucket(moto, route[:8]), create_queue(moto)
        connect(moto, bucket, route, queue)
        wired[route] = (bucket, queue)
    return wired


@pytest.fixture(scope="module")
def index(index_factory, routes, moto):
    """One dserver consuming all three queues; it is never called by moto."""
    buckets = {bucket.name: bucket.base_uri for bucket, _ in routes.values()}
    env = consumer_env(moto, *(queue for _, queue in routes.values()))
    # moto signs SNS messages with no real key: as for the webhook, the
    # signature check is off here (the topic checks stay on).
    env["DSERVER_NOTIFY_SNS_VERIFY"] = "off"
    for bucket, _ in routes.values():
        env.update(bucket.env)
    return index_factory(buckets, extra_env=env)


@pytest.mark.parametrize("route", ROUTES)
def test_copy_edit_and_removal_reach_search_through_a_queue(index, routes, route,
                                                            dataset_lifecycle):
    bucket, queue = routes[route]
    dataset_lifecycle(index, bucket)
    index.wait_until(lambda: queue.depth() == (0, 0), f"{route} queue emptied")
    assert queue.dead_letters() == []


def admin_status(server):
    """``GET /webhook/status`` of a live dserver, as its admin."""
    answer = requests.get(f"{server.url}/webhook/status", headers=server.admin_headers(),
                          timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture
def lone_queue(moto):
    """A bucket notifying its own queue, whose messages reappear after 5 s."""
    bucket = make_bucket(moto, "lone")
    queue = create_queue(moto, visibility_timeout=5, max_receive_count=10)
    connect(moto, bucket, "s3-to-sqs", queue)
    return bucket, queue


# The commit is blocked by locking the SQLite file from outside; a
# PostgreSQL variant would need another way to make commits fail.
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_messages_taken_by_a_killed_dserver_come_back(fresh_index_factory, moto, lone_queue):
    """SIGKILL after receiving, before committing: nothing is lost."""
    bucket, queue = lone_queue
    index = fresh_index_factory({bucket.name: bucket.base_uri},
                                extra_env={**consumer_env(moto, queue), **bucket.env})
    admin_status(index.server)  # the plugin's tables exist before the lock
    database = index.server.env["SQLALCHEMY_DATABASE_URI"][len("sqlite:///"):]
    lock = sqlite3.connect(database, isolation_level=None, timeout=30)
    lock.execute("BEGIN EXCLUSIVE")  # dserver can receive but not commit
    try:
        word = f"killed{uuid.uuid4().hex[:10]}"
        uri = bucket.put_dataset("survives-a-kill", readme=f"project: {word}\n")
        index.wait_until(lambda: queue.depth()[1] > 0, "messages received (in flight)")
        index.wait_until(lambda: "database is locked" in index.server.log_tail(200),
                         "the consumer failed to commit")
        index.server.kill()
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    index.server.start()  # same database, same port
    index.wait_until(lambda: index.search(free_text=word) == [uri],
                     f"{uri} indexed after the restart", timeout=90)
    index.wait_until(lambda: queue.depth() == (0, 0), "queue emptied")
    assert queue.dead_letters() == []


@pytest.mark.both_databases  # several hosts claim from one inbox in SQL
def test_two_dservers_on_one_queue_register_each_dataset_once(
        fresh_index_factory, moto, lone_queue, tmp_path):
    bucket, queue = lone_queue
    index = fresh_index_factory({bucket.name: bucket.base_uri},
                                extra_env={**consumer_env(moto, queue), **bucket.env})
    # A second gunicorn with the same database and Mongo: another host.
    with LiveDserver(index.server.env, tmp_path, workers=2) as second:
        uris = sorted(bucket.put_dataset(f"shared-{n}", items=2) for n in range(4))
        index.wait_until(lambda: index.search(base_uris=[bucket.base_uri]) == uris,
                         "every dataset searchable", timeout=90)
        index.wait_until(lambda: queue.depth() == (0, 0), "queue emptied")
        # Each process adds its counts to the shared totals every few seconds.
        index.wait_until(lambda: admin_status(second)["sync"]["total"]["registered"]
                         >= len(uris), "every registration counted")
        time.sleep(3 * FLUSH_INTERVAL_SECONDS)  # time for any late second registration
        totals = admin_status(second)["sync"]["total"]
        assert totals["registered"] == totals["index_registrations"] == len(uris)
        assert index.listing() == uris
        for server in (index.server, second):  # both hosts pull from the queue
            [figures] = admin_status(server)["queues"]
            assert figures["queue_url"] == queue.url and figures["consuming"]


def test_a_preloaded_dserver_consumes_after_forking(tmp_path, mongo, moto, lone_queue):
    """gunicorn --preload creates the app, and its consumer, in the master
    before forking the workers: the fork must not wedge, and the workers
    consume with clients of their own."""
    bucket, queue = lone_queue
    env = dserver_env(tmp_path, mongo.uri, {bucket.name: bucket.base_uri}, {
        "DSERVER_NOTIFY_DEBOUNCE_SECONDS": "0.5", "DSERVER_NOTIFY_POLL_SECONDS": "0.2",
        **consumer_env(moto, queue), **bucket.env})
    prepare_index_for_server(env, [bucket.base_uri])
    with LiveDserver(env, tmp_path, workers=2, preload=True) as server:
        uri = bucket.put_dataset("preloaded", items=1)
        deadline = time.monotonic() + 90
        while uri not in listing(server):
            assert time.monotonic() < deadline, server.log_tail(80)
            time.sleep(0.5)
        [figures] = admin_status(server)["queues"]
        assert figures["consuming"] and figures["last_error"] is None
        assert queue.dead_letters() == []


def listing(server):
    answer = requests.get(f"{server.url}/uris", headers=server.admin_headers(), timeout=10)
    assert answer.status_code == 200, answer.text
    return [d["uri"] for d in answer.json()]
