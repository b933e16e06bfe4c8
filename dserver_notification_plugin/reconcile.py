"""One reconcile pass over one base URI: find where the index and S3 disagree.

The pass walks the bucket's registration keys in UUID order, a chunk at a
time, and compares what a listing shows (:mod:`.listing`) with the index
(dservercore's SQL table and the Mongo search and retrieve documents, as
:mod:`.datasetindex` reads them) and with the signature the ledger recorded
at the dataset's last sync:

- **missing**: a frozen dataset in S3 that the index does not hold;
- **extra**: an index entry whose dataset is gone from S3 (no registration
  key, a registration key without a ``dtool`` object, or only a
  proto-dataset where the indexed frozen dataset was);
- **changed**: an indexed dataset whose metadata objects differ from the
  recorded signature, that was never verified, or whose SQL row and Mongo
  documents disagree.

Every finding goes into the inbox, as a notification would, and nothing
else happens here: the worker's sync looks at S3 and decides. Removals
(extra) wait until the walk of the base URI ends: when there are more than
``DSERVER_NOTIFY_RECONCILE_MAX_REMOVALS`` allows (a bucket emptied by
mistake, an endpoint pointing at an empty replica), none is enqueued and
the pass reports them held (:mod:`.attention`) until an operator confirms. Proto-datasets
(a ``dtool`` object but no ``manifest.json`` yet) nobody indexed are left
alone. After each
chunk ``on_chunk`` may save the cursor and renew the lease, and stop the
pass by returning False.
"""
import logging
import math
from dataclasses import dataclass
from typing import Callable, List, Optional

from .datasetindex import read_index
from .db.attention import REMOVALS_HELD, UNREADABLE
from .keys import DatasetTarget, dataset_uri
from .listing import BucketLister
from .states import Drift, Figures

logger = logging.getLogger(__name__)

CHUNK = 50  # datasets between two cursor saves


@dataclass(frozen=True)
class Finding:
    uri: str
    uuid: str
    drift: Drift
    reason: str
    signature: Optional[str] = None  # listed now; recorded as expected


class ReconcileError(ValueError):
    """The base URI cannot be reconciled (unknown, or not an S3 base URI)."""


def check_base_uri(extension, base_uri):
    """The normalised base URI, or ReconcileError when nothing knows it."""
    from dservercore.utils import base_uri_exists
    base_uri = base_uri.rstrip("/")
    mapped = set(extension.settings.bucket_to_base_uri.values())
    if base_uri not in mapped and not base_uri_exists(base_uri):
        known = ", ".join(sorted(mapped)) or "none"
        raise ReconcileError(
            f"{base_uri} is neither mapped in DSERVER_NOTIFY_BUCKET_TO_BASE_URI "
            f"(mapped: {known}) nor registered in dserver")
    bucket_of(base_uri)
    return base_uri


def bucket_of(base_uri):
    if not base_uri.startswith("s3://"):
        raise ReconcileError(f"{base_uri} is not an s3:// base URI")
    return base_uri[len("s3://"):].split("/", 1)[0]


def removal_limit(max_removals, total):
    """How many of ``total`` indexed datasets a pass may remove on its own.

    ``max_removals`` is the parsed setting ``(value, is_share)``; None: no limit.
    """
    from .config import MIN_REMOVALS
    if max_removals is None:
        return total
    value, is_share = max_removals
    if not is_share:
        return int(value)
    return max(MIN_REMOVALS, math.floor(value * total))


# --- judging one dataset --------------------------------------------------------------

def judge(listed, indexed, disagrees, recorded):
    """``(Drift, reason)`` for a dataset whose registration key exists, or None.

    ``listed`` is its :class:`~.listing.Listed`, ``recorded`` the signature
    the ledger holds (None if never verified).
    """
    if not listed.has_admin_metadata:
        # A copy that has only just begun, or what a removal left behind.
        return (Drift.EXTRA, "no dtool object") if indexed else None
    if not listed.is_frozen:
        # A proto-dataset: the write that freezes it tells. The frozen
        # dataset an index entry described is not there any more.
        return (Drift.EXTRA, "only a proto-dataset") if indexed else None
    if not indexed:
        return Drift.MISSING, "not in the index"
    if disagrees:
        return Drift.CHANGED, "SQL and search/retrieve disagree"
    if recorded is None:
        return Drift.CHANGED, "never verified"
    if recorded != listed.signature:
        return Drift.CHANGED, "metadata changed"
    return None


# --- the walk ----------------------------------------------------------------------

class BaseUriPass:
    """Walk one base URI from ``after_uuid`` on; see the module docstring."""

    def __init__(self, extension, base_uri, pacer, dry_run=False, debounce=0.0,
                 on_chunk: Optional[Callable] = None, heartbeat: Optional[Callable] = None,
                 chunk=None, max_removals=None):
        """``max_removals``: the parsed DSERVER_NOTIFY_RECONCILE_MAX_REMOVALS, or
        None to remove whatever is gone (an operator's confirmation)."""
        self.ext = extension
        self.base_uri = base_uri
        self.bucket = bucket_of(base_uri)
        self.pacer = pacer
        self.dry_run = dry_run
        self.debounce = debounce
        self.on_chunk = on_chunk or (lambda *_: True)
        self.heartbeat = heartbeat or (lambda: None)
        self.chunk = chunk or CHUNK
        self.max_removals = max_removals
        self.findings: List[Finding] = []
        self.figures = Figures()
        self.removals: List[Finding] = []  # extra findings, until the walk ends
        self.held = None  # (removals, indexed datasets) when the valve closed
        self._answered = False

    def run(self, after_uuid=None):
        """Check every dataset after ``after_uuid``; True when the walk ended,
        False when ``on_chunk`` stopped it."""
        self._spent_mark = self.pacer.spent
        lister = BucketLister(self.bucket, self.pacer)
        self._walk = lister.flat_walk()  # kept across chunks: a page may span two
        index = read_index(self.base_uri)
        start_key = lister.start_key(after_uuid)
        while True:
            page, next_key = lister.registrations(start_key)
            self._bucket_answers()
            parts = [page[i:i + self.chunk] for i in range(0, len(page), self.chunk)] or [[]]
            for number, part in enumerate(parts):
                final = next_key is None and number == len(parts) - 1
                if not part and not final:
                    continue  # a page of keys that only look like registrations
                high = None if final else part[-1].uuid
                figures = self._check_chunk(lister, index, part, after_uuid, high)
                if final:
                    self._settle_removals(index)
                after_uuid = part[-1].uuid if part else after_uuid
                if not self.on_chunk(self.base_uri, after_uuid, figures, final):
                    return False
            if next_key is None:
                return True
            start_key = next_key

    def _check_chunk(self, lister, index, registrations, low, high):
        """Check a run of registrations, and the index entries in ``(low, high]``
        that have none (``high`` None: up to the end)."""
        figures = Figures(checked=len(registrations))
        present = {r.uuid for r in registrations}
        known = self.ext.ledger.known(dataset_uri(self.base_uri, r.uuid) for r in registrations)
        findings = []
        # In key order, so that datasets next to each other share the flat walk's pages.
        for root, registration, record in sorted(self._roots(lister, registrations, known),
                                                 key=lambda found: found[0]):
            self.heartbeat()
            findings.append(self._check(index, registration, root, record))
        findings = [f for f in findings if f is not None]
        for uuid in index.uuids_between(low, high):
            if uuid not in present:
                findings.append(Finding(dataset_uri(self.base_uri, uuid), uuid, Drift.EXTRA,
                                        "no registration key"))
        for finding in findings:
            figures.count(finding)
        self.removals.extend(f for f in findings if f.drift is Drift.EXTRA)
        others = [f for f in findings if f.drift is not Drift.EXTRA]
        if others and not self.dry_run:
            self._enqueue(others, index)
        # since the last chunk: the registration LISTs included
        figures.s3_requests, self._spent_mark = self.pacer.spent - self._spent_mark, \
            self.pacer.spent
        self.findings.extend(findings)
        self.figures.add(figures)
        return figures

    def _roots(self, lister, registrations, known):
        """``(root, registration, ledger record)`` of each registration whose
        prefix is known: from the ledger while the key's ETag is unchanged,
        else read from the key (and remembered); the record is None when it
        no longer describes the dataset there."""
        roots = []
        for registration in registrations:
            uri = dataset_uri(self.base_uri, registration.uuid)
            record = known.get(uri)
            if record is not None and record.registration_etag == registration.etag:
                prefix = record.prefix
            else:
                prefix = lister.dataset_prefix(registration)
                if prefix is None:
                    continue  # removed since it was listed; the next pass sees it
                if not self.dry_run:
                    target = DatasetTarget(self.base_uri, uri, registration.uuid, "reconcile")
                    self.ext.ledger.remember_prefix(target, prefix, registration.etag)
                record = None if record is None or record.prefix != prefix else record
            roots.append((f"{prefix}{registration.uuid}/", registration, record))
        return roots

    def _check(self, index, registration, root, record):
        uri = dataset_uri(self.base_uri, registration.uuid)
        listed = self._walk.metadata(root)
        verdict = judge(listed, index.holds(uri), index.disagrees(uri),
                        record.signature if record else None)
        if verdict is None:
            return None
        drift, reason = verdict
        return Finding(uri, registration.uuid, drift, reason,
                       listed.signature if listed.has_admin_metadata else None)

    def _bucket_answers(self):
        """Listed: whatever said the bucket could not be read is over."""
        if not self.dry_run and not self._answered:
            self._answered = True
            self.ext.attention.settle(self.base_uri, UNREADABLE)

    def _settle_removals(self, index):
        """At the end of the walk: enqueue the removals, or hold them all
        when there are more than the setting allows."""
        total = len(index.uuids)
        limit = removal_limit(self.max_removals, total)
        if len(self.removals) > limit:
            self.held = (len(self.removals), total)
            reason = (f"{len(self.removals)} of {total} indexed datasets look gone, more "
                      f"than the {limit} DSERVER_NOTIFY_RECONCILE_MAX_REMOVALS allows; none "
                      f"removed: check the bucket and its endpoint, then run `flask "
                      f"notification confirm-removals {self.base_uri}`")
            logger.warning("reconcile %s: %s", self.base_uri, reason)
            if not self.dry_run:
                self.ext.attention.raise_concern(self.base_uri, REMOVALS_HELD, reason,
                                                 count=len(self.removals), total=total)
            return
        if self.dry_run:
            return
        if self.removals:
            self._enqueue(self.removals, index)
        self.ext.attention.settle(self.base_uri, REMOVALS_HELD)

    def _enqueue(self, findings, index):
        """Into the inbox, as a notification would; signatures first, so that
        a sync claimed after this moment may promote them."""
        self.ext.ledger.expect({f.uri: f.signature for f in findings if f.signature})
        self.ext.inbox.forget_fingerprints((f.uri for f in findings if index.disagrees(f.uri)),
                                           unless_synced_since=index.read_at)
        targets = [DatasetTarget(self.base_uri, f.uri, f.uuid, "reconcile") for f in findings]
        self.ext.inbox.enqueue(targets, debounce=self.debounce, max_delay=self.debounce)
        for finding in findings:
            logger.info("reconcile %s: %s (%s)", finding.drift, finding.uri, finding.reason)
