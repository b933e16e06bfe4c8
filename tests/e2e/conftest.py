"""Fixtures of the end-to-end tests: live gunicorn-served dservers and their API.

The session's ``mongo`` (and ``moto``) fixtures come from tests/conftest.py;
each live dserver gets its own SQL database and Mongo database, so modules
never see each other's datasets; a module runs on SQLite, and once more on
PostgreSQL if it is marked ``both_databases`` (``live_database_kind``).
Buckets are ``devstack.datasets.Bucket``.
"""
import itertools
import uuid

import pytest
import requests

from devstack.dserver import LiveDserver, dserver_env, prepare_index_for_server, stop_servers
from devstack.ports import wait_until
from devstack.s3 import remove_all_objects
from tests.conftest import database_kind, fresh_database

WAIT_SECONDS = 30.0
POLL_INTERVAL = 0.2
PAGE_SIZE = 100

# Small debounce and poll interval so the tests are quick; everything else
# is the production default. Loopback is where the storage servers run. The
# reconciler is off: these tests show what notifications alone achieve (its
# own tests switch it on through ``extra_env``).
E2E_NOTIFY = {
    "DSERVER_NOTIFY_DEBOUNCE_SECONDS": "0.5",
    "DSERVER_NOTIFY_POLL_SECONDS": "0.2",
    "DSERVER_NOTIFY_ALLOW_ACCESS_FROM": "127.0.0.1/32,::1/128",
    "DSERVER_NOTIFY_RECONCILE_INTERVAL_SECONDS": "0",
}


def start_live_index(workdir, mongo_uri, bucket_to_base_uri, extra_env=None, port=None,
                     database_uri=None):
    """Prepare dserver's database and serve it with gunicorn (2 workers).

    ``extra_env`` carries settings such as dtool-s3's endpoint and keys;
    ``port`` lets a caller tell a storage server the webhook URL before
    dserver runs; ``database_uri`` is its SQL database (default: SQLite).
    """
    env = dserver_env(workdir, mongo_uri, bucket_to_base_uri, dict(E2E_NOTIFY),
                      database_uri=database_uri)
    env.update(extra_env or {})
    prepare_index_for_server(env, sorted(set(bucket_to_base_uri.values())))
    server = LiveDserver(env, workdir, workers=2)
    server.port = port
    try:
        server.start()
    except BaseException:
        server.kill()  # a half-started gunicorn must not outlive the test
        raise
    return LiveIndex(server)


def url_suffix(uri):
    """How dservercore puts a dataset URI into a path (utils.uri_to_url_suffix)."""
    return uri.replace("://", "/", 1)


class LiveIndex:
    """The HTTP API of a live dserver, seen by its admin user."""

    def __init__(self, server):
        self.server = server
        self.url = server.url
        self.headers = server.admin_headers()

    @property
    def webhook_url(self):
        return f"{self.url}/webhook/notify"

    def stop(self):
        self.server.stop()

    def _ok_json(self, answer):
        assert answer.status_code == 200, f"{answer.request.method} {answer.url}: " \
                                          f"{answer.status_code} {answer.text}"
        return answer.json()

    def search(self, **query):
        """URIs found by the search plugin (POST /uris with a non-empty query)."""
        assert query, "an empty query lists the SQL table; use listing()"
        return self._all_pages("post", json=query)

    def listing(self):
        """URIs in dserver's SQL table (GET /uris without a query)."""
        return self._all_pages("get")

    def _all_pages(self, method, **kwargs):
        """Every page of /uris (dservercore answers 10 per page unless asked)."""
        uris = []
        for page in itertools.count(1):
            answer = requests.request(method, f"{self.url}/uris", headers=self.headers,
                                      params={"page": page, "page_size": PAGE_SIZE},
                                      timeout=10, **kwargs)
            found = [d["uri"] for d in self._ok_json(answer)]
            uris.extend(found)
            if len(found) < PAGE_SIZE:
                return sorted(uris)

    def readme(self, uri):
        """The retrieve plugin's answer for the README of ``uri``."""
        return requests.get(f"{self.url}/readmes/{url_suffix(uri)}", headers=self.headers,
                            timeout=10)

    def readme_text(self, uri):
        answer = self.readme(uri)
        return answer.json().get("readme") if answer.status_code == 200 else None

    def wait_until(self, condition, what, timeout=WAIT_SECONDS):
        """Poll ``condition()`` until it is truthy; fail naming ``what``.

        On time-out the failure shows the last value seen and the tail of
        the gunicorn log, which is where a worker's traceback would be.
        """
        try:
            return wait_until(condition, what, timeout, POLL_INTERVAL)
        except AssertionError as failure:
            raise AssertionError(f"{failure}\ndserver log tail:\n{self.server.log_tail(80)}") \
                from None


class _Started(list):
    """The live dservers a factory started, and the drops of their databases."""

    def __init__(self):
        super().__init__()
        self.drops = []

    def stop_all(self):
        stop_servers([index.server for index in self])
        for drop in self.drops:  # only once nothing uses the databases
            drop()


def _index_factory(tmp_path_factory, mongo_uri, kind, request):
    """A ``start(...)`` function and the list of what it started.

    Each dserver gets a fresh database of ``kind`` (sqlite, postgresql),
    dropped by ``stop_all()``.
    """
    started = _Started()

    def start(bucket_to_base_uri, extra_env=None, port=None):
        workdir = tmp_path_factory.mktemp("live-dserver")
        database_uri = fresh_database(kind, request, workdir, started.drops)
        index = start_live_index(workdir, mongo_uri, bucket_to_base_uri, extra_env, port,
                                 database_uri=database_uri)
        started.append(index)
        return index

    return start, started


@pytest.fixture(scope="module")
def live_database_kind(request):
    """SQLite, and PostgreSQL too for a module marked both_databases
    (tests/conftest.py parametrizes it)."""
    return request.param


@pytest.fixture(scope="module")
def index_factory(tmp_path_factory, mongo, live_database_kind, request):
    """Start live dservers for a module; all are stopped when it ends.

    ``index_factory(bucket_to_base_uri, extra_env=None, port=None)`` returns
    a :class:`LiveIndex`.
    """
    start, started = _index_factory(tmp_path_factory, mongo.uri, live_database_kind, request)
    yield start
    started.stop_all()


@pytest.fixture
def fresh_index_factory(tmp_path_factory, mongo, database, request):
    """Like ``index_factory``, but what it starts is stopped when the test ends
    (for tests that need a dserver of their own: restarts, kills, counters
    from zero)."""
    start, started = _index_factory(tmp_path_factory, mongo.uri, database_kind(database),
                                    request)
    yield start
    started.stop_all()


def start_sns_notified_index(index_factory, bucket, moto):
    """A live dserver that moto's SNS topic for ``bucket`` notifies over HTTP.

    moto's SNS signatures are placeholders, so verification is off here
    (test_moto_sns.py says why); dtool-s3's settings let dserver read the bucket.
    """
    index = index_factory({bucket.name: bucket.base_uri},
                          extra_env={**bucket.env, "DSERVER_NOTIFY_SNS_VERIFY": "off"})
    moto.subscribe_bucket_to_webhook(bucket.name, index.webhook_url)
    return index


def unique_word(stem):
    """A word no other dataset's README holds (free-text search is substring)."""
    return f"{stem}{uuid.uuid4().hex[:10]}"


def check_dataset_lifecycle(index, bucket):
    """The story every real object store must pass through a live dserver.

    Only dtool and S3 clients act; the storage server itself sends the
    notifications, and the index is observed through dserver's HTTP API.
    """
    import dtoolcore

    first_word, second_word, tag = unique_word("alpha"), unique_word("beta"), unique_word("t")
    uri = bucket.put_dataset("lifecycle", readme=f"project: {first_word}\n", real_copy=True)
    # dservercore's register_dataset writes the search and retrieve documents
    # (and every extension's) before it commits the SQL row: search may show
    # the dataset a moment before the listing does
    index.wait_until(lambda: index.search(free_text=first_word) == [uri]
                     and index.listing() == [uri],
                     f"copied {uri} found by its README word and listed")
    assert first_word in index.readme_text(uri)

    dataset = dtoolcore.DataSet.from_uri(uri)
    dataset.put_readme(f"project: {second_word}\n")
    dataset.put_tag(tag)
    index.wait_until(lambda: (index.search(free_text=second_word) == [uri]
                              and index.search(tags=[tag]) == [uri]),
                     f"edited README and new tag of {uri} searchable")
    index.wait_until(lambda: second_word in (index.readme_text(uri) or ""),
                     f"retrieve serves the edited README of {uri}")
    assert index.search(free_text=first_word) == []

    remove_all_objects(bucket.s3, bucket.name)
    index.wait_until(lambda: uri not in index.listing(), f"{uri} gone from the listing")
    index.wait_until(lambda: index.search(base_uris=[bucket.base_uri]) == []
                     and index.search(tags=[tag]) == [], f"{uri} gone from search")
    index.wait_until(lambda: index.readme(uri).status_code != 200,
                     f"{uri} gone from retrieve")
    return uri


@pytest.fixture
def dataset_lifecycle():
    """``dataset_lifecycle(index, bucket)``: copy, edit and remove a dataset, and
    check that the live index follows each step (returns the dataset's URI)."""
    return check_dataset_lifecycle
