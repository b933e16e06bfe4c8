"""A gunicorn-served dserver running in one of the benchmark venvs.

It is ``devstack.dserver.LiveDserver`` (2 workers, production gunicorn) with
two settings that matter here: the venv's own python runs gunicorn, and the
working directory is the run's temp dir, never the repository root: from
the root, ``import dserver_notification_plugin``
would find the source tree before the installed plugin and the published
plugin would silently be replaced by ours.
"""
import os
import subprocess
from pathlib import Path

import requests

from devstack.dserver import LiveDserver

HOOKS = Path(__file__).resolve().parent / "gunicorn_hooks.py"

PREPARE_CODE = """\
import sys
import dservercore
from dservercore import sql_db
from dservercore.utils import register_base_uri, register_permissions, register_user
app = dservercore.create_app()
with app.app_context():
    sql_db.create_all()
    register_user("admin", {"is_admin": True})
    for base_uri in sys.argv[1:]:
        register_base_uri(base_uri)
        register_permissions(base_uri, {"users_with_search_permissions": ["admin"],
                                        "users_with_register_permissions": ["admin"]})
"""


def prepare_index(python, env, workdir, base_uris):
    """Create dserver's tables, the admin user and the base URIs, in the venv."""
    full_env = dict(os.environ, **env, DSERVER_NOTIFY_WORKER="off")
    subprocess.run([str(python), "-c", PREPARE_CODE, *base_uris], env=full_env,
                   check=True, cwd=workdir, stdout=subprocess.DEVNULL)


class VenvDserver(LiveDserver):
    """``<venv>/bin/python -m gunicorn dservercore:create_app()``."""

    def __init__(self, python, env, workdir, workers=2):
        # started in its own workdir, so the venv's install (not this source
        # tree) is what gunicorn imports
        super().__init__(env, workdir, workers=workers, python=python, cwd=workdir,
                         timeout=300, gunicorn_args=("--config", str(HOOKS)))
        self.call_log = self.workdir / "index-calls.log"
        self.env["BENCH_CALL_LOG"] = str(self.call_log)

    def index_calls(self):
        """{"register": n, "delete": m}: successful dservercore.utils calls."""
        counts = {"register": 0, "delete": 0}
        if self.call_log.exists():
            for line in self.call_log.read_text().splitlines():
                label = line.split()[0]
                counts[label] = counts.get(label, 0) + 1
        return counts

    def peak_memory_kib(self):
        """Sum of VmHWM (peak resident set) over the master and its workers."""
        total = 0
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        return total

    def plugin_status(self):
        """Our plugin's /webhook/status (None for the published plugin)."""
        answer = requests.get(f"{self.url}/webhook/status", headers=self.admin_headers(),
                              timeout=10)
        return answer.json() if answer.status_code == 200 else None
