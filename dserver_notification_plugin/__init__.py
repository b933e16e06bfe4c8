"""dserver extension that keeps the dataset index in step with S3 buckets."""
import logging

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

    def init_app(self, app, *args, **kwargs):
        # Read here, not at import: two apps in one process may differ.
        self.settings = load_settings(app.config)
        self.app = app
        app.extensions[EXTENSION_KEY] = self
        logger.info("dserver-notification-plugin configured for buckets %s",
                    sorted(self.settings.bucket_to_base_uri))

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
    def register_dataset(self, dataset_info):
        return None

    def delete_dataset(self, dataset_uri):
        return None
