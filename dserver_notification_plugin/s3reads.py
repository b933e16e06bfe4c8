"""The S3 reads of a sync: on boto3 clients kept per thread, and recorded.

dtool-s3 (0.14) builds a new boto3 session, resource and two clients for
every storage broker, and a sync makes two brokers (one to read the admin
metadata, one inside the ``dtoolcore.DataSet``). Building them costs about
0.1 s each on a quiet machine and far more on a busy one, several times the
S3 round trips of the sync itself. Inside :func:`observed_reads`, brokers
created by this thread get clients this thread built before, for the same
bucket and the same ``DTOOL_S3_*`` settings, kept for at most
:data:`CLIENT_SECONDS`. Outside it, and in every other thread, dtool-s3
behaves exactly as published: the substitution is installed once, on
dtool-s3's private ``S3StorageBroker._get_resource_and_client`` (pyproject
bounds dtool-s3 to versions that have it), and looks at a thread-local.
boto3 resources must not be shared between threads, hence one set per thread.

Every request such a client sends during :func:`observed_reads` is
recorded (:class:`Reads`): the ETag of each object read or listed, the keys
S3 answered 404 for, the prefixes listed to the end and the number of
requests. :mod:`.coverage` uses that record to tell which later events the
sync already saw, and the reconciler's ledger the listing signature of what
the sync read (:meth:`Reads.signature`).

A sync reads some objects more than once (dtoolcore lists ``annotations/``
again for every annotation it reads), and the bucket may change between two
of those reads. Then which state the index got is not known: such a key
(two ETags, present and missing, or present in one complete listing of its
folder and not in another) is recorded as *changed*, and no event about it
is covered.
"""
import logging
import threading
import time
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Set, Tuple

from .coverage import Seen
from .events import clean_etag
from .listing import SIGNED_FILES, SIGNED_FOLDERS, signature, signed_entry

#: How long a thread keeps its clients: credentials or endpoints changed in
#: the dtool configuration file are picked up after at most this long.
CLIENT_SECONDS = 300.0
#: Keys recorded per sync; a dataset with more is synced for every event.
RECORD_LIMIT = 5000
#: Buckets whose clients a worker builds when it starts (about 0.1 s each).
PREPARED_BUCKETS = 16

logger = logging.getLogger(__name__)
_local = threading.local()
_install_lock = threading.Lock()
_original = None


class Reads:
    """What the requests of one sync found."""

    def __init__(self):
        self.objects: Dict[str, str] = {}       # key -> the ETag first seen
        self.details: Dict[str, Tuple] = {}     # key -> (size, last modified)
        self.missing: Set[str] = set()
        self.changed: Set[str] = set()          # seen in two states
        self.listings: Dict[str, List[frozenset]] = {}  # prefix -> keys of each listing
        self.requests = 0
        self.overflowed = False

    def saw(self, key, etag, size=None, modified=None):
        """``key`` was there with ``etag`` (a read or a listing)."""
        etag = clean_etag(etag)
        if not isinstance(key, str) or etag is None:
            return
        if len(self.objects) >= RECORD_LIMIT and key not in self.objects:
            self.overflowed = True
            return
        if key in self.missing or self.objects.setdefault(key, etag) != etag:
            self.changed.add(key)
        self.details.setdefault(key, (size, modified))

    def saw_missing(self, key):
        """S3 answered "no such key" for ``key``."""
        if key in self.objects:
            self.changed.add(key)
        self.missing.add(key)

    def saw_listing(self, prefix, keys):
        """A complete listing of ``prefix`` held exactly ``keys``."""
        self.listings.setdefault(prefix, []).append(frozenset(keys))

    def _changed(self) -> Set[str]:
        """Keys seen in two states, a complete listing that lacked a key seen
        there included."""
        changed = set(self.changed)
        for prefix, listings in self.listings.items():
            under = {key for key in self.objects if key.startswith(prefix)}
            for keys in listings:
                changed |= under - keys
        return changed

    def seen(self, kind) -> Optional[Seen]:
        """The record for :mod:`.coverage`, or None when it is incomplete."""
        if self.overflowed:
            return None
        changed = self._changed()
        objects = {key: etag for key, etag in self.objects.items() if key not in changed}
        return Seen(kind, objects, frozenset(self.missing - changed),
                    frozenset(self.listings), frozenset(changed))

    def signature(self, uuid) -> Optional[str]:
        """The listing signature (:func:`.listing.signature`) of what this
        sync read of dataset ``uuid``; None when it did not read all of it
        in one state (then the reconciler checks it again)."""
        roots = {key[:-len("dtool")] for key in self.objects
                 if key.endswith(f"{uuid}/dtool")}
        if len(roots) != 1:
            return None
        root = roots.pop()
        if self.overflowed or any(root + folder not in self.listings
                                  for folder in SIGNED_FOLDERS):
            return None
        signed = [root + name for name in SIGNED_FILES]
        keys = [key for key in self.objects if key in signed or any(
            key.startswith(root + folder) for folder in SIGNED_FOLDERS)]
        if self._changed() & (set(keys) | set(signed)) or any(
                key not in self.objects and key not in self.missing for key in signed):
            return None
        return signature(signed_entry(key[len(root):], self.objects[key], *self.details[key])
                         for key in keys)


@contextmanager
def observed_reads() -> Iterator[Reads]:
    """Within: this thread's dtool-s3 brokers reuse clients; yield the record."""
    install()
    reads = Reads()
    outer = _reads()
    _local.reads = reads
    try:
        yield reads
    finally:
        _local.reads = outer


def install():
    """Put the per-thread client cache in front of dtool-s3's client factory."""
    global _original
    if _original is not None:
        return
    from dtool_s3.storagebroker import S3StorageBroker
    with _install_lock:
        if _original is not None:
            return
        factory = S3StorageBroker.__dict__.get("_get_resource_and_client")
        if not isinstance(factory, classmethod):
            raise RuntimeError("this dtool-s3 version has no classmethod S3StorageBroker."
                               "_get_resource_and_client; install a dtool-s3 version this "
                               "plugin supports (see its pyproject.toml)")
        _original = factory.__func__
        S3StorageBroker._get_resource_and_client = classmethod(_resource_and_client)


def _resource_and_client(cls, bucket_name):
    if _reads() is None:
        return _original(cls, bucket_name)
    clients = _local.__dict__.setdefault("clients", {})
    settings = _settings(bucket_name)
    made_at, made = clients.get(settings, (None, None))
    if made is None or time.monotonic() - made_at > CLIENT_SECONDS:
        made = _original(cls, bucket_name)
        resource, client, _ = made
        for each in {id(c): c for c in (resource.meta.client, client)}.values():
            _watch(each)
        clients[settings] = (time.monotonic(), made)
    return made


def _settings(bucket_name):
    """What dtool-s3 builds a bucket's clients from (the cache key)."""
    from dtoolcore.utils import get_config_value
    return (bucket_name,) + tuple(
        get_config_value(f"DTOOL_S3_{name}_{bucket_name}")
        for name in ("ENDPOINT", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY"))


def prepare_clients(buckets):
    """Build this thread's clients for up to :data:`PREPARED_BUCKETS` of
    ``buckets`` now (no S3 request), so that the first sync of each does not
    wait for them. A bucket whose settings are wrong is left for its sync
    to report."""
    from dtool_s3.storagebroker import S3StorageBroker
    with observed_reads():
        for bucket in sorted(buckets)[:PREPARED_BUCKETS]:
            try:
                S3StorageBroker._get_resource_and_client(bucket)
            except Exception:
                logger.debug("no S3 clients prepared for %s", bucket, exc_info=True)


# --- recording -----------------------------------------------------------------------

def _watch(client):
    events = client.meta.events
    events.register("before-parameter-build.s3", _remember_params)
    events.register("before-send.s3", _count_request)
    for operation in ("GetObject", "HeadObject"):
        events.register(f"after-call.s3.{operation}", _after_object_read)
    for operation in ("ListObjects", "ListObjectsV2"):
        events.register(f"after-call.s3.{operation}", _after_listing)


def _reads():
    return getattr(_local, "reads", None)


def _remember_params(params, context, **_):
    context["dsnp_key"] = params.get("Key")
    # A delimited listing does not show everything under its prefix, nor
    # does one page of a longer listing.
    partial = any(params.get(name) for name in
                  ("Delimiter", "ContinuationToken", "Marker", "StartAfter"))
    context["dsnp_prefix"] = None if partial else params.get("Prefix")


def _count_request(**_):
    reads = _reads()
    if reads is not None:
        reads.requests += 1


def _after_object_read(http_response, parsed, context, **_):
    reads, key = _reads(), context.get("dsnp_key")
    if reads is None or not isinstance(key, str):
        return
    if http_response.status_code == 200:
        reads.saw(key, parsed.get("ETag"), parsed.get("ContentLength"),
                  parsed.get("LastModified"))
    elif http_response.status_code == 206:  # a part: its ETag, not its size
        reads.saw(key, parsed.get("ETag"))
    elif http_response.status_code == 404:
        reads.saw_missing(key)


def _after_listing(http_response, parsed, context, **_):
    reads, prefix = _reads(), context.get("dsnp_prefix")
    if reads is None or http_response.status_code != 200:
        return
    contents = parsed.get("Contents", [])
    for obj in contents:
        reads.saw(obj.get("Key"), obj.get("ETag"), obj.get("Size"), obj.get("LastModified"))
    if isinstance(prefix, str) and prefix and not parsed.get("IsTruncated"):
        reads.saw_listing(prefix, [obj.get("Key") for obj in contents])
