"""``python -m bench reconcile``: a pass over a realistic mix of datasets, and a model.

One moto bucket holds ``--datasets`` datasets: most are small (copied with
dtool at each of ``--small-items`` sizes, then cloned), a share
(``--large-share``) are large: a clone of a small one plus ``--large-items``
empty objects under its ``data/`` (the walk reads names, never content, and
no sync reads items beyond the manifest). UUIDs are random, so large
datasets lie among the small ones in key order, as in a real bucket.

A first pass indexes them all; the measured pass is the second, over the
unchanged bucket, unpaced (see :mod:`bench.reconcile`). From its S3
requests per dataset the model gives a pass over ``--model-datasets``
datasets of the same mix at the default ``DSERVER_NOTIFY_RECONCILE_MAX_RPS``:
requests grow linearly with datasets (registration keys, small datasets'
keys and one request past each large dataset's items are all per dataset).
The load average is recorded with the figures: other work on the machine
slows the seconds, never the request count.
"""
import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import shutil
import uuid as uuidlib
from pathlib import Path

from bench import envs
from bench.reconcile import CLONE_WORKERS, DEFAULT_RPS, measure_bucket
from bench.report import write_json
from devstack.datasets import Bucket, clone_dataset, put_empty_objects
from devstack.mongo import MongoServer
from devstack.moto import MotoServer

DEFAULT_INTERVAL_SECONDS = 3600  # DSERVER_NOTIFY_RECONCILE_INTERVAL_SECONDS' default
#: Requests per unchanged dataset of the delimited walk this replaced: a LIST of
#: the root, of tags/ and of annotations/ (all datasets here have both folders).
DELIMITED_REQUESTS_PER_DATASET = 3


def parse_args(argv):
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    parser = argparse.ArgumentParser(prog="python -m bench reconcile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=int, default=1000, help="datasets (default 1000)")
    parser.add_argument("--large-share", type=float, default=0.1,
                        help="share of large datasets (default 0.1)")
    parser.add_argument("--small-items", default="5,20,45",
                        help="items per small dataset, sizes used in turn (default 5,20,45)")
    parser.add_argument("--large-items", type=int, default=10000,
                        help="items per large dataset (default 10000)")
    parser.add_argument("--model-datasets", type=int, default=100000,
                        help="datasets of the modelled pass (default 100000)")
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--output", type=Path,
                        default=envs.BENCH_DIR / "results" / f"reconcile-{stamp}.json")
    return parser.parse_args(argv)


def fill_bucket(moto, options):
    """The mix of the module docstring; returns the bucket and its composition."""
    bucket = Bucket(moto, f"bench-mix-{uuidlib.uuid4().hex[:8]}")
    sizes = [int(size) for size in options.small_items.split(",")]
    large = round(options.datasets * options.large_share)
    small = options.datasets - large
    sources = [bucket.put_dataset(f"small-{items}", items=items, tags=["bench"],
                                  annotations={"purpose": "benchmark"}) for items in sizes]
    for number, source in enumerate(sources):
        share = small // len(sizes) + (1 if number < small % len(sizes) else 0)
        clone_dataset(bucket.s3, bucket.name, source, share - 1, workers=CLONE_WORKERS)
    for uri in clone_dataset(bucket.s3, bucket.name, sources[0], large,
                             workers=CLONE_WORKERS):
        root = uri.rsplit("/", 1)[1] + "/data/"
        put_empty_objects(bucket.s3, bucket.name,
                          [f"{root}{n:040x}" for n in range(options.large_items)], workers=10)
    return bucket, {"small_datasets": small, "small_items": sizes, "large_datasets": large,
                    "large_items": options.large_items}


def model(figures, datasets):
    """A pass over ``datasets`` of the same mix at the default rate (seconds)."""
    per_dataset = figures["s3_requests"] / figures["datasets"]
    requests = per_dataset * datasets
    paced = requests / DEFAULT_RPS
    # The plugin's own work (ledger, index look-ups, the listing replies) measured
    # unpaced; the pass is sequential, so at worst the two add up.
    own = figures["seconds"] / figures["datasets"] * datasets
    return {"datasets": datasets, "s3_requests": round(requests),
            "paced_seconds": round(paced), "own_seconds": round(own),
            "pass_seconds_at_most": round(paced + own),
            "within_default_interval": paced + own <= DEFAULT_INTERVAL_SECONDS,
            "delimited_walk_paced_seconds": round(
                datasets * DELIMITED_REQUESTS_PER_DATASET / DEFAULT_RPS)}


def load():
    return {"loadavg": [round(x, 2) for x in os.getloadavg()],
            "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}


def main(argv):
    options = parse_args(argv)
    workroot = tempfile.mkdtemp(prefix="dserver-bench-")
    try:
        with MongoServer() as mongo, MotoServer() as moto:
            print(f"reconcile: filling a bucket with {options.datasets} datasets ...",
                  file=sys.stderr, flush=True)
            bucket, mix = fill_bucket(moto, options)
            before = load()
            figures = measure_bucket(mongo, moto, bucket, Path(workroot, "mix"))
            after = load()
    finally:
        if not options.keep_workdir:
            shutil.rmtree(workroot, ignore_errors=True)
    modelled = model(figures, options.model_datasets)
    print(text(mix, figures, modelled, before, after))
    record = {"command": " ".join(["python -m bench reconcile", *argv]),
              "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "mix": mix, "figures": figures, "model": modelled,
              "load_before": before, "load_after": after}
    write_json(options.output, record)
    print(f"\nwritten to {options.output}")


def text(mix, figures, modelled, before, after):
    return "\n".join([
        f"mix: {mix['small_datasets']} small datasets ({mix['small_items']} items in turn), "
        f"{mix['large_datasets']} of {mix['large_items']} items",
        f"measured pass over the unchanged bucket: {figures['datasets']} datasets, "
        f"{figures['s3_requests']} S3 requests ({figures['s3_requests_per_dataset']} per "
        f"dataset; delimited walk: {DELIMITED_REQUESTS_PER_DATASET}), "
        f"{figures['object_gets']} object GETs, {figures['drift_found']} drift, "
        f"{figures['registrations']} registrations, {figures['seconds']} s unpaced",
        f"model for {modelled['datasets']} datasets at {DEFAULT_RPS} req/s: "
        f"{modelled['s3_requests']} requests, {modelled['paced_seconds']} s paced + "
        f"{modelled['own_seconds']} s own work = at most {modelled['pass_seconds_at_most']} s "
        f"(default interval {DEFAULT_INTERVAL_SECONDS} s; delimited walk "
        f"{modelled['delimited_walk_paced_seconds']} s paced)",
        f"load: {before['uptime']} | after: {after['uptime']}"])
