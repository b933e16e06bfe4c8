"""Issue 25: dtool's edits of an indexed dataset skip the debounce; a copy does not.

Real moto S3, Mongo and dserver; the edits are dtoolcore's own (what ``dtool
readme write``, ``tag set``, ``annotation set`` and ``tag delete`` call),
notified through the webhook as MinIO sends them, with the production
debounce (2 s). The worker claims only what is due (``run_once``), so an
entry still debounced would not be synced.
"""
import time

import dtoolcore
import pytest

from devstack.datasets import copy_write_order_with_etags
from devstack.payloads import minio_webhook_body
from devstack.s3 import list_etags
from dserver_notification_plugin.states import State

pytestmark = pytest.mark.integration

CREATED, REMOVED = "s3:ObjectCreated:Put", "s3:ObjectRemoved:Delete"


def ext(app):
    return app.extensions["dserver_notification"]


def minio_events_of(bucket, change):
    """Run ``change`` and return MinIO's bodies for what it wrote and removed
    (with the ETags of what it wrote), in key order."""
    before = list_etags(bucket.s3, bucket.name)
    change()
    after = list_etags(bucket.s3, bucket.name)
    written = sorted(k for k, etag in after.items() if before.get(k) != etag)
    removed = sorted(set(before) - set(after))
    return [minio_webhook_body(bucket.name, k, CREATED, n, after[k])
            for n, k in enumerate(written)] + \
        [minio_webhook_body(bucket.name, k, REMOVED, n) for n, k in enumerate(removed)]


def process_what_is_due(app):
    """Sync what the worker would take now, debounce honoured; return how many."""
    total = 0
    while True:
        done = ext(app).worker.run_once()
        if not done:
            return total
        total += done


def retrieved(client, headers, kind, uri):
    answer = client.get(f"/{kind}/{uri.replace('://', '/', 1)}", headers=headers)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_a_copy_is_synced_once_with_at_most_nine_s3_requests(
        app, client, bucket, moto, notify_all):
    uri = bucket.put_dataset("copied", items=5, tags=["a"], annotations={"k": "v"})
    keys, etags = copy_write_order_with_etags(bucket.s3, bucket.name, uri.rsplit("/", 1)[1])
    notify_all(client, [minio_webhook_body(bucket.name, k, CREATED, n, e)
                        for n, (k, e) in enumerate(zip(keys, etags))])
    before = moto.request_count()
    assert process_what_is_due(app) == 1  # the dtool events made it due at once
    assert moto.request_count() - before <= 9
    assert ext(app).tally.since_start()["index_registrations"] == 1


EDITS = [
    ("readme write", lambda ds: ds.put_readme("topic: after the edit\n"),
     "readmes", lambda found: "after the edit" in str(found)),
    ("tag set", lambda ds: ds.put_tag("fresh"),
     "tags", lambda found: "fresh" in found["tags"]),
    ("annotation set", lambda ds: ds.put_annotation("colour", "green"),
     "annotations", lambda found: found["annotations"] == {"colour": "green"}),
    ("tag delete", lambda ds: ds.delete_tag("old"),
     "tags", lambda found: sorted(found["tags"]) == ["fresh"]),
]


def test_each_dtool_edit_of_an_indexed_dataset_is_synced_before_the_debounce_ends(
        app, client, bucket, admin_headers, drain, notify_all):
    uri = bucket.put_dataset("edited", items=2, readme="topic: before\n", tags=["old"])
    keys, etags = copy_write_order_with_etags(bucket.s3, bucket.name, uri.rsplit("/", 1)[1])
    notify_all(client, [minio_webhook_body(bucket.name, k, CREATED, n, e)
                        for n, (k, e) in enumerate(zip(keys, etags))])
    drain(app)
    settings, inbox = ext(app).settings, ext(app).inbox
    assert settings.debounce_seconds == 2  # the production default
    dataset = dtoolcore.DataSet.from_uri(uri)
    for name, edit, kind, shows in EDITS:
        bodies = minio_events_of(bucket, lambda: edit(dataset))
        notify_all(client, bodies)
        [entry] = inbox.entries([uri])
        assert entry.state is State.PENDING, name
        # at most the edit delay after the last event (earlier when a later
        # event of the edit came after the entry fell due, on a loaded machine)
        assert entry.due_at <= entry.last_event_at + settings.edit_delay_seconds + 1e-6, name
        assert entry.due_at < entry.last_event_at + settings.debounce_seconds, name
        time.sleep(max(0.0, entry.due_at - time.time()))  # the edit delay, no more
        assert process_what_is_due(app) == 1, name
        assert shows(retrieved(client, admin_headers, kind, uri)), name
        assert inbox.entries([uri])[0].last_outcome == "registered", name


def indexed_by_a_copy(app, client, bucket, drain, notify_all, name):
    """``(uri, uuid, keys)`` of a dataset copied, notified as MinIO does, and synced."""
    uri = bucket.put_dataset(name, items=2)
    uuid = uri.rsplit("/", 1)[1]
    keys, etags = copy_write_order_with_etags(bucket.s3, bucket.name, uuid)
    notify_all(client, [minio_webhook_body(bucket.name, k, CREATED, n, e)
                        for n, (k, e) in enumerate(zip(keys, etags))])
    drain(app)
    return uri, uuid, keys


def test_an_edit_during_a_copy_over_the_dataset_keeps_the_debounce(
        app, client, bucket, drain, notify_all):
    uri, uuid, keys = indexed_by_a_copy(app, client, bucket, drain, notify_all, "recopied")
    # dtool copies it over: the registration key comes first, then a README
    readme = next(k for k in keys if k.endswith("/README.yml"))
    notify_all(client, [minio_webhook_body(bucket.name, f"dtool-{uuid}", CREATED, 0),
                        minio_webhook_body(bucket.name, readme, CREATED, 1, "new")])
    [entry] = ext(app).inbox.entries([uri])
    assert entry.due_at == pytest.approx(entry.last_event_at + 2, abs=1e-6)
    assert process_what_is_due(app) == 0


def test_a_notification_with_an_edit_and_any_other_object_of_the_dataset_keeps_the_debounce(
        app, client, bucket, drain, notify_all):
    uri, uuid, keys = indexed_by_a_copy(app, client, bucket, drain, notify_all, "batched")
    readme = next(k for k in keys if k.endswith("/README.yml"))
    body = minio_webhook_body(bucket.name, readme, CREATED, 0, "new")
    manifest = minio_webhook_body(bucket.name, next(k for k in keys if k.endswith(
        "/manifest.json")), CREATED, 1, "new")
    body["Records"] += manifest["Records"]  # one request, two records: a copy's
    notify_all(client, [body])
    [entry] = ext(app).inbox.entries([uri])
    assert entry.events == 2
    assert entry.due_at == pytest.approx(entry.last_event_at + 2, abs=1e-6)


def wait_until_due(entry, settings):
    """Sleep until ``entry`` is due, after checking that it is an edit's wait:
    due at most the edit delay after its last event (earlier when that event
    came after the entry fell due: a slow ``put_tag`` on a loaded machine),
    never the debounce."""
    assert entry.state in (State.PENDING, State.PROCESSING)
    assert entry.due_at <= entry.last_event_at + settings.edit_delay_seconds + 1e-6
    assert entry.due_at < entry.last_event_at + settings.debounce_seconds
    time.sleep(max(0.0, entry.due_at - time.time()))


def test_two_tag_sets_in_a_row_are_both_shown_without_waiting_the_debounce(
        app, client, bucket, admin_headers, drain, notify_all):
    """``dtool tag set a`` then ``tag set b``: while the first waits, and
    while the first one's sync runs. (Due times are epoch seconds: compared
    with an absolute tolerance, as pytest.approx's relative one spans minutes.)"""
    uri = bucket.put_dataset("retagged", items=2)
    keys, etags = copy_write_order_with_etags(bucket.s3, bucket.name, uri.rsplit("/", 1)[1])
    notify_all(client, [minio_webhook_body(bucket.name, k, CREATED, n, e)
                        for n, (k, e) in enumerate(zip(keys, etags))])
    drain(app)
    settings, inbox = ext(app).settings, ext(app).inbox
    dataset = dtoolcore.DataSet.from_uri(uri)
    for tag in ("a", "b"):  # the second lands in the first one's wait
        notify_all(client, minio_events_of(bucket, lambda: dataset.put_tag(tag)))
    wait_until_due(inbox.entries([uri])[0], settings)
    assert process_what_is_due(app) == 1
    assert {"a", "b"} <= set(retrieved(client, admin_headers, "tags", uri)["tags"])

    notify_all(client, minio_events_of(bucket, lambda: dataset.put_tag("c")))
    wait_until_due(inbox.entries([uri])[0], settings)
    with app.app_context():
        [claim] = inbox.claim(settings.claim_timeout_seconds)
        # the second lands while the first one's sync runs
        notify_all(client, minio_events_of(bucket, lambda: dataset.put_tag("d")))
        wait_until_due(inbox.entries([uri])[0], settings)
        ext(app).worker.process(claim)
    [entry] = inbox.entries([uri])
    assert entry.state is State.PENDING  # synced again, after the edit delay
    wait_until_due(entry, settings)
    assert process_what_is_due(app) == 1
    assert {"a", "b", "c", "d"} <= set(retrieved(client, admin_headers, "tags", uri)["tags"])
    assert inbox.entries([uri])[0].state is State.DONE
