"""`flask notification ...`: run, drain and repair the sync from a shell."""
import json
import logging
import signal
import sys
import time
from collections import Counter

import click
from flask.cli import with_appcontext

from .globals import current_notification


@click.group("notification")
def notification_cli():
    """Inspect and drive the S3 notification sync."""


@notification_cli.command("worker")
@with_appcontext
def worker_command():
    """Run the sync worker (and the reconciler) in the foreground until SIGINT/SIGTERM.

    For deployments with DSERVER_NOTIFY_WORKER=off in the web processes.
    """
    ext = current_notification
    runners = [ext.worker, *([ext.reconciler] if ext.reconciler.enabled else [])]
    _run_until_signal(runners, "notification worker running")


@notification_cli.command("consume")
@with_appcontext
def consume_command():
    """Pull S3 events from the SQS queues of DSERVER_NOTIFY_SQS_QUEUE_URLS into
    the inbox, in the foreground until SIGINT/SIGTERM.

    For deployments with DSERVER_NOTIFY_WORKER=off in the web processes; the
    sync worker (`flask notification worker`) processes what this stores.
    """
    consumers = current_notification.consumers
    if not consumers:
        raise click.UsageError("DSERVER_NOTIFY_SQS_QUEUE_URLS lists no queue to consume")
    _run_until_signal(consumers, "consuming " + ", ".join(c.queue_url for c in consumers))


def _run_until_signal(runners, banner):
    """Start the runners' threads and wait until a signal or until all have ended."""
    logging.basicConfig(level=logging.INFO)
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    for runner in runners:
        runner.start()
    click.echo(f"{banner}; Ctrl-C to stop")
    while not stop and any(runner.running for runner in runners):
        time.sleep(0.5)
    for runner in runners:
        runner.stop()


@notification_cli.command("drain")
@click.option("--all", "include_waiting", is_flag=True,
              help="Also process entries still inside their debounce window.")
@with_appcontext
def drain_command(include_waiting):
    """Process every inbox entry that is due now, then exit."""
    ext = current_notification
    processed = ext.worker.drain(include_waiting=include_waiting,
                                 threads=ext.settings.sync_threads)
    click.echo(f"processed {processed} inbox entr{'y' if processed == 1 else 'ies'}")


@notification_cli.command("migrate")
@with_appcontext
def migrate_command():
    """Bring the plugin's tables to the latest schema version.

    Servers do this on their own at start; the command lets a deployment
    migrate first. Safe to run while servers run, and more than once.
    """
    from .db import LATEST_VERSION
    applied = current_notification.db.migrate()
    for step in applied:
        click.echo(f"applied step {step.version}: {step.description}")
    click.echo(f"notification schema at version {LATEST_VERSION}")


@notification_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@with_appcontext
def status_command(as_json):
    """Show event counters, inbox entries by state and dead entries.

    "since start" counts this command's own process, so it is zero here;
    the HTTP route /webhook/status shows a server process's figures.
    """
    from .status import format_status, gather_status
    status = gather_status(current_notification)
    if as_json:
        click.echo(json.dumps(status, indent=2, sort_keys=True))
    else:
        click.echo(format_status(status))


@notification_cli.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all-dead", is_flag=True, help="Requeue every dead entry.")
@with_appcontext
def retry_command(ids, all_dead):
    """Put dead inbox entries (by ID, or all of them) back in the queue."""
    _on_dead_entries(ids, all_dead, current_notification.inbox.requeue_dead, "requeued")


@notification_cli.command("purge")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all-dead", is_flag=True, help="Delete every dead entry.")
@with_appcontext
def purge_command(ids, all_dead):
    """Delete dead inbox entries (by ID, or all of them) without a sync.

    Done entries need no hand: the worker deletes them once they are older
    than DSERVER_NOTIFY_DONE_RETENTION_SECONDS.
    """
    _on_dead_entries(ids, all_dead, current_notification.inbox.purge_dead, "deleted")


def _on_dead_entries(ids, all_dead, operation, verb):
    """Apply ``operation`` to the dead entries with ``ids`` (or all) and report."""
    if bool(ids) == all_dead:
        raise click.UsageError("give the IDs of dead entries or --all-dead (not both)")
    done = operation(ids or None)
    click.echo(f"{verb} {done} dead entr{'y' if done == 1 else 'ies'}")
    if ids and done < len(set(ids)):
        click.echo(f"{len(set(ids)) - done} of the given IDs were not dead entries")


@notification_cli.command("resync")
@click.argument("base_uri")
@click.option("--dry-run", is_flag=True, help="Report the drift; change nothing.")
@with_appcontext
def resync_command(base_uri, dry_run):
    """Make the index of BASE_URI match its bucket now: one reconcile pass.

    Datasets missing from the index, gone from the bucket (also from the
    search and retrieve plugins) or changed since their last sync go through
    the inbox and the worker, as after a notification.
    """
    _resync(base_uri, dry_run=dry_run)


@notification_cli.command("confirm-removals")
@click.argument("base_uri")
@with_appcontext
def confirm_removals_command(base_uri):
    """Remove the datasets of BASE_URI that a reconcile pass held back.

    A pass that finds more datasets gone than
    DSERVER_NOTIFY_RECONCILE_MAX_REMOVALS allows removes none. Once you
    have checked the bucket and its endpoint, this runs the pass again
    without that limit; each removal is still checked against S3.
    """
    _resync(base_uri, confirm_removals=True)


def _resync(base_uri, dry_run=False, confirm_removals=False):
    from . import reconcile
    from .evidence import BucketUnreadable
    from .reconciler import one_pass
    ext = current_notification
    try:
        base_uri = reconcile.check_base_uri(ext, base_uri)
        walk = one_pass(ext, base_uri, dry_run=dry_run, confirm_removals=confirm_removals)
    except reconcile.ReconcileError as exc:
        raise click.UsageError(str(exc))
    except BucketUnreadable as exc:
        raise click.ClickException(f"{base_uri}: {exc}; nothing changed")
    drift = _drift_text(walk.figures)
    if dry_run:
        for finding in walk.findings:
            click.echo(f"{finding.drift}: {finding.uri} ({finding.reason})")
        click.echo(f"dry run for {base_uri}: {drift}; nothing changed")
        return
    if walk.held:
        click.echo(f"{walk.held[0]} of {walk.held[1]} indexed datasets look gone: none "
                   f"removed (DSERVER_NOTIFY_RECONCILE_MAX_REMOVALS); check the bucket, "
                   f"then run `flask notification confirm-removals {base_uri}`")
    with _progress_bar(len(walk.findings)) as bar:
        ext.worker.drain(include_waiting=True, on_progress=bar.update,
                         threads=ext.settings.sync_threads)
    held = {f.uri for f in walk.removals} if walk.held else set()
    outcomes = {e.dataset_uri: e for e in ext.inbox.entries([f.uri for f in walk.findings])}
    counts = Counter()
    for finding in walk.findings:
        word, line = ("held", "held") if finding.uri in held \
            else _describe(outcomes.get(finding.uri))
        counts[word] += 1
        click.echo(f"{line}: {finding.uri} ({finding.drift}, {finding.reason})")
    parts = ", ".join(f"{n} {word}" for word, n in sorted(counts.items()))
    click.echo(f"resync of {base_uri}: {drift}" + (f"; outcomes: {parts}" if parts else ""))


def _drift_text(figures):
    return (f"{figures.checked} dataset{'' if figures.checked == 1 else 's'} checked, "
            f"drift: {figures.missing} missing, {figures.extra} extra, "
            f"{figures.changed} changed ({figures.s3_requests} S3 requests)")


def _progress_bar(total):
    """A tqdm bar on a terminal; silent when the output is piped or captured."""
    from tqdm import tqdm
    return tqdm(total=total, unit="dataset", disable=not sys.stdout.isatty())


def _describe(entry):
    """(one word for the summary, the line's text) for an inbox entry."""
    from .states import State
    if entry is None:
        return "missing", "missing"
    if entry.state is State.DONE:
        return entry.last_outcome, entry.last_outcome
    if entry.state is State.DEAD:
        return "dead", f"dead: {entry.last_error}"
    word = f"not finished ({entry.state.value})"
    return "not finished", word + (f": {entry.last_error}" if entry.last_error else "")
