"""The index heals itself: live gunicorn dservers, a moto bucket that notifies nobody.

No notification is ever sent here: whatever the index learns, it learns
from the background reconciler. Passes are frequent and unpaced so the
tests are quick; leases are short so a takeover is too.
"""
import time
import uuid

import dtoolcore
import pytest
import requests

from devstack.datasets import Bucket
from devstack.dserver import LiveDserver
from devstack.s3 import remove_all_objects

pytestmark = pytest.mark.e2e

RECONCILE = {"DSERVER_NOTIFY_RECONCILE_INTERVAL_SECONDS": "1",
             "DSERVER_NOTIFY_RECONCILE_MAX_RPS": "1000",
             "DSERVER_NOTIFY_RECONCILE_LEASE_SECONDS": "4",
             # entries a stopped server was syncing are taken over after this
             "DSERVER_NOTIFY_CLAIM_TIMEOUT_SECONDS": "5"}
PATIENCE = 90.0  # seconds; the machine may be loaded
SEVERAL = 4  # passes watched for a second walker (one a second at most)


@pytest.fixture
def bucket(moto):
    return Bucket(moto, f"e2e-heal-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def start(fresh_index_factory, bucket):
    """``start()``: a live dserver reconciling the bucket, stopped after the test."""
    return lambda: fresh_index_factory({bucket.name: bucket.base_uri},
                                       extra_env={**bucket.env, **RECONCILE})


def reconcile_status(url, headers):
    answer = requests.get(f"{url}/webhook/status", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["reconcile"]


def word(stem):
    return f"{stem}{uuid.uuid4().hex[:10]}"


def test_without_notifications_copy_edit_and_removal_reach_the_index(start, bucket,
                                                                     dataset_lifecycle):
    dataset_lifecycle(start(), bucket)


def remove_dataset(bucket, uri):
    uuid_ = uri.rsplit("/", 1)[1]
    remove_all_objects(bucket.s3, bucket.name, f"{uuid_}/")
    bucket.s3.delete_object(Bucket=bucket.name, Key=f"dtool-{uuid_}")


def test_changes_made_while_dserver_was_stopped_are_found_by_one_pass(start, bucket):
    index = start()
    words = {name: word(name) for name in ("kept", "edited", "deleted", "copied")}
    uris = {name: bucket.put_dataset(name, readme=f"project: {words[name]}\n")
            for name in ("kept", "edited", "deleted")}
    index.wait_until(lambda: index.listing() == sorted(uris.values()), "first three indexed")
    index.server.stop()

    dtoolcore.DataSet.from_uri(uris["edited"]).put_readme("project: rewritten\n")
    remove_dataset(bucket, uris["deleted"])
    uris["copied"] = bucket.put_dataset("copied", readme=f"project: {words['copied']}\n")
    restarted = time.time()
    index.server.start()

    def one_pass_since_restart():
        last = reconcile_status(index.url, index.headers)["pass"]
        return last and last["started_at"] > restarted and last["finished_at"]
    index.wait_until(one_pass_since_restart, "a pass after the restart", PATIENCE)
    expected = sorted(uris[n] for n in ("kept", "edited", "copied"))
    index.wait_until(lambda: index.listing() == expected,
                     f"listing matches the bucket: {expected}", PATIENCE)
    index.wait_until(lambda: index.search(free_text="rewritten") == [uris["edited"]]
                     and index.search(free_text=words["deleted"]) == []
                     and index.search(free_text=words["copied"]) == [uris["copied"]],
                     "search matches the bucket", PATIENCE)
    assert index.readme(uris["deleted"]).status_code != 200


def holder_pid(status):
    return int(status["lease"]["holder"].split(":")[1])


@pytest.mark.both_databases  # one lease in SQL for several hosts
def test_two_hosts_on_one_database_one_reconciles_and_the_other_takes_over(
        start, bucket, tmp_path):
    datasets = [bucket.put_dataset(f"d{n}", items=1) for n in range(3)]
    first = start()
    # the second host: same database, Mongo and keys; its own gunicorn
    (tmp_path / "host-b").mkdir()
    second = LiveDserver(first.server.env, tmp_path / "host-b", workers=2).start()
    servers = {"a": first.server, "b": second}
    headers = first.headers  # both hosts share the JWT keys
    try:
        first.wait_until(lambda: first.listing() == sorted(datasets), "indexed", PATIENCE)
        seen = []
        passes_at_start = reconcile_status(first.url, headers)["total"]["reconcile_passes"]

        def several_passes_seen():  # one holder throughout, looked at every 0.5 s
            status = reconcile_status(first.url, headers)
            seen.append((status["lease"]["holder"], status["pass"]["holder"]))
            if status["pass"]["finished_at"]:
                assert status["pass"]["checked"] == len(datasets)  # one walker per pass
            time.sleep(0.5)
            return status["total"]["reconcile_passes"] >= passes_at_start + SEVERAL and status
        status = first.wait_until(several_passes_seen, f"{SEVERAL} more passes", PATIENCE)
        assert len(set(seen)) == 1 and seen[0][0] == seen[0][1], seen
        pid = holder_pid(status)
        name = next(n for n, s in servers.items() if pid in s.pids())
        expired_at = status["lease"]["expires_at"]
        passes_before = status["total"]["reconcile_passes"]

        servers[name].kill()  # SIGKILL master and workers: no goodbye, no release
        survivor = servers["b" if name == "a" else "a"]

        def taken_over():
            now = reconcile_status(survivor.url, headers)
            return now["lease"]["active"] and holder_pid(now) in survivor.pids() and now
        status = first.wait_until(taken_over, "the other host holds the lease", PATIENCE)
        assert status["lease"]["acquired_at"] >= expired_at  # only after the lease expired
        first.wait_until(lambda: reconcile_status(survivor.url, headers)["total"]
                         ["reconcile_passes"] > passes_before, "a pass by the new holder",
                         PATIENCE)
    finally:
        second.stop()
