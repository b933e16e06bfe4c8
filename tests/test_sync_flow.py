"""A dataset lands in S3, its notifications arrive, the index follows."""
import pytest

from devstack.payloads import minio_bodies_for_keys
from devstack.s3 import list_keys

pytestmark = pytest.mark.integration


def test_copied_dataset_becomes_searchable(app, client, bucket, admin_headers, drain,
                                           notify_all, search):
    uri = bucket.put_dataset("first", items=4, readme="project: unicorn\n", tags=["blue"])
    notify_all(client, minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name)))
    assert search(client, admin_headers) == []  # nothing before the worker ran

    drain(app)

    assert search(client, admin_headers) == [uri]
    assert search(client, admin_headers, tags=["blue"]) == [uri]
    assert search(client, admin_headers, free_text="unicorn") == [uri]


def test_a_worker_whose_claim_was_taken_over_reports_nothing(app, client, bucket, caplog,
                                                             notify_all):
    """A sync that outlived its claim: another process owns the entry now."""
    import time

    from dserver_notification_plugin.states import State
    ext = app.extensions["dserver_notification"]
    bucket.put_dataset("slow", items=1)
    notify_all(client, minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name)))
    [lost] = ext.inbox.claim(claim_timeout=60, ignore_due=True, owner="slow:1")
    later = time.time() + 120  # the claim expired; another process takes the entry
    [taken] = ext.inbox.claim(claim_timeout=60, ignore_due=True, owner="other:2", at=later)

    with app.app_context():
        assert ext.worker.process(lost) is None
    assert "was taken by another process" in caplog.text
    assert ext.tally.since_start().get("registered", 0) == 0
    [entry] = ext.inbox.entries()
    assert (entry.state, entry.claimed_by) == (State.PROCESSING, "other:2")
    with app.app_context():  # the owner records its own result, and only it
        assert ext.worker.process(taken).value == "registered"
    assert ext.inbox.entries()[0].state is State.DONE
    assert ext.tally.since_start()["registered"] == 1


def test_a_sync_reads_the_dataset_dtoolcore_would_give_with_one_broker(bucket, moto):
    """sync.read_dataset makes one dtool-s3 broker and a DataSet on it
    (dtool_private.dataset_on): the same attributes and the same answers as
    dtoolcore's own DataSet.from_uri, for one GET of the dtool-<uuid>
    object (a broker of its own would read it again)."""
    import dtoolcore
    from dservercore.utils import generate_dataset_info

    from dserver_notification_plugin.dtool_private import observed_reads
    from dserver_notification_plugin.states import DatasetKind
    from dserver_notification_plugin.sync import read_dataset
    uri = bucket.put_dataset("alike", items=3, readme="project: twin\n", tags=["a", "b"])
    expected = dtoolcore.DataSet.from_uri(uri)
    expected_info = generate_dataset_info(expected, bucket.base_uri)

    moto.reset_request_count()
    with observed_reads():  # the worker's per-thread clients, as in a sync
        kind, dataset = read_dataset(uri)
        info = generate_dataset_info(dataset, bucket.base_uri)
    registration_reads = [path for method, path in moto.requests()
                          if method == "GET" and path.split("?")[0].endswith(
                              f"/{bucket.name}/dtool-{expected.uuid}")]

    assert kind is DatasetKind.FROZEN
    assert isinstance(dataset, dtoolcore.DataSet)
    assert sorted(vars(dataset)) == sorted(vars(expected))
    assert info == expected_info
    assert len(registration_reads) == 1


def test_a_dtool_object_without_admin_metadata_is_retried_and_never_empties_the_index(
        make_app, bucket, admin_headers, auth_headers, drain, notify_all, search):
    """moto notifies of a PUT after storing the body and before the user
    metadata that holds dtool-s3's admin metadata; an ``aws s3 sync`` of a
    dataset folder writes none at all. Such a ``dtool`` object says neither
    "proto-dataset" nor "gone": the entry is retried with the reason, the
    index keeps the dataset, and once the metadata is there it is synced."""
    import time

    from dserver_notification_plugin.states import State
    app = make_app([bucket], notify={"DSERVER_NOTIFY_RETRY_BASE_SECONDS": "0.25"})
    client, headers = app.test_client(), auth_headers(app)
    uri = bucket.put_dataset("metadata", items=2, readme="project: walrus\n")
    uuid = uri.rsplit("/", 1)[1]
    notify_all(client, minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name)))
    drain(app)
    assert search(client, headers, free_text="walrus") == [uri]

    admin_key = f"{uuid}/dtool"
    written = bucket.s3.get_object(Bucket=bucket.name, Key=admin_key)
    body = written["Body"].read()
    bucket.s3.put_object(Bucket=bucket.name, Key=admin_key, Body=body)  # no metadata
    notify_all(client, minio_bodies_for_keys(bucket.name, [admin_key]))
    drain(app)

    [entry] = app.extensions["dserver_notification"].inbox.entries()
    assert entry.state is State.FAILED
    assert "has no admin metadata" in entry.last_error
    assert search(client, headers, free_text="walrus") == [uri]

    bucket.s3.put_object(Bucket=bucket.name, Key=admin_key, Body=body,
                         Metadata=written["Metadata"])
    time.sleep(max(0.0, entry.due_at - time.time()) + 0.05)  # the retry's backoff
    drain(app)
    [entry] = app.extensions["dserver_notification"].inbox.entries()
    assert entry.state is State.DONE
    assert search(client, headers, free_text="walrus") == [uri]


def test_the_syncs_s3_resources_build_each_boto3_class_once(bucket):
    """boto3 builds a new class for every ``s3resource.Object(...)``; the
    clients a sync thread keeps build each once (dtool_private), and a
    dtool-s3 broker outside a sync is as published."""
    from dtool_s3.storagebroker import S3StorageBroker

    from dserver_notification_plugin.dtool_private import observed_reads
    uri = bucket.put_dataset("classes", items=1)
    uuid = uri.rsplit("/", 1)[1]
    with observed_reads():
        resource = S3StorageBroker._get_resource_and_client(bucket.name)[0]
        first, second = resource.Object(bucket.name, f"{uuid}/dtool"), \
            resource.Object(bucket.name, f"dtool-{uuid}")
        assert type(first) is type(second)
        assert second.get()["Body"].read().decode().strip() == ""  # the registration key
        assert "uuid" in first.get()["Metadata"]
    published = S3StorageBroker._get_resource_and_client(bucket.name)[0]
    assert type(published.Object(bucket.name, "a")) is not type(published.Object(bucket.name, "b"))
