"""``python -m bench latency``: how soon the index follows S3, on SQLite and PostgreSQL.

Our plugin only (the ``ours`` venv, as installed), gunicorn with 2 workers
and the production defaults (debounce 2 s), on a fresh SQLite file and on
a fresh database of one PostgreSQL server (pgserver, durable defaults).
Each run is the copy/edit/delete story of :mod:`bench.scenario`: copy a
dataset, replay MinIO's notifications for it, time the last acknowledgement
to searchable; then the four dtool edits of :mod:`bench.edits` (readme
write, tag set, annotation set, tag delete), one at a time, each notified
as MinIO sends it and timed from its last acknowledgement to shown by
dserver's API; remove every object, replay the removals, time the last
acknowledgement to gone. Several runs per database: median and worst.
"""
import argparse
import datetime
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench import envs
from bench.edits import EDITS
from bench.report import write_json
from bench.scenario import PluginRun
from devstack.postgres import PostgresServer
from devstack.mongo import MongoServer
from devstack.moto import MotoServer

DATABASES = ("sqlite", "postgresql")
GOAL_SECONDS = 1.0
EDIT_GOAL_SECONDS = 0.3  # issue 25
# (label, phase, key): the figures summarised over the runs
FIGURES = (
    ("searchable after last ack (s)", "copy", "searchable_after_s"),
    ("gone from search after last ack (s)", "delete", "gone_from_search_after_s"),
    ("gone from listing after last ack (s)", "delete", "gone_from_listing_after_s"),
    ("events acked/s (copy)", "copy", "events_per_second"),
    ("S3 requests per copy", "copy", "s3_requests_total"),
    ("registrations per copy", "copy", "registrations"),
    *((f"{edit.name}: shown after last ack (s)", "edits", f"{edit.key}_visible_after_s")
      for edit in EDITS),
    *((f"{edit.name}: S3 requests", "edits", f"{edit.key}_s3_requests") for edit in EDITS),
    *((f"{edit.name}: registrations", "edits", f"{edit.key}_registrations")
      for edit in EDITS),
)
EDIT_LABELS = tuple(f"{edit.name}: shown after last ack (s)" for edit in EDITS)


def parse_args(argv):
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    parser = argparse.ArgumentParser(prog="python -m bench latency", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs per database (default 5)")
    parser.add_argument("--items", type=int, default=50, help="data items (default 50)")
    parser.add_argument("--senders", type=int, default=4, help="concurrent senders (default 4)")
    parser.add_argument("--debounce", type=float, default=2.0,
                        help="DSERVER_NOTIFY_DEBOUNCE_SECONDS (default 2)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait before reporting 'never' (default 60)")
    parser.add_argument("--databases", default=",".join(DATABASES),
                        help="comma-separated subset of sqlite,postgresql")
    parser.add_argument("--keep-workdir", action="store_true",
                        help="keep the temp dir with the dserver logs and databases")
    parser.add_argument("--output", type=Path,
                        default=envs.BENCH_DIR / "results" / f"latency-{stamp}.json")
    return parser.parse_args(argv)


def summarise(runs):
    """label -> {"median", "worst", "values"} over the runs (worst: max, or min for rates)."""
    summary = {}
    for label, phase, key in FIGURES:
        values = [run[phase][key] for run in runs]
        known = [v for v in values if v is not None]
        worst = None
        if len(known) == len(values) and known:
            worst = min(known) if key == "events_per_second" else max(known)
        summary[label] = {"median": statistics.median(known) if known else None,
                          "worst": worst, "values": values}
    return summary


def run_database(kind, python, servers, options, workroot):
    mongo, moto, postgres = servers
    runs = []
    for n in range(options.runs):
        print(f"{kind}: run {n + 1} of {options.runs} ...", file=sys.stderr, flush=True)
        database_uri = postgres.create_database() if kind == "postgresql" else None
        workdir = Path(workroot, kind, str(n))
        runs.append(PluginRun("ours", python, mongo, moto, options, workdir,
                              database_uri=database_uri, edits=True).run())
    return runs


def text(summaries, options):
    lines = [f"{options.items} items, {options.senders} senders, debounce "
             f"{options.debounce:g} s, gunicorn 2 workers, {options.runs} runs per database",
             ""]
    header = ["", *[f"{kind} median / worst" for kind in summaries]]
    rows = [header]
    for label, _, _ in FIGURES:
        rows.append([label, *[_pair(summaries[kind][label]) for kind in summaries]])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                               for i, cell in enumerate(row)).rstrip())
    lines.append("")
    for kind, summary in summaries.items():
        for label in ("searchable after last ack (s)", "gone from search after last ack (s)"):
            worst = summary[label]["worst"]
            met = worst is not None and worst <= GOAL_SECONDS
            lines.append(f"  [{'met' if met else 'MISSED'}] {kind}: {label} <= "
                         f"{GOAL_SECONDS:g} s in every run (worst {_number(worst)})")
        worst = [summary[label]["worst"] for label in EDIT_LABELS]
        met = all(w is not None and w <= EDIT_GOAL_SECONDS for w in worst)
        lines.append(f"  [{'met' if met else 'MISSED'}] {kind}: each dtool edit shown <= "
                     f"{EDIT_GOAL_SECONDS:g} s after its last ack in every run (worst "
                     f"{_number(max(worst) if None not in worst else None)})")
    return "\n".join(lines)


def _pair(figure):
    return f"{_number(figure['median'])} / {_number(figure['worst'])}"


def _number(value):
    if value is None:
        return "never"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def main(argv=None):
    options = parse_args(argv)
    kinds = [k for k in options.databases.split(",") if k]
    python = envs.ensure_venv("ours")
    workroot = tempfile.mkdtemp(prefix="dserver-bench-latency-")
    try:
        with MongoServer() as mongo, MotoServer() as moto, \
                PostgresServer(durable=True) as postgres:
            results = {kind: run_database(kind, python, (mongo, moto, postgres), options,
                                          workroot) for kind in kinds}
    finally:
        if options.keep_workdir:
            print(f"dserver logs and databases kept in {workroot}")
        else:
            shutil.rmtree(workroot, ignore_errors=True)
    summaries = {kind: summarise(runs) for kind, runs in results.items()}
    print("\n" + text(summaries, options))
    write_json(options.output, {
        "command": " ".join(["python -m bench latency", *(argv or [])]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
        "versions": envs.installed_versions("ours"),
        "summary": summaries, "runs": results})
    print(f"\nwritten to {options.output}")
