"""``python -m bench claims``: claim throughput at 10,000 due inbox rows.

Fills a fresh database with due rows, then lets claimers (threads, one
connection each) claim until none is left, and reports claims per second.
Ways: compare-and-swap (what SQLite uses) and ``FOR UPDATE SKIP LOCKED``
(what PostgreSQL uses), the latter on PostgreSQL only; both timed on
PostgreSQL. Every row must be claimed exactly once, or the run fails.
Only the claim statements are timed: no sync, no S3.
"""
import argparse
import datetime
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from bench import envs
from bench.report import write_json
from devstack.postgres import PostgresServer
from dserver_notification_plugin.db import Database, Inbox, claims
from dserver_notification_plugin.keys import DatasetTarget

WAYS = {"compare-and-swap": claims.claim_compare_and_swap,
        "skip-locked": claims.claim_skip_locked}
FILL_CHUNK = 1000


def parse_args(argv):
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    parser = argparse.ArgumentParser(prog="python -m bench claims", description=__doc__)
    parser.add_argument("--rows", type=int, default=10000, help="due rows (default 10000)")
    parser.add_argument("--claimers", default="1,4", help="claimer counts (default 1,4)")
    parser.add_argument("--batches", default="1,16", help="rows per claim (default 1,16)")
    parser.add_argument("--output", type=Path,
                        default=envs.BENCH_DIR / "results" / f"claims-{stamp}.json")
    return parser.parse_args(argv)


def fill(engine, rows):
    inbox = Inbox(Database(engine=engine))
    for start in range(0, rows, FILL_CHUNK):
        targets = [DatasetTarget("s3://b", f"s3://b/{n:036d}", f"{n:036d}", "readme")
                   for n in range(start, min(rows, start + FILL_CHUNK))]
        inbox.enqueue(targets, debounce=0, max_delay=0, at=0.0)


def drain(engine, way, claimers, batch):
    """Claim everything with ``claimers`` threads; return (seconds, claimed ids)."""
    claimed, errors = [], []
    start = threading.Barrier(claimers + 1)

    def claimer(name):
        try:
            start.wait()
            while True:
                with engine.begin() as conn:
                    rows = way(conn, claims.claimable(1.0, 300), batch, name, 1.0)
                if not rows:
                    return
                claimed.extend(row["id"] for row in rows)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"c{i}",)) for i in range(claimers)]
    [t.start() for t in threads]
    start.wait()
    began = time.perf_counter()
    [t.join() for t in threads]
    seconds = time.perf_counter() - began
    if errors:
        raise errors[0]
    return seconds, claimed


def measure(kind, uri_of, way_name, claimers, batch, rows):
    engine = sa.create_engine(uri_of(), pool_size=claimers + 1)
    try:
        fill(engine, rows)
        seconds, claimed = drain(engine, WAYS[way_name], claimers, batch)
    finally:
        engine.dispose()
    if sorted(claimed) != sorted(set(claimed)) or len(claimed) != rows:
        raise AssertionError(f"{kind} {way_name}: {len(claimed)} claims, "
                             f"{len(set(claimed))} distinct, of {rows} rows")
    return {"database": kind, "way": way_name, "claimers": claimers, "rows_per_claim": batch,
            "seconds": round(seconds, 3), "claims_per_second": round(rows / seconds, 1)}


def main(argv=None):
    options = parse_args(argv)
    claimer_counts = [int(n) for n in options.claimers.split(",")]
    batches = [int(n) for n in options.batches.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-claims-") as tmp, \
            PostgresServer(durable=True) as postgres:
        uri_of = {"sqlite": lambda: f"sqlite:///{tmp}/{uuid.uuid4().hex}.db",
                  "postgresql": postgres.create_database}
        for kind, ways in (("sqlite", ["compare-and-swap"]),
                           ("postgresql", ["compare-and-swap", "skip-locked"])):
            for way_name in ways:
                for claimers in claimer_counts:
                    for batch in batches:
                        print(f"{kind} {way_name}, {claimers} claimers, {batch} per claim ...",
                              file=sys.stderr, flush=True)
                        results.append(measure(kind, uri_of[kind], way_name, claimers,
                                               batch, options.rows))
    print(f"\n{options.rows} due rows, claimed until none is left\n")
    print(f"{'database':<11} {'way':<17} {'claimers':>8} {'per claim':>9} {'claims/s':>9}")
    for r in results:
        print(f"{r['database']:<11} {r['way']:<17} {r['claimers']:>8} "
              f"{r['rows_per_claim']:>9} {r['claims_per_second']:>9.0f}")
    write_json(options.output, {
        "command": " ".join(["python -m bench claims", *(argv or [])]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "rows": options.rows, "results": results})
    print(f"\nwritten to {options.output}")
