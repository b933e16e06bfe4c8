"""Make the index match what S3 holds now, for one dataset.

Sync never trusts what an event said: it looks at the bucket. A frozen
dataset is registered (or updated when it changed), a dataset whose
``dtool`` object is gone is deleted from the SQL table *and* from the
search and retrieve plugins, and a proto-dataset is left for the event that
freezes it. Errors that a retry may cure propagate; errors no retry can
cure are raised as :class:`PermanentSyncError`.
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
    delete_dataset,
    generate_dataset_info,
    register_dataset,
)
from flask import current_app

from .coverage import Seen
from .evidence import confirm_bucket_answers, is_object_absent, unreadable_from
from .s3reads import observed_reads
from .states import DatasetKind, Outcome

logger = logging.getLogger(__name__)



class PermanentSyncError(Exception):
    """No retry can fix this (e.g. the base URI is not registered)."""


def storage_broker(uri):
    """dtoolcore's storage broker for ``uri``.

    dtoolcore offers no public way to read admin metadata without also
    swallowing S3 errors, so this uses its private ``_get_storage_broker``
    (pyproject bounds dtoolcore to the versions where it exists) and fails
    with a clear message should it vanish.
    """
    get_broker = getattr(dtoolcore, "_get_storage_broker", None)
    if get_broker is None:
        raise PermanentSyncError(
            f"dtoolcore {getattr(dtoolcore, '__version__', '?')} has no _get_storage_broker; "
            "install a dtoolcore version this plugin supports (see its pyproject.toml)")
    return get_broker(uri, config_path=None)


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
    """What a sync did, what it read (for :mod:`.coverage`; None when too
    much to keep) and how many S3 requests that took."""
    outcome: Outcome
    fingerprint: Optional[str]
    seen: Optional[Seen]
    s3_requests: int


def sync_dataset(base_uri, uri, known_fingerprint=None) -> SyncResult:
    """Bring one dataset's index entry in line with S3. Needs an app context."""
    with observed_reads() as reads:
        try:
            kind, dataset = read_dataset(uri)
            if kind is DatasetKind.FROZEN:
                outcome, digest = _register(base_uri, dataset, known_fingerprint)
            elif kind is DatasetKind.ABSENT:
                outcome, digest = _delete(uri), None
            else:
                outcome, digest = Outcome.PROTO, known_fingerprint
        except Exception as exc:
            # A failed sync spent requests too; the worker counts them.
            exc.s3_requests = reads.requests
            raise
    return SyncResult(outcome, digest, reads.seen(kind), reads.requests)


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
    leftovers = _plugins_holding(uri)
    if not dataset_uri_exists(uri) and not leftovers:
        return Outcome.ABSENT
    delete_dataset(uri)
    # dservercore's delete only asks the plugins; the Mongo search and
    # retrieve plugins and extensions such as dserver-direct-mongo-plugin
    # (whose collection dserver-dependency-graph-plugin reads) implement no
    # delete_dataset and keep their documents. Remove what a plugin
    # demonstrably left behind.
    for plugin, collection in plugin_collections():
        if collection.delete_many({"uri": uri}).deleted_count:
            logger.info("removed %s left behind by %s", uri, type(plugin).__name__)
    logger.info("deleted %s", uri)
    return Outcome.DELETED


def plugin_collections():
    """``(plugin, collection)`` for each distinct Mongo collection in which a
    plugin keeps documents keyed by dataset ``uri``: the search and retrieve
    plugins (by default both use the same one) and every loaded extension
    that exposes a pymongo ``collection``, as dserver-direct-mongo-plugin
    and dserver-dependency-graph-plugin do."""
    seen, found = set(), []
    plugins = (current_app.search, current_app.retrieve,
               *getattr(current_app, "custom_extensions", ()))
    for plugin in plugins:
        collection = getattr(plugin, "collection", None)
        if collection is None or not hasattr(collection, "find_one"):
            continue
        ident = (collection.database.name, collection.name) \
            if hasattr(collection, "database") else id(collection)
        if ident not in seen:
            seen.add(ident)
            found.append((plugin, collection))
    return found


def _plugins_holding(uri):
    return [plugin for plugin, collection in plugin_collections()
            if collection.find_one({"uri": uri}, {"_id": 1}) is not None]
