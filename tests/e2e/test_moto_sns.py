"""AWS-style delivery end to end: S3 -> SNS topic -> HTTP -> live dserver.

moto_server plays S3 and SNS. The bucket notifies an SNS topic of every
created and removed object; the topic has an ``http`` subscription to the
live dserver's ``/webhook/notify``, so moto itself POSTs real SNS envelopes
(``text/plain`` JSON, the first one an ``s3:TestEvent``). moto marks http
subscriptions as confirmed at once and sends no SubscriptionConfirmation
(``PendingConfirmation: False`` in moto/sns/models.py), so
``DSERVER_NOTIFY_SNS_TOPICS`` is not needed here; against AWS it would be.
"""
import uuid

import pytest

from tests.e2e import Storage, check_dataset_lifecycle
from tests.services import MOTO_KEY, MOTO_SECRET, dtool_s3_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def storage(moto):
    bucket = f"e2e-sns-{uuid.uuid4().hex[:10]}"
    moto.create_bucket(bucket)
    env = dtool_s3_env(bucket, moto.endpoint, MOTO_KEY, MOTO_SECRET)
    return Storage(bucket=bucket, s3=moto.boto3_client("s3"), env=env)


@pytest.fixture(scope="module")
def index(index_factory, storage, moto):
    index = index_factory({storage.bucket: storage.base_uri}, extra_env=storage.env)
    moto.subscribe_bucket_to_webhook(storage.bucket, index.webhook_url)
    return index


def test_copy_edit_and_removal_reach_search_through_sns(index, storage):
    check_dataset_lifecycle(index, storage)
