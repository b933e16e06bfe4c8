"""What a bucket listing says about datasets, paced, counted, reading no content.

The reconciler learns everything it compares from LIST requests:

- the registration keys ``dtool-<uuid>`` at the top of the bucket (one LIST
  per 1,000 datasets), with their ETags;
- the metadata objects of each dataset (``dtool``, ``README.yml``,
  ``manifest.json``, and what is under ``tags/`` and ``annotations/``), read
  from a flat listing of the bucket that skips the data items
  (:mod:`.flatwalk`): datasets next to each other share a request.

A dataset with 100,000 items costs about what one with 3 does. The only GET is of
a registration key (its body is the dataset prefix), read once per dataset
and again only when the key's ETag changes. Every request waits for a
token of one :class:`Pacer`, so a pass never spends more than
``DSERVER_NOTIFY_RECONCILE_MAX_RPS`` requests per second; botocore's
``before-send`` event sees every HTTP request, retries included, so the
count is what S3 really served.
"""
import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import List, Optional, Tuple

import botocore.exceptions
from limits import RateLimitItemPerSecond, storage, strategies

from .dtool_private import s3_client
from .events import clean_etag
from .evidence import unreadable_from
from .keys import registration_uuid

REGISTRATION_PREFIX = "dtool-"
#: Objects directly under the dataset whose change can change the index
#: (see keys.INDEXED_PARTS); ``tags/`` and ``annotations/`` are listed too.
SIGNED_FILES = ("dtool", "README.yml", "manifest.json")
SIGNED_FOLDERS = ("tags/", "annotations/")
#: A dataset prefix is short text; never read more of a registration key.
PREFIX_BYTES_LIMIT = 1024


class Pacer:
    """At most ``max_rps`` S3 requests per second, counted, across clients.

    ``limits``' moving window allows a burst of ``max_rps`` and then one
    request per 1/``max_rps`` seconds on average.
    """

    def __init__(self, max_rps, should_stop=None):
        self._item = RateLimitItemPerSecond(int(max_rps))
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._lock = threading.Lock()
        self._should_stop = should_stop or (lambda: False)
        self.spent = 0

    def wait(self):
        while not self._limiter.hit(self._item, "s3"):
            if self._should_stop():
                break  # a stopping pass may finish its request late, never hang
            reset = self._limiter.get_window_stats(self._item, "s3")[0]  # reset time
            time.sleep(min(1.0, max(0.001, reset - time.time())))
        with self._lock:
            self.spent += 1

    def attach(self, client):
        """Make every HTTP request of a boto3 client wait and count."""
        client.meta.events.register("before-send", lambda **_: self.wait())
        return client


@dataclass(frozen=True)
class Registration:
    uuid: str
    etag: str
    size: int  # 0: the dataset has no prefix


@dataclass(frozen=True)
class Listed:
    """A dataset's metadata objects as a listing shows them.

    ``objects`` holds ``(key below the dataset, ETag, size, last modified)``
    of the signed files and of everything under the signed folders.
    """
    objects: Tuple[Tuple[str, str, int, str], ...]

    def has(self, name):
        return any(key == name for key, *_ in self.objects)

    @property
    def has_admin_metadata(self):
        return self.has("dtool")

    @property
    def is_frozen(self):
        """dtool-s3 writes ``manifest.json`` only when it freezes a dataset."""
        return self.has("manifest.json")

    @property
    def signature(self):
        return signature(self.objects)


def signed_entry(relative_key, etag, size, last_modified):
    """One object of a signature, in the same form whether a listing or a
    read showed it: the ETag as :func:`.events.clean_etag` has it and the
    modification time to the second (an HTTP date has no more)."""
    if isinstance(last_modified, datetime):
        last_modified = last_modified.astimezone(timezone.utc).replace(microsecond=0) \
            .isoformat()
    return (relative_key, clean_etag(etag) or "", int(size or 0), str(last_modified or ""))


def signature(objects):
    """A digest of the listed metadata objects: changes when any of them does."""
    text = "\n".join("\t".join(str(part) for part in obj) for obj in sorted(objects))
    return hashlib.sha256(text.encode()).hexdigest()


class BucketLister:
    """LIST requests on one bucket through a shared :class:`Pacer`."""

    def __init__(self, bucket, pacer, client=None):
        self.bucket = bucket
        # A client of its own (never one the sync's per-thread cache hands
        # out), so the pacer's hook delays and counts only this lister's requests.
        self.client = pacer.attach(client or s3_client(bucket))

    @staticmethod
    def start_key(after_uuid):
        """Where a listing resumes: keys sort like their UUIDs."""
        return REGISTRATION_PREFIX + after_uuid if after_uuid else None

    def registrations(self, start_key=None, page_size=1000
                      ) -> Tuple[List[Registration], Optional[str]]:
        """One page of registration keys after ``start_key``, and the key to
        start the next page after (None at the end)."""
        kwargs = dict(Bucket=self.bucket, Prefix=REGISTRATION_PREFIX, MaxKeys=page_size)
        if start_key:
            kwargs["StartAfter"] = start_key
        try:
            page = self.client.list_objects_v2(**kwargs)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            # A bucket missing at this endpoint lists nothing: that is no
            # evidence that its datasets are gone (evidence.py).
            raise unreadable_from(exc, self.bucket, self.client) or exc
        contents = page.get("Contents", [])
        found = [Registration(uuid, obj.get("ETag", ""), int(obj.get("Size", 0)))
                 for obj in contents
                 for uuid in [registration_uuid(obj["Key"])] if uuid]
        more = page.get("IsTruncated") and contents
        return found, contents[-1]["Key"] if more else None

    def dataset_prefix(self, registration) -> Optional[str]:
        """The body of ``dtool-<uuid>`` (the dataset prefix), or None if gone.

        An empty key (no prefix, the default) costs no request.
        """
        if registration.size == 0:
            return ""
        try:
            answer = self.client.get_object(
                Bucket=self.bucket, Key=REGISTRATION_PREFIX + registration.uuid,
                Range=f"bytes=0-{PREFIX_BYTES_LIMIT - 1}")
        except self.client.exceptions.NoSuchKey:
            return None
        return answer["Body"].read(PREFIX_BYTES_LIMIT).decode("utf-8", "replace")

    def flat_walk(self):
        """A :class:`~.flatwalk.FlatWalk` through this lister's paced client."""
        from .flatwalk import FlatWalk
        return FlatWalk(self.client, self.bucket)
