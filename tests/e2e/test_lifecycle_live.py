"""Crashes and restarts of live gunicorn dservers: work moves on, nothing waits out a timeout.

Two dservers share one database. The claim timeout and the reconciler's
lease are an hour here, so only the heartbeats (a SIGKILLed server stops
beating) and the release on a graceful stop (SIGTERM) can hand their work
on within the test. How fast that is, is the benchmark's business
(``python -m bench recovery``).
"""
import socket
import threading
import uuid

import pytest
import requests

from devstack.datasets import Bucket
from devstack.dserver import LiveDserver
from devstack.payloads import minio_bodies_for_keys
from devstack.ports import HOST, free_port
from devstack.s3 import list_keys

pytestmark = pytest.mark.e2e

LIFECYCLE = {"DSERVER_NOTIFY_CLAIM_TIMEOUT_SECONDS": "3600",
             "DSERVER_NOTIFY_HEARTBEAT_SECONDS": "1",
             "DSERVER_NOTIFY_RECONCILE_LEASE_SECONDS": "3600"}
PATIENCE = 90.0  # far below the hour any timeout would take; the machine may be loaded


class Blackhole:
    """A TCP server that accepts connections and never answers: an S3 endpoint
    that hangs, so that a sync stays in progress for as long as we like."""

    def __init__(self):
        self.port = free_port()
        self.sock = socket.create_server((HOST, self.port))
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(connection)

    @property
    def endpoint(self):
        return f"http://{HOST}:{self.port}"

    def close(self):
        self.sock.close()
        for connection in self.held:
            connection.close()


@pytest.fixture
def blackhole():
    hole = Blackhole()
    yield hole
    hole.close()


@pytest.fixture
def bucket(moto):
    return Bucket(moto, f"e2e-life-{uuid.uuid4().hex[:10]}")


def status(server, headers):
    answer = requests.get(f"{server.url}/webhook/status", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def pid_of(process_id):
    return int(process_id.split(":")[1])


def processes_of(server, report):
    pids = set(server.pids())
    return [p for p in report["processes"] if pid_of(p["id"]) in pids]


def second_host(first, tmp_path, **env):
    """Another dserver on the same database, Mongo and keys."""
    (tmp_path / "host-b").mkdir()
    return LiveDserver({**first.server.env, **env}, tmp_path / "host-b", workers=2).start()


def test_the_claim_of_a_sigkilled_dserver_is_synced_by_another(
        fresh_index_factory, bucket, blackhole, tmp_path):
    # The first dserver reads the bucket through an endpoint that hangs: its
    # sync of the dataset is in progress when it is killed.
    hanging = {**bucket.env, **LIFECYCLE, "DSERVER_NOTIFY_RECONCILE_INTERVAL_SECONDS": "0",
               f"DTOOL_S3_ENDPOINT_{bucket.name}": blackhole.endpoint}
    first = fresh_index_factory({bucket.name: bucket.base_uri}, extra_env=hanging)
    uri = bucket.put_dataset("rescued", items=1)
    for body in minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name)):
        assert requests.post(first.webhook_url, json=body, timeout=30).status_code == 202
    first.wait_until(lambda: any(p["claims"] for p in processes_of(
        first.server, status(first.server, first.headers))), "the first dserver syncing")

    second = second_host(first, tmp_path, **{
        f"DTOOL_S3_ENDPOINT_{bucket.name}": bucket.server.s3_endpoint})
    try:
        first.server.kill()  # SIGKILL master and workers: no goodbye, no release
        survivor = LiveIndexOf(second, first.headers)
        first.wait_until(lambda: survivor.listing() == [uri],
                         "the other dserver synced the dataset", PATIENCE)
        # the killed dserver's other worker may have beaten later than the
        # one that held the claim: it is reaped once it has been silent as long
        survivors = set(second.pids())
        first.wait_until(lambda: [p for p in status(second, first.headers)["processes"]
                                  if pid_of(p["id"]) not in survivors] == [],
                         "every killed process reaped", PATIENCE)
        assert status(second, first.headers)["inbox"]["processing"] == 0
    finally:
        second.stop()


def test_a_sigtermed_dserver_hands_the_reconciler_lease_on_at_once(
        fresh_index_factory, bucket, tmp_path):
    # Beats far apart: a release seen right after the stop cannot be a
    # survivor's reaping (that takes three beats), only the stopped one's own.
    # A 20 s lease, renewed every third of it, still has 13 s or more to run
    # when the stop begins, more than a stop takes, so it cannot have expired
    # either; and the survivor asks for it every 10 s instead of every 30.
    reconciling = {**bucket.env, **LIFECYCLE, "DSERVER_NOTIFY_HEARTBEAT_SECONDS": "10",
                   "DSERVER_NOTIFY_RECONCILE_LEASE_SECONDS": "20",
                   "DSERVER_NOTIFY_RECONCILE_INTERVAL_SECONDS": "1",
                   "DSERVER_NOTIFY_RECONCILE_MAX_RPS": "1000"}
    first = fresh_index_factory({bucket.name: bucket.base_uri}, extra_env=reconciling)
    second = second_host(first, tmp_path)
    servers = [first.server, second]
    try:
        report = first.wait_until(
            lambda: (lambda r: r["reconcile"]["lease"] and r["reconcile"]["lease"]["active"]
                     and r)(status(second, first.headers)), "a lease holder")
        holder = report["reconcile"]["lease"]["holder"]
        [stopped] = [s for s in servers if pid_of(holder) in s.pids()]
        [survivor] = [s for s in servers if s is not stopped]
        stopped_pids = set(stopped.pids())
        passes = report["reconcile"]["total"]["reconcile_passes"]

        stopped.stop()  # SIGTERM to the gunicorn master; it waits for its workers

        # Released before the processes exited, not an hour later.
        report = status(survivor, first.headers)
        lease = report["reconcile"]["lease"]
        assert lease["holder"] != holder or not lease["active"], lease
        assert [p for p in report["processes"] if pid_of(p["id"]) in stopped_pids] == []
        first.wait_until(lambda: pid_of(status(survivor, first.headers)["reconcile"]["lease"]
                                        ["holder"]) in survivor.pids(),
                         "the survivor holds the lease", PATIENCE)
        first.wait_until(lambda: status(survivor, first.headers)["reconcile"]["total"]
                         ["reconcile_passes"] > passes, "a pass by the new holder", PATIENCE)
    finally:
        second.stop()


class LiveIndexOf:
    """The listing of a server that has no LiveIndex of its own."""

    def __init__(self, server, headers):
        self.server, self.headers = server, headers

    def listing(self):
        answer = requests.post(f"{self.server.url}/uris", json={}, headers=self.headers,
                               timeout=30)
        assert answer.status_code == 200, answer.text
        return sorted(d["uri"] for d in answer.json())
