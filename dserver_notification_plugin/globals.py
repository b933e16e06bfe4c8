"""The extension's one key in ``app.extensions`` and its accessor.

As flask-smorest's ``globals.py``: code that runs in a request or an app
context (routes, CLI commands) reaches the app's extension through
``current_notification`` instead of importing upward.
"""
from flask import current_app
from werkzeug.local import LocalProxy

EXTENSION_KEY = "dserver_notification"


def _current_extension():
    return current_app.extensions[EXTENSION_KEY]


#: The :class:`NotificationExtension` of the current app.
current_notification = LocalProxy(_current_extension)
