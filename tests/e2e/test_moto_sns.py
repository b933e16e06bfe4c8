"""AWS-style delivery end to end: S3 -> SNS topic -> HTTP -> live dserver.

moto_server plays S3 and SNS. The bucket notifies an SNS topic of every
created and removed object; the topic has an ``http`` subscription to the
live dserver's ``/webhook/notify``, so moto itself POSTs real SNS envelopes
(``text/plain`` JSON, the first one an ``s3:TestEvent``). moto marks http
subscriptions as confirmed at once and sends no SubscriptionConfirmation
(``PendingConfirmation: False`` in moto/sns/models.py), so
``DSERVER_NOTIFY_SNS_TOPICS`` is not needed here; against AWS it would be.
moto's signatures are placeholders, not made with a key, so verification
is switched off (``DSERVER_NOTIFY_SNS_VERIFY=off``, which the server warns
about at start-up); test_sns_trust.py and test_routes_security.py verify
real signatures.
"""
import uuid

import pytest

from devstack.datasets import Bucket
from tests.e2e.conftest import start_sns_notified_index

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def bucket(moto, live_database_kind):
    """One per database kind: a topic must not keep delivering to the
    dserver of the other kind, stopped by then."""
    return Bucket(moto, f"e2e-sns-{live_database_kind[:2]}-{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def index(index_factory, bucket, moto):
    return start_sns_notified_index(index_factory, bucket, moto)


def test_copy_edit_and_removal_reach_search_through_sns(index, bucket, dataset_lifecycle):
    dataset_lifecycle(index, bucket)
