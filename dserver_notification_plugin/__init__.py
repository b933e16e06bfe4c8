"""dserver extension that keeps the dataset index in step with S3 buckets."""
import logging
import os
import threading

from dservercore import ExtensionABC

from .config import ConfigSnapshot, load_settings, secret_names

try:
    from importlib.metadata import PackageNotFoundError, version
    __version__ = version("dserver-notification-plugin")
except PackageNotFoundError:  # running from a source tree
    __version__ = None

logger = logging.getLogger(__name__)

EXTENSION_KEY = "dserver_notification"


class NotificationExtension(ExtensionABC):
    """Entry point for dservercore: one Blueprint, a sync worker, a CLI."""

    def __init__(self):
        self.settings = None
        self.app = None
        self.worker = None
        self._schema_lock = threading.Lock()
        self._schema_ready = False

    def init_app(self, app, *args, **kwargs):
        from .cli import notification_cli
        from .guard import RejectionLog
        from .stats import Stats
        from .status import metrics_for
        from .worker import Worker

        # Read here, not at import: two apps in one process may differ.
        self.settings = load_settings(app.config)
        self.app = app
        self.stats = Stats()
        self.rejection_log = RejectionLog(self.settings.reject_log_interval_seconds)
        self.worker = Worker(app, self.settings, self.stats)
        app.extensions[EXTENSION_KEY] = self
        # Metrics exist from the start, so the latency histogram sees every sync.
        metrics_for(self)
        app.cli.add_command(notification_cli)
        if self.settings.worker:
            if not _running_a_flask_command():
                # The thread waits for the database; create_app finishes first.
                self.worker.start()
            app.before_request(self._ensure_worker_running)
        logger.info("dserver-notification-plugin configured for buckets %s",
                    sorted(self.settings.bucket_to_base_uri))

    def _ensure_worker_running(self):
        if not self.worker.running:
            self.worker.start()

    def ensure_schema(self):
        """Create the plugin's tables once per app (needs an app context)."""
        if self._schema_ready:
            return
        from dservercore import sql_db
        from .inbox import ensure_schema
        with self._schema_lock:
            if not self._schema_ready:
                ensure_schema(sql_db.engine)
                self._schema_ready = True

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
            self.stats.add("index_registrations")

    def delete_dataset(self, dataset_uri):
        if self.settings is not None:
            self.stats.add("index_deletions")


def _running_a_flask_command():
    """True inside `flask <command>`: a CLI run must not start the worker.

    `flask notification worker` and `drain` run it in the foreground; any
    other command would leave claims behind when it exits. `flask run`
    starts the worker on its first request instead.
    """
    return os.environ.get("FLASK_RUN_FROM_CLI") == "true"
