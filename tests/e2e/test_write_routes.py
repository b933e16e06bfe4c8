"""The next dservercore writes tags, annotations and README back to S3: round trips.

dservercore 0.23 (main, not yet on PyPI) adds ``PUT /tags/<uri>``,
``PUT /annotations/<uri>/<name>`` and ``PUT /readmes/<uri>``; each updates
the search and retrieve plugins and then writes the dataset in storage with
dtoolcore (``dservercore.utils._update_*_in_storage``). S3 then notifies this
plugin of a change dserver made itself. The index must end equal to S3, and
the round trip must stop there: the plugin's syncs only read S3, so they
cause no further notification. moto plays S3 and SNS as in test_moto_sns.py.

These tests are collected only where dservercore has the write routes
(the ``next`` leg; tests/conftest.py deselects them elsewhere and says so).
"""
import uuid

import dtoolcore
import pytest
import requests

from devstack.datasets import Bucket
from tests.e2e.conftest import start_sns_notified_index, unique_word, url_suffix

pytestmark = [pytest.mark.e2e, pytest.mark.needs_write_routes]

WRITES = {"PUT", "POST", "DELETE"}


@pytest.fixture(scope="module")
def bucket(moto):
    return Bucket(moto, f"e2e-writes-{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def index(index_factory, bucket, moto):
    return start_sns_notified_index(index_factory, bucket, moto)


def status(index):
    answer = requests.get(f"{index.url}/webhook/status", headers=index.headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def idle(index):
    inbox = status(index)["inbox"]
    return inbox["pending"] == inbox["processing"] == inbox["failed"] == 0


def put(index, path, body):
    answer = requests.put(f"{index.url}{path}", json=body, headers=index.headers, timeout=60)
    assert answer.status_code == 200, f"PUT {path}: {answer.status_code} {answer.text}"
    return answer.json()


def in_s3(uri):
    """What a dtool user reads from the bucket: README, tags and annotations."""
    dataset = dtoolcore.DataSet.from_uri(uri)
    annotations = {name: dataset.get_annotation(name)
                   for name in dataset.list_annotation_names()}
    return dataset.get_readme_content(), sorted(dataset.list_tags()), annotations


def in_index(index, uri):
    """The same three as dserver's retrieve routes answer them."""
    suffix = url_suffix(uri)

    def get(kind):
        answer = requests.get(f"{index.url}/{kind}/{suffix}", headers=index.headers,
                              timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()
    return (get("readmes")["readme"], sorted(get("tags")["tags"]),
            get("annotations")["annotations"])


def test_tags_annotations_and_readme_written_by_dserver_converge_without_a_loop(
        index, bucket, moto):
    word = unique_word("written")
    uri = bucket.put_dataset("written-back", readme="project: before\n", tags=["old"])
    index.wait_until(lambda: index.listing() == [uri] and idle(index), f"{uri} indexed")
    suffix = url_suffix(uri)

    moto.reset_request_count()
    put(index, f"/tags/{suffix}", {"tags": ["old", word]})
    put(index, f"/annotations/{suffix}/colour", {"value": "red"})
    put(index, f"/readmes/{suffix}", {"readme": f"project: {word}\n"})
    written = [request for request in moto.requests() if request[0] in WRITES]
    assert written, "the routes wrote nothing to S3"

    # S3 notified the plugin of those writes: its syncs bring the index to S3.
    index.wait_until(lambda: idle(index) and in_index(index, uri) == in_s3(uri),
                     "the index equals S3 after dserver's own writes")
    readme, tags, annotations = in_s3(uri)
    assert (word in readme, tags, annotations) == (True, sorted(["old", word]),
                                                   {"colour": "red"})
    assert index.search(tags=[word]) == [uri]
    assert index.search(free_text=word) == [uri]
    assert status(index)["inbox"]["dead"] == 0

    # No loop: every S3 write since the routes is one the routes made; the
    # syncs that followed only read, so nothing notifies the plugin again.
    assert [request for request in moto.requests() if request[0] in WRITES] == written
    assert idle(index)
