"""Events the last sync already saw cost no S3 request; everything else is synced.

Real moto S3 and Mongo; the notifications carry the ETags a sender gives.
"""
import json
import threading

import dtoolcore
import pytest

from devstack.datasets import copy_write_order_with_etags
from devstack.payloads import minio_bodies_for_keys
from devstack.s3 import list_etags, list_keys
from dserver_notification_plugin import dtool_private
from dserver_notification_plugin.sync import sync_dataset

pytestmark = pytest.mark.integration


def tally(app):
    return app.extensions["dserver_notification"].tally.since_start()


def s3_requests_of(moto, action):
    before = moto.request_count()
    action()
    return moto.request_count() - before


def uuid_of(uri):
    return uri.rsplit("/", 1)[1]


def test_a_copy_whose_last_events_race_its_sync_reads_s3_once(
        app, client, bucket, moto, admin_headers, drain, notify_all, search):
    uri = bucket.put_dataset("raced", items=20, tags=["blue"], annotations={"colour": "red"})
    keys, etags = copy_write_order_with_etags(bucket.s3, bucket.name, uuid_of(uri))
    proto_dtool = keys.index(keys[-1]) + 1
    first = minio_bodies_for_keys(bucket.name, keys[:proto_dtool], etags=etags[:proto_dtool])
    rest = minio_bodies_for_keys(bucket.name, keys[proto_dtool:], etags=etags[proto_dtool:])

    notify_all(client, first)   # the proto-dataset's dtool event starts a sync ...
    first_sync = s3_requests_of(moto, lambda: drain(app))
    notify_all(client, rest)    # ... and the rest of the copy arrives while it reads
    second = s3_requests_of(moto, lambda: drain(app))

    assert search(client, admin_headers, tags=["blue"]) == [uri]
    # 8: one GET of dtool-<uuid>, the broker shared by the admin metadata and the DataSet
    assert (first_sync, second) == (8, 0)
    counts = tally(app)
    assert (counts["registered"], counts["covered"], counts["index_registrations"]) == (1, 1, 1)
    assert counts["s3_requests"] == first_sync  # the worker counts what moto served


def test_the_same_events_without_their_etags_are_synced_again(
        app, client, bucket, moto, admin_headers, drain, notify_all, search):
    uri = bucket.put_dataset("no-etags", items=3)
    keys, _ = copy_write_order_with_etags(bucket.s3, bucket.name, uuid_of(uri))
    notify_all(client, minio_bodies_for_keys(bucket.name, keys[:4]))  # the template's ETag
    first_sync = s3_requests_of(moto, lambda: drain(app))
    notify_all(client, minio_bodies_for_keys(bucket.name, keys[4:]))
    assert s3_requests_of(moto, lambda: drain(app)) == first_sync
    assert tally(app)["unchanged"] == 1 and tally(app).get("covered", 0) == 0
    assert search(client, admin_headers) == [uri]


def test_a_new_readme_is_indexed_and_a_repeated_event_is_not_read_again(
        app, client, bucket, moto, admin_headers, drain, notify_all, search):
    uri = bucket.put_dataset("edited", items=2, readme="topic: before\n")
    keys, etags = copy_write_order_with_etags(bucket.s3, bucket.name, uuid_of(uri))
    notify_all(client, minio_bodies_for_keys(bucket.name, keys, etags=etags))
    full = s3_requests_of(moto, lambda: drain(app))
    readme_key = next(k for k in keys if k.endswith("/README.yml"))
    answer = bucket.s3.put_object(Bucket=bucket.name, Key=readme_key, Body=b"topic: after\n")
    edited = minio_bodies_for_keys(bucket.name, [readme_key], etags=[answer["ETag"].strip('"')])

    notify_all(client, edited)
    assert s3_requests_of(moto, lambda: drain(app)) == full
    assert search(client, admin_headers, free_text="after") == [uri]
    notify_all(client, edited)  # delivered twice, as senders do
    assert s3_requests_of(moto, lambda: drain(app)) == 0
    old = minio_bodies_for_keys(bucket.name, [readme_key],
                                etags=[etags[keys.index(readme_key)]])
    notify_all(client, old)     # the earlier content: not what S3 holds now
    assert s3_requests_of(moto, lambda: drain(app)) == full
    assert search(client, admin_headers, free_text="after") == [uri]


def test_a_live_copy_costs_looks_at_the_proto_dataset_and_one_full_read(
        app, client, bucket, moto, admin_headers, drain, notify_all, search):
    def notify_new(sent):
        etags = list_etags(bucket.s3, bucket.name)
        fresh = [k for k in sorted(etags) if (k, etags[k]) not in sent]
        bodies = minio_bodies_for_keys(bucket.name, fresh, etags=[etags[k] for k in fresh])
        notify_all(client, bodies)
        sent.update((k, etags[k]) for k in fresh)
        return bodies

    sent = set()
    proto = dtoolcore.create_proto_dataset("live", bucket.base_uri,
                                           readme_content="topic: live\n")
    proto.put_tag("fresh")
    first = notify_new(sent)
    look = s3_requests_of(moto, lambda: drain(app))
    assert search(client, admin_headers) == []
    read = [body for body in first  # what the look read: dtool and the registration
            if body["Key"].endswith(("/dtool", f"dtool-{uuid_of(proto.uri)}"))]
    notify_all(client, read)    # delivered again
    assert len(read) == 2 and s3_requests_of(moto, lambda: drain(app)) == 0
    proto.put_annotation("colour", "green")
    notify_new(sent)            # not read by the look: looked at again
    assert s3_requests_of(moto, lambda: drain(app)) == look
    proto.freeze()
    notify_new(sent)            # manifest and the frozen dtool object
    full = s3_requests_of(moto, lambda: drain(app))

    assert search(client, admin_headers, free_text="live") == [proto.uri]
    assert (look, full) == (2, 8)
    assert tally(app)["index_registrations"] == 1


def test_removing_a_dataset_reads_s3_once_however_many_removals_follow(
        app, client, bucket, moto, admin_headers, drain, notify_all, listed):
    uri = bucket.put_dataset("doomed", items=10)
    keys, etags = copy_write_order_with_etags(bucket.s3, bucket.name, uuid_of(uri))
    notify_all(client, minio_bodies_for_keys(bucket.name, keys, etags=etags))
    drain(app)
    dtool_key = keys[-1]
    bucket.s3.delete_object(Bucket=bucket.name, Key=dtool_key)
    notify_all(client, minio_bodies_for_keys(bucket.name, [dtool_key],
                                             "s3:ObjectRemoved:Delete"))
    gone = s3_requests_of(moto, lambda: drain(app))
    rest = [k for k in list_keys(bucket.s3, bucket.name)]
    for key in rest:
        bucket.s3.delete_object(Bucket=bucket.name, Key=key)
    notify_all(client, minio_bodies_for_keys(bucket.name, rest, "s3:ObjectRemoved:Delete"))
    assert s3_requests_of(moto, lambda: drain(app)) == 0
    assert gone <= 3 and listed(client, admin_headers) == []


def test_a_sync_that_fails_counts_its_s3_requests_too(
        make_app, make_bucket, bucket, moto, drain, notify_all, status_json):
    # A bucket mapped to a base URI dserver does not know: the sync reads the
    # dataset, then gives up.
    stray = make_bucket()
    mapping = {bucket.name: bucket.base_uri, stray.name: stray.base_uri}
    app = make_app([bucket], notify={"DSERVER_NOTIFY_BUCKET_TO_BASE_URI": json.dumps(mapping)})
    uri = stray.put_dataset("unregistered", items=3)
    keys, etags = copy_write_order_with_etags(stray.s3, stray.name, uuid_of(uri))
    notify_all(app.test_client(), minio_bodies_for_keys(stray.name, keys, etags=etags))
    spent = s3_requests_of(moto, lambda: drain(app))
    assert status_json(app)["inbox"]["dead"] == 1
    counts = tally(app)
    assert counts["dead"] == 1
    assert counts["s3_requests"] == spent > 0


def test_sync_reuses_its_threads_clients_and_leaves_other_threads_alone(
        app, bucket, monkeypatch):
    uri = bucket.put_dataset("clients", items=1)
    built = []
    dtool_private.install()
    original = dtool_private._original

    def counting(cls, bucket_name):
        built.append(threading.current_thread().name)
        return original(cls, bucket_name)

    monkeypatch.setattr(dtool_private, "_original", counting)
    with app.app_context():
        for _ in "ab":
            with dtool_private.observed_reads():  # as the worker records each sync
                sync_dataset(bucket.base_uri, uri)
    # per sync two brokers, one set of clients for the thread: built at most once
    assert built.count(threading.current_thread().name) <= 1
    other = threading.Thread(target=lambda: [dtoolcore.DataSet.from_uri(uri) for _ in "ab"],
                             name="not-a-sync")
    other.start()
    other.join()
    # dtool-s3 as published: a new set for every broker (dtoolcore makes several)
    assert built.count("not-a-sync") >= 2
