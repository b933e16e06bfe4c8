"""Make the index match what S3 holds now, for one dataset.

Sync never trusts what an event said: it looks at the bucket. A frozen
dataset is registered (or updated when it changed), a dataset whose
``dtool`` object is gone (and its bucket answers) is deleted from the SQL
table *and* from the documents of every extension that keeps some, and a proto-dataset is left for the event that
freezes it (:mod:`.datasetindex` does the deleting). Errors that a retry
may cure propagate; errors no retry can cure are raised as
:class:`PermanentSyncError`. The worker records the S3 requests of a sync
around it (:func:`.dtool_private.observed_reads`).
"""
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Optional

import botocore.exceptions
import dtoolcore
from dservercore import ValidationError
from dservercore.utils import (
    base_uri_exists,
    dataset_uri_exists,
    generate_dataset_info,
    register_dataset,
)

from .datasetindex import remove_dataset
from .dtool_private import storage_broker
from .evidence import confirm_bucket_answers, is_object_absent, unreadable_from
from .states import DatasetKind, Outcome

logger = logging.getLogger(__name__)


class PermanentSyncError(Exception):
    """No retry can fix this (e.g. the base URI is not registered)."""


def read_dataset(uri):
    """Return ``(DatasetKind, dataset or None)``.

    dtool-s3 swallows every ClientError as "no such dataset"; a throttled or
    failing S3 would then look like a deletion. Only positive evidence
    counts as absent (:mod:`.evidence`): the ``dtool`` object is not found
    *and* the bucket answers. A bucket that is missing at the endpoint,
    refuses access or does not answer raises :class:`.BucketUnreadable`;
    anything else is raised too, so the entry is retried.
    """
    broker = storage_broker(uri)
    try:
        admin_metadata = broker.get_admin_metadata()
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        if not is_object_absent(exc):
            raise unreadable_from(exc, broker.bucket, broker.s3client) or exc
        confirm_bucket_answers(broker.s3client, broker.bucket)
        return DatasetKind.ABSENT, None
    if admin_metadata.get("type") != "dataset":
        return DatasetKind.PROTO, None
    return DatasetKind.FROZEN, dtoolcore.DataSet(uri, admin_metadata=admin_metadata)


def fingerprint(dataset_info):
    """Stable digest of what the index would hold for a dataset."""
    canonical = json.dumps(dataset_info, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class SyncResult:
    """What a sync did, and what it found in S3 (for :mod:`.coverage`)."""
    outcome: Outcome
    fingerprint: Optional[str]
    kind: DatasetKind


def sync_dataset(base_uri, uri, known_fingerprint=None) -> SyncResult:
    """Bring one dataset's index entry in line with S3. Needs an app context."""
    kind, dataset = read_dataset(uri)
    if kind is DatasetKind.FROZEN:
        outcome, digest = _register(base_uri, dataset, known_fingerprint)
    elif kind is DatasetKind.ABSENT:
        outcome, digest = _delete(uri), None
    else:
        outcome, digest = Outcome.PROTO, known_fingerprint
    return SyncResult(outcome, digest, kind)


def _register(base_uri, dataset, known_fingerprint):
    if not base_uri_exists(base_uri):
        raise PermanentSyncError(
            f"base URI {base_uri} is not registered in dserver; register it with "
            f"`flask base_uri add {base_uri}`, then `flask notification retry --all-dead`")
    info = generate_dataset_info(dataset, base_uri)
    digest = fingerprint(info)
    if digest == known_fingerprint and dataset_uri_exists(dataset.uri):
        return Outcome.UNCHANGED, digest
    try:
        register_dataset(info)
    except ValidationError as exc:
        raise PermanentSyncError(f"dserver refused {dataset.uri}: {exc}")
    logger.info("registered %s", dataset.uri)
    return Outcome.REGISTERED, digest


def _delete(uri):
    if not remove_dataset(uri):
        return Outcome.ABSENT
    logger.info("deleted %s", uri)
    return Outcome.DELETED
