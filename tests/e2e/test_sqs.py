"""Pull intake end to end: S3 -> (SNS ->) SQS -> live dserver, which polls the queue.

moto_server plays S3, SNS and SQS and delivers the bucket's notifications
itself; the live gunicorn dserver is never called by the storage side, it
long-polls the queues (``DSERVER_NOTIFY_SQS_QUEUE_URLS``, with boto3 finding
moto through ``AWS_ENDPOINT_URL_SQS``). The index is observed through
dserver's HTTP API only.
"""
import sqlite3
import time
import uuid

import pytest
import requests

from dserver_notification_plugin.worker import FLUSH_INTERVAL_SECONDS
from tests.dserver import LiveDserver
from tests.e2e import LiveIndex, Storage, check_dataset_lifecycle, unique_word
from tests.queues import (
    consumer_env, create_queue, notify_queue, notify_queue_through_sns)
from tests.services import MOTO_KEY, MOTO_SECRET, dtool_s3_env

pytestmark = pytest.mark.e2e

ROUTES = ("s3-to-sqs", "sns-raw-delivery", "sns-envelope")


def make_storage(moto, stem):
    bucket = f"e2e-{stem}-{uuid.uuid4().hex[:8]}"
    moto.create_bucket(bucket)
    env = dtool_s3_env(bucket, moto.endpoint, MOTO_KEY, MOTO_SECRET)
    return Storage(bucket=bucket, s3=moto.boto3_client("s3"), env=env)


def connect(moto, storage, route, queue):
    if route == "s3-to-sqs":
        notify_queue(moto, storage.bucket, queue)
    else:
        notify_queue_through_sns(moto, storage.bucket, queue,
                                 raw_delivery=route == "sns-raw-delivery")


@pytest.fixture(scope="module")
def routes(moto):
    """One bucket and one queue per way S3 can reach a queue."""
    wired = {}
    for route in ROUTES:
        storage, queue = make_storage(moto, route[:8]), create_queue(moto)
        connect(moto, storage, route, queue)
        wired[route] = (storage, queue)
    return wired


@pytest.fixture(scope="module")
def index(index_factory, routes, moto):
    """One dserver consuming all three queues; it is never called by moto."""
    buckets = {storage.bucket: storage.base_uri for storage, _ in routes.values()}
    env = consumer_env(moto, *(queue for _, queue in routes.values()))
    for storage, _ in routes.values():
        env.update(storage.env)
    return index_factory(buckets, extra_env=env)


@pytest.mark.parametrize("route", ROUTES)
def test_copy_edit_and_removal_reach_search_through_a_queue(index, routes, route):
    storage, queue = routes[route]
    check_dataset_lifecycle(index, storage)
    index.wait_until(lambda: queue.depth() == (0, 0), f"{route} queue emptied")
    assert queue.dead_letters() == []


def admin_status(index):
    answer = requests.get(f"{index.url}/webhook/status", headers=index.headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture
def lone_queue(moto):
    """A bucket notifying its own queue, whose messages reappear after 5 s."""
    storage = make_storage(moto, "lone")
    queue = create_queue(moto, visibility_timeout=5, max_receive_count=10)
    connect(moto, storage, "s3-to-sqs", queue)
    return storage, queue


def test_messages_taken_by_a_killed_dserver_come_back(index_factory, moto, lone_queue):
    """SIGKILL after receiving, before committing: nothing is lost."""
    storage, queue = lone_queue
    index = index_factory({storage.bucket: storage.base_uri},
                          extra_env={**consumer_env(moto, queue), **storage.env})
    index.wait_until(lambda: admin_status(index)["inbox"] is not None, "dserver answers")
    database = index.server.env["SQLALCHEMY_DATABASE_URI"][len("sqlite:///"):]
    lock = sqlite3.connect(database, isolation_level=None, timeout=30)
    lock.execute("BEGIN EXCLUSIVE")  # dserver can receive but not commit
    try:
        word = unique_word("killed")
        uri = storage.put_dataset("survives-a-kill", f"project: {word}\n")
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
    index.stop()


def test_two_dservers_on_one_queue_register_each_dataset_once(
        index_factory, moto, lone_queue, tmp_path):
    storage, queue = lone_queue
    first = index_factory({storage.bucket: storage.base_uri},
                          extra_env={**consumer_env(moto, queue), **storage.env})
    # A second gunicorn with the same database and Mongo: another host.
    second = LiveIndex(LiveDserver(first.server.env, tmp_path, workers=2).start())
    try:
        uris = sorted(storage.put_dataset(f"shared-{n}", f"part: {n}\n", items=2)
                      for n in range(4))
        first.wait_until(lambda: first.search(base_uris=[storage.base_uri]) == uris,
                         "every dataset searchable", timeout=90)
        first.wait_until(lambda: queue.depth() == (0, 0), "queue emptied")
        assert second.listing() == uris
        # Each process adds its counts to the shared totals every few seconds.
        second.wait_until(lambda: admin_status(second)["sync"]["total"]["registered"]
                          >= len(uris), "every registration counted")
        time.sleep(3 * FLUSH_INTERVAL_SECONDS)  # time for any late second registration
        totals = admin_status(second)["sync"]["total"]
        assert totals["registered"] == totals["index_registrations"] == len(uris)
        for server in (first, second):  # both hosts pull from the queue
            [figures] = admin_status(server)["queues"]
            assert figures["queue_url"] == queue.url and figures["consuming"]
    finally:
        second.stop()
        first.stop()
