"""The one exception the formats stage raises, and small shape checks.

Every malformed payload ends as a :class:`PayloadError` whose ``status`` is
the HTTP status the route should answer and whose ``message`` names what is
wrong, so that the route never has to guess and never answers 500.
"""
import json


class PayloadError(Exception):
    """A request body the plugin cannot understand.

    ``status`` is 400 (malformed or wrong shape), 413 (too large) or 415
    (unsupported content type); ``message`` is one sentence naming the
    offending field or value.
    """

    def __init__(self, message, status=400):
        super().__init__(message)
        self.message = message
        self.status = status

    def __repr__(self):
        return f"PayloadError({self.status}, {self.message!r})"


def describe(value):
    """A short name for a JSON value's type, for error messages."""
    if value == "":
        return "an empty string"
    names = {dict: "an object", list: "an array", str: "a string",
             bool: "a boolean", int: "a number", float: "a number",
             type(None): "null"}
    return names.get(type(value), type(value).__name__)


def require_object(value, where):
    if not isinstance(value, dict):
        raise PayloadError(f"{where} must be a JSON object, not {describe(value)}.")
    return value


def require_string(container, name, where):
    """The non-empty string ``container[name]``, or a 400 naming it."""
    if name not in container:
        raise PayloadError(f"{where}.{name} is missing.")
    value = container[name]
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{where}.{name} must be a non-empty string, not {describe(value)}.")
    if not is_utf8(value):
        raise PayloadError(f"{where}.{name} is not valid Unicode text.")
    return value


def is_utf8(text):
    """False for strings with lone surrogates (JSON allows "\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def load_json_text(text, where):
    """The JSON document in ``text``, or a 400 saying why it is not JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise PayloadError(f"{where} is nested too deeply.")
    except ValueError as exc:
        raise PayloadError(f"{where} is not valid JSON ({short(exc)}).")


def short(exc, limit=120):
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."


def clip(value, limit=60):
    """``repr(value)``, cut to ``limit`` characters: reasons stay short in logs."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
