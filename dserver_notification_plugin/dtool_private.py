"""Every use of dtool's and dtool-s3's private parts, checked at start-up.

The plugin needs these things that dtoolcore and dtool-s3 do not publish:

- ``dtoolcore._get_storage_broker``, to read a dataset's admin metadata
  without dtoolcore swallowing S3 errors (:func:`storage_broker`; for
  ``s3://`` URIs dtool-s3's broker class is used directly), and the
  attributes a ``dtoolcore.DataSet`` keeps, to make one on that broker
  (:func:`dataset_on`);
- the classmethod ``dtool_s3.storagebroker.S3StorageBroker._get_resource_and_client``,
  the one place that builds boto3 clients from the ``DTOOL_S3_*`` settings:
  the reconciler's listings use it for clients of their own
  (:func:`s3_client`), and the sync's reads go through a per-thread cache
  put in front of it (below).

pyproject bounds dtoolcore and dtool-s3 to versions that have them, and
:func:`check_installed` (called by ``init_app``) stops start-up with a clear
error, naming the missing attribute and the installed versions, should an
installed version lack one.

dtool-s3 (0.14) builds a new boto3 session, resource and two clients for
every storage broker, and a sync makes two brokers (one to read the admin
metadata, one inside the ``dtoolcore.DataSet``). Building them costs about
0.1 s each on a quiet machine and far more on a busy one, several times the
S3 round trips of the sync itself. Inside :func:`observed_reads`, brokers
created by this thread get clients this thread built before, for the same
bucket and the same ``DTOOL_S3_*`` settings, kept for at most
:data:`CLIENT_SECONDS`. Outside it, and in every other thread, dtool-s3
behaves exactly as published: the substitution is installed once, on the
client factory, and looks at a thread-local. boto3 resources must not be
shared between threads, hence one set per thread.

Every request such a client sends during :func:`observed_reads` is
recorded (:class:`Reads`): the ETag of each object read or listed, the keys
S3 answered 404 for, the prefixes listed to the end and the number of
requests. The worker opens that recording around each sync; :mod:`.coverage`
uses the record to tell which later events the sync already saw, and the
reconciler's ledger the listing signature of what the sync read
(:meth:`Reads.signature`).

A sync reads some objects more than once (dtoolcore lists ``annotations/``
again for every annotation it reads), and the bucket may change between two
of those reads. Then which state the index got is not known: such a key
(two ETags, present and missing, or present in one complete listing of its
folder and not in another) is recorded as *changed*, and no event about it
is covered.
"""
import functools
import logging
import threading
import time
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Set, Tuple

from .coverage import Seen
from .events import clean_etag

#: How long a thread keeps its clients: credentials or endpoints changed in
#: the dtool configuration file are picked up after at most this long.
CLIENT_SECONDS = 300.0
#: Keys recorded per sync; a dataset with more is synced for every event.
RECORD_LIMIT = 5000
#: Buckets whose clients a worker builds when it starts (about 0.1 s each).
PREPARED_BUCKETS = 16

BROKER_FACTORY = "dtoolcore._get_storage_broker"
CLIENT_FACTORY = "dtool_s3.storagebroker.S3StorageBroker._get_resource_and_client"

logger = logging.getLogger(__name__)
_local = threading.local()
_install_lock = threading.Lock()
_original = None  # dtool-s3's client factory, once the cache is in front of it


# --- what the installed versions must have ---------------------------------------

class IncompatibleDtool(RuntimeError):
    """An installed dtoolcore or dtool-s3 lacks a private part the plugin uses."""


def check_installed():
    """Raise :class:`IncompatibleDtool` unless the installed dtoolcore and
    dtool-s3 have every private part this module uses."""
    import dtoolcore
    if not callable(getattr(dtoolcore, "_get_storage_broker", None)):
        raise _incompatible(BROKER_FACTORY)
    _client_factory(_broker_class())


def installed_versions():
    """``dtoolcore 3.19.0, dtool-s3 0.14.1`` (``?`` for one not found)."""
    from importlib.metadata import PackageNotFoundError, version
    found = []
    for name in ("dtoolcore", "dtool-s3"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} ?")
    return ", ".join(found)


def _supported_versions():
    """What this plugin's package metadata asks for (pyproject's bounds)."""
    from importlib.metadata import PackageNotFoundError, requires
    try:
        wanted = [r for r in requires("dserver-notification-plugin") or []
                  if r.split(">")[0].split("<")[0].strip() in ("dtoolcore", "dtool-s3")]
    except PackageNotFoundError:
        wanted = []
    return ", ".join(wanted) or "the versions its pyproject.toml names"


def _incompatible(missing):
    return IncompatibleDtool(
        f"dserver-notification-plugin needs {missing}, which the installed "
        f"{installed_versions()} do not have; install {_supported_versions()}")


def _broker_class():
    from dtool_s3.storagebroker import S3StorageBroker
    return S3StorageBroker


def _client_factory(broker_class):
    """dtool-s3's client factory (a classmethod), as found on the class now."""
    factory = broker_class.__dict__.get("_get_resource_and_client")
    if not isinstance(factory, classmethod):
        raise _incompatible(f"{CLIENT_FACTORY} (a classmethod)")
    return factory.__func__


# --- the private parts, used ---------------------------------------------------------

def storage_broker(uri):
    """dtoolcore's storage broker for ``uri``: dtoolcore offers no public way
    to read admin metadata without also swallowing S3 errors.

    An ``s3://`` URI gets dtool-s3's broker directly: dtoolcore looks the
    broker class up among the entry points of every installed package for
    each broker it makes, about 30 ms of CPU, the largest single cost of a
    sync when many run at once on two cores.
    """
    import dtoolcore
    if uri.startswith("s3://"):
        return _broker_class()(uri, config_path=None)
    return dtoolcore._get_storage_broker(uri, config_path=None)


def dataset_on(broker, uri, admin_metadata):
    """A ``dtoolcore.DataSet`` of ``uri`` that reads through ``broker``, the
    one that read ``admin_metadata``.

    ``DataSet(uri, admin_metadata)`` would make a second broker: another
    entry-point lookup and another GET of the ``dtool-<uuid>`` object.
    """
    return _dataset_class()(uri, admin_metadata, broker)


@functools.lru_cache(maxsize=None)
def _dataset_class():
    import dtoolcore

    class DataSetOnBroker(dtoolcore.DataSet):
        """What ``_BaseDataSet.__init__`` and ``DataSet.__init__`` set, with
        the broker given instead of made (tests/test_sync_flow.py
        compares the attributes with a plain DataSet's)."""

        def __init__(self, uri, admin_metadata, broker):  # no super().__init__: it makes a broker
            self._admin_metadata = admin_metadata
            self._storage_broker = broker
            self._uri = dtoolcore.utils.sanitise_uri(uri)
            self._manifest_cache = None

    return DataSetOnBroker


def s3_client(bucket):
    """A boto3 client of its own, configured like dtool-s3 (DTOOL_S3_*_<bucket>).

    Made by dtool-s3's factory as published, never taken from the sync's
    per-thread cache, whichever thread asks: the caller hooks its own
    handlers (the reconciler's :class:`~.listing.Pacer`) onto it, and they
    must reach no other client.
    """
    broker_class = _broker_class()
    factory = _original or _client_factory(broker_class)
    _, client, _ = factory(broker_class, bucket)
    return client


# --- the sync's reads: cached clients, recorded requests ------------------------------


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

    def record_object(self, key, etag, size=None, modified=None):
        """S3 answered ``key`` with ``etag`` (read or listed)."""
        etag = clean_etag(etag)
        if not isinstance(key, str) or etag is None:
            return
        if len(self.objects) >= RECORD_LIMIT and key not in self.objects:
            self.overflowed = True
            return
        if key in self.missing or self.objects.setdefault(key, etag) != etag:
            self.changed.add(key)
        self.details.setdefault(key, (size, modified))

    def record_missing(self, key):
        """S3 answered "no such key" for ``key``."""
        if key in self.objects:
            self.changed.add(key)
        self.missing.add(key)

    def record_listing(self, prefix, keys):
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
        # imported here: listing builds its clients with this module
        from .listing import SIGNED_FILES, SIGNED_FOLDERS, signature, signed_entry
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
    broker_class = _broker_class()
    with _install_lock:
        if _original is not None:
            return
        _original = _client_factory(broker_class)
        broker_class._get_resource_and_client = classmethod(_resource_and_client)


def _resource_and_client(cls, bucket_name):
    if _reads() is None:
        return _original(cls, bucket_name)
    clients = _local.__dict__.setdefault("clients", {})
    settings = _settings(bucket_name)
    made_at, made = clients.get(settings, (None, None))
    if made is None or time.monotonic() - made_at > CLIENT_SECONDS:
        made = _original(cls, bucket_name)
        resource, client, _ = made
        _build_resource_classes_once(resource)
        for each in {id(c): c for c in (resource.meta.client, client)}.values():
            _watch(each)
        clients[settings] = (time.monotonic(), made)
    return made


def _build_resource_classes_once(resource):
    """Make the boto3 resource factory behind ``resource`` build each class once.

    dtool-s3 reads through ``s3resource.Object(...)`` and
    ``Bucket(...).objects``, and boto3 builds a new Python class for every
    such call (``ResourceFactory.load_from_definition``): about 0.5 ms of
    CPU each, some 10 a sync, a sixth of a sync's CPU in a load run
    (py-spy, 2026-12-03). This factory belongs to the session dtool-s3 made
    for this thread's cached clients alone; its classes are built from the
    same definitions every time, so the first one built is kept. A boto3
    whose resources are made differently is left as it is.
    """
    from boto3.resources.factory import ResourceFactory
    make_object = getattr(type(resource), "Object", None)
    factory = next((cell.cell_contents for cell in getattr(make_object, "__closure__", None)
                    or () if isinstance(cell.cell_contents, ResourceFactory)), None)
    if factory is None or "load_from_definition" in vars(factory):
        return
    build, built = factory.load_from_definition, {}

    def load_once(resource_name, single_resource_json_definition, service_context):
        key = (resource_name, id(service_context))
        if key not in built:  # the context is kept with the class: its id stays its own
            built[key] = (build(resource_name=resource_name,
                                single_resource_json_definition=single_resource_json_definition,
                                service_context=service_context), service_context)
        return built[key][0]

    factory.load_from_definition = load_once


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
    broker_class = _broker_class()
    with observed_reads():
        for bucket in sorted(buckets)[:PREPARED_BUCKETS]:
            try:
                broker_class._get_resource_and_client(bucket)
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
        reads.record_object(key, parsed.get("ETag"), parsed.get("ContentLength"),
                  parsed.get("LastModified"))
    elif http_response.status_code == 206:  # a part: its ETag, not its size
        reads.record_object(key, parsed.get("ETag"))
    elif http_response.status_code == 404:
        reads.record_missing(key)


def _after_listing(http_response, parsed, context, **_):
    reads, prefix = _reads(), context.get("dsnp_prefix")
    if reads is None or http_response.status_code != 200:
        return
    contents = parsed.get("Contents", [])
    for obj in contents:
        reads.record_object(obj.get("Key"), obj.get("ETag"), obj.get("Size"), obj.get("LastModified"))
    if isinstance(prefix, str) and prefix and not parsed.get("IsTruncated"):
        reads.record_listing(prefix, [obj.get("Key") for obj in contents])
