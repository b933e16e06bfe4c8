"""`flask notification ...`: run, drain and repair the sync from a shell."""
import logging
import signal

import click
from flask import current_app
from flask.cli import with_appcontext


def extension():
    from . import EXTENSION_KEY
    return current_app.extensions[EXTENSION_KEY]


@click.group("notification")
def notification_cli():
    """Inspect and drive the S3 notification sync."""


@notification_cli.command("worker")
@with_appcontext
def worker_command():
    """Run the sync worker in the foreground until SIGINT/SIGTERM.

    For deployments with DSERVER_NOTIFY_WORKER=off in the web processes.
    """
    logging.basicConfig(level=logging.INFO)
    worker = extension().worker
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True) or worker.stop())
    worker.start()
    click.echo("notification worker running; Ctrl-C to stop")
    while worker.running and not stop:
        worker._thread.join(0.5)
    worker.stop()


@notification_cli.command("drain")
@click.option("--all", "include_waiting", is_flag=True,
              help="Also process entries still inside their debounce window.")
@with_appcontext
def drain_command(include_waiting):
    """Process every inbox entry that is due now, then exit."""
    processed = extension().worker.drain(include_waiting=include_waiting)
    click.echo(f"processed {processed} inbox entr{'y' if processed == 1 else 'ies'}")
