"""Fixtures of the end-to-end tests: live gunicorn-served dservers.

The session's ``mongo`` (and ``moto``) fixtures come from tests/conftest.py;
each live dserver gets its own SQL database and Mongo database, so modules
never see each other's datasets. Every module runs once on SQLite and once
on PostgreSQL (``live_database_kind``).
"""
import pytest

from tests.conftest import DATABASES, fresh_database
from tests.e2e import start_live_index


@pytest.fixture(scope="module", params=DATABASES)
def live_database_kind(request):
    return request.param


@pytest.fixture(scope="module")
def index_factory(tmp_path_factory, mongo, live_database_kind, request):
    """Start live dservers for a module; all are stopped when it ends.

    ``index_factory(bucket_to_base_uri, extra_env=None, port=None)`` returns
    a :class:`tests.e2e.LiveIndex`.
    """
    started = []

    def start(bucket_to_base_uri, extra_env=None, port=None):
        workdir = tmp_path_factory.mktemp("live-dserver")
        database_uri = fresh_database(live_database_kind, request, workdir)
        index = start_live_index(workdir, mongo.uri, bucket_to_base_uri, extra_env, port,
                                 database_uri=database_uri)
        started.append(index)
        return index

    yield start
    for index in started:
        index.stop()
