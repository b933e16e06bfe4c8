"""A real object store end to end: SeaweedFS filer webhook -> live dserver.

``weed server`` (master, volume, filer, S3 gateway) is started once for the
module (it takes seconds). Its filer POSTs one JSON per change, in its own
format, to the live dserver's ``/webhook/notify``; dtool-s3 talks to its S3
gateway. The webhook URL must exist before weed starts and dserver must know
weed's S3 endpoint, so dserver's port is chosen first, weed is started
pointing at it, and dserver is started on that port.
"""
import uuid

import pytest

from devstack.datasets import Bucket
from devstack.ports import HOST, free_port
from devstack.seaweed import SeaweedServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def dserver_port():
    return free_port()


@pytest.fixture(scope="module")
def seaweed(dserver_port):
    server = SeaweedServer(webhook_url=f"http://{HOST}:{dserver_port}/webhook/notify")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bucket(seaweed):
    return Bucket(seaweed, f"e2e-weed-{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def index(index_factory, bucket, dserver_port):
    return index_factory({bucket.name: bucket.base_uri}, extra_env=bucket.env,
                         port=dserver_port)


def test_copy_edit_and_removal_reach_search_through_filer_webhook(index, bucket,
                                                                  dataset_lifecycle):
    dataset_lifecycle(index, bucket)
