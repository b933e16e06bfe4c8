"""Reconcile passes against the real Mongo-wire and S3 servers, no notification sent.

Passes run in the test's process, through ``flask notification resync``
(one on-demand pass) or the background :class:`Reconciler`'s ``run_once``;
the inbox is then drained by the worker, as in a server.
"""
import json

import dtoolcore
import pytest

from dserver_notification_plugin.reconciler import SCOPE, Reconciler, one_pass
from devstack.datasets import clone_dataset
from devstack.payloads import minio_bodies_for_keys
from devstack.s3 import list_keys, remove_all_objects

pytestmark = pytest.mark.integration

FAST = {"DSERVER_NOTIFY_RECONCILE_MAX_RPS": "1000"}


def ext(app):
    return app.extensions["dserver_notification"]


def prefix_of(bucket, uri):
    uuid = uri.rsplit("/", 1)[1]
    body = bucket.s3.get_object(Bucket=bucket.name, Key=f"dtool-{uuid}")["Body"].read()
    return body.decode() + uuid + "/"


def remove_dataset(bucket, uri):
    """All of a dataset's objects, registration key included, as `aws s3 rm` would."""
    remove_all_objects(bucket.s3, bucket.name, prefix_of(bucket, uri))
    bucket.s3.delete_object(Bucket=bucket.name, Key="dtool-" + uri.rsplit("/", 1)[1])


def searched(search, client, headers, **query):
    return sorted(search(client, headers, **query))


def readme_status(client, headers, uri):
    return client.get("/readmes/" + uri.replace("://", "/"), headers=headers).status_code


def registrations(app):
    return ext(app).tally.since_start().get("index_registrations", 0)


@pytest.fixture
def app(make_app, bucket):
    """The app of ``client`` and ``admin_headers`` too; passes are not paced here."""
    return make_app([bucket], notify=FAST)


@pytest.fixture
def drifted(app, bucket, cli):
    """``kept`` and ``gone`` indexed by a pass; then ``gone`` removed, ``edited``'s
    README and ``tagged``'s tags changed, ``missed`` copied; no notification."""
    uris = {name: bucket.put_dataset(name, items=2, readme=f"project: {name}old\n")
            for name in ("kept", "gone", "edited", "tagged")}
    first = cli(app, "resync", bucket.base_uri)
    assert first.exit_code == 0 and "4 registered" in first.output, first.output
    remove_dataset(bucket, uris["gone"])
    dtoolcore.DataSet.from_uri(uris["edited"]).put_readme("project: editednew\n")
    dtoolcore.DataSet.from_uri(uris["tagged"]).put_tag("red")
    uris["missed"] = bucket.put_dataset("missed", items=3, readme="project: dragon\n")
    return uris


def test_a_pass_finds_missing_extra_and_changed_datasets(app, client, bucket, drifted,
                                                         admin_headers, listed, drain, search):
    uris = drifted
    assert searched(search, client, admin_headers, free_text="goneold") == [uris["gone"]]

    walk = one_pass(ext(app), bucket.base_uri)
    found = {f.uri: (f.drift.value, f.reason) for f in walk.findings}
    assert found == {uris["missed"]: ("missing", "not in the index"),
                     uris["gone"]: ("extra", "no registration key"),
                     uris["edited"]: ("changed", "metadata changed"),
                     uris["tagged"]: ("changed", "metadata changed")}
    assert walk.figures.checked == 4  # registration keys: kept, edited, tagged, missed
    drain(app)

    assert listed(client, admin_headers) == sorted(
        uris[n] for n in ("kept", "edited", "tagged", "missed"))
    assert searched(search, client, admin_headers, free_text="dragon") == [uris["missed"]]
    assert searched(search, client, admin_headers, free_text="editednew") == [uris["edited"]]
    assert searched(search, client, admin_headers, tags=["red"]) == [uris["tagged"]]
    assert searched(search, client, admin_headers, free_text="goneold") == []
    assert readme_status(client, admin_headers, uris["gone"]) == 404
    assert one_pass(ext(app), bucket.base_uri).findings == []  # converged


def test_resync_repairs_the_drift_and_reports_it_by_kind(app, bucket, drifted, cli):
    result = cli(app, "resync", bucket.base_uri)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"registered: {drifted['missed']} (missing, not in the index)" in lines
    assert f"deleted: {drifted['gone']} (extra, no registration key)" in lines
    assert f"registered: {drifted['edited']} (changed, metadata changed)" in lines
    assert lines[-1].startswith(f"resync of {bucket.base_uri}: 4 datasets checked, drift: "
                                "1 missing, 1 extra, 2 changed (")
    assert lines[-1].endswith("; outcomes: 1 deleted, 3 registered")

    again = cli(app, "resync", bucket.base_uri).output.splitlines()
    assert again[-1].startswith(f"resync of {bucket.base_uri}: 4 datasets checked, drift: "
                                "0 missing, 0 extra, 0 changed (")


def test_dry_run_reports_the_drift_and_changes_nothing(app, client, bucket, drifted, admin_headers,
                                                       cli, status_json, listed, search):
    before = (status_json(app)["inbox"], listed(client, admin_headers))
    result = cli(app, "resync", bucket.base_uri, "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"missing: {drifted['missed']} (not in the index)" in lines
    assert f"extra: {drifted['gone']} (no registration key)" in lines
    assert f"changed: {drifted['tagged']} (metadata changed)" in lines
    assert lines[-1].startswith(f"dry run for {bucket.base_uri}: 4 datasets checked, "
                                "drift: 1 missing, 1 extra, 2 changed")
    assert lines[-1].endswith("nothing changed")
    assert (status_json(app)["inbox"], listed(client, admin_headers)) == before
    assert searched(search, client, admin_headers, free_text="dragon") == []
    # and the drift is still there for the real pass
    assert len(one_pass(ext(app), bucket.base_uri, dry_run=True).findings) == 4


def test_datasets_indexed_by_notifications_are_verified_once(app, client, bucket, admin_headers,
                                                             drain, notify_all):
    """Their signature was never recorded: one sync each, which registers nothing."""
    uri = bucket.put_dataset("notified", items=2)
    notify_all(client, minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name)))
    drain(app)
    before = registrations(app)

    [finding] = one_pass(ext(app), bucket.base_uri).findings
    assert (finding.uri, finding.drift.value, finding.reason) == (uri, "changed",
                                                                   "never verified")
    drain(app)
    assert ext(app).inbox.entries([uri])[0].last_outcome == "unchanged"
    assert registrations(app) == before
    assert one_pass(ext(app), bucket.base_uri).findings == []


def test_leftovers_only_the_search_plugin_holds_are_extra(app, client, bucket, drifted,
                                                          admin_headers, cli, listed):
    from dservercore.utils import delete_dataset
    kept = drifted["kept"]
    with app.app_context():
        delete_dataset(kept)  # SQL row gone; the Mongo plugins keep their documents
    [finding] = [f for f in one_pass(ext(app), bucket.base_uri, dry_run=True).findings
                 if f.uri == kept]
    assert (finding.drift.value, finding.reason) == ("changed",
                                                     "SQL and search/retrieve disagree")
    cli(app, "resync", bucket.base_uri)
    assert kept in listed(client, admin_headers)


def test_a_proto_dataset_is_left_alone(app, bucket, moto):
    proto = dtoolcore.create_proto_dataset("unfinished", bucket.base_uri)
    proto.put_readme("project: unfinished\n")
    walk = one_pass(ext(app), bucket.base_uri)
    assert walk.findings == [] and walk.figures.checked == 1
    assert ext(app).inbox.entries() == []


def test_an_unchanged_bucket_of_100_datasets_costs_a_few_lists_in_all(app, bucket, moto, drain):
    """One LIST of the registration keys, then the 1,100 keys of the bucket in
    flat pages of 1,000: about 3 LISTs, where the delimited walk made 301.
    (The benchmark walks 200 and 1,000 datasets: ``python -m bench reconcile``.)"""
    source = bucket.put_dataset("many", items=3, tags=["t"], annotations={"a": 1})
    clone_dataset(bucket.s3, bucket.name, source, 99, workers=4)
    first = one_pass(ext(app), bucket.base_uri)
    assert first.figures.missing == 100
    drain(app)
    before = registrations(app)

    moto.reset_request_count()
    walk = one_pass(ext(app), bucket.base_uri)
    requests = moto.requests()
    assert walk.findings == [] and walk.figures.checked == 100
    assert drain(app) == 0 and registrations(app) == before
    assert len(requests) == walk.figures.s3_requests <= 10
    # Every request is a LIST (GET on the bucket itself); no object is read.
    paths = {path.split("?")[0].strip("/") for _, path in requests}
    assert {method for method, _ in requests} == {"GET"} and paths == {bucket.name}
    assert all("list-type=2" in path for _, path in requests)


def test_an_interrupted_pass_resumes_from_its_cursor(make_app, bucket, monkeypatch):
    import dserver_notification_plugin.reconcile as reconcile
    monkeypatch.setattr(reconcile, "CHUNK", 1)
    app = make_app([bucket], notify={**FAST, "DSERVER_NOTIFY_RECONCILE_INTERVAL_SECONDS": "60"})
    uris = sorted(bucket.put_dataset(f"d{n}", items=1) for n in range(3))
    first = Reconciler(ext(app))
    save = first._save_progress

    def stop_after_one_chunk(*args):
        save(*args)
        first._stop.set()
        return False
    first._save_progress = stop_after_one_chunk
    first.run_once()
    first.lease.release()
    state = ext(app).ledger.pass_state(SCOPE)
    assert state.finished_at is None and state.counted.checked == 1
    assert state.after_uuid == uris[0].rsplit("/", 1)[1]

    second = Reconciler(ext(app))  # another process, same database
    second.run_once()
    state = ext(app).ledger.pass_state(SCOPE)
    assert state.finished_at is not None
    assert (state.counted.checked, state.counted.missing) == (3, 3)  # nothing checked twice
    assert state.holder == second.lease.holder != first.lease.holder
    assert len(ext(app).inbox.entries()) == 3
    assert second.run_once() > 0  # next pass not due yet: nothing walked
    assert ext(app).ledger.pass_state(SCOPE).counted.checked == 3


def test_status_and_metrics_show_the_reconciler(make_app, bucket, status_json, metric_samples):
    app = make_app([bucket], notify={**FAST, "DSERVER_NOTIFY_RECONCILE_INTERVAL_SECONDS": "60"})
    bucket.put_dataset("counted", items=1)
    reconciler = Reconciler(ext(app))
    reconciler.run_once()
    status = status_json(app)["reconcile"]
    assert status["lease"]["holder"] == reconciler.lease.holder and status["lease"]["active"]
    last = status["pass"]
    assert (last["checked"], last["missing"], last["extra"], last["changed"]) == (1, 1, 0, 0)
    assert last["s3_requests"] >= 2 and last["finished_at"] >= last["started_at"]
    assert status["interval_seconds"] == 60 and status["max_rps"] == 1000

    found = metric_samples(app.test_client().get("/webhook/metrics").get_data(as_text=True))
    assert found[("dserver_notification_reconcile_drift_total", (("kind", "missing"),))] == 1
    assert found[("dserver_notification_reconcile_datasets_checked_total", ())] == 1
    assert found[("dserver_notification_reconcile_s3_requests_total", ())] == \
        last["s3_requests"]
    assert found[("dserver_notification_reconcile_passes_total", ())] == 1
    assert found[("dserver_notification_reconcile_lease_held",
                  (("holder", reconciler.lease.holder),))] == 1
    assert found[("dserver_notification_reconcile_last_pass_finished_timestamp_seconds",
                  ())] == last["finished_at"]
    assert json.dumps(status)  # plain JSON


def test_resync_refuses_an_unknown_base_uri(app, cli):
    result = cli(app, "resync", "s3://no-such-bucket-anywhere")
    assert result.exit_code == 2
    assert "neither mapped in DSERVER_NOTIFY_BUCKET_TO_BASE_URI" in result.output
