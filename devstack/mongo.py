"""A MongoDB wire-protocol server: nx-27017 (over SQLite), or a real MongoDB.

``MongoServer`` starts ``python -m devstack.mongo`` on a free port, which is
nx-27017 with one shim: dserver-search-plugin-mongo's ``init_app`` creates
MongoDB's wildcard text index ``[("$**", "text")]``, which nx-27017 0.8.1
rejects ("Invalid identifier 'datasets_$**_fts'"). Without an index
neosqlite's ``$text`` is a case-insensitive substring match, which is what
the plugin needs, so that one index is accepted as a no-op; every other
index request is passed through unchanged.

nx-27017 is a stand-in, not MongoDB: set ``DSERVER_TEST_MONGO_URI`` to use a
real MongoDB instead (then nothing is started here).

Run directly: ``python -m devstack.mongo --host 127.0.0.1 -p PORT --data-dir
DIR --log-file F --pid-file F`` (the arguments of ``nx-27017``).
"""
import functools
import os
import sys
from pathlib import Path

from devstack.ports import HOST, Server, ServerError, free_port, python_env, \
    start_process, stop_process, wait_for_port

WILDCARD_FIELD = "$**"


class MongoServer(Server):
    """nx-27017 on a free port, or the MongoDB named by DSERVER_TEST_MONGO_URI.

    ``kill()`` and ``restart()`` keep the port and data directory, so a test
    can take the database away mid-processing and bring it back.
    """

    ENV_URI = "DSERVER_TEST_MONGO_URI"

    def __init__(self):
        super().__init__()
        self.external_uri = os.environ.get(self.ENV_URI) or None

    @property
    def managed(self) -> bool:
        """False when an external MongoDB is used (it cannot be stopped here)."""
        return self.external_uri is None

    @property
    def uri(self) -> str:
        if not self.managed:
            return self.external_uri
        return f"mongodb://{HOST}:{self.port}/"

    def start(self):
        if not self.managed:
            return self
        if self._tmp is None:  # a restart keeps port and data
            self._make_tmp("nx27017-", "server.log")
            self.port = free_port()
        data_dir = Path(self._tmp, "data")
        data_dir.mkdir(exist_ok=True)
        args = [sys.executable, "-m", __name__, "--host", HOST,
                "-p", self.port, "--data-dir", data_dir,
                # their defaults are fixed paths under /tmp, shared by parallel runs
                "--log-file", Path(self._tmp, "nx.log"),
                "--pid-file", Path(self._tmp, "nx.pid")]
        self.proc = start_process(args, self.log_path, cwd=self._tmp, env=python_env())
        wait_for_port(HOST, self.port, 20, self.proc, self.log_path)
        return self

    def _require_managed(self, action: str) -> None:
        if not self.managed:
            raise ServerError(f"cannot {action} the external MongoDB at {self.external_uri}")

    def kill(self) -> None:
        """SIGKILL: the database vanishes without a goodbye."""
        self._require_managed("kill")
        stop_process(self.proc, term_timeout=0)

    def restart(self):
        """Stop (if running) and start again on the same port and data dir."""
        self._require_managed("restart")
        stop_process(self.proc)
        return self.start()

    def stop(self) -> None:
        if self.managed:
            super().stop()


# --- the server process: nx-27017 with the wildcard text index shim -----------

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
    from neosqlite.collection.index_manager import IndexManager

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
    from nx_27017 import nx_27017

    accept_wildcard_text_index()
    nx_27017.main()  # reads sys.argv, runs in the foreground until SIGTERM


if __name__ == "__main__":
    main()
