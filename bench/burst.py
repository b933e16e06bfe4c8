"""``python -m bench burst``: a burst of small dataset copies, synced by one process.

For each database (SQLite file, PostgreSQL from pgserver) and each number
of sync threads (``DSERVER_NOTIFY_SYNC_THREADS``; 1 is how the worker ran
before the setting existed): a fresh bucket of ``--datasets`` small
datasets (one copied with dtool, the rest cloned), the notifications of all
their objects posted to the webhook (records batched 100 to a request, the
worker off meanwhile, debounce 0, reconciler off), then the worker started
in this process and timed until every dataset is listed by dservercore and
the inbox is settled. Figures: seconds, datasets/s, S3 requests (counted at
moto), registrations (must equal the datasets). The load average is
recorded with each run: the machine is shared, so seconds are noisy.
"""
import argparse
import datetime
import os
import shutil
import sys
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

from bench import envs
from bench.report import write_json
from devstack.datasets import Bucket, clone_dataset
from devstack.dserver import app_config, dserver_env, prepare_index
from devstack.mongo import MongoServer
from devstack.moto import MotoServer
from devstack.payloads import minio_bodies_for_keys
from devstack.postgres import PostgresServer
from devstack.s3 import list_keys

RECORDS_PER_REQUEST = 100


def parse_args(argv):
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    parser = argparse.ArgumentParser(prog="python -m bench burst", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=int, default=1000)
    parser.add_argument("--items", type=int, default=5, help="items per dataset (default 5)")
    parser.add_argument("--threads", default="1,4,8", help="sync threads per run (default 1,4,8)")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--output", type=Path,
                        default=envs.BENCH_DIR / "results" / f"burst-{stamp}.json")
    return parser.parse_args(argv)


def notification_bodies(bucket):
    """Every object's creation, as MinIO records, 100 to a request body."""
    records = [body["Records"][0] for body in
               minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name))]
    return [{"Records": records[i:i + RECORDS_PER_REQUEST]}
            for i in range(0, len(records), RECORDS_PER_REQUEST)]


def make_app(workdir, mongo, bucket, database_uri, threads):
    import dservercore
    env = dserver_env(workdir, mongo.uri, {bucket.name: bucket.base_uri},
                      {"DSERVER_NOTIFY_WORKER": "off", "DSERVER_NOTIFY_SYNC_THREADS": str(threads),
                       "DSERVER_NOTIFY_DEBOUNCE_SECONDS": "0",
                       "DSERVER_NOTIFY_RECONCILE_INTERVAL_SECONDS": "0", **bucket.env},
                      mongo_db=f"burst-{uuidlib.uuid4().hex[:8]}", database_uri=database_uri)
    app = dservercore.create_app(app_config(env))
    prepare_index(app, [bucket.base_uri])
    return app


def settled(app, ext, datasets):
    from dservercore import sql_db
    from dservercore.sql_models import Dataset
    from dserver_notification_plugin.states import State
    with app.app_context():
        listed = sql_db.session.query(Dataset).count()
        sql_db.session.remove()
    return listed >= datasets and all(e.state is State.DONE for e in ext.inbox.entries())


def one_run(servers, options, database, threads, workdir):
    mongo, moto, postgres = servers
    bucket = Bucket(moto, f"bench-burst-{uuidlib.uuid4().hex[:8]}")
    source = bucket.put_dataset("burst", items=options.items)
    clone_dataset(bucket.s3, bucket.name, source, options.datasets - 1, workers=4)
    database_uri = postgres.create_database() if database == "postgresql" else None
    app = make_app(workdir, mongo, bucket, database_uri, threads)
    ext = app.extensions["dserver_notification"]
    client = app.test_client()
    for body in notification_bodies(bucket):
        assert client.post("/webhook/notify", json=body).status_code == 202
    load_before = os.getloadavg()
    moto.reset_request_count()
    started = time.monotonic()
    ext.worker.start()
    while not settled(app, ext, options.datasets):
        if time.monotonic() - started > options.timeout:
            break
        time.sleep(0.2)
    seconds = time.monotonic() - started
    ext.stop_background()
    requests = moto.request_count()
    registrations = ext.tally.since_start().get("index_registrations", 0)
    return {"database": database, "threads": threads, "datasets": options.datasets,
            "seconds": round(seconds, 2),
            "datasets_per_second": round(options.datasets / seconds, 1),
            "s3_requests": requests, "s3_requests_per_dataset":
                round(requests / options.datasets, 2),
            "registrations": registrations,
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()]}


def table(runs):
    lines = ["database    threads  seconds  datasets/s  S3 req/dataset  registrations  load (1 min)"]
    for r in runs:
        lines.append(f"{r['database']:<10}  {r['threads']:>7}  {r['seconds']:>7}  "
                     f"{r['datasets_per_second']:>10}  {r['s3_requests_per_dataset']:>14}  "
                     f"{r['registrations']:>13}  {r['loadavg_before'][0]}")
    return "\n".join(lines)


def main(argv):
    options = parse_args(argv)
    workroot = tempfile.mkdtemp(prefix="dserver-bench-")
    runs = []
    try:
        with MongoServer() as mongo, MotoServer() as moto, \
                PostgresServer(durable=True) as postgres:
            for database in options.databases.split(","):
                for threads in [int(t) for t in options.threads.split(",")]:
                    print(f"burst: {database}, {threads} sync threads ...", file=sys.stderr,
                          flush=True)
                    runs.append(one_run((mongo, moto, postgres), options, database, threads,
                                        Path(workroot, f"{database}-{threads}")))
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    print(table(runs))
    write_json(options.output, {
        "command": " ".join(["python -m bench burst", *argv]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "runs": runs})
    print(f"\nwritten to {options.output}")
