"""A real dserver for tests, demo and benchmark: in-process or under gunicorn.

A dserver needs an SQL database, the Mongo search and retrieve plugins, JWT
keys, users and a registered base URI; :func:`dserver_env` writes all of
that as the environment a production dserver would get, and
:class:`LiveDserver` serves ``dservercore.create_app()`` with gunicorn
exactly as in production. The SQL database is a SQLite file in the work
directory unless ``database_uri`` names another one.
"""
import datetime
import functools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.ports import HOST, ROOT, ServerError, free_port, log_tail, python_env, \
    start_process, wait_for_port

ADMIN = "admin"
USER = "alice"


@functools.lru_cache(maxsize=None)
def _jwt_key_pair_pem():
    """(private, public) PEM of one RSA key pair for this process.

    A 2048-bit key takes a CPU-bound fraction of a second (seconds on a
    loaded machine); tests start hundreds of dservers, which need their own
    files but not their own keys.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def make_jwt_keys(directory):
    """Write the RSA key pair for dserver's RS256 JWTs; return the paths."""
    private_pem, public_pem = _jwt_key_pair_pem()
    private = Path(directory, "jwt_key")
    public = Path(directory, "jwt_key.pub")
    private.write_bytes(private_pem)
    public.write_bytes(public_pem)
    return private, public


def token_for(username, private_key_path):
    """An access token as flask-jwt-extended would issue it."""
    now = datetime.datetime.now(datetime.timezone.utc)
    claims = {"sub": username, "type": "access", "fresh": False,
              "jti": uuid.uuid4().hex, "iat": now, "nbf": now,
              "exp": now + datetime.timedelta(hours=2)}
    return jwt.encode(claims, Path(private_key_path).read_text(), algorithm="RS256")


def dserver_env(workdir, mongo_uri, bucket_to_base_uri, notify=None, mongo_db=None,
                database_uri=None):
    """The environment of a production dserver with this plugin.

    ``database_uri`` is dserver's SQL database (SQLAlchemy URI); by default
    a fresh SQLite file in ``workdir``.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    private, public = make_jwt_keys(workdir)
    mongo_db = mongo_db or f"dserver_{uuid.uuid4().hex[:8]}"
    env = {
        "SQLALCHEMY_DATABASE_URI": database_uri or f"sqlite:///{workdir / 'dserver.db'}",
        "SEARCH_MONGO_URI": mongo_uri, "SEARCH_MONGO_DB": mongo_db,
        "SEARCH_MONGO_COLLECTION": "datasets",
        "RETRIEVE_MONGO_URI": mongo_uri, "RETRIEVE_MONGO_DB": mongo_db,
        "RETRIEVE_MONGO_COLLECTION": "datasets",
        # dserver-direct-mongo-plugin and dserver-dependency-graph-plugin (in
        # the test extra, as in the reference composition) share a collection
        # of their own: app.config for in-process apps, DSERVER_* for servers
        # that read their configuration from the environment.
        "MONGO_URI": mongo_uri, "MONGO_DB": mongo_db, "MONGO_COLLECTION": "metadata",
        "DSERVER_MONGO_URI": mongo_uri, "DSERVER_MONGO_DB": mongo_db,
        "DSERVER_MONGO_COLLECTION": "metadata",
        "JWT_PRIVATE_KEY_FILE": str(private), "JWT_PUBLIC_KEY_FILE": str(public),
        "SECRET_KEY": uuid.uuid4().hex,
        "DSERVER_NOTIFY_BUCKET_TO_BASE_URI": json.dumps(bucket_to_base_uri),
    }
    env.update(notify or {})
    return env


def app_config(env):
    """A create_app(test_config) mapping equivalent to ``env``.

    dservercore merges plugin configs only when no test config is given, and
    its Config class reads the environment at import time; so in-process
    tests pass everything explicitly.
    """
    from dservercore.config import Config
    config = {k: getattr(Config, k) for k in dir(Config) if k.isupper()}
    config["CONFIG_SECRETS_TO_OBFUSCATE"] = list(config["CONFIG_SECRETS_TO_OBFUSCATE"])
    config.update({k: v for k, v in env.items() if not k.endswith("_FILE")})
    config["JWT_PRIVATE_KEY"] = Path(env["JWT_PRIVATE_KEY_FILE"]).read_text()
    config["JWT_PUBLIC_KEY"] = Path(env["JWT_PUBLIC_KEY_FILE"]).read_text()
    return config


def prepare_index(app, base_uris, users=((ADMIN, True), (USER, False))):
    """Create dserver's tables, users and base URIs with search permission."""
    from dservercore import sql_db
    from dservercore.utils import register_base_uri, register_permissions, register_user
    with app.app_context():
        sql_db.create_all()
        for username, is_admin in users:
            register_user(username, {"is_admin": is_admin})
        for base_uri in base_uris:
            register_base_uri(base_uri)
            names = [name for name, _ in users]
            register_permissions(base_uri, {"users_with_search_permissions": names,
                                            "users_with_register_permissions": names})


def prepare_index_for_server(env, base_uris):
    """prepare_index for a server that reads its configuration from ``env``,
    done in this process: an app built from the same settings (worker off),
    its engines disposed afterwards. A subprocess would cost an interpreter
    and dservercore's imports, about 2 s (more on a loaded machine), for each
    live dserver a test starts."""
    import dservercore
    from dservercore import sql_db
    app = dservercore.create_app(app_config(dict(env, DSERVER_NOTIFY_WORKER="off")))
    prepare_index(app, base_uris)
    with app.app_context():
        for engine in sql_db.engines.values():
            engine.dispose()


def prepare_index_in_subprocess(env, base_uris):
    """prepare_index for a server that reads its configuration from env."""
    code = ("import sys, dservercore; from devstack.dserver import prepare_index; "
            "prepare_index(dservercore.create_app(), sys.argv[1:])")
    full_env = python_env(dict(env, DSERVER_NOTIFY_WORKER="off"))
    subprocess.run([sys.executable, "-c", code, *base_uris], env=full_env, check=True,
                   cwd=ROOT)


class LiveDserver:
    """``gunicorn dservercore:create_app()`` on a free loopback port.

    By default it starts in the repository root with this venv's python, so
    its processes import the working tree's plugin (and could import
    ``devstack``: ``python -m`` puts the working directory first on
    ``sys.path``).
    """

    def __init__(self, env, workdir, workers=2, preload=False, ipv6=False,
                 python=sys.executable, cwd=ROOT, timeout=120, gunicorn_args=()):
        """``python`` is the venv that serves (the benchmark uses others);
        ``cwd`` the directory it starts in; ``timeout`` gunicorn's worker
        timeout; ``gunicorn_args`` any further options."""
        self.env = dict(env)
        self.ipv6 = ipv6
        self.python = str(python)
        self.cwd = cwd
        self.timeout = timeout
        self.gunicorn_args = list(gunicorn_args)
        self.workdir = Path(workdir)
        self.workers = workers
        self.preload = preload
        self.port = None
        self.proc = None
        self.log_path = self.workdir / "gunicorn.log"

    @property
    def url(self):
        return f"http://{HOST}:{self.port}"

    @property
    def url6(self):
        return f"http://[::1]:{self.port}"

    def start(self):
        self.port = self.port or free_port()
        args = [self.python, "-m", "gunicorn", "--workers", str(self.workers),
                "--bind", f"{HOST}:{self.port}", "--log-level", "info",
                *(["--bind", f"[::1]:{self.port}"] if self.ipv6 else []),
                "--graceful-timeout", "5", "--timeout", str(self.timeout),
                # gunicorn 27 puts every server's control socket at one fixed path
                "--control-socket", str(self.workdir / "gunicorn.ctl"),
                *(["--preload"] if self.preload else []),
                *self.gunicorn_args, "dservercore:create_app()"]
        self.proc = start_process(args, self.log_path, cwd=self.cwd,
                                  env=dict(os.environ, **self.env))
        wait_for_port(HOST, self.port, 60, self.proc, self.log_path)
        self._wait_until_serving()
        return self

    def _wait_until_serving(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/config/versions", timeout=10).ok:
                    return
            except requests.RequestException:  # not up yet, or slow on a busy machine
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise ServerError(f"dserver did not come up:\n{log_tail(self.log_path)}")

    def admin_headers(self):
        """HTTP headers with a fresh access token of the admin user."""
        return {"Authorization": f"Bearer {token_for(ADMIN, self.env['JWT_PRIVATE_KEY_FILE'])}"}

    def kill(self):
        """SIGKILL the whole process group: master and workers, no goodbye."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        self.terminate()
        self.wait_stopped()

    def terminate(self):
        """SIGTERM to the master: a graceful stop, not waited for."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def wait_stopped(self, timeout=20):
        """Wait for a terminated server to end; SIGKILL it after ``timeout``."""
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def pids(self):
        """PIDs of the master and its workers."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],
                             capture_output=True, text=True).stdout.split()
        return [self.proc.pid, *map(int, out)]

    def log_tail(self, lines=60):
        return log_tail(self.log_path, lines)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def stop_servers(servers):
    """Stop several live dservers at once: each takes a few seconds to stop
    gracefully (its workers stop their threads and give up their claims),
    and they need not take turns."""
    for server in servers:
        server.terminate()
    for server in servers:
        server.wait_stopped()
