"""Make the index match what S3 holds now, for one dataset.

Sync never trusts what an event said: it looks at the bucket. A frozen
dataset is registered (or updated when it changed), a dataset whose
``dtool`` object is gone (and its bucket answers) is deleted from the SQL
table *and* from the documents of every extension that keeps some
(:mod:`.datasetindex` does the deleting), and so is an indexed dataset
where S3 now holds only a proto-dataset (the dataset the entry described
is not there any more); a proto-dataset nobody indexed is left for the
event that freezes it. Errors that a retry may cure propagate; errors no
retry can cure are raised as
:class:`PermanentSyncError`. The worker records the S3 requests of a sync
around it (:func:`.dtool_private.observed_reads`).

Every index write is fenced by the claim: ``fence()`` locks the claimed
inbox row in dservercore's SQL session and says whether the claim still
holds, and the write (Mongo documents first, then the SQL row, then the
commit that ends the lock) happens in that same transaction. A sync whose
claim expired and was taken over writes nothing (:class:`ClaimLost`);
one whose claim holds writes before the new owner can take the row.
"""
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Optional

import botocore.exceptions
from dservercore import ValidationError
from dservercore.utils import (
    base_uri_exists,
    dataset_uri_exists,
    generate_dataset_info,
    register_dataset,
)

from .datasetindex import remove_dataset
from .dtool_private import dataset_on, storage_broker
from .evidence import confirm_bucket_answers, is_object_absent, unreadable_from
from .states import DatasetKind, Outcome

logger = logging.getLogger(__name__)

#: What dtool-s3's ``put_admin_metadata`` writes into every ``dtool`` object.
ADMIN_METADATA_ALWAYS_WRITTEN = ("type", "uuid")


class PermanentSyncError(Exception):
    """No retry can fix this (e.g. the base URI is not registered)."""


class ClaimLost(Exception):
    """The claim expired and another process took the entry: write nothing."""


class AdminMetadataMissing(Exception):
    """The ``dtool`` object carries no admin metadata: retried.

    dtool-s3 keeps a dataset's admin metadata in the S3 user metadata of
    its ``dtool`` object, and always writes ``type`` and ``uuid`` there. An
    object without them is either being written by a server that stores
    the body before the metadata (moto notifies in between) or was not
    written by dtool-s3 (an ``aws s3 sync`` of a dataset folder); it says
    neither "proto-dataset" nor "gone", so the index is left alone.
    """


def _unfenced():
    return True


def read_dataset(uri):
    """Return ``(DatasetKind, dataset or None)``.

    dtool-s3 swallows every ClientError as "no such dataset"; a throttled or
    failing S3 would then look like a deletion. Only positive evidence
    counts as absent (:mod:`.evidence`): the ``dtool`` object is not found
    *and* the bucket answers. A bucket that is missing at the endpoint,
    refuses access or does not answer raises :class:`.BucketUnreadable`,
    a ``dtool`` object without admin metadata :class:`AdminMetadataMissing`;
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
    if not all(admin_metadata.get(name) for name in ADMIN_METADATA_ALWAYS_WRITTEN):
        raise AdminMetadataMissing(
            f"the dtool object of {uri} has no admin metadata (S3 user metadata "
            f"{'/'.join(ADMIN_METADATA_ALWAYS_WRITTEN)}): a write still in progress, "
            f"or an object not written by dtool-s3")
    if admin_metadata.get("type") != "dataset":
        return DatasetKind.PROTO, None
    return DatasetKind.FROZEN, dataset_on(broker, uri, admin_metadata)


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


def sync_dataset(base_uri, uri, known_fingerprint=None, fence=_unfenced) -> SyncResult:
    """Bring one dataset's index entry in line with S3. Needs an app context.

    ``fence()`` is called right before any index write (see the module
    docstring); :class:`ClaimLost` when it says the claim is gone.
    """
    kind, dataset = read_dataset(uri)
    if kind is DatasetKind.FROZEN:
        outcome, digest = _register(base_uri, dataset, known_fingerprint, fence)
    elif kind is DatasetKind.ABSENT:
        outcome, digest = _delete(uri, fence), None
    else:
        outcome, digest = _leave_proto(uri, fence), known_fingerprint
    return SyncResult(outcome, digest, kind)


def _leave_proto(uri, fence):
    """A proto-dataset: nothing to index. An entry the index holds for this
    URI described a frozen dataset that is not in S3 any more: it goes."""
    outcome = _delete(uri, fence)
    return Outcome.PROTO if outcome is Outcome.ABSENT else outcome


def _hold_claim(fence):
    if not fence():
        raise ClaimLost("the claim expired and another process took the entry")


def _register(base_uri, dataset, known_fingerprint, fence):
    if not base_uri_exists(base_uri):
        raise PermanentSyncError(
            f"base URI {base_uri} is not registered in dserver; register it with "
            f"`flask base_uri add {base_uri}`, then `flask notification retry --all-dead`")
    info = generate_dataset_info(dataset, base_uri)
    digest = fingerprint(info)
    if digest == known_fingerprint and dataset_uri_exists(dataset.uri):
        return Outcome.UNCHANGED, digest
    _hold_claim(fence)
    try:
        register_dataset(info)  # Mongo documents, then the SQL row and the commit
    except ValidationError as exc:
        raise PermanentSyncError(f"dserver refused {dataset.uri}: {exc}")
    logger.info("registered %s", dataset.uri)
    return Outcome.REGISTERED, digest


def _delete(uri, fence):
    if not remove_dataset(uri, before_write=lambda: _hold_claim(fence)):
        return Outcome.ABSENT
    logger.info("deleted %s", uri)
    return Outcome.DELETED
