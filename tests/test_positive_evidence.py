"""A dataset leaves the index only on positive evidence that it is gone.

A wrong endpoint is a second moto server that does not hold the bucket:
every read answers NoSuchBucket there, as after a typo in
``DTOOL_S3_ENDPOINT_<bucket>``, a DNS change or a failover to a replica.
"""
import time

import pytest

from devstack.moto import MotoServer
from devstack.payloads import minio_bodies_for_keys
from devstack.s3 import list_keys, remove_all_objects
from dserver_notification_plugin.config import ConfigError, load_settings
from dserver_notification_plugin.reconcile import removal_limit
from dserver_notification_plugin.reconciler import Reconciler
from dserver_notification_plugin.states import State

FAST = {"DSERVER_NOTIFY_RECONCILE_MAX_RPS": "1000",
        "DSERVER_NOTIFY_RETRY_BASE_SECONDS": "0.05",
        "DSERVER_NOTIFY_RETRY_MAX_SECONDS": "0.1"}


def ext(app):
    return app.extensions["dserver_notification"]


@pytest.fixture(scope="module")
def other_moto():
    """An S3 server that does not hold the test's bucket."""
    server = MotoServer().start()
    yield server
    server.stop()


def removal_bodies(bucket, uri, keys):
    uuid = uri.rsplit("/", 1)[1]
    return minio_bodies_for_keys(bucket.name, [k for k in keys if uuid in k],
                                 event_name="s3:ObjectRemoved:Delete")


def remove_dataset(bucket, uri):
    """All of a dataset's objects, as `aws s3 rm --recursive` would; its keys."""
    uuid = uri.rsplit("/", 1)[1]
    keys = [k for k in list_keys(bucket.s3, bucket.name) if uuid in k]
    prefix = bucket.s3.get_object(Bucket=bucket.name, Key=f"dtool-{uuid}")["Body"].read()
    remove_all_objects(bucket.s3, bucket.name, prefix.decode() + uuid + "/")
    bucket.s3.delete_object(Bucket=bucket.name, Key=f"dtool-{uuid}")
    return keys


def retry_due(app, drain):
    """Let the failed entries' (short) backoff pass, then drain."""
    time.sleep(0.3)
    return drain(app)


def concerns(status, kind):
    return {c["base_uri"]: c for c in status["attention"] if c["kind"] == kind}


def test_a_wrong_endpoint_deletes_nothing_and_says_so(
        make_app, bucket, other_moto, monkeypatch, notify_all, drain, listed,
        auth_headers, status_json, metric_samples, cli):
    app = make_app([bucket], notify=FAST)
    client, admin_headers = app.test_client(), auth_headers(app)
    uri = bucket.put_dataset("kept", items=2)
    keys = list_keys(bucket.s3, bucket.name)
    notify_all(client, minio_bodies_for_keys(bucket.name, keys))
    drain(app)
    assert listed(client, admin_headers) == [uri]

    # The endpoint now points at a server without the bucket; a removal
    # event (forged, mistaken or real) arrives.
    monkeypatch.setenv(f"DTOOL_S3_ENDPOINT_{bucket.name}", other_moto.s3_endpoint)
    notify_all(client, removal_bodies(bucket, uri, keys))
    drain(app)
    retry_due(app, drain)

    assert listed(client, admin_headers) == [uri]
    [entry] = ext(app).inbox.entries([uri])
    assert entry.state is State.FAILED and entry.attempts >= 2
    assert "NoSuchBucket" in entry.last_error and other_moto.s3_endpoint in entry.last_error
    status = status_json(app)
    unreadable = concerns(status, "unreadable")[bucket.base_uri]
    assert unreadable["reason"] == (f"the bucket does not exist at {other_moto.s3_endpoint} "
                                    "(NoSuchBucket)")
    metrics = metric_samples(client.get("/webhook/metrics").get_data(as_text=True))
    assert metrics[("dserver_notification_base_uri_unreadable",
                    (("base_uri", bucket.base_uri), ("reason", unreadable["reason"])))] == 1

    # Neither an on-demand pass nor the background reconciler removes anything.
    result = cli(app, "resync", bucket.base_uri)
    assert result.exit_code == 1 and "does not exist at" in result.output, result.output
    Reconciler(ext(app)).run_once()
    drain(app)
    assert listed(client, admin_headers) == [uri]
    assert bucket.base_uri in concerns(status_json(app), "unreadable")

    # The endpoint is put right: the retry finds the dataset, the concern ends.
    monkeypatch.setenv(f"DTOOL_S3_ENDPOINT_{bucket.name}", bucket.server.s3_endpoint)
    retry_due(app, drain)
    [entry] = ext(app).inbox.entries([uri])
    assert (entry.state, entry.last_outcome) == (State.DONE, "unchanged")
    assert listed(client, admin_headers) == [uri]
    assert concerns(status_json(app), "unreadable") == {}


def test_the_reconciler_skips_an_unreadable_bucket_and_reconciles_the_others(
        make_app, make_bucket, other_moto, monkeypatch, drain, listed, auth_headers,
        status_json):
    broken, healthy = make_bucket(), make_bucket()
    app = make_app([broken, healthy], notify=FAST)
    client, admin_headers = app.test_client(), auth_headers(app)
    kept = broken.put_dataset("kept", items=1)
    assert "registered" in str(_resync(app, broken))
    monkeypatch.setenv(f"DTOOL_S3_ENDPOINT_{broken.name}", other_moto.s3_endpoint)
    missed = healthy.put_dataset("missed", items=1)

    Reconciler(ext(app)).run_once()
    drain(app)

    assert listed(client, admin_headers) == sorted([kept, missed])
    status = status_json(app)
    assert "does not exist at" in concerns(status, "unreadable")[broken.base_uri]["reason"]
    assert status["reconcile"]["pass"]["finished_at"] is not None

    # Put right: the next pass over it lists the bucket, and the concern ends.
    monkeypatch.setenv(f"DTOOL_S3_ENDPOINT_{broken.name}", broken.server.s3_endpoint)
    _resync(app, broken)
    assert concerns(status_json(app), "unreadable") == {}


def _resync(app, bucket):
    result = app.test_cli_runner().invoke(args=["notification", "resync", bucket.base_uri])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_pass_that_would_remove_too_many_holds_them_until_confirmed(
        make_app, bucket, notify_all, drain, listed, auth_headers, status_json,
        metric_samples, cli):
    app = make_app([bucket], notify={**FAST, "DSERVER_NOTIFY_RECONCILE_MAX_REMOVALS": "2"})
    client, admin_headers = app.test_client(), auth_headers(app)
    uris = sorted(bucket.put_dataset(f"d{n}", items=1) for n in range(5))
    _resync(app, bucket)
    assert listed(client, admin_headers) == uris
    gone = uris[:3]
    removed_keys = {uri: remove_dataset(bucket, uri) for uri in gone}

    Reconciler(ext(app)).run_once()
    drain(app)

    assert listed(client, admin_headers) == uris  # nothing removed
    held = concerns(status_json(app), "removals_held")[bucket.base_uri]
    assert (held["count"], held["total"]) == (3, 5)
    assert f"confirm-removals {bucket.base_uri}" in held["reason"]
    metrics = metric_samples(client.get("/webhook/metrics").get_data(as_text=True))
    assert metrics[("dserver_notification_reconcile_removals_held",
                    (("base_uri", bucket.base_uri),))] == 3

    # A notified removal is not held back: it is checked against S3 alone.
    notify_all(client, removal_bodies(bucket, gone[0], removed_keys[gone[0]]))
    drain(app)
    assert listed(client, admin_headers) == uris[1:]

    result = cli(app, "confirm-removals", bucket.base_uri)
    assert result.exit_code == 0, result.output
    assert listed(client, admin_headers) == uris[3:]
    assert concerns(status_json(app), "removals_held") == {}


def test_removals_within_the_limit_go_ahead(make_app, bucket, drain, listed, auth_headers,
                                            status_json):
    app = make_app([bucket], notify={**FAST, "DSERVER_NOTIFY_RECONCILE_MAX_REMOVALS": "2"})
    uris = sorted(bucket.put_dataset(f"d{n}", items=1) for n in range(3))
    _resync(app, bucket)
    for uri in uris[:2]:
        remove_dataset(bucket, uri)
    Reconciler(ext(app)).run_once()
    drain(app)
    assert listed(app.test_client(), auth_headers(app)) == uris[2:]
    assert status_json(app)["attention"] == []


def test_the_removal_limit_setting():
    def limit(text, total):
        settings = load_settings({"DSERVER_NOTIFY_RECONCILE_MAX_REMOVALS": text})
        return removal_limit(settings.reconcile_max_removals, total)
    assert limit("10%", 50) == 10  # at least ten
    assert limit("10%", 1000) == 100
    assert limit("25%", 1000) == 250
    assert limit("3", 1000) == 3
    assert limit("0", 1000) == 0
    assert load_settings({}).reconcile_max_removals == (0.1, True)
    for wrong in ("ten", "120%", "-1"):
        with pytest.raises(ConfigError, match="DSERVER_NOTIFY_RECONCILE_MAX_REMOVALS"):
            load_settings({"DSERVER_NOTIFY_RECONCILE_MAX_REMOVALS": wrong})
