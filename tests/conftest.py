"""Session-scoped real servers, per-test dserver apps, and the tests' shared helpers.

Mongo is nx-27017 (a MongoDB wire-protocol server) unless
DSERVER_TEST_MONGO_URI names a real MongoDB; S3 is moto_server; SQL is
SQLite, and PostgreSQL (pgserver) too where SQL is the test's subject: a
test marked ``both_databases`` that takes the ``database`` fixture runs on
both, every other one on SQLite only (``--all-databases`` runs them all on
both). All come from ``devstack``. Nothing is mocked in-process and nothing
is skipped: a server that does not start fails the run with its log.

Every test belongs to one tier, by a ``unit``, ``integration`` or ``e2e``
marker (a module's ``pytestmark``, or the test's own); collection fails
for a test without one, or for a unit test that starts a server. See
docs/testing.rst.

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

TIERS = ("unit", "integration", "e2e")
# A unit test runs in this process without a server: none of these fixtures
# (the database fixture is allowed: on SQLite it is a file).
SERVER_FIXTURES = {"mongo", "moto", "postgres", "seaweed", "make_app", "app", "index_factory",
                   "fresh_index_factory", "live_database_kind"}


def pytest_configure(config):
    """dservercore 0.22 and flask-smorest 0.42 use marshmallow options that 3.26
    deprecates; marshmallow 4 (the next dservercore) has no such warning class."""
    import marshmallow
    if hasattr(getattr(marshmallow, "warnings", None), "RemovedInMarshmallow4Warning"):
        config.addinivalue_line("filterwarnings",
                                "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning")


def pytest_addoption(parser):
    parser.addoption("--all-databases", action="store_true",
                     help="run every test that takes a database on SQLite and PostgreSQL, "
                          "not only those marked both_databases")


def database_kinds(metafunc):
    """SQLite only, unless SQL is the subject (or --all-databases)."""
    if metafunc.config.getoption("all_databases") \
            or metafunc.definition.get_closest_marker("both_databases"):
        return DATABASES
    return ["sqlite"]


def parametrized_by_the_test(metafunc, name):
    """Whether the test's own parametrize marker already chooses ``name``."""
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0]
        names = names.split(",") if isinstance(names, str) else names
        if name in (n.strip() for n in names):
            return True
    return False


def pytest_generate_tests(metafunc):
    kinds = database_kinds(metafunc)
    if "database" in metafunc.fixturenames and not parametrized_by_the_test(metafunc, "database"):
        metafunc.parametrize("database", kinds, indirect=True)
    if "live_database_kind" in metafunc.fixturenames:
        metafunc.parametrize("live_database_kind", kinds, indirect=True, scope="module")


def tier_problem(item):
    """Why ``item`` has not exactly one tier that fits it, or None.

    One only: ``-m unit`` selects by any marker, a module's or the test's.
    """
    tiers = {marker.name for marker in item.iter_markers() if marker.name in TIERS}
    if len(tiers) != 1:
        return f"has {len(tiers)} tier markers, not one of unit, integration or e2e"
    [tier] = tiers
    servers = SERVER_FIXTURES & set(item.fixturenames)
    if tier == "unit" and (servers or item.get_closest_marker("both_databases")):
        return f"is marked unit but starts servers ({', '.join(sorted(servers)) or 'postgres'})"
    if "/e2e/" in item.nodeid and tier != "e2e":
        return "is under tests/e2e but not marked e2e"
    return None


def pytest_collection_modifyitems(config, items):
    """Fail collection for a test without its one tier: make test-fast and the
    tiers in CI would otherwise miss it silently. Then leave out the tests of
    the next dservercore's write routes where dservercore has none."""
    problems = [f"{item.nodeid} {problem}" for item in items
                for problem in [tier_problem(item)] if problem]
    if problems:
        raise pytest.UsageError("tests without a proper tier (see tests/conftest.py):\n  "
                                + "\n  ".join(problems))
    if not dservercore_writes_to_storage():
        left_out = [item for item in items if item.get_closest_marker("needs_write_routes")]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = [item for item in items if item not in left_out]


def dservercore_writes_to_storage():
    """Whether this dservercore has the routes that write tags, annotations and
    README back to storage (0.23, the ``next`` leg of noxfile.py)."""
    import dservercore.utils
    return hasattr(dservercore.utils, "set_tags_for_uri_by_user")


def pytest_report_header(config):
    from importlib import metadata
    version = metadata.version("dservercore")
    if dservercore_writes_to_storage():
        return f"dservercore {version}: with the write routes (tests marked " \
               "needs_write_routes run)"
    return f"dservercore {version}: no write routes; tests marked needs_write_routes " \
           "are deselected (they run in `nox -s next`)"


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


def fresh_database(kind, request, directory, drops=None):
    """SQLAlchemy URI of a new, empty database of ``kind``.

    A PostgreSQL database is cloned from the session's template; its drop
    goes into ``drops`` for a caller that must first stop what uses it, or
    else is run when the requesting fixture ends.
    """
    if kind == "sqlite":
        directory.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{directory / f'dserver-{uuid.uuid4().hex[:8]}.db'}"
    postgres = request.getfixturevalue("postgres")
    uri = postgres.create_database()
    drop = lambda: postgres.drop_database(uri)  # noqa: E731
    drops.append(drop) if drops is not None else request.addfinalizer(drop)
    return uri


def database_kind(uri):
    return uri.split(":")[0].split("+")[0]


@pytest.fixture
def database(request, tmp_path):
    """A fresh database (SQLAlchemy URI): SQLite, and PostgreSQL too for a test
    marked ``both_databases`` (see pytest_generate_tests)."""
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
    drops = []  # of further databases, once their apps let go of them

    def factory(buckets, notify=None, mongo_uri=None):
        workdir = tmp_path / f"app{len(apps)}"
        settings = {"DSERVER_NOTIFY_WORKER": "off"}
        settings.update(notify or {})
        database_uri = database if not apps else fresh_database(
            database_kind(database), request, workdir, drops)
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
    for drop in drops:
        drop()


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
