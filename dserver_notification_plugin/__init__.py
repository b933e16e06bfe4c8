"""dserver extension that keeps the dataset index in step with S3 buckets."""
import atexit
import logging
import os
import sys
import threading
import weakref

from dservercore import ExtensionABC

from .config import (
    ConfigSnapshot, load_settings, open_configuration_warnings, secret_names,
)
from .globals import EXTENSION_KEY, current_notification  # noqa: F401 (public)

try:
    from importlib.metadata import PackageNotFoundError, version
    __version__ = version("dserver-notification-plugin")
except PackageNotFoundError:  # running from a source tree
    __version__ = None

logger = logging.getLogger(__name__)


class NotificationExtension(ExtensionABC):
    """Entry point for dservercore: one Blueprint, a sync worker, SQS consumers, a CLI."""

    def __init__(self):
        self.settings = None
        self.app = None
        self.db = None
        self.inbox = None
        self.documents = None
        self.counters = None
        self.worker = None
        self.ledger = None
        self.attention = None
        self.reconciler = None
        self.warnings = []
        self._warnings_lock = threading.Lock()
        self.consumers = []
        self.processes = None
        self.heartbeat = None
        self._alembic_rules = None  # the receiver that adds them (alembic_rules)

    def init_app(self, app, *args, **kwargs):
        from .alembic_rules import exclude_plugin_tables
        from .cli import notification_cli
        from .consumer import make_consumers
        from .db import Counters, Database, Documents, Inbox, Ledger
        from .dtool_private import check_installed
        from .intake import IgnoredLog
        from .db.processes import Processes
        from .heartbeat import Heartbeat
        from .logbudget import LogBudget, RejectionLog
        from .reconciler import Reconciler
        from .sns_trust import SnsTrust
        from .status import Metrics
        from .tally import Tally
        from .worker import Worker

        # A dtool or dtool-s3 without the private parts the sync uses would
        # otherwise fail every sync until the entries are dead: say so now.
        check_installed()
        # Read here, not at import: two apps in one process may differ.
        self.settings = load_settings(app.config)
        self.app = app
        self.tally = Tally()
        # The plugin's tables, each through its own small class on one connector.
        self.db = Database(app)
        self.inbox = Inbox(self.db)
        self.documents = Documents(self.db)
        self.counters = Counters(self.db)
        self.ledger = Ledger(self.db)
        self.rejection_log = RejectionLog(self.settings.reject_log_interval_seconds)
        self.store_log = LogBudget(self.settings.reject_log_interval_seconds)
        self.ignored_log = IgnoredLog(self.settings.reject_log_interval_seconds)
        self.sns = SnsTrust(self.settings)
        # Configurations that start but leave a door open: said now, and
        # shown by /webhook/status for as long as they last.
        self.warnings = open_configuration_warnings(self.settings)
        for warning in self.warnings:
            logger.warning("dserver-notification-plugin: %s", warning)
        # Claims and leases belong to processes known to be alive.
        self.processes = Processes(self.db, self.settings.heartbeat_seconds, role=_role(),
                                   alarm=self.inbox.alarm)
        self.heartbeat = Heartbeat(self.processes)
        self.db.heartbeat = self.heartbeat
        self.db.alive_within = self.processes.alive_within
        _stop_at_exit(self)
        self.worker = Worker(app, self.settings, self.db, self.inbox, self.counters, self.tally,
                             self.ledger)
        self.attention = self.worker.attention  # base URIs an operator must look at
        self.reconciler = Reconciler(self)
        self.consumers = make_consumers(self)
        # Metrics exist from the start, so the latency histogram sees every sync.
        self.metrics = Metrics(self)
        app.extensions[EXTENSION_KEY] = self
        app.cli.add_command(notification_cli)
        # `flask db migrate` must neither see nor drop the plugin's tables.
        self._alembic_rules = exclude_plugin_tables(app)
        if self.settings.worker:
            if not _running_a_flask_command():
                # The threads wait for the database; create_app finishes first.
                self._ensure_threads_running()
            app.before_request(self._ensure_threads_running)
        logger.info("dserver-notification-plugin configured for buckets %s",
                    sorted(self.settings.bucket_to_base_uri))

    def warn_once(self, warning):
        """A door found open while running: logged the first time, and shown
        by /webhook/status of this process from then on."""
        with self._warnings_lock:
            if warning in self.warnings:
                return
            self.warnings = [*self.warnings, warning]
        logger.warning("dserver-notification-plugin: %s", warning)

    def background_threads(self):
        """The sync worker, the reconciler unless its interval is 0, and one
        consumer per SQS queue."""
        return [self.worker, *([self.reconciler] if self.reconciler.enabled else []),
                *self.consumers]

    def _ensure_threads_running(self):
        for runner in self.background_threads():  # start() is idempotent
            if not runner.running:
                runner.start()

    def stop_background(self):
        """Stop the threads, then release this process's claims and lease at
        once (a graceful stop: SIGTERM to gunicorn, interpreter exit)."""
        for runner in reversed(self.background_threads()):
            runner.stop()
        if self.heartbeat is not None:
            self.heartbeat.stop()

    def get_blueprint(self):
        from .routes import bp
        return bp

    def get_config(self):
        return ConfigSnapshot()

    def get_config_secrets_to_obfuscate(self):
        return secret_names()

    # dservercore calls these two on every extension for every registration
    # and deletion, including the ones our own worker performs. They must
    # stay cheap, never raise and never enqueue anything.
    # Counting is all they do: it shows how often the index really changed.
    def register_dataset(self, dataset_info):
        if self.settings is not None:
            self.tally.add("index_registrations")

    def delete_dataset(self, dataset_uri):
        if self.settings is not None:
            self.tally.add("index_deletions")


_EXTENSIONS = weakref.WeakSet()


def _stop_at_exit(extension):
    """At a normal interpreter exit (a gunicorn worker after SIGTERM, a
    `flask notification` command) stop every extension of this process, so
    that its claims and lease go to the others at once."""
    if not _EXTENSIONS:
        atexit.register(_stop_all)
    _EXTENSIONS.add(extension)


def _stop_all():
    for extension in list(_EXTENSIONS):
        try:
            extension.stop_background()
        except Exception:  # at exit: the database may be gone; the others reap us
            logger.debug("could not stop at exit", exc_info=True)


def _role():
    """What this process is, for status: a server, or which flask command."""
    if _running_a_flask_command():
        return " ".join(["flask", *sys.argv[1:3]])[:64]
    return "dserver"


def _running_a_flask_command():
    """True inside `flask <command>`: a CLI run must not start the worker.

    `flask notification worker` and `drain` run it in the foreground; any
    other command would leave claims behind when it exits. `flask run`
    starts the worker on its first request instead.
    """
    return os.environ.get("FLASK_RUN_FROM_CLI") == "true"
