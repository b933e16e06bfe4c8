"""Issue 5: never lose a notification, never repeat work, the index matches S3."""
import random
import time

import pytest
import requests
from dservercore.utils import register_dataset

from devstack.datasets import copy_write_order
from devstack.dserver import LiveDserver, dserver_env, prepare_index_for_server, token_for
from devstack.mongo import MongoServer
from devstack.payloads import minio_bodies_for_keys
from devstack.ports import wait_until
from devstack.s3 import list_keys, remove_all_objects
from dserver_notification_plugin.states import State

pytestmark = pytest.mark.integration

# S3 requests must not grow with the items of a copy: 200 show it against 10;
# `make bench` copies 1,000 (bench/__main__.py --items).
LARGE_ITEMS = 200


def extension(app):
    return app.extensions["dserver_notification"]


def index_snapshot(client, headers, uri, search):
    listing = sorted(d["uri"] for d in client.get("/uris", headers=headers).get_json())
    suffix = uri.replace("://", "/", 1)
    retrieved = {kind: client.get(f"/{kind}/{suffix}", headers=headers).get_json()
                 for kind in ("readmes", "manifests", "tags", "annotations")}
    return listing, search(client, headers), retrieved


def test_a_burst_of_a_large_copy_gives_one_registration_and_bounded_s3_requests(
        app, client, bucket, moto, admin_headers, drain, notify_all, search):
    small = bucket.put_dataset("small", items=10)
    large = bucket.put_dataset("large", items=LARGE_ITEMS)
    requests_per_dataset = {}
    for uri in (small, large):
        uuid = uri.rsplit("/", 1)[1]
        keys = copy_write_order([k for k in list_keys(bucket.s3, bucket.name) if uuid in k],
                                uuid)
        before_registrations = extension(app).tally.since_start().get("index_registrations", 0)
        notify_all(client, minio_bodies_for_keys(bucket.name, keys))
        before = moto.request_count()
        drain(app)
        requests_per_dataset[uri] = moto.request_count() - before
        registrations = extension(app).tally.since_start()["index_registrations"]
        assert registrations - before_registrations == 1
    assert sorted(search(client, admin_headers)) == sorted([small, large])
    assert requests_per_dataset[large] == requests_per_dataset[small], requests_per_dataset
    assert requests_per_dataset[large] <= 20


def test_shuffled_and_duplicated_events_give_the_same_index(make_app, bucket, auth_headers,
                                                             drain, notify_all, search):
    uri = bucket.put_dataset("shuffle", items=20, tags=["x", "y"],
                             annotations={"colour": "red"})
    keys = copy_write_order(list_keys(bucket.s3, bucket.name), uri.rsplit("/", 1)[1])
    snapshots = []
    for events in (keys, random.Random(4).sample(keys * 3, len(keys) * 3)):
        app = make_app([bucket])
        client = app.test_client()
        headers = auth_headers(app)
        # deliver in two halves with processing in between, as a debounce would
        half = len(events) // 2
        notify_all(client, minio_bodies_for_keys(bucket.name, events[:half]))
        drain(app)
        notify_all(client, minio_bodies_for_keys(bucket.name, events[half:]))
        drain(app)
        snapshots.append(index_snapshot(client, headers, uri, search))
    assert snapshots[0] == snapshots[1]
    assert snapshots[0][0] == [uri]


def test_deleting_all_objects_removes_the_dataset_from_listing_search_and_retrieve(
        app, client, bucket, admin_headers, drain, notify_all, search):
    uri = bucket.put_dataset("doomed", items=5, readme="topic: doomed\n", tags=["t"])
    keys = list_keys(bucket.s3, bucket.name)
    notify_all(client, minio_bodies_for_keys(bucket.name, keys))
    drain(app)
    assert search(client, admin_headers, free_text="doomed") == [uri]

    removed = remove_all_objects(bucket.s3, bucket.name)
    notify_all(client, minio_bodies_for_keys(bucket.name, random.sample(removed, len(removed)),
                                             "s3:ObjectRemoved:Delete"))
    drain(app)

    assert client.get("/uris", headers=admin_headers).get_json() == []
    assert search(client, admin_headers, free_text="doomed") == []
    suffix = uri.replace("://", "/", 1)
    assert client.get(f"/readmes/{suffix}", headers=admin_headers).status_code != 200
    with app.app_context():
        assert app.retrieve.collection.find_one({"uri": uri}) is None
        assert app.search.collection.find_one({"uri": uri}) is None


def test_tag_removal_updates_the_entry(app, client, bucket, admin_headers, drain, notify_all,
                                       search):
    uri = bucket.put_dataset("tagged", items=2, tags=["keep", "drop"])
    notify_all(client, minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name)))
    drain(app)
    assert search(client, admin_headers, tags=["drop"]) == [uri]
    tag_key = [k for k in list_keys(bucket.s3, bucket.name) if k.endswith("/tags/drop")][0]
    bucket.s3.delete_object(Bucket=bucket.name, Key=tag_key)
    notify_all(client, minio_bodies_for_keys(bucket.name, [tag_key], "s3:ObjectRemoved:Delete"))
    drain(app)
    assert search(client, admin_headers, tags=["drop"]) == []
    assert search(client, admin_headers, tags=["keep"]) == [uri]


def test_a_proto_dataset_is_left_for_the_event_that_freezes_it(app, client, bucket, admin_headers,
                                                               drain, notify_all, search):
    import dtoolcore
    proto = dtoolcore.create_proto_dataset("unfinished", bucket.base_uri)
    notify_all(client, minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name)))
    drain(app)
    assert search(client, admin_headers) == []
    proto.freeze()
    notify_all(client, minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name)))
    drain(app)
    assert search(client, admin_headers) == [proto.uri]


def test_registrations_by_dservercore_do_not_enqueue(app, bucket):
    import dtoolcore
    from dservercore.utils import generate_dataset_info
    uri = bucket.put_dataset("direct", items=1)
    with app.app_context():
        register_dataset(generate_dataset_info(dtoolcore.DataSet.from_uri(uri), bucket.base_uri))
    assert extension(app).inbox.entries() == []


def test_mongo_down_during_processing_is_retried_and_recorded(make_app, bucket, tmp_path,
                                                              auth_headers, drain, notify_all,
                                                              search):
    mongo = MongoServer()
    mongo.external_uri = None  # this test stops and starts its own server
    mongo.start()
    try:
        app = make_app([bucket], mongo_uri=mongo.uri + "?serverSelectionTimeoutMS=1500",
                       notify={"DSERVER_NOTIFY_RETRY_BASE_SECONDS": "0.2",
                               "DSERVER_NOTIFY_RETRY_MAX_SECONDS": "0.5"})
        client = app.test_client()
        uri = bucket.put_dataset("patient", items=2)
        notify_all(client, minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name)))
        mongo.kill()
        drain(app)
        [row] = extension(app).inbox.entries()
        assert row.state is State.FAILED and row.attempts == 1
        assert row.last_error.startswith(("AutoReconnect", "ServerSelectionTimeout"))
        mongo.restart()
        # a drain leaves a failed entry alone until its backoff (at most 0.5 s) ends
        wait_until(lambda: drain(app), "the failed entry synced once its backoff ended",
                   timeout=30, interval=0.1)
        [row] = extension(app).inbox.entries()
        assert (row.state, row.attempts, row.last_outcome) == (State.DONE, 2, "registered")
        assert search(client, auth_headers(app)) == [uri]
    finally:
        mongo.stop()


@pytest.mark.parametrize("preload", [False, True], ids=["plain", "preload"])
def test_sigkill_after_the_202s_still_ends_indexed(tmp_path, mongo, bucket, preload):
    env = dserver_env(tmp_path, mongo.uri, {bucket.name: bucket.base_uri}, {
        "DSERVER_NOTIFY_DEBOUNCE_SECONDS": "3", "DSERVER_NOTIFY_CLAIM_TIMEOUT_SECONDS": "5",
        # the inbox alone must bring the dataset back, not a reconcile pass
        "DSERVER_NOTIFY_RECONCILE_INTERVAL_SECONDS": "0", **bucket.env})
    prepare_index_for_server(env, [bucket.base_uri])
    uri = bucket.put_dataset("survivor", items=3)
    server = LiveDserver(env, tmp_path, workers=2, preload=preload).start()
    for body in minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name)):
        assert requests.post(server.url + "/webhook/notify", json=body, timeout=10) \
            .status_code == 202
    server.kill()  # before the debounce has passed: nothing processed yet
    server = LiveDserver(env, tmp_path, workers=2, preload=preload).start()
    try:
        token = token_for("admin", env["JWT_PRIVATE_KEY_FILE"])
        deadline, found = time.time() + 30, []
        while time.time() < deadline and not found:
            found = requests.post(server.url + "/uris", json={}, timeout=10,
                                  headers={"Authorization": f"Bearer {token}"}).json()
            time.sleep(0.3)
        assert [d["uri"] for d in found] == [uri], server.log_tail()
    finally:
        server.stop()
