"""``python -m bench first-index``: indexing an existing bucket for the first time.

One moto bucket of ``--datasets`` small datasets (``--items`` items in
turn, each with a tag and an annotation; one dtool copy per size, the rest
cloned), then, each on a fresh index (a fresh SQLite file and a fresh
database of the same Mongo-wire server), the commands a dserver admin runs,
as real subprocesses with a production dserver's environment:

1. ``flask base_uri index s3://<bucket>``: what dserver users run today
   (dservercore walks the bucket with dtool and registers every dataset);
2. ``flask notification resync s3://<bucket>``: our reconciler's pass (at
   the default ``DSERVER_NOTIFY_RECONCILE_MAX_RPS``, 20 requests/s), then
   the syncs it causes, until it exits with every dataset searchable;
3. the same unpaced (``DSERVER_NOTIFY_RECONCILE_MAX_RPS`` very high).

Figures per command: wall seconds (from start to exit, app start
included: both are one command), S3 requests (counted at moto), datasets
in dservercore's SQL table and in the search documents (must be the same
URIs for every command), and the load average before and after. The
machine is shared: load moves the seconds, never the request counts.
"""
import argparse
import datetime
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

from bench import envs
from bench.reconcile import CLONE_WORKERS, UNPACED
from bench.report import write_json
from devstack.datasets import Bucket, clone_dataset
from devstack.dserver import dserver_env, prepare_index_in_subprocess
from devstack.mongo import MongoServer
from devstack.moto import MotoServer
from devstack.ports import ROOT, python_env

FLASK = [sys.executable, "-m", "flask", "--app", "dservercore:create_app()"]
#: (name, command after ``flask``, extra environment)
COMMANDS = (
    ("flask base_uri index", ["base_uri", "index"], {}),
    ("ours, default pace", ["notification", "resync"], {}),
    ("ours, unpaced", ["notification", "resync"],
     {"DSERVER_NOTIFY_RECONCILE_MAX_RPS": UNPACED}),
)


def parse_args(argv):
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    parser = argparse.ArgumentParser(prog="python -m bench first-index", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=int, default=1000, help="datasets (default 1000)")
    parser.add_argument("--items", default="5,20,45",
                        help="items per dataset, sizes used in turn (default 5,20,45)")
    parser.add_argument("--only", help="comma-separated subset of: index,paced,unpaced")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds a command may take (default 3600)")
    parser.add_argument("--output", type=Path,
                        default=envs.BENCH_DIR / "results" / f"first-index-{stamp}.json")
    return parser.parse_args(argv)


def fill_bucket(moto, datasets, sizes):
    """``datasets`` small datasets, the sizes in turn; returns the bucket."""
    bucket = Bucket(moto, f"bench-first-{uuidlib.uuid4().hex[:8]}")
    for number, items in enumerate(sizes):
        share = datasets // len(sizes) + (1 if number < datasets % len(sizes) else 0)
        source = bucket.put_dataset(f"first-{items}", items=items, tags=["bench"],
                                    annotations={"purpose": "benchmark"})
        clone_dataset(bucket.s3, bucket.name, source, share - 1, workers=CLONE_WORKERS)
    return bucket


def load():
    return {"loadavg": [round(x, 2) for x in os.getloadavg()],
            "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}


def indexed_uris(env, mongo):
    """URIs in dservercore's SQL table and in the search plugin's documents."""
    path = env["SQLALCHEMY_DATABASE_URI"][len("sqlite:///"):]
    with sqlite3.connect(path) as connection:
        listed = {row[0] for row in connection.execute("SELECT uri FROM dataset")}
    import pymongo
    with pymongo.MongoClient(mongo.uri) as client:
        collection = client[env["SEARCH_MONGO_DB"]][env["SEARCH_MONGO_COLLECTION"]]
        searchable = {doc["uri"] for doc in collection.find({}, {"uri": 1})}
    return listed, searchable


def run_command(name, args, extra, servers, bucket, workdir, timeout):
    """One command on a fresh index; its figures, and the URIs it indexed."""
    mongo, moto = servers
    env = dserver_env(workdir, mongo.uri, {bucket.name: bucket.base_uri},
                      {"DSERVER_NOTIFY_WORKER": "off", **extra, **bucket.env})
    prepare_index_in_subprocess(env, [bucket.base_uri])
    before = load()
    moto.reset_request_count()
    started = time.monotonic()
    done = subprocess.run([*FLASK, *args, bucket.base_uri], env=python_env(env), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - started
    requests = moto.requests()
    after = load()
    Path(workdir, "output.txt").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    listed, searchable = indexed_uris(env, mongo)
    return {"command": " ".join(["flask", *args, bucket.base_uri]), "seconds": round(seconds, 2),
            "s3_requests": len(requests),
            "s3_requests_by_kind": by_kind(requests),
            "datasets_listed": len(listed), "datasets_searchable": len(searchable),
            "load_before": before, "load_after": after}, listed | searchable


def by_kind(requests):
    """S3 requests as LIST, GET (of an object), HEAD and other."""
    kinds = {}
    for method, path in requests:
        bucket_only = path.split("?")[0].strip("/").count("/") == 0
        kind = "LIST" if method == "GET" and bucket_only else \
            method if method in ("GET", "HEAD") else "other"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def compare(runs, datasets):
    """Ours against flask base_uri index: how many times faster and cheaper."""
    base = runs.get("flask base_uri index")
    lines = []
    for name, figures in runs.items():
        if base is None or name == "flask base_uri index":
            continue
        figures["faster_by"] = round(base["seconds"] / figures["seconds"], 2)
        figures["cheaper_by"] = round(base["s3_requests"] / max(figures["s3_requests"], 1), 2)
        lines.append(f"{name}: {figures['faster_by']}x as fast, {figures['cheaper_by']}x "
                     f"fewer S3 requests than flask base_uri index")
    return lines


def table(runs, datasets):
    lines = [f"{'command':<22}  {'seconds':>8}  {'S3 requests':>11}  {'per dataset':>11}  "
             f"{'LIST/GET/HEAD':>13}  {'listed':>6}  {'searchable':>10}  load before/after (1 min)"]
    for name, r in runs.items():
        lines.append(f"{name:<22}  {r['seconds']:>8}  {r['s3_requests']:>11}  "
                     f"{r['s3_requests'] / datasets:>11.2f}  {kinds(r):>13}  "
                     f"{r['datasets_listed']:>6}  {r['datasets_searchable']:>10}  "
                     f"{r['load_before']['loadavg'][0]} / {r['load_after']['loadavg'][0]}")
    return "\n".join(lines)


def kinds(figures):
    counts = figures["s3_requests_by_kind"]
    return "/".join(str(counts.get(kind, 0)) for kind in ("LIST", "GET", "HEAD"))


def main(argv):
    options = parse_args(argv)
    sizes = [int(size) for size in options.items.split(",")]
    chosen = options.only.split(",") if options.only else ["index", "paced", "unpaced"]
    commands = [c for key, c in zip(["index", "paced", "unpaced"], COMMANDS) if key in chosen]
    workroot = tempfile.mkdtemp(prefix="dserver-bench-first-")
    runs, uris = {}, {}
    try:
        with MongoServer() as mongo, MotoServer() as moto:
            print(f"first-index: filling a bucket with {options.datasets} datasets ...",
                  file=sys.stderr, flush=True)
            bucket = fill_bucket(moto, options.datasets, sizes)
            for number, (name, args, extra) in enumerate(commands):
                print(f"first-index: {name} ...", file=sys.stderr, flush=True)
                runs[name], uris[name] = run_command(
                    name, args, extra, (mongo, moto), bucket, Path(workroot, str(number)),
                    options.timeout)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    same = len({frozenset(found) for found in uris.values()}) == 1
    comparison = compare(runs, options.datasets)
    print(table(runs, options.datasets))
    print(f"every command indexed the same {options.datasets} URIs: "
          f"{same and all(len(u) == options.datasets for u in uris.values())}")
    print("\n".join(comparison))
    write_json(options.output, {
        "command": " ".join(["python -m bench first-index", *argv]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "datasets": options.datasets, "items": sizes, "same_uris": same,
        "runs": runs, "comparison": comparison})
    print(f"\nwritten to {options.output}")
