"""``python -m bench``: this plugin against the published 0.4.3, side by side.

``python -m bench latency``, ``python -m bench claims`` and ``python -m
bench recovery`` run the latency, claim and crash/restart recovery
benchmarks on SQLite and PostgreSQL instead (bench/latency.py,
bench/claims.py, bench/recovery.py); ``python -m bench burst`` a burst of
small copies per number of sync threads (bench/burst.py) and ``python -m
bench reconcile`` a reconcile pass over a mix of small and large datasets,
with a model for 100,000 (bench/reconcile_mix.py).

Builds (or reuses) the two venvs, starts one Mongo-wire server and one
moto_server shared by both runs, runs the copy/delete story for each
plugin, prints one table and writes it as JSON. See bench/README.md.
"""
import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from bench import envs, reconcile
from bench.report import table, targets, targets_text, write_json
from bench.scenario import PluginRun
from devstack.mongo import MongoServer
from devstack.moto import MotoServer

PUBLISHED_NOTE = (
    "published 0.4.3 declares only dservercore>0.18.0; a plain install resolves "
    "flask-smorest 0.25, with which dservercore 0.22.0 does not import. It runs here "
    "only because the benchmark pins the same stack as ours (flask 2.3, flask-smorest "
    "0.42.3, marshmallow 3.26). Its entry point is misspelt 'NotficationExtension'.")
COUNTING_NOTE = (
    "registrations = successful dservercore.utils.register_dataset calls, counted in "
    "both servers by the same gunicorn post_fork wrapper (bench/gunicorn_hooks.py).")


def parse_args(argv=None):
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1000,
                        help="data items in the copied dataset (default 1000)")
    parser.add_argument("--senders", type=int, default=4,
                        help="concurrent notification senders (default 4)")
    parser.add_argument("--only", choices=envs.PLUGINS, help="run one plugin only")
    parser.add_argument("--debounce", type=float, default=2.0,
                        help="DSERVER_NOTIFY_DEBOUNCE_SECONDS for ours (default 2)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for search/deletion before 'never' (default 60)")
    parser.add_argument("--output", type=Path,
                        default=envs.BENCH_DIR / "results" / f"{stamp}.json",
                        help="JSON file to write (default bench/results/<timestamp>.json)")
    parser.add_argument("--reconcile", type=reconcile.parse_series, default="3:30,300:30",
                        metavar="ITEMS:DATASETS,...",
                        help="reconcile passes over unchanged buckets: items per dataset "
                             "and datasets per series (default 3:30,300:30)")
    parser.add_argument("--reconcile-only", action="store_true",
                        help="run only the reconcile scenario (no venvs, no gunicorn)")
    parser.add_argument("--keep-workdir", action="store_true",
                        help="keep the temp dir with the dserver logs and databases")
    return parser.parse_args(argv)


def machine():
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = int(next(line.split()[1] for line in
                           Path("/proc/meminfo").read_text().splitlines()
                           if line.startswith("MemTotal:")))
    except (OSError, StopIteration):
        mem_kib = 0
    return {"cpu": cpu, "cpus": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1),
            "os": platform.platform(), "python": platform.python_version()}


def run_all(options, workroot):
    plugins = [] if options.reconcile_only else \
        [options.only] if options.only else list(envs.PLUGINS)
    pythons = {plugin: envs.ensure_venv(plugin) for plugin in plugins}
    runs = {}
    with MongoServer() as mongo, MotoServer() as moto:
        if options.reconcile:
            runs["reconcile"] = reconcile.run_series(mongo, moto, options.reconcile, workroot)
        for plugin in plugins:
            print(f"running {plugin} with {options.items} items ...", file=sys.stderr,
                  flush=True)
            workdir = Path(workroot, plugin)
            figures = PluginRun(plugin, pythons[plugin], mongo, moto, options, workdir).run()
            versions = envs.installed_versions(plugin)
            figures["versions"] = versions
            figures["version"] = versions["dserver-notification-plugin"]
            runs[plugin] = figures
    return runs


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    subcommands = {"latency": "latency", "claims": "claims", "recovery": "recovery",
                   "reconcile": "reconcile_mix", "burst": "burst",
                   "first-index": "first_index", "load": "load"}
    if argv and argv[0] in subcommands:
        import importlib
        return importlib.import_module(f"bench.{subcommands[argv[0]]}").main(argv[1:])
    options = parse_args(argv)
    workroot = tempfile.mkdtemp(prefix="dserver-bench-")
    try:
        runs = run_all(options, workroot)
    finally:
        if not options.keep_workdir:
            shutil.rmtree(workroot, ignore_errors=True)
    reconciled = runs.pop("reconcile", None)
    checks = targets(runs, options.debounce)
    if runs:
        print(f"\n{options.items} items, {options.senders} senders, debounce "
              f"{options.debounce:g} s, gunicorn 2 workers\n")
        print(table(runs))
    if reconciled:
        print("\nreconcile pass over an unchanged bucket (ours, unpaced; S3 requests "
              "counted at moto):\n")
        print(reconcile.table(reconciled))
        print(f"growth from fewest to most items per dataset: {reconcile.growth(reconciled)}")
    if checks:
        print("\nissue 7 targets (ours):")
        print(targets_text(checks))
    notes = ([COUNTING_NOTE] if runs else []) + \
        ([PUBLISHED_NOTE] if "published" in runs else [])
    if notes:
        print("\nnotes:\n" + "\n".join(f"  - {note}" for note in notes))
    record = {"command": " ".join(["python -m bench", *argv]),
              "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "options": {k: str(v) if isinstance(v, Path) else v
                          for k, v in vars(options).items()},
              "machine": machine(), "runs": runs, "notes": notes,
              "reconcile": {"series": reconciled,
                            "growth": reconcile.growth(reconciled or [])},
              "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in checks]}
    write_json(options.output, record)
    print(f"\nwritten to {options.output}")


if __name__ == "__main__":
    main()
