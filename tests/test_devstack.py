"""Smoke tests of the real-server launchers in devstack/.

Each server starts once for the module. Nothing is skipped: a server that
cannot start fails the test with its log tail.
"""

import json
import subprocess
import sys
import threading
import time
from urllib.parse import quote
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dtoolcore
import flask
import pytest

from devstack import ports
from devstack.datasets import dtool_s3_env, put_dtool_dataset
from devstack.mongo import MongoServer
from devstack.moto import MOTO_KEY, MOTO_SECRET, MotoServer
from devstack.s3 import list_keys, remove_all_objects
from devstack.seaweed import SeaweedServer

pytestmark = pytest.mark.integration

ITEMS = {"a.txt": b"alpha\n", "sub/b.txt": b"beta\n", "c.bin": b"\x00\x01\x02"}


class _Recorder(BaseHTTPRequestHandler):
    """Stores every POST as (path, headers, body) on the server."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def receiver():
    server = ThreadingHTTPServer((ports.HOST, 0), _Recorder)
    server.received = []
    server.url = f"http://{ports.HOST}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _bodies(receiver, path):
    return [body for p, _, body in list(receiver.received) if p == path]


def _wait_for(condition, timeout=15.0, what="condition"):
    ports.wait_until(condition, what, timeout)


@pytest.fixture(scope="module")
def mongo():
    with MongoServer() as server:
        yield server


@pytest.fixture(scope="module")
def moto():
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="module")
def seaweed(receiver):
    with SeaweedServer(webhook_url=receiver.url + "/seaweed") as server:
        yield server


def test_free_port_is_bindable():
    port = ports.free_port()
    assert ports.port_is_free(port)


def test_a_subprocess_imports_devstack_from_any_directory(tmp_path):
    code = "import devstack; print(devstack.__file__)"
    where = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=ports.python_env(),
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where == str(ports.ROOT / "devstack" / "__init__.py")


def test_wait_for_port_reports_a_dead_process(tmp_path):
    log = tmp_path / "log"
    proc = ports.start_process(["sh", "-c", "echo boom-marker; exit 3"], log)
    with pytest.raises(ports.ServerError, match="boom-marker"):
        ports.wait_for_port(ports.HOST, ports.free_port(), 5, proc, log)


def test_mongo_insert_find_and_restart(mongo):
    import pymongo

    collection = pymongo.MongoClient(mongo.uri)["smoke"]["things"]
    collection.insert_one({"name": "kept", "n": 1})
    assert collection.find_one({"name": "kept"})["n"] == 1
    if mongo.managed:
        mongo.kill()
        mongo.restart()
        again = pymongo.MongoClient(mongo.uri, serverSelectionTimeoutMS=5000)
        assert again["smoke"]["things"].find_one({"name": "kept"})["n"] == 1


def test_mongo_uses_an_external_server_when_configured(monkeypatch):
    monkeypatch.setenv(MongoServer.ENV_URI, "mongodb://db.example:27017/")
    with MongoServer() as server:
        assert server.uri == "mongodb://db.example:27017/"
        assert server.proc is None and not server.managed
        with pytest.raises(ports.ServerError):
            server.kill()


def test_search_plugin_init_app_and_text_search(mongo):
    from dserver_search_plugin_mongo.utils_search import MongoSearch

    app = flask.Flask("smoke")
    app.config.update(SEARCH_MONGO_URI=mongo.uri, SEARCH_MONGO_DB="smoke_search",
                      SEARCH_MONGO_COLLECTION="datasets")
    search = MongoSearch()
    search.init_app(app)  # creates the wildcard text index
    search.collection.insert_one(
        {"uri": "s3://b/1", "base_uri": "s3://b", "readme": "Crystal growth"})
    search.collection.insert_one(
        {"uri": "s3://b/2", "base_uri": "s3://b", "readme": "Unrelated"})
    hits = search.search({"base_uris": ["s3://b"], "free_text": "crystal"})
    assert [hit["uri"] for hit in hits] == ["s3://b/1"]


def _copy_and_read_back(bucket, endpoint, key, secret):
    env = dtool_s3_env(bucket, endpoint, key, secret)
    uri = put_dtool_dataset(f"s3://{bucket}", "smoke", ITEMS,
                                     tags=["t1"], annotations={"kind": "smoke"}, env=env)
    dataset = dtoolcore.DataSet.from_uri(uri)
    assert uri == f"s3://{bucket}/{dataset.uuid}"
    contents = {props["relpath"]: open(dataset.item_content_abspath(i), "rb").read()
                for i, props in ((i, dataset.item_properties(i)) for i in dataset.identifiers)}
    assert contents == ITEMS
    assert dataset.list_tags() == ["t1"]
    assert dataset.get_annotation("kind") == "smoke"
    return dataset


def test_moto_dataset_copy_and_sns_deliveries(moto, receiver):
    moto.create_bucket("smoke-moto")
    topic = moto.subscribe_bucket_to_webhook("smoke-moto", receiver.url + "/sns")
    moto.reset_request_count()
    dataset = _copy_and_read_back("smoke-moto", moto.endpoint,
                                  MOTO_KEY, MOTO_SECRET)
    assert moto.request_count() > 10  # dozens of PUTs and GETs, no SNS calls

    s3 = moto.boto3_client("s3")
    keys = list_keys(s3, "smoke-moto")
    assert f"dtool-{dataset.uuid}" in keys
    assert f"{dataset.uuid}/manifest.json" in keys
    assert sum(k.startswith(f"{dataset.uuid}/data/") for k in keys) == len(ITEMS)

    _wait_for(lambda: ("ObjectCreated:Put", f"{dataset.uuid}%2Fmanifest.json")
              in _sns_records(receiver, topic), what="SNS delivery of manifest.json")

    before = moto.request_count()
    remove_all_objects(s3, "smoke-moto")
    assert moto.request_count() - before == 1 + len(keys)  # one list, one DELETE per key
    assert list_keys(s3, "smoke-moto") == []
    removed = {quote(key, safe="") for key in keys}
    _wait_for(lambda: removed <= {key for name, key in _sns_records(receiver, topic)
                                  if name.startswith("ObjectRemoved:")},
              what="SNS deliveries of every removal")


def _sns_records(receiver, topic):
    """(eventName, url-encoded key) of every S3 record delivered via SNS."""
    records = []
    for body in _bodies(receiver, "/sns"):
        envelope = json.loads(body)
        assert envelope["Type"] == "Notification" and envelope["TopicArn"] == topic
        for record in json.loads(envelope["Message"]).get("Records", []):
            records.append((record["eventName"], record["s3"]["object"]["key"]))
    return records


def test_seaweed_dataset_copy_and_filer_webhook(seaweed, receiver):
    seaweed.create_bucket("smoke-weed")
    dataset = _copy_and_read_back("smoke-weed", seaweed.s3_endpoint,
                                  seaweed.access_key, seaweed.secret_key)

    def event_keys():
        return {json.loads(body)["key"] for body in _bodies(receiver, "/seaweed")}

    expected = {f"/buckets/smoke-weed/dtool-{dataset.uuid}",
                f"/buckets/smoke-weed/{dataset.uuid}/manifest.json",
                f"/buckets/smoke-weed/{dataset.uuid}/README.yml"}
    _wait_for(lambda: expected <= event_keys(), what="filer webhook events")
    sample = json.loads(_bodies(receiver, "/seaweed")[-1])
    assert sample["event_type"] in {"create", "update", "delete", "rename"}

    s3 = seaweed.boto3_client()
    remove_all_objects(s3, "smoke-weed", prefix=dataset.uuid, batch=True)
    assert list_keys(s3, "smoke-weed") == [f"dtool-{dataset.uuid}"]

    def deleted_keys():
        events = (json.loads(body) for body in _bodies(receiver, "/seaweed"))
        return {event["key"] for event in events if event["event_type"] == "delete"}

    _wait_for(lambda: f"/buckets/smoke-weed/{dataset.uuid}/manifest.json" in deleted_keys(),
              what="filer delete event")


def test_the_s3_proxy_forwards_and_holds_one_request_until_released(moto):
    from devstack.proxy import S3Proxy
    from devstack.s3 import boto3_client
    proxy = S3Proxy(moto.endpoint).start()
    try:
        direct = moto.boto3_client("s3")
        bucket = f"proxy-{int(time.time() * 1000)}"
        direct.create_bucket(Bucket=bucket)
        direct.put_object(Bucket=bucket, Key="k", Body=b"one")
        through = boto3_client("s3", proxy.endpoint, MOTO_KEY, MOTO_SECRET)
        assert through.get_object(Bucket=bucket, Key="k")["Body"].read() == b"one"
        assert through.head_object(Bucket=bucket, Key="k")["ContentLength"] == 3
        assert list_keys(through, bucket) == ["k"]

        def read_while_held(after, new_body):
            hold = proxy.hold("GET", rf"/{bucket}/k$", after=after)
            got = {}
            reader = threading.Thread(target=lambda: got.update(
                body=through.get_object(Bucket=bucket, Key="k")["Body"].read()))
            reader.start()
            hold.wait()
            direct.put_object(Bucket=bucket, Key="k", Body=new_body)
            hold.release()
            reader.join(30)
            return got["body"]

        assert read_while_held(after=False, new_body=b"two") == b"two"    # asked after
        assert read_while_held(after=True, new_body=b"three") == b"two"   # answered before
    finally:
        proxy.stop()
