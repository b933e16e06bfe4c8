"""Signing certificates of SNS: what was fetched, what was missing, how often.

The ``SigningCertURL`` of an SNS message comes from the sender. The URL
policy (:mod:`.sns_trust`) keeps it at an SNS host, but any path there is
allowed, so a sender can name a new certificate in every message. Three
bounds keep that from turning the plugin into a fetching machine:

- :class:`CertificateCache`: public keys of the certificates that were
  fetched, by URL, for at most a day (SNS signs with one certificate per
  region for months);
- the same cache, used for URLs that SNS answered with 4xx (no such
  certificate): asked for again only after an hour;
- :class:`FetchLimit`: at most a fixed number of certificate fetches per
  minute in all, whatever the URLs. A message whose certificate cannot be
  fetched now is answered 503, which SNS retries and SQS redelivers.
"""
import threading
import time
from collections import OrderedDict, deque
from typing import Callable

CERT_CACHE_SIZE = 16
CERT_CACHE_SECONDS = 24 * 3600
MISSING_CERT_CACHE_SIZE = 1024
MISSING_CERT_SECONDS = 3600
CERT_FETCHES_PER_MINUTE = 10


class CertificateCache:
    """Values by URL: few, and not for long."""

    def __init__(self, size=CERT_CACHE_SIZE, seconds=CERT_CACHE_SECONDS,
                 clock: Callable[[], float] = time.time):
        self.size = size
        self.seconds = seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._keys = OrderedDict()  # url -> (value, expires at)

    def get(self, url):
        with self._lock:
            found = self._keys.get(url)
            if found is None or found[1] <= self.clock():
                self._keys.pop(url, None)
                return None
            self._keys.move_to_end(url)
            return found[0]

    def put(self, url, key, not_after=float("inf")):
        with self._lock:
            self._keys[url] = (key, min(not_after, self.clock() + self.seconds))
            self._keys.move_to_end(url)
            while len(self._keys) > self.size:
                self._keys.popitem(last=False)


class FetchLimit:
    """At most ``per_minute`` fetches in any 60 seconds."""

    def __init__(self, per_minute=CERT_FETCHES_PER_MINUTE,
                 clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._recent = deque()  # when the last fetches started, oldest first

    def take(self) -> bool:
        """True, and counted, if one more fetch fits now."""
        with self._lock:
            now = self.clock()
            while self._recent and now - self._recent[0] >= 60:
                self._recent.popleft()
            if len(self._recent) >= self.per_minute:
                return False
            self._recent.append(now)
            return True
