"""The notifications MinIO would send for a dataset copy or removal, replayed.

Order: dtool-s3's write order (``devstack.datasets.copy_write_order``), in
which the ``dtool`` key yields two events (proto, then frozen), each event
with its object's ETag (``copy_write_order_with_etags``).
Senders: a pool of threads taking events from one shared queue in order,
so the order is roughly preserved while several requests are in flight, as
with MinIO's parallel webhook target.
"""
import math
import queue
import threading
import time
from dataclasses import dataclass, field

import requests

from devstack.payloads import minio_bodies_for_keys

CREATED = "s3:ObjectCreated:Put"
REMOVED = "s3:ObjectRemoved:Delete"

def bodies(bucket, keys, event_name, etags=None):
    """Real-shaped MinIO webhook bodies, one per key, with rising sequencers
    and, for creations, each object's ETag (``etags``, in order), as MinIO
    sends them."""
    return minio_bodies_for_keys(bucket, keys, event_name, etags)


@dataclass
class ReplayResult:
    latencies: list = field(default_factory=list)  # seconds, one per request
    statuses: dict = field(default_factory=dict)   # HTTP status -> count
    wall_seconds: float = 0.0
    first_sent: float = 0.0  # time.monotonic()
    last_ack: float = 0.0

    @property
    def events(self):
        return len(self.latencies)

    @property
    def events_per_second(self):
        return self.events / self.wall_seconds if self.wall_seconds else None

    @property
    def failures(self):
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)


def _send_all(url, work, result, lock):
    session = requests.Session()
    while True:
        try:
            body = work.get_nowait()
        except queue.Empty:
            return
        started = time.monotonic()
        try:
            status = session.post(url, json=body, timeout=600).status_code
        except requests.RequestException:
            status = 599  # no answer at all
        ended = time.monotonic()
        with lock:
            result.latencies.append(ended - started)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            result.last_ack = max(result.last_ack, ended)


def replay(url, event_bodies, senders):
    """POST every body to url with ``senders`` threads; time each request."""
    work = queue.Queue()
    for body in event_bodies:
        work.put(body)
    result = ReplayResult()
    lock = threading.Lock()
    threads = [threading.Thread(target=_send_all, args=(url, work, result, lock), daemon=True)
               for _ in range(senders)]
    result.first_sent = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.wall_seconds = time.monotonic() - result.first_sent
    return result


def percentile(values, fraction):
    """Nearest-rank percentile (no interpolation), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
