"""``python -m bench load``: copies and edits at once, on 3 hosts sharing PostgreSQL.

Three gunicorn dservers (``--hosts``, 2 workers each, this working tree's
venv, production defaults: debounce 2 s, 4 sync threads, reconciler on)
share one database of one PostgreSQL 16 server (pgserver, durable
defaults), one Mongo-wire server and one moto bucket. Per run:

1. ``--edits`` datasets per kind of edit are written to S3 and indexed
   (their notifications sent, then waited for until every one is listed and
   the inbox is settled);
2. ``--copies`` fresh datasets are written to S3 (clones of a dtool copy,
   each with its own README);
3. at once, each in its own thread: every copy's MinIO notifications in
   dtool-s3's write order (with ETags, ``dtool`` twice, as
   :mod:`bench.replay` builds them), and every edit of an indexed dataset
   as dtool makes it (the S3 write, then its notification): ``readme
   write`` (README.yml replaced), ``tag set`` (a tag added), ``annotation
   set`` (an annotation changed), ``tag delete`` (a tag object removed).
   Each operation's notifications go to the hosts in turn, so every
   operation is spread over the 3 hosts;
4. from each operation's last acknowledgement until dserver's API shows
   it: the copy, the new README and the new annotation found by a
   free-text search for the word each holds, the added tag and the
   removed tag by tag search. One poller per kind, one search every 50
   ms, asking the hosts in turn (how long each search takes is recorded:
   the API's own latency under the load).

Figures: p50 and p99 (nearest rank) per kind and overall, over all runs;
the goal is p99 <= 0.3 s. At the end every operation is checked once more
through the readmes, tags and annotations routes. The load average is
recorded: the machine is shared, and load moves every figure here; so is
the CPU each role (the hosts, moto, the Mongo-wire server, PostgreSQL, the
benchmark) used during each run's measured moment (:mod:`bench.cpu`), and
the time from the first write until every operation showed. Each
operation's record also has its inbox row's story (``inbox``): seconds from
the last event heard to due, to the last claim and to the end of the last
sync, so a slow operation shows whether it waited, queued or synced slowly.
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuidlib
from pathlib import Path

import requests

from bench import cpu, envs
from bench.replay import percentile
from bench.report import write_json
from devstack.datasets import Bucket, copy_write_order_with_etags
from devstack.dserver import LiveDserver, dserver_env, prepare_index_in_subprocess
from devstack.mongo import MongoServer
from devstack.moto import MotoServer
from devstack.payloads import minio_webhook_body, minio_bodies_for_keys
from devstack.ports import ROOT, start_process, stop_process
from devstack.postgres import PostgresServer
from devstack.s3 import list_keys

GOAL_SECONDS = 0.3
POLL_SECONDS = 0.05
EDITS = ("readme write", "tag set", "annotation set", "tag delete")
KINDS = ("copy",) + EDITS
CREATED, REMOVED = "s3:ObjectCreated:Put", "s3:ObjectRemoved:Delete"


def parse_args(argv):
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    parser = argparse.ArgumentParser(prog="python -m bench load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=20, help="copies per run (default 20)")
    parser.add_argument("--edits", type=int, default=5,
                        help="edits of each kind per run (default 5: 20 edits)")
    parser.add_argument("--items", type=int, default=5, help="items per dataset (default 5)")
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--hosts", type=int, default=3, help="dservers (default 3)")
    parser.add_argument("--worker", choices=("inside", "separate"), default="inside",
                        help="inside: the sync worker runs in each gunicorn worker "
                             "(DSERVER_NOTIFY_WORKER=on, the default); separate: the web "
                             "processes only serve (off) and each host runs `flask "
                             "notification worker` beside them (docs/operations.rst)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for an operation to show (default 60)")
    parser.add_argument("--output", type=Path,
                        default=envs.BENCH_DIR / "results" / f"load-{stamp}.json")
    return parser.parse_args(argv)


class Hosts:
    """The dservers, asked in turn."""

    def __init__(self, servers):
        self.servers = servers
        self.headers = servers[0].admin_headers()
        self._turn = 0
        self._lock = threading.Lock()
        self.search_seconds = []  # how long each search took (the API under load)

    def next_url(self):
        with self._lock:
            self._turn += 1
            return self.servers[self._turn % len(self.servers)].url

    def search(self, session, query):
        started = time.monotonic()
        answer = session.post(f"{self.next_url()}/uris?page_size=100", json=query,
                              headers=self.headers, timeout=30)
        answer.raise_for_status()
        with self._lock:
            self.search_seconds.append(time.monotonic() - started)
        return {d["uri"] for d in answer.json()}

    def get(self, session, route, uri):
        suffix = uri.replace("://", "/", 1)
        return session.get(f"{self.next_url()}/{route}/{suffix}", headers=self.headers,
                           timeout=30)

    def status(self):
        return requests.get(f"{self.servers[0].url}/webhook/status", headers=self.headers,
                            timeout=30).json()


class Operation:
    """One copy or edit: its S3 writes, its notifications, when it was acked and seen."""

    def __init__(self, kind, uri, bodies, write=lambda: None):
        self.kind, self.uri, self.bodies, self.write = kind, uri, bodies, write
        self.last_ack = self.seen = self.inbox = self.started = None
        self.failed = 0

    def send(self, hosts, session, first_host):
        self.started = time.monotonic()
        self.write()
        for number, body in enumerate(self.bodies):
            url = hosts.servers[(first_host + number) % len(hosts.servers)].url
            if session.post(f"{url}/webhook/notify", json=body, timeout=60).status_code != 202:
                self.failed += 1
        self.last_ack = time.monotonic()

    @property
    def seconds(self):
        if self.last_ack is None or self.seen is None:
            return None
        return max(0.0, self.seen - self.last_ack)


class Run:
    """One run's datasets and operations (see the module docstring)."""

    def __init__(self, bucket, hosts, options, number, servers, workers=()):
        self.bucket, self.hosts, self.options = bucket, hosts, options
        self.servers = servers  # (mongo, moto, postgres), for the CPU they use
        self.workers = workers  # `flask notification worker` processes, if separate
        self.tag = f"added{number}x{uuidlib.uuid4().hex[:8]}"
        self.target_word = f"target{number}x{uuidlib.uuid4().hex[:8]}"
        self.words = {kind: f"{kind.split()[0]}{number}x{uuidlib.uuid4().hex[:8]}"
                      for kind in KINDS}

    def index_edit_targets(self):
        """Datasets to edit, written and indexed before the measured moment."""
        before = set(list_keys(self.bucket.s3, self.bucket.name))
        targets = {kind: [self.bucket.put_dataset(
            f"edit-{n}", items=self.options.items, tags=["load", "dropme"],
            annotations={"purpose": "before"},
            readme=f"description: a dataset edited under load {self.target_word}\n")
            for n in range(self.options.edits)] for kind in EDITS}
        keys = [k for k in list_keys(self.bucket.s3, self.bucket.name) if k not in before]
        session = requests.Session()
        for number, body in enumerate(minio_bodies_for_keys(self.bucket.name, keys)):
            url = self.hosts.servers[number % len(self.hosts.servers)].url
            assert session.post(f"{url}/webhook/notify", json=body, timeout=60).ok
        uris = {uri for group in targets.values() for uri in group}
        wait_for(lambda: uris <= self.hosts.search(session, {"free_text": self.target_word}) and self._settled(),
                 "the edit targets indexed", 600)
        return targets

    def cpu_roles(self):
        return cpu.server_roles([server.proc.pid for server in self.hosts.servers]
                                + [worker.pid for worker in self.workers], *self.servers)

    def _settled(self):
        inbox = self.hosts.status()["inbox"]
        return not inbox.get("pending") and not inbox.get("processing")

    def operations(self, targets):
        copies = [self.bucket.put_dataset(
            f"copy-{n}", items=self.options.items, tags=["load"],
            annotations={"purpose": "copy"},
            readme=f"description: a copy under load {self.words['copy']}\n")
            for n in range(self.options.copies)]
        operations = [self.copy_operation(uri) for uri in copies]
        for kind, uris in targets.items():
            operations += [self.edit_operation(kind, uri) for uri in uris]
        return operations

    def copy_operation(self, uri):
        uuid = uri.rsplit("/", 1)[1]
        keys, etags = copy_write_order_with_etags(self.bucket.s3, self.bucket.name, uuid)
        return Operation("copy", uri, minio_bodies_for_keys(self.bucket.name, keys, CREATED,
                                                            etags))

    def edit_operation(self, kind, uri):
        s3, name = self.bucket.s3, self.bucket.name
        uuid = uri.rsplit("/", 1)[1]
        prefix = s3.get_object(Bucket=name, Key=f"dtool-{uuid}")["Body"].read().decode()
        root = f"{prefix}{uuid}/"
        key, body, event = {
            "readme write": (root + "README.yml",
                             f"description: edited {self.words['readme write']}\n", CREATED),
            "tag set": (f"{root}tags/{self.tag}", "", CREATED),
            "annotation set": (f"{root}annotations/purpose.json",
                               json.dumps(self.words["annotation set"]), CREATED),
            "tag delete": (f"{root}tags/dropme", None, REMOVED),
        }[kind]
        operation = Operation(kind, uri, [])

        def write():  # as dtool does it, then the notification MinIO would send
            if body is None:
                s3.delete_object(Bucket=name, Key=key)
                operation.bodies = [minio_webhook_body(name, key, event)]
            else:
                etag = s3.put_object(Bucket=name, Key=key, Body=body.encode())["ETag"]
                operation.bodies = [minio_webhook_body(name, key, event, etag=etag.strip('"'))]
        operation.write = write
        return operation

    def visible(self, kind, session, pending):
        """The URIs among ``pending`` that dserver's search shows done: one
        search per sweep and kind, for the word the copies' README, the
        new README or the new annotation holds (the search plugin's text
        index covers every string of a dataset's document), or for the tag
        set or removed. A GET per pending edit, as the annotations were
        polled before, stamped the last URI of a sweep with the time of
        every GET before it, and each GET is one more request to the
        loaded hosts. (A
        search by UUID never matches: the search plugin compares a UUID
        object with the stored string.)"""
        query = {"tag set": {"tags": [self.tag]}, "tag delete": {"tags": ["dropme"]}}.get(
            kind) or {"free_text": self.words[kind]}
        found = self.hosts.search(session, query)
        return pending - found if kind == "tag delete" else pending & found

    def shown_by_routes(self, session, operation):
        """Checked once at the end through the routes a user reads."""
        kind, uri = operation.kind, operation.uri
        if kind == "copy":
            return self.hosts.get(session, "readmes", uri).ok
        if kind == "readme write":
            return self.words[kind] in self.hosts.get(session, "readmes", uri).text
        if kind in ("tag set", "tag delete"):
            tags = self.hosts.get(session, "tags", uri).json()["tags"]
            return (self.tag in tags) if kind == "tag set" else ("dropme" not in tags)
        return annotation(self.hosts.get(session, "annotations", uri)) == self.words[kind]


def annotation(answer):
    """The ``purpose`` annotation in a ``GET /annotations/<uri>`` answer."""
    return answer.json()["annotations"].get("purpose")


def poll(run, kind, operations, deadline):
    """Record when each acked operation of ``kind`` first shows."""
    session = requests.Session()
    waiting = {op.uri: op for op in operations if op.kind == kind}
    while waiting and time.monotonic() < deadline:
        acked = {uri for uri, op in waiting.items() if op.last_ack is not None}
        if acked:
            shown = run.visible(kind, session, acked)
            now = time.monotonic()
            for uri in shown:
                waiting.pop(uri).seen = now
        time.sleep(POLL_SECONDS)


def measure(run, operations, timeout):
    """Send every operation at once and poll until each shows; return the
    CPU each role used meanwhile (seconds), how busy the machine was and
    how long each search of the pollers took."""
    roles = run.cpu_roles()
    searches_before = len(run.hosts.search_seconds)
    before = cpu.snapshot(roles, alone=cpu.ALONE)
    deadline = time.monotonic() + timeout
    senders = [threading.Thread(target=op.send, args=(run.hosts, requests.Session(), n))
               for n, op in enumerate(operations)]
    pollers = [threading.Thread(target=poll, args=(run, kind, operations, deadline))
               for kind in KINDS]
    for thread in pollers + senders:
        thread.start()
    for thread in senders + pollers:
        thread.join()
    cpu_seconds, busy = cpu.spent(before, cpu.snapshot(roles, alone=cpu.ALONE))
    return cpu_seconds, busy, run.hosts.search_seconds[searches_before:]


def explain(database_uri, operations):
    """Where each operation's time went, from its inbox row once it shows:
    the wait before it was due (debounce or edit delay), the wait for a
    claim, and the sync itself (seconds after the last event heard)."""
    import sqlalchemy as sa
    from dserver_notification_plugin.db.tables import inbox
    engine = sa.create_engine(database_uri)
    with engine.connect() as conn:
        rows = {row.dataset_uri: row for row in conn.execute(sa.select(inbox).where(
            inbox.c.dataset_uri.in_([op.uri for op in operations])))}
    engine.dispose()
    for op in operations:
        row = rows.get(op.uri)
        op.inbox = None if row is None else {
            "last_outcome": row.last_outcome, "events": row.events,
            "due_after_last_event_s": _rounded(row.due_at - row.last_event_at),
            "claimed_after_last_event_s": _rounded((row.claimed_at or 0) - row.last_event_at),
            "finished_after_last_event_s": _rounded((row.finished_at or 0) - row.last_event_at)}


def wait_for(condition, what, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def load():
    return {"loadavg": [round(x, 2) for x in os.getloadavg()],
            "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}


def summary(operations):
    rows = {}
    for kind in (*KINDS, "overall"):
        chosen = [op for op in operations if kind in ("overall", op.kind)]
        seconds = [op.seconds for op in chosen if op.seconds is not None]
        rows[kind] = {"operations": len(chosen), "never": len(chosen) - len(seconds),
                      "p50_s": _rounded(percentile(seconds, 0.5)),
                      "p99_s": _rounded(percentile(seconds, 0.99)),
                      "max_s": _rounded(max(seconds, default=None))}
    return rows


def _rounded(value):
    return None if value is None else round(value, 3)


def text(rows):
    lines = [f"{'kind':<15}  {'ops':>4}  {'p50 (s)':>8}  {'p99 (s)':>8}  {'max (s)':>8}  never"]
    for kind, r in rows.items():
        lines.append(f"{kind:<15}  {r['operations']:>4}  {_cell(r['p50_s'])}  "
                     f"{_cell(r['p99_s'])}  {_cell(r['max_s'])}  {r['never']:>5}")
    met = rows["overall"]["never"] == 0 and rows["overall"]["p99_s"] is not None \
        and rows["overall"]["p99_s"] <= GOAL_SECONDS
    lines.append(f"[{'met' if met else 'MISSED'}] overall p99 <= {GOAL_SECONDS} s")
    return "\n".join(lines)


def _cell(value):
    return f"{'never' if value is None else value:>8}"


def start_hosts(workroot, mongo, bucket, database_uri, count, worker="inside"):
    """``count`` hosts: a gunicorn dserver each and, with ``worker="separate"``,
    a ``flask notification worker`` beside it. Returns ``(servers, workers)``."""
    env = dserver_env(Path(workroot, "env"), mongo.uri, {bucket.name: bucket.base_uri},
                      database_uri=database_uri)
    env.update(bucket.env)
    if worker == "separate":
        env["DSERVER_NOTIFY_WORKER"] = "off"
    prepare_index_in_subprocess(env, [bucket.base_uri])
    servers, workers = [], []
    for number in range(count):
        workdir = Path(workroot, f"host{number}")
        workdir.mkdir(parents=True)
        servers.append(LiveDserver(env, workdir).start())
        if worker == "separate":
            workers.append(start_process(
                [sys.executable, "-m", "flask", "notification", "worker"],
                workdir / "worker.log", cwd=ROOT,
                env=dict(os.environ, **env, FLASK_APP="dservercore")))
    return servers, workers


def main(argv):
    options = parse_args(argv)
    workroot = tempfile.mkdtemp(prefix="dserver-bench-load-")
    operations, checks, loads, servers, workers = [], [], [], [], []
    try:
        with MongoServer() as mongo, MotoServer() as moto, \
                PostgresServer(durable=True) as postgres:
            bucket = Bucket(moto, f"bench-load-{uuidlib.uuid4().hex[:8]}")
            database_uri = postgres.create_database()
            servers, workers = start_hosts(workroot, mongo, bucket, database_uri,
                                           options.hosts, options.worker)
            hosts = Hosts(servers)
            # the reconciler's first pass, over the empty bucket, ends before any write
            wait_for(lambda: (hosts.status()["reconcile"]["pass"] or {}).get("finished_at"),
                     "the reconciler's first pass", 120)
            for number in range(options.runs):
                print(f"load: run {number + 1} of {options.runs} ...", file=sys.stderr,
                      flush=True)
                run = Run(bucket, hosts, options, number, (mongo, moto, postgres), workers)
                run_operations = run.operations(run.index_edit_targets())
                before = load()
                print("load: measuring", file=sys.stderr, flush=True)
                cpu_seconds, busy, searches = measure(run, run_operations, options.timeout)
                loads.append({"before": before, "after": load(), "cpu_seconds": cpu_seconds,
                              "machine_cpu_busy": busy, "poll_searches": len(searches),
                              "search_seconds_p50_max": [_rounded(percentile(searches, 0.5)),
                                                         _rounded(max(searches, default=None))],
                              "seconds_until_all_shown": _rounded(max(
                                  (op.seen for op in run_operations if op.seen), default=0)
                                  - min(op.started for op in run_operations))})
                session = requests.Session()
                checks += [run.shown_by_routes(session, op) for op in run_operations]
                explain(database_uri, run_operations)
                operations += run_operations
    finally:
        for worker in workers:
            stop_process(worker)
        for server in servers:
            server.stop()
        shutil.rmtree(workroot, ignore_errors=True)
    rows = summary(operations)
    print(text(rows))
    failed = sum(op.failed for op in operations)
    print(f"notifications not acknowledged with 202: {failed}; operations shown by the "
          f"readmes/tags/annotations routes at the end: {sum(checks)} of {len(checks)}")
    print("load: " + " | ".join(f"{l['before']['uptime']} -> {l['after']['loadavg']}"
                                for l in loads))
    for number, l in enumerate(loads, 1):
        print(f"run {number}: all shown {l['seconds_until_all_shown']} s after the first "
              f"write; {l['poll_searches']} searches by the pollers, taking "
              f"{l['search_seconds_p50_max'][0]} s (p50) to {l['search_seconds_p50_max'][1]} s; CPU seconds "
              f"{l['cpu_seconds']} (machine busy {l['machine_cpu_busy']})")
    write_json(options.output, {
        "command": " ".join(["python -m bench load", *argv]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
        "summary": rows, "goal_p99_s": GOAL_SECONDS, "unacknowledged": failed,
        "shown_by_routes": [sum(checks), len(checks)], "load": loads,
        "operations": [{"kind": op.kind, "uri": op.uri, "seconds": _rounded(op.seconds),
                        "notifications": len(op.bodies), "inbox": op.inbox}
                       for op in operations]})
    print(f"\nwritten to {options.output}")
