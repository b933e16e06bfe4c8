"""A reconcile pass over an unchanged bucket: S3 requests and seconds per dataset.

For each series (items per dataset, number of datasets) the runner makes a
fresh bucket on the shared moto_server, copies one dataset with dtool and
clones it under new UUIDs, lets one pass register them all (so their
signatures are recorded, as in production after the first pass), and then
measures a second pass over the unchanged bucket: S3 requests counted at
moto, wall-clock seconds, datasets checked and registrations made (must be
0). The pass runs unpaced (``DSERVER_NOTIFY_RECONCILE_MAX_RPS`` very high),
so the seconds are the plugin's own cost; the time a pass takes at the
default rate is requests / 20. Runs in this venv, in-process (a pass needs
no HTTP server); SQLite and the shared Mongo-wire server hold the index.
"""
import time
import uuid as uuidlib
from pathlib import Path

from devstack.datasets import Bucket, clone_dataset
from devstack.dserver import app_config, dserver_env, prepare_index

UNPACED = "100000"
DEFAULT_RPS = 20
CLONE_WORKERS = 4


def parse_series(text):
    """``"3:100,300:20"`` -> [(3, 100), (300, 20)]: items per dataset : datasets."""
    series = []
    for part in text.split(","):
        items, datasets = part.split(":")
        series.append((int(items), int(datasets)))
    return series


def _app(workdir, mongo_uri, bucket):
    import dservercore
    env = dserver_env(workdir, mongo_uri, {bucket.name: bucket.base_uri},
                      {"DSERVER_NOTIFY_WORKER": "off",
                       "DSERVER_NOTIFY_RECONCILE_MAX_RPS": UNPACED, **bucket.env})
    app = dservercore.create_app(app_config(env))
    prepare_index(app, [bucket.base_uri])
    return app


def measure(mongo, moto, items, datasets, workdir):
    """Figures of one unchanged-bucket pass with ``datasets`` of ``items`` items."""
    bucket = Bucket(moto, f"bench-rec-{uuidlib.uuid4().hex[:8]}")
    source = bucket.put_dataset("bench", items=items, tags=["bench"],
                                annotations={"purpose": "benchmark"})
    clone_dataset(bucket.s3, bucket.name, source, datasets - 1, workers=CLONE_WORKERS)
    return dict(items_per_dataset=items, **measure_bucket(mongo, moto, bucket, workdir))


def measure_bucket(mongo, moto, bucket, workdir):
    """Index the bucket with a first pass, then time a second one over it unchanged."""
    from dserver_notification_plugin.reconciler import one_pass
    app = _app(Path(workdir), mongo.uri, bucket)
    ext = app.extensions["dserver_notification"]
    first = one_pass(ext, bucket.base_uri)
    # the syncs the first pass causes, as `flask notification resync` runs them
    ext.worker.drain(include_waiting=True, threads=ext.settings.sync_threads)
    registered = ext.tally.since_start().get("index_registrations", 0)

    moto.reset_request_count()
    started = time.monotonic()
    walk = one_pass(ext, bucket.base_uri)
    seconds = time.monotonic() - started
    requests = moto.requests()
    ext.worker.drain(include_waiting=True)
    checked = walk.figures.checked
    return {
        "datasets": checked,
        "first_pass_missing": first.figures.missing,
        "s3_requests": len(requests),
        "s3_requests_per_dataset": round(len(requests) / max(checked, 1), 3),
        "object_gets": sum(1 for method, path in requests
                           if method == "GET" and "list-type=2" not in path),
        "drift_found": len(walk.findings),
        "registrations": ext.tally.since_start().get("index_registrations", 0) - registered,
        "seconds": round(seconds, 3),
        "seconds_per_1000_datasets": round(seconds * 1000 / max(checked, 1), 2),
        "paced_seconds_per_1000_datasets": round(len(requests) * 1000 / max(checked, 1)
                                                 / DEFAULT_RPS, 1),
    }


def run_series(mongo, moto, series, workroot):
    results = []
    for number, (items, datasets) in enumerate(series):
        print(f"reconcile: {datasets} datasets of {items} items ...", flush=True,
              file=__import__("sys").stderr)
        results.append(measure(mongo, moto, items, datasets,
                               Path(workroot, f"reconcile-{number}")))
    return results


COLUMNS = (("items/dataset", "items_per_dataset"), ("datasets", "datasets"),
           ("S3 req/dataset", "s3_requests_per_dataset"), ("object GETs", "object_gets"),
           ("drift", "drift_found"), ("registrations", "registrations"),
           ("s/1000 datasets", "seconds_per_1000_datasets"),
           (f"s/1000 at {DEFAULT_RPS} req/s", "paced_seconds_per_1000_datasets"))


def table(results):
    rows = [[label for label, _ in COLUMNS]]
    rows += [[str(result[key]) for _, key in COLUMNS] for result in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def growth(results):
    """How requests and seconds per dataset change from the fewest to the most items."""
    if len(results) < 2:
        return None
    low, high = min(results, key=lambda r: r["items_per_dataset"]), \
        max(results, key=lambda r: r["items_per_dataset"])
    return {
        "items": [low["items_per_dataset"], high["items_per_dataset"]],
        "s3_requests_per_dataset_ratio": round(
            high["s3_requests_per_dataset"] / max(low["s3_requests_per_dataset"], 1e-9), 3),
        "seconds_per_1000_ratio": round(
            high["seconds_per_1000_datasets"] / max(low["seconds_per_1000_datasets"], 1e-9),
            3),
    }
