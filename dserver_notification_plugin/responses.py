"""The one JSON error envelope of the plugin.

flask-smorest answers its own ``abort`` calls with ``{"code", "status",
"message"}`` (its ``ErrorSchema``); refusals by the guard and store outages
use the same shape, so a sender or an operator parses one kind of error
whatever went wrong, and the OpenAPI spec documents every error with that
one schema.
"""
from http import HTTPStatus

from flask import jsonify, make_response
from flask_smorest.error_handler import ErrorSchema  # noqa: F401 (documented errors)


def error_response(code, message, headers=None):
    """The error envelope, for errors answered outside flask-smorest's ``abort``."""
    body = {"code": code, "status": HTTPStatus(code).phrase, "message": message}
    return make_response(jsonify(body), code, headers or {})
