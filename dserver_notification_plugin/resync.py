"""Repair the index of one base URI after notifications were lost.

Resync compares two lists: the datasets in the bucket (dtool-s3's
``dtool-<uuid>`` registration keys) and the index entries under the base
URI (dservercore's SQL table, plus the documents of the Mongo search and
retrieve plugins, so that leftovers only Mongo still holds are found too).
Every dataset in either list is put into the inbox, due now, and processed
by the worker exactly as a notification would be: sync looks at S3 and
registers, updates, deletes or leaves it (unchanged, proto-dataset). Nothing
here decides on its own what the index should hold.
"""
import re
from dataclasses import dataclass
from enum import Enum
from typing import Optional

import sqlalchemy as sa
from dservercore import sql_db
from dservercore.sql_models import BaseURI, Dataset
from dservercore.utils import base_uri_exists

from .keys import UUID_PATTERN, DatasetTarget, dataset_uri, registration_uuid
from .states import DatasetKind, State
from .sync import plugin_collections, read_dataset

_URI_UUID = re.compile(rf".*/({UUID_PATTERN})")


class Presence(Enum):
    """Where a planned dataset was found."""
    BUCKET = "bucket"  # only in the bucket: missing from the index
    INDEX = "index"    # only in the index: gone from the bucket?
    BOTH = "both"


@dataclass(frozen=True)
class Planned:
    uri: str
    uuid: str
    where: Presence


class Intention(Enum):
    """What a resync would do with one dataset (the dry run's verdict)."""
    REGISTER = "would register"
    REREGISTER = "would register (index copies disagree)"
    CHECK = "would check"
    SKIP_PROTO = "would skip (proto-dataset)"
    DELETE = "would delete"
    NOTHING = "nothing to do (no dataset)"


class Result(Enum):
    """How a dataset ended after a resync; ``detail`` carries the error."""
    SYNCED = "synced"          # finished; the outcome says how
    UNFINISHED = "not finished"
    DEAD = "dead"
    MISSING = "missing"        # no inbox row (should not happen)


@dataclass(frozen=True)
class ResyncOutcome:
    result: Result
    outcome: Optional[str] = None  # sync's Outcome value when SYNCED
    state: Optional[State] = None
    detail: Optional[str] = None   # last error


class ResyncError(ValueError):
    """The base URI cannot be resynced (unknown to the plugin and to dserver)."""


def check_base_uri(extension, base_uri):
    """The normalised base URI, or ResyncError when nothing knows it."""
    base_uri = base_uri.rstrip("/")
    mapped = set(extension.settings.bucket_to_base_uri.values())
    if base_uri in mapped or base_uri_exists(base_uri):
        return base_uri
    known = ", ".join(sorted(mapped)) or "none"
    raise ResyncError(
        f"{base_uri} is neither mapped in DSERVER_NOTIFY_BUCKET_TO_BASE_URI "
        f"(mapped: {known}) nor registered in dserver")


# --- the two lists ---------------------------------------------------------------

def _bucket_of(base_uri):
    if not base_uri.startswith("s3://"):
        raise ResyncError(f"{base_uri} is not an s3:// base URI")
    return base_uri[len("s3://"):].split("/", 1)[0]


def _s3_client(bucket):
    """A boto3 client configured like dtool-s3 (DTOOL_S3_*_<bucket> settings).

    dtool-s3 keeps that configuration logic in a private method; pyproject
    bounds dtool-s3 to versions that have it, and this says so clearly
    should it vanish.
    """
    from dtool_s3.storagebroker import S3StorageBroker
    make = getattr(S3StorageBroker, "_get_resource_and_client", None)
    if make is None:
        raise ResyncError("this dtool-s3 version has no S3StorageBroker._get_resource_and_client; "
                          "install a dtool-s3 version this plugin supports")
    _, client, _ = make(bucket)
    return client


def uuids_in_bucket(base_uri):
    """UUIDs of the registration keys (``dtool-<uuid>``) in the bucket.

    dtool-s3 writes that key first and lists datasets by it; its own
    ``list_dataset_uris`` would also read every dataset's admin metadata and
    treat any S3 error as "not a dataset", which sync does more carefully.
    """
    bucket = _bucket_of(base_uri)
    paginator = _s3_client(bucket).get_paginator("list_objects_v2")
    found = set()
    for page in paginator.paginate(Bucket=bucket, Prefix="dtool-"):
        for obj in page.get("Contents", []):
            uuid = registration_uuid(obj["Key"])
            if uuid:
                found.add(uuid)
    return found


def uris_in_sql(base_uri):
    rows = sql_db.session.execute(
        sa.select(Dataset.uri).join(BaseURI, Dataset.base_uri_id == BaseURI.id)
        .where(BaseURI.base_uri == base_uri)).scalars().all()
    return set(rows)


def uris_in_plugins(base_uri):
    uris = set()
    for _, collection in plugin_collections():
        for doc in collection.find({"base_uri": base_uri}, {"uri": 1, "_id": 0}):
            if doc.get("uri"):
                uris.add(doc["uri"])
    return uris


def plan(base_uri):
    """Every dataset of the base URI, in the bucket or in the index, sorted.

    Also returns the URIs on which SQL and the Mongo plugins disagree: they
    are outdated whatever S3 says and must be registered again.
    """
    in_bucket = {dataset_uri(base_uri, u): u for u in uuids_in_bucket(base_uri)}
    in_sql, in_plugins = uris_in_sql(base_uri), uris_in_plugins(base_uri)
    in_index = in_sql | in_plugins
    planned = []
    for uri in sorted(set(in_bucket) | in_index):
        where = Presence.BOTH if uri in in_bucket and uri in in_index else \
            Presence.BUCKET if uri in in_bucket else Presence.INDEX
        uuid = in_bucket.get(uri) or _uuid_of(uri)
        planned.append(Planned(uri, uuid, where))
    return planned, in_sql ^ in_plugins


def _uuid_of(uri):
    match = _URI_UUID.fullmatch(uri)
    return match.group(1) if match else uri.rsplit("/", 1)[-1]


# --- dry run ----------------------------------------------------------------------

def intended_action(item, outdated=()):
    """What a resync would do with one planned dataset, judged from S3 now."""
    kind, _ = read_dataset(item.uri)
    if kind is DatasetKind.ABSENT:
        return Intention.DELETE if item.where is not Presence.BUCKET else Intention.NOTHING
    if item.where is Presence.BUCKET:
        return Intention.REGISTER if kind is DatasetKind.FROZEN else Intention.SKIP_PROTO
    return Intention.REREGISTER if item.uri in outdated else Intention.CHECK


# --- the real thing ---------------------------------------------------------------

def enqueue(extension, base_uri, planned, outdated=()):
    """Put every planned dataset into the inbox, due now.

    Entries whose index copies disagree lose their remembered fingerprint,
    so that sync registers them again instead of calling them unchanged.
    """
    targets = [DatasetTarget(base_uri=base_uri, uri=item.uri, uuid=item.uuid, part="resync")
               for item in planned]
    extension.store.enqueue(targets, debounce=0, max_delay=0)
    extension.store.forget_fingerprints(outdated)
    return targets


def process(extension, on_progress=None):
    """Drain the inbox through the worker (the notification path);
    ``on_progress(n)`` gets each batch size, for a progress bar."""
    return extension.worker.drain(include_waiting=True, on_progress=on_progress)


def outcomes(extension, uris):
    """``{uri: ResyncOutcome}`` read back from the inbox."""
    return {entry.dataset_uri: _outcome_of(entry) for entry in extension.store.entries(uris)}


def _outcome_of(entry):
    if entry.state is State.DEAD:
        return ResyncOutcome(Result.DEAD, state=entry.state, detail=entry.last_error)
    if entry.state is State.DONE:
        return ResyncOutcome(Result.SYNCED, outcome=entry.last_outcome, state=entry.state)
    return ResyncOutcome(Result.UNFINISHED, state=entry.state, detail=entry.last_error)
