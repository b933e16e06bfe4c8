"""dserver extension that keeps the dataset index in step with S3 buckets."""
import logging
import os

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
        self.reconciler = None
        self.warnings = []
        self.consumers = []

    def init_app(self, app, *args, **kwargs):
        from .cli import notification_cli
        from .consumer import make_consumers
        from .db import Counters, Database, Documents, Inbox, Ledger
        from .dtool_private import check_installed
        from .intake import IgnoredLog
        from .logbudget import RejectionLog
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
        self.ignored_log = IgnoredLog(self.settings.reject_log_interval_seconds)
        self.sns = SnsTrust(self.settings)
        # Configurations that start but leave a door open: said now, and
        # shown by /webhook/status for as long as they last.
        self.warnings = open_configuration_warnings(self.settings)
        for warning in self.warnings:
            logger.warning("dserver-notification-plugin: %s", warning)
        self.worker = Worker(app, self.settings, self.db, self.inbox, self.counters, self.tally,
                             self.ledger)
        self.reconciler = Reconciler(self)
        self.consumers = make_consumers(self)
        # Metrics exist from the start, so the latency histogram sees every sync.
        self.metrics = Metrics(self)
        app.extensions[EXTENSION_KEY] = self
        app.cli.add_command(notification_cli)
        if self.settings.worker:
            if not _running_a_flask_command():
                # The threads wait for the database; create_app finishes first.
                self._ensure_threads_running()
            app.before_request(self._ensure_threads_running)
        logger.info("dserver-notification-plugin configured for buckets %s",
                    sorted(self.settings.bucket_to_base_uri))

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
        for runner in reversed(self.background_threads()):
            runner.stop()

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


def _running_a_flask_command():
    """True inside `flask <command>`: a CLI run must not start the worker.

    `flask notification worker` and `drain` run it in the foreground; any
    other command would leave claims behind when it exits. `flask run`
    starts the worker on its first request instead.
    """
    return os.environ.get("FLASK_RUN_FROM_CLI") == "true"
