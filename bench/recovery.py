"""``python -m bench recovery``: how long a crashed or stopped dserver's work waits.

Two gunicorn dservers share one database (SQLite, then PostgreSQL), with
the default heartbeat (``DSERVER_NOTIFY_HEARTBEAT_SECONDS``) and the default
claim timeout and lease (300 s, 60 s), as in production.

- **SIGKILL**: the first dserver is syncing a dataset (its S3 endpoint
  hangs) when master and workers are killed; measured: seconds from the
  kill until the second dserver has the dataset in its listing.
- **SIGTERM**: the holder of the reconciler lease is stopped gracefully;
  measured: seconds from the SIGTERM until the other dserver holds the lease.

The tests (tests/e2e/test_lifecycle_live.py) check that both happen; the
times are measured here.
"""
import argparse
import datetime
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

from bench import envs
from bench.report import write_json
from devstack.datasets import Bucket
from devstack.dserver import LiveDserver, dserver_env, prepare_index_in_subprocess
from devstack.mongo import MongoServer
from devstack.moto import MotoServer
from devstack.payloads import minio_bodies_for_keys
from devstack.ports import HOST, free_port
from devstack.postgres import PostgresServer
from devstack.s3 import list_keys

BASE = {"DSERVER_NOTIFY_DEBOUNCE_SECONDS": "0.5", "DSERVER_NOTIFY_POLL_SECONDS": "0.2"}
PATIENCE = 600.0


def parse_args(argv):
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    parser = argparse.ArgumentParser(prog="python -m bench recovery", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument("--output", type=Path,
                        default=envs.BENCH_DIR / "results" / f"recovery-{stamp}.json")
    return parser.parse_args(argv)


def hanging_endpoint():
    """A TCP port that accepts and never answers; kept open for the process."""
    server = socket.create_server((HOST, free_port()))
    held = []

    def hold_every_connection():
        while True:
            held.append(server.accept())
    threading.Thread(target=hold_every_connection, daemon=True).start()
    return f"http://{HOST}:{server.getsockname()[1]}"


def wait_for(condition, what, timeout=PATIENCE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except requests.RequestException:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


class Pair:
    """Two dservers on one database; ``first`` may read S3 through ``endpoint``."""

    def __init__(self, workdir, mongo, bucket, database_uri, first_env=None, notify=None):
        env = dserver_env(workdir / "a", mongo.uri, {bucket.name: bucket.base_uri},
                          {**BASE, **(notify or {})}, database_uri=database_uri)
        env.update(bucket.env)
        prepare_index_in_subprocess(env, [bucket.base_uri])
        self.env = env
        self.first = LiveDserver({**env, **(first_env or {})}, workdir / "a").start()
        self.headers = self.first.admin_headers()
        (workdir / "b").mkdir()
        self.second = LiveDserver(env, workdir / "b")

    def start_second(self):
        self.second.start()

    def status(self, server):
        return requests.get(f"{server.url}/webhook/status", headers=self.headers,
                            timeout=10).json()

    def listing(self, server):
        answer = requests.post(f"{server.url}/uris", json={}, headers=self.headers, timeout=30)
        return sorted(d["uri"] for d in answer.json())

    def stop(self):
        for server in (self.first, self.second):
            server.kill()


def after_sigkill(workdir, mongo, moto, database_uri):
    bucket = Bucket(moto, f"bench-kill-{uuid.uuid4().hex[:8]}")
    hang = {f"DTOOL_S3_ENDPOINT_{bucket.name}": hanging_endpoint()}
    pair = Pair(workdir, mongo, bucket, database_uri, first_env=hang,
                notify={"DSERVER_NOTIFY_RECONCILE_INTERVAL_SECONDS": "0"})
    try:
        uri = bucket.put_dataset("rescued", items=1)
        for body in minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name)):
            requests.post(f"{pair.first.url}/webhook/notify", json=body, timeout=30)
        wait_for(lambda: pair.status(pair.first)["inbox"]["processing"], "a claim")
        pair.start_second()  # only now: the claim is the first dserver's
        killed = time.monotonic()
        pair.first.kill()
        wait_for(lambda: pair.listing(pair.second) == [uri], "the other dserver's sync")
        return time.monotonic() - killed
    finally:
        pair.stop()


def after_sigterm(workdir, mongo, moto, database_uri):
    bucket = Bucket(moto, f"bench-term-{uuid.uuid4().hex[:8]}")
    pair = Pair(workdir, mongo, bucket, database_uri,
                notify={"DSERVER_NOTIFY_RECONCILE_INTERVAL_SECONDS": "1"})
    try:
        pair.start_second()
        lease = wait_for(lambda: (pair.status(pair.second)["reconcile"]["lease"] or {})
                         .get("holder"), "a lease holder")
        pid = int(lease.split(":")[1])
        stopped, survivor = (pair.first, pair.second) if pid in pair.first.pids() \
            else (pair.second, pair.first)
        started = time.monotonic()
        stopped.stop()
        wait_for(lambda: int(pair.status(survivor)["reconcile"]["lease"]["holder"]
                             .split(":")[1]) in survivor.pids()
                 and pair.status(survivor)["reconcile"]["lease"]["active"],
                 "the survivor holding the lease")
        return time.monotonic() - started
    finally:
        pair.stop()


def main(argv=None):
    options = parse_args(sys.argv[1:] if argv is None else argv)
    results = {"command": " ".join(["python -m bench recovery", *(argv or [])]),
               "runs": options.runs, "cases": {}}
    mongo, moto, postgres = MongoServer().start(), MotoServer().start(), None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
            postgres = PostgresServer().start()
            databases = {"sqlite": lambda n: f"sqlite:///{tmp}/recovery-{n}.db",
                         "postgresql": lambda n: postgres.create_database()}
            for kind, database in databases.items():
                for case, run in (("sigkill", after_sigkill), ("sigterm", after_sigterm)):
                    times = []
                    for n in range(options.runs):
                        workdir = Path(tmp, f"{kind}-{case}-{n}")
                        workdir.mkdir()
                        times.append(run(workdir, mongo, moto, database(f"{case}{n}")))
                    results["cases"][f"{kind}/{case}"] = times
                    print(f"{kind:<10} {case:<8} seconds: "
                          + ", ".join(f"{t:.1f}" for t in times), flush=True)
    finally:
        for server in (postgres, moto, mongo):
            if server is not None:
                server.stop()
    write_json(options.output, results)
    print(f"written to {options.output}")


if __name__ == "__main__":
    main()
