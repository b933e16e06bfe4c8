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
from collections import namedtuple

import sqlalchemy as sa
from dservercore import sql_db
from dservercore.sql_models import BaseURI, Dataset
from dservercore.utils import base_uri_exists

from . import inbox
from .keys import UUID_PATTERN, dataset_uri
from .sync import plugin_collections, read_dataset

Target = namedtuple("Target", "uri base_uri uuid")
# One line of a plan: ``where`` is "bucket", "index" or "both".
Planned = namedtuple("Planned", "uri uuid where")

_REGISTRATION_KEY = re.compile(rf"dtool-({UUID_PATTERN})")
_URI_UUID = re.compile(rf".*/({UUID_PATTERN})")


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
    """A boto3 client configured like dtool-s3 (DTOOL_S3_*_<bucket> settings)."""
    from dtool_s3.storagebroker import S3StorageBroker
    _, client, _ = S3StorageBroker._get_resource_and_client(bucket)
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
            match = _REGISTRATION_KEY.fullmatch(obj["Key"])
            if match:
                found.add(match.group(1))
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
        where = "both" if uri in in_bucket and uri in in_index else \
            "bucket" if uri in in_bucket else "index"
        uuid = in_bucket.get(uri) or _uuid_of(uri)
        planned.append(Planned(uri, uuid, where))
    return planned, in_sql ^ in_plugins


def _uuid_of(uri):
    match = _URI_UUID.fullmatch(uri)
    return match.group(1) if match else uri.rsplit("/", 1)[-1]


# --- dry run ----------------------------------------------------------------------

def intended_action(item):
    """What a resync would do with one planned dataset, judged from S3 now."""
    kind, _ = read_dataset(item.uri)
    if kind == "frozen":
        return "would register" if item.where == "bucket" else "would check"
    if kind == "proto":
        return "would skip (proto-dataset)" if item.where == "bucket" else "would check"
    return "would delete" if item.where != "bucket" else "nothing to do (no dataset)"


# --- the real thing ---------------------------------------------------------------

def enqueue(extension, base_uri, planned, outdated=()):
    """Put every planned dataset into the inbox, due now.

    Entries whose index copies disagree lose their remembered fingerprint,
    so that sync registers them again instead of calling them unchanged.
    """
    extension.ensure_schema()
    targets = [Target(item.uri, base_uri, item.uuid) for item in planned]
    with sql_db.engine.begin() as conn:
        inbox.enqueue(conn, targets, inbox.now(), debounce=0, max_delay=0)
        for uri in sorted(outdated):
            conn.execute(inbox.inbox.update().where(inbox.inbox.c.dataset_uri == uri)
                         .values(fingerprint=None))
    return targets


def process(extension, on_progress=None):
    """Drain the inbox through the worker (the notification path);
    ``on_progress(n)`` gets each batch size, for a progress bar."""
    return extension.worker.drain(include_waiting=True, on_progress=on_progress)


def outcomes(uris):
    """``{uri: (state, outcome, last_error)}`` read back from the inbox."""
    c = inbox.inbox.c
    uris = sorted(uris)
    found = {}
    with sql_db.engine.connect() as conn:
        # in chunks: databases limit the number of bound parameters
        for start in range(0, len(uris), 500):
            rows = conn.execute(
                sa.select(c.dataset_uri, c.state, c.last_outcome, c.last_error)
                .where(c.dataset_uri.in_(uris[start:start + 500]))).all()
            found.update({row.dataset_uri: (row.state, row.last_outcome, row.last_error)
                          for row in rows})
    return found


def describe_outcome(state, outcome, error):
    """One word (plus the error) for a dataset after resync."""
    if state == "dead":
        return f"dead: {error}"
    if state in ("pending", "failed", "processing"):
        return f"not finished ({state})" + (f": {error}" if error else "")
    return outcome or state
