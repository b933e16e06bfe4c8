"""Races between a sync and the bucket end with the index equal to S3.

Each test makes one race of issue 22 happen every time: dserver reads the
bucket through ``devstack.proxy.S3Proxy``, which holds one chosen request
while the test changes the bucket behind it (with a client of moto itself),
then lets it go. Then the notifications arrive as a sender would deliver
them (or are lost, and a reconcile pass looks), and the index must equal
what S3 holds: SQL row, search, name, README, tags, annotations, manifest.
Real moto, Mongo-wire server, SQLite and PostgreSQL.
"""
import json
import threading
import time
import uuid as uuidlib

import dtoolcore
import pytest
from dservercore.utils import dataset_uri_exists, generate_dataset_info

from devstack.datasets import Bucket, copy_write_order_with_etags, dtool_s3_env
from devstack.dserver import app_config
from devstack.payloads import minio_bodies_for_keys
from devstack.proxy import S3Proxy
from devstack.s3 import list_etags
from dserver_notification_plugin.reconciler import Reconciler, one_pass

# races of sync against the bucket, on both databases (the fence is SQL)
pytestmark = [pytest.mark.integration, pytest.mark.both_databases]

EXTENSION = "dserver_notification"


@pytest.fixture(scope="module")
def proxy(moto):
    proxy = S3Proxy(moto.endpoint).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def raced(moto, proxy):
    """A fresh bucket whose dtool-s3 reads (dserver's and the test's) go
    through the proxy; ``raced.s3`` talks to moto directly."""
    bucket = Bucket(moto, f"raced-{uuidlib.uuid4().hex[:10]}")
    bucket.env = dtool_s3_env(bucket.name, proxy.endpoint, moto.access_key, moto.secret_key)
    yield bucket
    proxy.release_all()


@pytest.fixture
def host(make_app, raced):
    return make_app([raced])


@pytest.fixture
def headers(host, auth_headers):
    return auth_headers(host)


def uuid_of(uri):
    return uri.rsplit("/", 1)[1]


def ext(app):
    return app.extensions[EXTENSION]


def notify_keys(app, bucket, keys, event="s3:ObjectCreated:Put", version_ids=None):
    """The events a sender delivers for ``keys``, with S3's ETags of now."""
    etags = list_etags(bucket.s3, bucket.name)
    bodies = minio_bodies_for_keys(bucket.name, keys, event,
                                   etags=[etags.get(k) for k in keys])
    for body, version_id in zip(bodies, version_ids or [None] * len(bodies)):
        if version_id is not None:
            body["Records"][0]["s3"]["object"]["versionId"] = version_id
    client = app.test_client()
    for body in bodies:
        assert client.post("/webhook/notify", json=body).status_code == 202


def notify_copy(app, bucket, uri):
    keys, etags = copy_write_order_with_etags(bucket.s3, bucket.name, uuid_of(uri))
    client = app.test_client()
    for body in minio_bodies_for_keys(bucket.name, keys, etags=etags):
        assert client.post("/webhook/notify", json=body).status_code == 202


def drain(app):
    return ext(app).worker.drain(include_waiting=True)


def key_of(bucket, uri, suffix):
    return f"{uuid_of(uri)}/{suffix}"


def while_held(hold, action, change):
    """Run ``action`` in a thread until ``hold`` stops its request, make
    ``change`` to the bucket, release, and return what ``action`` returned."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=action()))
    thread.start()
    try:
        hold.wait()
        change()
    finally:
        hold.release()
        thread.join(60)
    assert not thread.is_alive()
    return result.get("value")


def frozen_info(bucket, uri):
    """What the index must hold for ``uri`` (read from S3 now), or None."""
    try:
        dataset = dtoolcore.DataSet.from_uri(uri)
    except Exception:
        return None
    return generate_dataset_info(dataset, bucket.base_uri)


def assert_index_equals_s3(app, bucket, uri, headers):
    client = app.test_client()
    expected = frozen_info(bucket, uri)
    found = client.post("/uris", json={}, headers=headers).get_json()
    with app.app_context():
        in_sql = dataset_uri_exists(uri)
        in_mongo = app.search.collection.find_one({"uri": uri}, {"_id": 1}) is not None
    if expected is None:
        assert (in_sql, in_mongo, [d["uri"] for d in found]) == (False, False, [])
        return
    assert in_sql and [d["uri"] for d in found] == [uri]
    assert found[0]["name"] == expected["name"]
    suffix = uri.replace("://", "/", 1)
    answer = {part: client.get(f"/{part}/{suffix}", headers=headers).get_json()
              for part in ("readmes", "tags", "annotations", "manifests")}
    assert answer["readmes"]["readme"] == expected["readme"]
    assert sorted(answer["tags"]["tags"]) == sorted(expected["tags"])
    assert answer["annotations"]["annotations"] == expected["annotations"]
    assert answer["manifests"] == json.loads(json.dumps(expected["manifest"]))


# --- reads that do not match what the sync used ---------------------------------------

def test_an_annotation_rewritten_while_the_sync_reads_is_indexed(
        host, raced, proxy, headers):
    uri = raced.put_dataset("annotated", annotations={"a": "before", "b": "other"})
    notify_copy(host, raced, uri)
    hold = proxy.hold("GET", rf"{uuid_of(uri)}/annotations/a\.json$", after=True)
    a_key = key_of(raced, uri, "annotations/a.json")
    while_held(hold, lambda: drain(host), lambda: raced.s3.put_object(
        Bucket=raced.name, Key=a_key, Body=json.dumps("after").encode()))
    notify_keys(host, raced, [a_key])  # the rewrite's event, with its new ETag
    drain(host)
    assert_index_equals_s3(host, raced, uri, headers)


def test_an_annotation_added_while_the_sync_reads_is_indexed(
        host, raced, proxy, headers):
    uri = raced.put_dataset("annotated", annotations={"a": "first", "b": "second"})
    notify_copy(host, raced, uri)
    hold = proxy.hold("GET", rf"{uuid_of(uri)}/annotations/a\.json$", after=True)
    c_key = key_of(raced, uri, "annotations/c.json")
    while_held(hold, lambda: drain(host), lambda: raced.s3.put_object(
        Bucket=raced.name, Key=c_key, Body=json.dumps("third").encode()))
    notify_keys(host, raced, [c_key])
    drain(host)
    assert_index_equals_s3(host, raced, uri, headers)


def test_a_copy_that_replaces_only_the_admin_metadata_renames_the_dataset(
        host, raced, headers):
    uri = raced.put_dataset("old-name", items=2)
    notify_copy(host, raced, uri)
    drain(host)
    dtool_key = key_of(raced, uri, "dtool")
    metadata = raced.s3.head_object(Bucket=raced.name, Key=dtool_key)["Metadata"]
    raced.s3.copy_object(Bucket=raced.name, Key=dtool_key, MetadataDirective="REPLACE",
                         CopySource={"Bucket": raced.name, "Key": dtool_key},
                         Metadata=dict(metadata, name="new-name"))
    notify_keys(host, raced, [dtool_key], "s3:ObjectCreated:Copy")  # the same ETag
    drain(host)
    assert frozen_info(raced, uri)["name"] == "new-name"
    assert_index_equals_s3(host, raced, uri, headers)


# --- versioned buckets: removals that restore ------------------------------------------

def versioned(bucket):
    bucket.s3.put_bucket_versioning(Bucket=bucket.name,
                                    VersioningConfiguration={"Status": "Enabled"})
    return bucket


def hide(bucket, keys):
    """DELETE without a version: a delete marker each; returns their version ids."""
    return [bucket.s3.delete_object(Bucket=bucket.name, Key=key)["VersionId"] for key in keys]


def unhide(bucket, keys, markers):
    for key, marker in zip(keys, markers):
        bucket.s3.delete_object(Bucket=bucket.name, Key=key, VersionId=marker)


def test_removing_delete_markers_brings_a_removed_dataset_back(host, raced, headers):
    versioned(raced)
    uri = raced.put_dataset("restored", items=2, tags=["kept"])
    notify_copy(host, raced, uri)
    drain(host)
    keys = sorted(list_etags(raced.s3, raced.name))
    markers = hide(raced, keys)
    notify_keys(host, raced, keys, "s3:ObjectRemoved:DeleteMarkerCreated", markers)
    drain(host)
    assert_index_equals_s3(host, raced, uri, headers)  # gone

    unhide(raced, keys, markers)  # each an ObjectRemoved:Delete of a version
    notify_keys(host, raced, keys, "s3:ObjectRemoved:Delete", markers)
    drain(host)
    assert frozen_info(raced, uri) is not None
    assert_index_equals_s3(host, raced, uri, headers)


def test_removing_an_annotations_delete_marker_brings_it_back(host, raced, headers):
    versioned(raced)
    uri = raced.put_dataset("restored", annotations={"a": "one", "b": "two"})
    notify_copy(host, raced, uri)
    drain(host)
    a_key = key_of(raced, uri, "annotations/a.json")
    markers = hide(raced, [a_key])
    notify_keys(host, raced, [a_key], "s3:ObjectRemoved:DeleteMarkerCreated", markers)
    drain(host)
    unhide(raced, [a_key], markers)
    notify_keys(host, raced, [a_key], "s3:ObjectRemoved:Delete", markers)
    drain(host)
    assert frozen_info(raced, uri)["annotations"] == {"a": "one", "b": "two"}
    assert_index_equals_s3(host, raced, uri, headers)


# --- a proto-dataset where a frozen one was -----------------------------------------

def interrupted_copy_over(bucket, uri):
    """Remove every object of ``uri``, then write what an interrupted copy of
    the same UUID leaves: registration key, structure, README.txt and a
    ``dtool`` object saying ``protodataset``. Returns every key touched."""
    dtool_key = f"{uuid_of(uri)}/dtool"
    admin = json.loads(bucket.s3.get_object(Bucket=bucket.name, Key=dtool_key)["Body"].read())
    metadata = bucket.s3.head_object(Bucket=bucket.name, Key=dtool_key)["Metadata"]
    removed = sorted(list_etags(bucket.s3, bucket.name, ""))
    for key in removed:
        bucket.s3.delete_object(Bucket=bucket.name, Key=key)
    admin["type"] = "protodataset"
    bucket.s3.put_object(Bucket=bucket.name, Key=f"dtool-{uuid_of(uri)}", Body=b"")
    bucket.s3.put_object(Bucket=bucket.name, Key=f"{uuid_of(uri)}/README.txt", Body=b"x")
    bucket.s3.put_object(Bucket=bucket.name, Key=dtool_key, Body=json.dumps(admin).encode(),
                         Metadata=dict(metadata, type="protodataset"))
    return removed


def test_a_proto_dataset_where_an_indexed_dataset_was_leaves_the_index(
        host, raced, headers):
    uri = raced.put_dataset("replaced", items=2, readme="topic: old\n")
    notify_copy(host, raced, uri)
    drain(host)
    removed = interrupted_copy_over(raced, uri)
    notify_keys(host, raced, removed, "s3:ObjectRemoved:Delete")
    notify_keys(host, raced, [f"dtool-{uuid_of(uri)}", f"{uuid_of(uri)}/dtool"])
    drain(host)
    assert_index_equals_s3(host, raced, uri, headers)


def test_a_reconcile_pass_finds_a_proto_dataset_where_an_indexed_dataset_was(
        host, raced, headers):
    uri = raced.put_dataset("replaced", items=2, readme="topic: old\n")
    notify_copy(host, raced, uri)
    drain(host)
    interrupted_copy_over(raced, uri)  # every notification lost
    one_pass(ext(host), raced.base_uri)
    drain(host)
    assert_index_equals_s3(host, raced, uri, headers)


# --- two hosts: a sync that lost its claim writes nothing ------------------------------

@pytest.fixture
def second_host(host):
    """Another dserver host on the same SQL database and Mongo collections."""
    import dservercore
    from dservercore import sql_db
    other = dservercore.create_app(app_config(host.env_for_tests))
    other.testing = True
    yield other
    with other.app_context():
        for engine in sql_db.engines.values():
            engine.dispose()


def test_a_sync_whose_claim_was_taken_over_does_not_write_last(
        host, second_host, raced, proxy, headers):
    uri = raced.put_dataset("contested", items=2, readme="topic: old\n")
    notify_copy(host, raced, uri)
    readme_key = key_of(raced, uri, "README.yml")
    [stalled] = ext(host).inbox.claim(claim_timeout=60, ignore_due=True, owner="host-a:1")
    hold = proxy.hold("GET", rf"{uuid_of(uri)}/README\.yml$", after=True)

    def stalled_sync():  # host A read the old README, then stalls
        with host.app_context():
            return ext(host).worker.process(stalled)

    def meanwhile():  # the README changes; A's claim expires; host B syncs
        raced.s3.put_object(Bucket=raced.name, Key=readme_key, Body=b"topic: new\n")
        notify_keys(second_host, raced, [readme_key])
        [taken] = ext(second_host).inbox.claim(claim_timeout=60, ignore_due=True,
                                               owner="host-b:2", at=time.time() + 120)
        with second_host.app_context():
            assert ext(second_host).worker.process(taken).value == "registered"

    assert while_held(hold, stalled_sync, meanwhile) is None  # A records nothing
    drain(host)
    assert frozen_info(raced, uri)["readme"] == "topic: new\n"
    assert_index_equals_s3(host, raced, uri, headers)
    assert_index_equals_s3(second_host, raced, uri, headers)


# --- the reconciler's recorded signature -------------------------------------------

def test_a_notified_edit_then_an_unnotified_revert_is_found_by_the_next_pass(
        host, raced, headers):
    versioned(raced)
    uri = raced.put_dataset("reverted", items=2, readme="topic: first\n")
    notify_copy(host, raced, uri)
    drain(host)
    one_pass(ext(host), raced.base_uri)  # verified: the ledger records its listing
    drain(host)
    readme_key = key_of(raced, uri, "README.yml")
    edit = raced.s3.put_object(Bucket=raced.name, Key=readme_key, Body=b"topic: second\n")
    notify_keys(host, raced, [readme_key])
    drain(host)
    # The edit is undone by removing its version, and that event is lost: S3
    # lists exactly what the last pass listed.
    raced.s3.delete_object(Bucket=raced.name, Key=readme_key, VersionId=edit["VersionId"])
    one_pass(ext(host), raced.base_uri)
    drain(host)
    assert frozen_info(raced, uri)["readme"] == "topic: first\n"
    assert_index_equals_s3(host, raced, uri, headers)


# --- the pass interval ------------------------------------------------------------

def test_passes_start_at_the_configured_interval_below_twenty_seconds(make_app, raced):
    app = make_app([raced], notify={"DSERVER_NOTIFY_RECONCILE_INTERVAL_SECONDS": "5",
                                    "DSERVER_NOTIFY_RECONCILE_LEASE_SECONDS": "60"})
    reconciler = Reconciler(ext(app))
    start = time.time()
    pause = reconciler.run_once(at=start)  # a pass over an empty bucket, done at once
    passes = ext(app).ledger.pass_state("reconciler")
    assert passes.finished_at is not None
    assert passes.started_at + pause <= start + 5
    reconciler.run_once(at=start + 5)
    assert ext(app).ledger.pass_state("reconciler").started_at == start + 5
