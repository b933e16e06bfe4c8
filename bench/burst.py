"""``python -m bench burst``: a burst of small dataset copies, synced by N hosts.

One bucket of ``--datasets`` small datasets (one copied with dtool, the
rest cloned) serves every run. Each run gets a fresh SQL database (a SQLite
file, or a PostgreSQL database from pgserver) and a fresh Mongo database:
the notifications of all objects are posted to the webhook of an app in
this process (records batched 100 to a request, workers off, debounce 0,
reconciler off), then ``--hosts`` processes (``python -m bench.burst_host``,
each a dserver that only syncs, with ``DSERVER_NOTIFY_SYNC_THREADS``
threads) start syncing at the same moment, and the run is timed until every
dataset is listed by dservercore AND found by the search plugin, and the
inbox is settled. Figures: seconds, datasets/s, S3 requests per dataset
(counted at moto), registrations (counted by every host, must equal the
datasets), the load average before and during the run, how busy the
machine's CPUs were, and the CPU milliseconds per dataset of the hosts,
moto, the Mongo-wire server, PostgreSQL and this process (bench/cpu.py).
The machine is shared, so seconds are noisy when the load is high.

Hosts above 1 run on PostgreSQL only by default (the issue's "3 hosts");
SQLite runs with ``--sqlite-hosts`` (default 1). ``--profile DIR`` writes
each host's yappi profile (all threads; ``--profile-clock wall`` or
``cpu``) to DIR.
"""
import argparse
import datetime
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

from bench import cpu, envs
from bench.report import write_json
from devstack.datasets import Bucket, clone_dataset
from devstack.dserver import ADMIN, app_config, dserver_env, prepare_index, token_for
from devstack.mongo import MongoServer
from devstack.moto import MotoServer
from devstack.payloads import minio_bodies_for_keys
from devstack.ports import ROOT, python_env
from devstack.postgres import PostgresServer
from devstack.s3 import list_keys

RECORDS_PER_REQUEST = 100
POLL_SECONDS = 0.5
PAGE_SIZE = 100  # flask-smorest's largest page


def parse_args(argv):
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    parser = argparse.ArgumentParser(prog="python -m bench burst", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=int, default=1000)
    parser.add_argument("--items", type=int, default=5, help="items per dataset (default 5)")
    parser.add_argument("--threads", default="1,4,8",
                        help="sync threads per host, one run each (default 1,4,8)")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--hosts", default="1,3",
                        help="processes syncing one PostgreSQL database (default 1,3)")
    parser.add_argument("--sqlite-hosts", default="1",
                        help="processes syncing one SQLite file (default 1)")
    parser.add_argument("--profile", type=Path, help="write each host's yappi profile here")
    parser.add_argument("--profile-clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--output", type=Path,
                        default=envs.BENCH_DIR / "results" / f"burst-{stamp}.json")
    return parser.parse_args(argv)


def numbers(text):
    return [int(n) for n in text.split(",") if n]


def notification_bodies(bucket):
    """Every object's creation, as MinIO records, 100 to a request body."""
    records = [body["Records"][0] for body in
               minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name))]
    return [{"Records": records[i:i + RECORDS_PER_REQUEST]}
            for i in range(0, len(records), RECORDS_PER_REQUEST)]


class Run:
    """One database and index, filled with notifications, synced by hosts."""

    def __init__(self, workdir, mongo, bucket, database_uri, threads):
        import dservercore
        self.workdir = workdir
        self.bucket = bucket
        self.env = dserver_env(
            workdir, mongo.uri, {bucket.name: bucket.base_uri},
            {"DSERVER_NOTIFY_WORKER": "off", "DSERVER_NOTIFY_SYNC_THREADS": str(threads),
             "DSERVER_NOTIFY_DEBOUNCE_SECONDS": "0",
             "DSERVER_NOTIFY_RECONCILE_INTERVAL_SECONDS": "0", **bucket.env},
            mongo_db=f"burst-{uuidlib.uuid4().hex[:8]}", database_uri=database_uri)
        self.app = dservercore.create_app(app_config(self.env))
        prepare_index(self.app, [bucket.base_uri])
        self.ext = self.app.extensions["dserver_notification"]
        self.client = self.app.test_client()
        self.headers = {"Authorization":
                        f"Bearer {token_for(ADMIN, self.env['JWT_PRIVATE_KEY_FILE'])}"}

    def notify(self, bodies):
        for body in bodies:
            answer = self.client.post("/webhook/notify", json=body)
            assert answer.status_code == 202, answer.get_data(as_text=True)

    def start_hosts(self, count, profile_dir, clock):
        """Start ``count`` host processes; return them once all are ready."""
        hosts = []
        for number in range(count):
            args = [sys.executable, "-m", "bench.burst_host"]
            if profile_dir is not None:
                args += ["--profile", str(profile_dir / f"host{number}.txt"), "--clock", clock]
            log = open(self.workdir / f"host{number}.log", "ab")
            hosts.append(subprocess.Popen(args, cwd=ROOT, env=python_env(self.env),
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=log, text=True))
            log.close()
        for host in hosts:
            if host.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a host did not start: see {self.workdir}")
        return hosts

    def listed(self):
        from dservercore import sql_db
        from dservercore.sql_models import Dataset
        with self.app.app_context():
            count = sql_db.session.query(Dataset).count()
            sql_db.session.remove()
        return count

    def searchable(self):
        """How many datasets of the bucket the search plugin finds (flask-smorest
        answers at most PAGE_SIZE a page)."""
        found = 0
        for page in itertools.count(1):
            answer = self.client.post(f"/uris?page={page}&page_size={PAGE_SIZE}",
                                      headers=self.headers,
                                      json={"base_uris": [self.bucket.base_uri]})
            if answer.status_code != 200:
                return found
            found += len(answer.get_json())
            if len(answer.get_json()) < PAGE_SIZE:
                return found

    def settled(self):
        """Every dataset listed and searchable, and nothing left in the inbox."""
        from dserver_notification_plugin.states import State
        if self.listed() < self.expected:
            return False
        counts = self.ext.inbox.state_counts()
        if sum(counts.values()) != counts[State.DONE]:
            return False
        return self.searchable() >= self.expected

    def time_hosts(self, hosts, servers, timeout):
        """Say go to every host; seconds until settled, S3 requests, loads
        seen, and the CPU snapshots at go and at the end."""
        mongo, moto, postgres = servers
        roles = cpu.server_roles([host.pid for host in hosts], mongo, moto, postgres)
        moto.reset_request_count()
        loads = []
        cpu_at_go = cpu.snapshot(roles, alone=cpu.ALONE)
        started = time.monotonic()
        for host in hosts:
            host.stdin.write("go\n")
            host.stdin.flush()
        while not self.settled() and time.monotonic() - started < timeout:
            if any(host.poll() is not None for host in hosts):
                raise RuntimeError(f"a host ended during the burst: see {self.workdir}")
            loads.append(os.getloadavg()[0])
            time.sleep(POLL_SECONDS)
        seconds = time.monotonic() - started
        return seconds, moto.request_count(), loads, (cpu_at_go, cpu.snapshot(roles, alone=cpu.ALONE))

    def stop_hosts(self, hosts):
        """SIGTERM: each host stops its worker and flushes its counts."""
        for host in hosts:
            host.terminate()
        for host in hosts:
            try:
                host.wait(60)
            except subprocess.TimeoutExpired:
                host.kill()
                host.wait(10)

    def measure(self, bodies, servers, hosts_count, options):
        self.expected = options.datasets
        self.notify(bodies)
        load_before = os.getloadavg()
        profile = options.profile / self.workdir.name if options.profile else None
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
        hosts = self.start_hosts(hosts_count, profile, options.profile_clock)
        try:
            seconds, requests, loads, snapshots = self.time_hosts(hosts, servers,
                                                                  options.timeout)
        finally:
            self.stop_hosts(hosts)
        cpu_per_dataset, machine_busy = cpu.spent(*snapshots, per=options.datasets)
        self.ext.stop_background()  # flushes this process's intake counts while the db is up
        totals = self.ext.counters.totals()
        return {"seconds": round(seconds, 2),
                "datasets_per_second": round(options.datasets / seconds, 1),
                "all_searchable": self.settled(),
                "s3_requests": requests,
                "s3_requests_per_dataset": round(requests / options.datasets, 2),
                "registrations": totals.get("index_registrations", 0),
                "cpu_seconds_per_dataset": cpu_per_dataset,
                "machine_cpu_busy": machine_busy,
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_during_mean": round(sum(loads) / max(1, len(loads)), 2),
                "loadavg_after": [round(x, 2) for x in os.getloadavg()]}


def make_bucket(moto, options):
    bucket = Bucket(moto, f"bench-burst-{uuidlib.uuid4().hex[:8]}")
    source = bucket.put_dataset("burst", items=options.items)
    clone_dataset(bucket.s3, bucket.name, source, options.datasets - 1, workers=4)
    return bucket


def plan(options):
    """``(database, hosts, threads)`` of every run, in order."""
    runs = []
    for database in options.databases.split(","):
        hosts = numbers(options.sqlite_hosts if database == "sqlite" else options.hosts)
        runs += [(database, h, t) for h in hosts for t in numbers(options.threads)]
    return runs


ROLES = ("hosts", "moto", "mongo", "postgresql", "benchmark")


def table(runs):
    lines = ["database    hosts  threads  seconds  datasets/s  S3 req/dataset  "
             "registrations  load (before, during)  CPU busy  "
             "CPU ms/dataset (hosts, moto, mongo, postgresql, benchmark)"]
    for r in runs:
        cpu_ms = ", ".join(f"{1000 * r['cpu_seconds_per_dataset'][role]:.0f}" for role in ROLES)
        lines.append(f"{r['database']:<10}  {r['hosts']:>5}  {r['threads']:>7}  "
                     f"{r['seconds']:>7}  {r['datasets_per_second']:>10}  "
                     f"{r['s3_requests_per_dataset']:>14}  {r['registrations']:>13}  "
                     f"{r['loadavg_before'][0]:>9}, {r['loadavg_during_mean']:<10}  "
                     f"{r['machine_cpu_busy']:>8}  {cpu_ms}")
    return "\n".join(lines)


def main(argv):
    options = parse_args(argv)
    if options.profile:
        options.profile.mkdir(parents=True, exist_ok=True)
    workroot = tempfile.mkdtemp(prefix="dserver-bench-")
    runs = []
    try:
        with MongoServer() as mongo, MotoServer() as moto, \
                PostgresServer(durable=True) as postgres:
            print(f"burst: cloning {options.datasets} datasets ...", file=sys.stderr, flush=True)
            bucket = make_bucket(moto, options)
            bodies = notification_bodies(bucket)
            for database, hosts, threads in plan(options):
                print(f"burst: {database}, {hosts} hosts x {threads} sync threads ...",
                      file=sys.stderr, flush=True)
                workdir = Path(workroot, f"{database}-{hosts}-{threads}")
                database_uri = postgres.create_database() if database == "postgresql" \
                    else None
                run = Run(workdir, mongo, bucket, database_uri, threads)
                figures = run.measure(bodies, (mongo, moto, postgres), hosts, options)
                runs.append({"database": database, "hosts": hosts, "threads": threads,
                             "datasets": options.datasets, **figures})
                print(table(runs[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
                record(options.output, argv, runs)  # so far: a long series may be cut short
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    print(table(runs))
    print(f"\nwritten to {options.output}")


def record(path, argv, runs):
    write_json(path, {
        "command": " ".join(["python -m bench burst", *argv]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "runs": runs})
