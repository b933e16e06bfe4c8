"""Run nx-27017 (a MongoDB wire-protocol server over SQLite) for the tests.

Why a wrapper: dserver-search-plugin-mongo's ``init_app`` creates MongoDB's
wildcard text index ``[("$**", "text")]``, which nx-27017 0.8.1 rejects
("Invalid identifier 'datasets_$**_fts'"). Without an index neosqlite's
``$text`` is a case-insensitive substring match, which is what the plugin
needs, so that one index is accepted as a no-op. Every other index request is
passed through unchanged.

Usage: ``python tests/nx_mongo_server.py --host 127.0.0.1 -p PORT
--data-dir DIR --log-file F --pid-file F`` (the arguments of ``nx-27017``).
"""

import functools

from neosqlite.collection.index_manager import IndexManager
from nx_27017 import nx_27017

WILDCARD_FIELD = "$**"


def _is_wildcard_text_index(key) -> bool:
    """True for MongoDB's ``[("$**", "text")]`` (or ``{"$**": "text"}``)."""
    if isinstance(key, dict):
        key = list(key.items())
    if not isinstance(key, (list, tuple)):
        return False
    return any(
        isinstance(part, (list, tuple))
        and len(part) == 2
        and part[0] == WILDCARD_FIELD
        and part[1] == "text"
        for part in key
    )


def accept_wildcard_text_index() -> None:
    """Wrap IndexManager.create_index so the wildcard text index is a no-op."""
    original = IndexManager.create_index
    if getattr(original, "_wildcard_text_noop", False):
        return

    @functools.wraps(original)
    def create_index(self, key, *args, **kwargs):
        if _is_wildcard_text_index(key):
            return kwargs.get("name") or f"{WILDCARD_FIELD}_text"
        return original(self, key, *args, **kwargs)

    create_index._wildcard_text_noop = True
    IndexManager.create_index = create_index


def main() -> None:
    accept_wildcard_text_index()
    nx_27017.main()  # reads sys.argv, runs in the foreground until SIGTERM


if __name__ == "__main__":
    main()
