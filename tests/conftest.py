"""Session-scoped real servers, per-test dserver apps, and the tests' shared helpers.

Mongo is nx-27017 (a MongoDB wire-protocol server) unless
DSERVER_TEST_MONGO_URI names a real MongoDB; S3 is moto_server; SQL is
SQLite and PostgreSQL (pgserver): every test that touches SQL takes the
``database`` fixture and runs on both. All come from ``devstack``. Nothing
is mocked in-process and nothing is skipped: a server that does not start
fails the run with its log.

Helpers more than one test module needs are fixtures here (``drain``,
``notify_all``, ``search``, ``auth_headers``, ``make_bucket``): test
modules never import each other.
"""
import json
import uuid

import pytest
import sqlalchemy as sa

from devstack.datasets import Bucket
from devstack.dserver import ADMIN, USER, app_config, dserver_env, prepare_index, token_for
from devstack.mongo import MongoServer
from devstack.moto import MotoServer
from devstack.postgres import PostgresServer
from devstack.sns import FakeSns

EXTENSION = "dserver_notification"


@pytest.fixture(scope="session")
def mongo():
    server = MongoServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the session; started on first use."""
    server = PostgresServer().start()
    yield server
    server.stop()


DATABASES = ["sqlite", "postgresql"]


def fresh_database(kind, request, directory):
    """SQLAlchemy URI of a new, empty database of ``kind``."""
    if kind == "sqlite":
        directory.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{directory / f'dserver-{uuid.uuid4().hex[:8]}.db'}"
    return request.getfixturevalue("postgres").create_database()


def database_kind(uri):
    return uri.split(":")[0].split("+")[0]


@pytest.fixture(params=DATABASES)
def database(request, tmp_path):
    """A fresh database (SQLAlchemy URI), once on SQLite and once on PostgreSQL."""
    return fresh_database(request.param, request, tmp_path / "sql")


@pytest.fixture
def engine(database):
    """An engine on ``database``, disposed afterwards (PostgreSQL has few connections)."""
    engine = sa.create_engine(database)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def moto():
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sns():
    """A fake SNS host on loopback (devstack.sns): signs, serves its certificate,
    confirms subscriptions; tests that change its ``mode`` set it back."""
    server = FakeSns().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def make_bucket(moto):
    """Factory: ``make_bucket(name=None)``, a fresh moto bucket dtool-s3 can use."""
    def factory(name=None):
        return Bucket(moto, name or f"ds-{uuid.uuid4().hex[:10]}")
    return factory


@pytest.fixture
def bucket(make_bucket):
    return make_bucket()


@pytest.fixture
def make_app(tmp_path, mongo, database, request):
    """Factory: a dserver app (real Mongo plugins, ``database``) with this plugin.

    The first app gets ``database``; further ones get fresh databases of
    the same kind.
    """
    import dservercore

    apps = []

    def factory(buckets, notify=None, mongo_uri=None):
        workdir = tmp_path / f"app{len(apps)}"
        settings = {"DSERVER_NOTIFY_WORKER": "off"}
        settings.update(notify or {})
        database_uri = database if not apps else fresh_database(
            database_kind(database), request, workdir)
        env = dserver_env(workdir, mongo_uri or mongo.uri,
                          {b.name: b.base_uri for b in buckets}, settings,
                          database_uri=database_uri)
        app = dservercore.create_app(app_config(env))
        app.testing = True
        prepare_index(app, [b.base_uri for b in buckets])
        app.env_for_tests = env
        apps.append(app)
        return app

    yield factory
    for app in apps:
        ext = app.extensions.get(EXTENSION)
        if ext is not None and ext.worker is not None:
            ext.stop_background()
        dispose_engines(app)


def dispose_engines(app):
    from dservercore import sql_db
    with app.app_context():
        for engine in sql_db.engines.values():
            engine.dispose()


@pytest.fixture
def app(make_app, bucket):
    return make_app([bucket])


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def auth_headers():
    """``auth_headers(app, username=ADMIN)``: a bearer token for a user of that app."""
    def headers(app, username=ADMIN):
        token = token_for(username, app.env_for_tests["JWT_PRIVATE_KEY_FILE"])
        return {"Authorization": f"Bearer {token}"}
    return headers


@pytest.fixture
def admin_headers(app, auth_headers):
    return auth_headers(app, ADMIN)


@pytest.fixture
def user_headers(app, auth_headers):
    return auth_headers(app, USER)


@pytest.fixture
def drain():
    """``drain(app)``: sync every inbox entry now, debounce or not; returns the count."""
    def run(app):
        return app.extensions[EXTENSION].worker.drain(include_waiting=True)
    return run


@pytest.fixture
def notify_all():
    """``notify_all(client, bodies)``: POST each body to the webhook, expecting 202."""
    def post(client, bodies):
        for body in bodies:
            response = client.post("/webhook/notify", json=body)
            assert response.status_code == 202, response.get_json()
    return post


@pytest.fixture
def search():
    """``search(client, headers, **query)``: the URIs ``POST /uris`` answers, in order."""
    def uris(client, headers, **query):
        response = client.post("/uris", json=query, headers=headers)
        assert response.status_code == 200, response.get_json()
        return [d["uri"] for d in response.get_json()]
    return uris


@pytest.fixture
def cli():
    """``cli(app, *args)``: ``flask notification <args>`` in this process, for this app."""
    def invoke(app, *args):
        return app.test_cli_runner().invoke(args=["notification", *args])
    return invoke


@pytest.fixture
def status_json(cli):
    """``status_json(app)``: ``flask notification status --json``, parsed."""
    def read(app):
        result = cli(app, "status", "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.output)
    return read


@pytest.fixture
def listed():
    """``listed(client, headers)``: the SQL listing (POST /uris without a query), sorted."""
    def uris(client, headers):
        response = client.post("/uris", json={}, headers=headers)
        assert response.status_code == 200, response.get_json()
        return sorted(d["uri"] for d in response.get_json())
    return uris


@pytest.fixture
def metric_samples():
    """``metric_samples(text)``: {(name, sorted labels): value} of a Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    def parse(text):
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples}
    return parse
