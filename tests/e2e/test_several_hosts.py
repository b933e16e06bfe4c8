"""Three dservers behind one load balancer, on one PostgreSQL database.

MinIO's notifications for dataset copies are spread round-robin over the
hosts and each is delivered twice (senders retry; load balancers
duplicate). Every dataset must end indexed, and registered once. Then one
host is SIGKILLed in the middle of a burst: a sender that cannot reach it
delivers to the next host, as it would through the load balancer, and the
entries the dead host had claimed are taken over when their claim expires.
"""
import itertools
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from dserver_notification_plugin.background import FLUSH_INTERVAL_SECONDS
from devstack.datasets import copy_write_order
from devstack.dserver import LiveDserver, dserver_env, prepare_index_for_server, stop_servers
from devstack.payloads import minio_webhook_body
from devstack.s3 import list_keys
from tests.e2e.conftest import E2E_NOTIFY, LiveIndex

pytestmark = pytest.mark.e2e

CREATED = "s3:ObjectCreated:Put"
HOSTS = 3
DATASETS = 40
BURST = 12
SENDERS = 6
WAIT_SECONDS = 240.0  # three gunicorns and a few hundred requests on a loaded machine
# A claim of the SIGKILLed host is taken over after this.
CLAIM_TIMEOUT = "30"


class Cluster:
    """The hosts, a round-robin load balancer over those alive, and the bucket."""

    def __init__(self, servers, bucket):
        self.servers = servers
        self.alive = list(servers)
        self.storage = bucket
        self.bucket, self.base_uri, self.s3 = bucket.name, bucket.base_uri, bucket.s3
        self.index = LiveIndex(servers[0])
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def deliver(self, body):
        """POST to the next host; without a whole answer, to the one after.

        A host killed while it answers leaves a refused connection or a
        cut-off answer (ChunkedEncodingError); a host slowed down by a loaded
        machine may not answer within the timeout. A sender retries each: a
        notification delivered twice is the duplicate this test allows for.
        """
        for _ in range(2 * HOSTS):
            with self._lock:
                server = self.alive[next(self._turn) % len(self.alive)]
            try:
                answer = requests.post(f"{server.url}/webhook/notify", json=body, timeout=30)
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                    requests.Timeout):
                continue
            assert answer.status_code == 202, answer.text
            return
        raise AssertionError("no host took the notification")

    def copy_datasets(self, count, stem):
        """Copy datasets into the bucket; return {uri: notification bodies in write order}."""
        with ThreadPoolExecutor(SENDERS) as pool:
            uris = list(pool.map(lambda n: self.storage.put_dataset(f"{stem}-{n}", 3),
                                 range(count)))
        keys = list_keys(self.s3, self.bucket)
        copies = {}
        for uri in uris:
            dataset_uuid = uri.rsplit("/", 1)[1]
            mine = [key for key in keys if dataset_uuid in key]
            copies[uri] = [minio_webhook_body(self.bucket, key, CREATED, sequence=n)
                           for n, key in enumerate(copy_write_order(mine, dataset_uuid))]
        return copies

    def deliver_twice(self, copies, halfway=None):
        """Each dataset's events in order, each twice, datasets in parallel.

        ``halfway()`` is called once half of all deliveries are done.
        """
        total = 2 * sum(len(b) for b in copies.values())
        done = itertools.count(1)

        def send(dataset_bodies):
            for body in dataset_bodies:
                for _ in range(2):
                    self.deliver(body)
                    if halfway is not None and next(done) == total // 2:
                        halfway()

        with ThreadPoolExecutor(SENDERS) as pool:
            list(pool.map(send, copies.values()))

    def wait_until(self, condition, what):
        """``index.wait_until`` whose failure also shows the plugin's status."""
        try:
            return self.index.wait_until(condition, what, timeout=WAIT_SECONDS)
        except AssertionError as failure:
            answer = requests.get(f"{self.index.url}/webhook/status",
                                  headers=self.index.headers, timeout=30)
            listed = len(self.index.listing())
            raise AssertionError(f"{failure}\n{listed} listed; status: {answer.text}") from None

    def registrations(self):
        """Registrations of datasets in the index, counted across all hosts."""
        answer = requests.get(f"{self.index.url}/webhook/status", headers=self.index.headers,
                              timeout=30)
        return self.index._ok_json(answer)["sync"]["total"]["index_registrations"]

    def all_done(self):
        answer = requests.get(f"{self.index.url}/webhook/status", headers=self.index.headers,
                              timeout=30)
        inbox = self.index._ok_json(answer)["inbox"]
        return inbox["pending"] == inbox["processing"] == inbox["failed"] == 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, mongo, make_bucket, postgres):
    bucket = make_bucket(f"hosts-{uuid.uuid4().hex[:10]}")
    workdir = tmp_path_factory.mktemp("hosts")
    notify = dict(E2E_NOTIFY, DSERVER_NOTIFY_CLAIM_TIMEOUT_SECONDS=CLAIM_TIMEOUT)
    env = dserver_env(workdir, mongo.uri, {bucket.name: bucket.base_uri}, notify,
                      database_uri=postgres.create_database())
    env.update(bucket.env)
    prepare_index_for_server(env, [bucket.base_uri])
    servers = []
    try:
        for n in range(HOSTS):
            host_dir = workdir / f"host{n}"
            host_dir.mkdir()
            servers.append(LiveDserver(env, host_dir, workers=2).start())
        yield Cluster(servers, bucket)
    finally:
        stop_servers(servers)


def test_duplicated_notifications_over_three_hosts_register_each_dataset_once(cluster):
    copies = cluster.copy_datasets(DATASETS, "spread")
    cluster.deliver_twice(copies)
    index = cluster.index
    cluster.wait_until(lambda: index.listing() == sorted(copies), "every dataset listed")
    cluster.wait_until(lambda: index.search(base_uris=[cluster.base_uri]) == sorted(copies),
                       "every dataset searchable")
    cluster.wait_until(cluster.all_done, "the inbox is empty")
    # every host flushes its counters within a few seconds
    cluster.wait_until(lambda: cluster.registrations() >= DATASETS,
                       "every registration counted")
    # No sync runs once the inbox is done; a host that registered a dataset
    # twice flushes that count within its next flush interval.
    time.sleep(2 * FLUSH_INTERVAL_SECONDS)
    assert cluster.registrations() == DATASETS


def test_a_host_killed_in_the_middle_of_a_burst_loses_nothing(cluster):
    before = set(cluster.index.listing())
    copies = cluster.copy_datasets(BURST, "burst")
    victim = cluster.servers[-1]

    def kill_victim():
        victim.kill()  # SIGKILL to master and workers: claims and counters lost
        with cluster._lock:
            cluster.alive.remove(victim)

    cluster.deliver_twice(copies, halfway=kill_victim)
    assert victim.proc.poll() is not None
    index = cluster.index
    expected = sorted(before | set(copies))
    cluster.wait_until(lambda: index.listing() == expected, "every dataset listed")
    cluster.wait_until(lambda: index.search(base_uris=[cluster.base_uri]) == expected,
                       "every dataset searchable")
    cluster.wait_until(cluster.all_done, "the inbox is empty")
