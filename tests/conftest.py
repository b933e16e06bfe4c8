"""Session-scoped real servers, per-test dserver apps, and the tests' shared helpers.

Mongo is nx-27017 (a MongoDB wire-protocol server) unless
DSERVER_TEST_MONGO_URI names a real MongoDB; S3 is moto_server; both come
from ``devstack``. Nothing is mocked in-process and nothing is skipped: a
server that does not start fails the run with its log.

Helpers more than one test module needs are fixtures here (``drain``,
``notify_all``, ``search``, ``auth_headers``, ``make_bucket``): test
modules never import each other.
"""
import uuid

import pytest

from devstack.datasets import Bucket
from devstack.dserver import ADMIN, USER, app_config, dserver_env, prepare_index, token_for
from devstack.mongo import MongoServer
from devstack.moto import MotoServer
from devstack.sns import FakeSns

EXTENSION = "dserver_notification"


@pytest.fixture(scope="session")
def mongo():
    server = MongoServer().start()
    yield server
    server.stop()


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
def make_app(tmp_path, mongo, request):
    """Factory: a dserver app (real Mongo plugins, SQLite) with this plugin."""
    import dservercore

    apps = []

    def factory(buckets, notify=None, mongo_uri=None):
        workdir = tmp_path / f"app{len(apps)}"
        settings = {"DSERVER_NOTIFY_WORKER": "off"}
        settings.update(notify or {})
        env = dserver_env(workdir, mongo_uri or mongo.uri,
                          {b.name: b.base_uri for b in buckets}, settings)
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
            ext.worker.stop()


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
