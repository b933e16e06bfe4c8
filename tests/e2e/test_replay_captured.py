"""MinIO and StorageGRID cannot run here: replay their requests instead.

MinIO's requests are the real ones it sent in 2022 (tests/data/replay/
minio-2022, see tests/data/README.md); StorageGRID's are constructed from
NetApp's documentation and labelled so. Each replay goes to a fresh live
dserver, in the original order, with the original method, path, headers
and body bytes, and with the original gaps between requests, each gap
capped at ``MAX_GAP_SECONDS`` (the MinIO logs span an hour).

For the replay to mean something, the datasets the requests name exist
in a real S3 (moto) first, with the very UUIDs and key prefixes of the
captures: the plugin reads S3, not the notification, to index them.
"""
import datetime
import http.client
import json
import os
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest

from devstack.datasets import Bucket
from devstack.moto import MotoServer
from devstack.s3 import list_keys

pytestmark = pytest.mark.e2e

REPLAY = Path(__file__).resolve().parent.parent / "data" / "replay"
MAX_GAP_SECONDS = 0.5
BUCKET = "test-bucket"  # the bucket every captured request names

# The dataset of the MinIO captures: uuid and creator from the `dtool`
# object's user metadata in webhook/copy_dataset_to_bucket/010.json.
MINIO_UUID = "49f0bf41-471b-4781-855e-161fe81ffb0d"
MINIO_PREFIX = "u/testuser/"
MINIO_NAME, MINIO_CREATOR = "2022-02-21-notfication-plugin-test-dataset", "jotelha"
# The dataset of the constructed StorageGRID requests (a space in the prefix
# makes the form- and S3-encoding of keys matter).
SGWS_UUID = "325e2c81-0220-4ef0-a029-4f9b15f644e5"
SGWS_PREFIX = "my data/"

# MinIO's webhook target was configured at this path of the catch-all app
# that captured the requests; on dserver the webhook lives at /webhook/notify.
CAPTURED_WEBHOOK_PATH = "/elastic-search/notify/all"
WEBHOOK_PATH = "/webhook/notify"


def put_dataset_with_uuid(storage, dataset_uuid, prefix, name, creator, readme):
    """Copy a one-item dtool dataset with a given UUID under a key prefix.

    dtoolcore's public API takes the admin metadata a proto dataset is made
    from, so the UUID is set there, before anything is written; dtool-s3
    takes the prefix from ``DTOOL_S3_DATASET_PREFIX_<bucket>`` when it writes.
    """
    import dtoolcore

    prefix_setting = f"DTOOL_S3_DATASET_PREFIX_{storage.name}"
    os.environ[prefix_setting] = prefix
    try:
        with tempfile.TemporaryDirectory(prefix="dtool-src-") as tmp:
            admin_metadata = dtoolcore.generate_admin_metadata(name, creator)
            admin_metadata["uuid"] = dataset_uuid
            proto = dtoolcore.generate_proto_dataset(admin_metadata, Path(tmp).as_uri())
            proto.create()
            proto.put_readme(readme)
            item = Path(tmp, "hello.txt")
            item.write_text("hello\n")
            proto.put_item(str(item), "hello.txt")
            proto.freeze()
            uri = dtoolcore.copy(proto.uri, storage.base_uri)
    finally:
        del os.environ[prefix_setting]
    assert uri == f"{storage.base_uri}/{dataset_uuid}"
    keys = list_keys(storage.s3, storage.name)
    assert f"dtool-{dataset_uuid}" in keys and f"{prefix}{dataset_uuid}/dtool" in keys
    return uri


@pytest.fixture(scope="module")
def storage():
    """A moto of its own, so the captures' bucket name is surely free."""
    with MotoServer() as moto:
        storage = Bucket(moto, BUCKET)
        storage.minio_uri = put_dataset_with_uuid(
            storage, MINIO_UUID, MINIO_PREFIX, MINIO_NAME, MINIO_CREATOR,
            "description: replayed from MinIO captures\n")
        storage.sgws_uri = put_dataset_with_uuid(
            storage, SGWS_UUID, SGWS_PREFIX, "storagegrid-replay", "sgws",
            "description: replayed from StorageGRID documentation\n")
        yield storage


@pytest.fixture
def index(fresh_index_factory, storage):
    """A fresh live dserver per replay: each must make its dataset searchable."""
    return fresh_index_factory({BUCKET: storage.base_uri}, extra_env=storage.env)


def load_requests(*directories):
    """Captured requests of the given directories, in the order they were logged."""
    paths = [path for directory in directories
             for path in sorted((REPLAY / directory).glob("*.json"))]
    requests = [json.loads(path.read_text()) for path in paths]
    return sorted(requests, key=lambda r: r["logged_at"])


def logged_at(request):
    return datetime.datetime.strptime(request["logged_at"], "%Y-%m-%d %H:%M:%S.%f")


def body_bytes(request):
    """The body as it went over the wire.

    The captures hold the parsed JSON; Go's encoding/json wrote it compact
    (json.Encoder adds one newline, the Elasticsearch client uses it), so the
    original bytes are rebuilt and checked against the captured Content-Length.
    """
    body = request["body"]
    if body is None:
        data = b""
    elif isinstance(body, str):
        data = body.encode("utf-8")
    else:
        data = go_json(body)
    captured_length = request["headers"].get("Content-Length")
    if captured_length is not None and int(captured_length) == len(data) + 1:
        data += b"\n"
    if captured_length is not None:
        assert int(captured_length) == len(data), f"cannot rebuild the body of {request}"
    return data


def go_json(value):
    """What Go's json.Marshal writes: compact, UTF-8, with <, > and & escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text.encode("utf-8")


def replay_path(request):
    path = request["path"]
    if request["method"] == "POST" and path == CAPTURED_WEBHOOK_PATH:
        path = WEBHOOK_PATH
    query = request.get("query")
    return urllib.parse.quote(path, safe="/=_-.~") + (f"?{query}" if query else "")


def send(url, request):
    """Send one request with exactly its captured headers (Host included)."""
    target = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    try:
        connection.putrequest(request["method"], replay_path(request),
                              skip_host=True, skip_accept_encoding=True)
        for name, value in request["headers"].items():
            connection.putheader(name, value)
        connection.endheaders(body_bytes(request) or None)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def replay(url, requests):
    """Send requests in order, keeping their logged gaps (capped); check answers.

    Every answer must be 2xx and JSON (HEAD answers carry only the header).
    Returns the decoded JSON bodies, None for HEAD.
    """
    answers = []
    start, offset = time.monotonic(), 0.0
    for previous, request in zip([None, *requests], requests):
        if previous is not None:
            gap = (logged_at(request) - logged_at(previous)).total_seconds()
            offset += min(max(gap, 0.0), MAX_GAP_SECONDS)
        time.sleep(max(0.0, start + offset - time.monotonic()))
        status, content_type, body = send(url, request)
        what = f"{request['method']} {request['path']} ({request['logged_at']})"
        assert 200 <= status < 300, f"{what}: {status} {body!r}"
        assert content_type.startswith("application/json"), f"{what}: {content_type}"
        answers.append(None if request["method"] == "HEAD" else json.loads(body))
    return answers


def accepted(answers):
    return sum(a.get("accepted", 0) for a in answers if a)


def test_minio_webhook_copy_replayed_makes_the_dataset_searchable(index, storage):
    requests = load_requests("minio-2022/webhook/copy_dataset_to_bucket")
    answers = replay(index.url, requests)
    assert accepted(answers) > 0
    index.wait_until(lambda: index.search(base_uris=[storage.base_uri]) == [storage.minio_uri],
                     f"{storage.minio_uri} searchable after the MinIO webhook replay")
    assert "MinIO captures" in index.readme_text(storage.minio_uri)


def test_minio_elasticsearch_start_up_and_copy_replayed(index, storage):
    requests = load_requests("minio-2022/elasticsearch/initial_minio_endpoint_health_check",
                             "minio-2022/elasticsearch/minio_server_restart_after_config_setup",
                             "minio-2022/elasticsearch/copy_dataset_to_bucket")
    answers = replay(index.url, requests)
    assert answers[0]["version"]["number"].startswith("7.")  # GET / as Elasticsearch 7
    assert accepted(answers) > 0
    index.wait_until(lambda: index.search(base_uris=[storage.base_uri]) == [storage.minio_uri],
                     f"{storage.minio_uri} searchable after the MinIO Elasticsearch replay")


def test_storagegrid_sns_form_posts_replayed(index, storage):
    requests = load_requests("storagegrid/sns-copy")
    answers = replay(index.url, requests)
    assert answers[0] is not None and accepted(answers[:1]) == 0  # the endpoint test
    assert accepted(answers) > 0
    index.wait_until(lambda: index.search(base_uris=[storage.base_uri]) == [storage.sgws_uri],
                     f"{storage.sgws_uri} searchable after the StorageGRID replay")
