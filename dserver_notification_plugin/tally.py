"""In-process tallies of events and outcomes, added to the counters table now and then.

Incrementing a SQL row per notification would cost a write for every data
item of a copy; instead each process counts in memory and its worker
flushes the deltas (so "total" lags by at most one flush interval).
"""
import logging
import threading
import time
from collections import Counter

logger = logging.getLogger(__name__)

# "unreadable" counts the records among "ignored" that could not be understood.
EVENT_COUNTERS = ("received", "accepted", "ignored", "unreadable", "refused")


class Tally:
    def __init__(self):
        self._lock = threading.Lock()
        self._since_start = Counter()
        self._unflushed = Counter()
        self.started_at = time.time()
        # (seconds from first event to processed) samples for the histogram
        self.latency_observers = []

    def add(self, name, amount=1):
        if not amount:
            return
        with self._lock:
            self._since_start[name] += amount
            self._unflushed[name] += amount

    def since_start(self):
        with self._lock:
            return dict(self._since_start)

    def has_unflushed(self):
        with self._lock:
            return bool(self._unflushed)

    def take_unflushed(self):
        with self._lock:
            deltas, self._unflushed = self._unflushed, Counter()
        return dict(deltas)

    def give_back(self, deltas):
        """Re-add deltas whose flush failed, so totals stay exact."""
        with self._lock:
            self._unflushed.update(deltas)

    def flush_to(self, counters):
        """Add the unflushed deltas to the persisted :class:`.db.Counters`; keep
        them if that fails."""
        deltas = self.take_unflushed()
        if not deltas:
            return
        try:
            counters.add(deltas)
        except Exception:
            self.give_back(deltas)
            logger.warning("could not persist notification counters; will retry")

    def observe_latency(self, seconds):
        for observer in self.latency_observers:
            observer(seconds)
