"""Fixtures of the end-to-end tests: live gunicorn-served dservers.

The session's ``mongo`` (and ``moto``) fixtures come from tests/conftest.py;
each live dserver gets its own SQLite file and Mongo database, so modules
never see each other's datasets.
"""
import pytest

from tests.e2e import start_live_index


@pytest.fixture(scope="module")
def index_factory(tmp_path_factory, mongo):
    """Start live dservers for a module; all are stopped when it ends.

    ``index_factory(bucket_to_base_uri, extra_env=None, port=None)`` returns
    a :class:`tests.e2e.LiveIndex`.
    """
    started = []

    def start(bucket_to_base_uri, extra_env=None, port=None):
        workdir = tmp_path_factory.mktemp("live-dserver")
        index = start_live_index(workdir, mongo.uri, bucket_to_base_uri, extra_env, port)
        started.append(index)
        return index

    yield start
    for index in started:
        index.stop()
