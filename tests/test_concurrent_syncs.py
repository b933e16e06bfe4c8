"""Several sync threads in one worker (DSERVER_NOTIFY_SYNC_THREADS).

Real servers throughout; the two spies below only record calls and pass
them on: which thread synced which dataset, from when to when, and which
datasets dservercore was asked to register.
"""
import threading
import time
from collections import Counter

import pytest

import dserver_notification_plugin.sync as sync
import dserver_notification_plugin.worker as worker
from dserver_notification_plugin.states import State
from devstack.datasets import clone_dataset
from devstack.payloads import minio_bodies_for_keys
from devstack.ports import wait_until
from devstack.s3 import list_keys

pytestmark = pytest.mark.integration

DATASETS = 24


def record_calls(monkeypatch):
    """``(syncs, registered)``: (uri, thread, start, end) of every sync, and
    the URI of every registration that took effect, as they happen."""
    syncs, registered, lock = [], [], threading.Lock()
    real_sync, real_register = worker.sync_dataset, sync.register_dataset

    def timed_sync(base_uri, uri, *args, **kwargs):
        start = time.monotonic()
        try:
            return real_sync(base_uri, uri, *args, **kwargs)
        finally:
            with lock:
                syncs.append((uri, threading.current_thread().name, start, time.monotonic()))

    def counted_register(info, *args, **kwargs):
        # counted once it took effect: an attempt the database refused (SQLite
        # busy under six writers) is retried, and is no second registration
        result = real_register(info, *args, **kwargs)
        with lock:
            registered.append(info["uri"])
        return result

    monkeypatch.setattr(worker, "sync_dataset", timed_sync)
    monkeypatch.setattr(sync, "register_dataset", counted_register)
    return syncs, registered


def listed(client, headers):
    """Every URI of the SQL listing (one page holds them all)."""
    response = client.post("/uris?page_size=100", json={}, headers=headers)
    assert response.status_code == 200, response.get_json()
    return sorted(d["uri"] for d in response.get_json())


def test_concurrent_syncs_register_each_dataset_once_and_never_overlap(
        make_app, bucket, auth_headers, notify_all, monkeypatch):
    syncs, registered = record_calls(monkeypatch)
    source = bucket.put_dataset("burst", items=2)
    uris = [source] + clone_dataset(bucket.s3, bucket.name, source, DATASETS - 1, workers=4)
    app = make_app([bucket], notify={"DSERVER_NOTIFY_WORKER": "on",
                                     "DSERVER_NOTIFY_SYNC_THREADS": "6",
                                     "DSERVER_NOTIFY_DEBOUNCE_SECONDS": "0"})
    ext = app.extensions["dserver_notification"]
    client, admin_headers = app.test_client(), auth_headers(app)
    bodies = minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name))
    # Two waves: the second arrives while the first one's syncs run, so entries
    # are due again while claimed.
    notify_all(client, bodies)
    notify_all(client, bodies)

    wait_until(lambda: listed(client, admin_headers) == sorted(uris), "all listed", 300)
    wait_until(lambda: all(e.state is State.DONE for e in ext.inbox.entries()),
               "the inbox settled", 300)
    ext.stop_background()

    assert Counter(registered) == {uri: 1 for uri in uris}  # once each, never twice
    for uri in uris:
        runs = sorted((start, end) for synced, _, start, end in syncs if synced == uri)
        assert all(later[0] >= earlier[1] for earlier, later in zip(runs, runs[1:])), uri
    assert len({thread for _, thread, _, _ in syncs}) > 1  # the syncs were shared out


def test_resync_of_an_unindexed_bucket_shares_its_syncs_out_and_registers_each_once(
        make_app, bucket, cli, monkeypatch):
    """A first indexing with ``flask notification resync``: the syncs the pass
    causes run on DSERVER_NOTIFY_SYNC_THREADS threads, each dataset once."""
    syncs, registered = record_calls(monkeypatch)
    source = bucket.put_dataset("first", items=2)
    uris = [source] + clone_dataset(bucket.s3, bucket.name, source, DATASETS - 1, workers=4)
    app = make_app([bucket], notify={"DSERVER_NOTIFY_SYNC_THREADS": "4"})

    result = cli(app, "resync", bucket.base_uri)

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith(
        f"resync of {bucket.base_uri}: {DATASETS} datasets checked, drift: {DATASETS} "
        f"missing, 0 extra, 0 changed")
    assert f"outcomes: {DATASETS} registered" in result.output
    assert Counter(registered) == {uri: 1 for uri in uris}
    assert Counter(uri for uri, _, _, _ in syncs) == {uri: 1 for uri in uris}
    assert len({thread for _, thread, _, _ in syncs}) > 1
    assert not ext_entries_left(app)


def test_drain_with_one_thread_syncs_in_the_callers_thread(make_app, bucket,
                                                           notify_all, monkeypatch):
    """``flask notification drain`` with DSERVER_NOTIFY_SYNC_THREADS=1 keeps the
    old way: every sync in the thread that drains."""
    syncs, registered = record_calls(monkeypatch)
    source = bucket.put_dataset("one", items=1)
    uris = [source] + clone_dataset(bucket.s3, bucket.name, source, 3, workers=2)
    app = make_app([bucket], notify={"DSERVER_NOTIFY_SYNC_THREADS": "1"})
    notify_all(app.test_client(),
               minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name)))

    result = app.test_cli_runner().invoke(args=["notification", "drain", "--all"])

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "processed 4 inbox entries"
    assert sorted(registered) == sorted(uris)
    assert {thread for _, thread, _, _ in syncs} == {threading.current_thread().name}


def ext_entries_left(app):
    """Inbox entries not done."""
    ext = app.extensions["dserver_notification"]
    return [e for e in ext.inbox.entries() if e.state is not State.DONE]


def test_idle_sync_threads_share_one_timer(make_app, bucket, monkeypatch):
    """Four sync threads with nothing to do look for work about once per
    poll interval between them, not once each (SQLite: no notifications
    between processes, so the worker polls). A burst still spreads over the
    threads: the test above."""
    poll_seconds, window = 0.1, 2.0
    looks = []
    real_claim = worker.Worker.run_once

    def counted_claim(self, *args, **kwargs):
        looks.append(time.monotonic())
        return real_claim(self, *args, **kwargs)

    monkeypatch.setattr(worker.Worker, "run_once", counted_claim)
    app = make_app([bucket], notify={"DSERVER_NOTIFY_WORKER": "on",
                                     "DSERVER_NOTIFY_SYNC_THREADS": "4",
                                     "DSERVER_NOTIFY_POLL_SECONDS": str(poll_seconds)})
    ext = app.extensions["dserver_notification"]
    wait_until(lambda: len(looks) >= 4, "every thread looked once", 60)
    start = time.monotonic()
    time.sleep(window)
    in_window = [at for at in looks if start <= at < start + window]
    ext.stop_background()

    # one timer: about window / poll_seconds looks (20); one per thread would be 80
    assert len(in_window) <= 1.5 * window / poll_seconds, len(in_window)
