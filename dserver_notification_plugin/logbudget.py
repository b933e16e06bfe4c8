"""Warnings about what senders did, without letting a flood fill the disk.

Refused requests and ignored records are the sender's doing, so a hostile
or misconfigured sender decides how often they happen. Each kind is logged
through a :class:`LogBudget`: at most one line per key and interval, at
most ``max_per_interval`` lines in all per interval (an attacker with an
IPv6 /64 has endless distinct addresses), and what was suppressed is
counted and reported with the next line. Memory is bounded by ``max_keys``;
the least recently seen keys are forgotten first, their counts kept.

Everything a sender wrote goes through :func:`printable` first.
"""
import logging
import threading
import time
from collections import OrderedDict
from typing import Callable, Hashable, Optional, Tuple


def printable(text, limit: int = 64) -> str:
    """A client-supplied value made safe for one log line: no control
    characters (no forged log lines), bounded length."""
    text = "" if text is None else str(text)
    shown = text[:limit].encode("unicode_escape").decode("ascii")
    return shown + ("..." if len(text) > limit else "")


def describe_database_error(exc) -> str:
    """A database error for the log: its kind and the driver's first line.

    SQLAlchemy's own text appends the statement and its parameters, which
    hold what senders wrote; the driver's first line names the problem
    (its DETAIL lines may quote values too).
    """
    original = getattr(exc, "orig", None) or exc
    first_line = (str(original).strip().splitlines() or [""])[0]
    return printable(f"{type(exc).__name__}: {first_line}", 300)


class LogBudget:
    """Decides which of many similar log lines are written."""

    def __init__(self, interval_seconds: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 1024, max_per_interval: int = 100):
        self.interval = interval_seconds
        self.clock = clock
        self.max_keys = max_keys
        self.max_per_interval = max_per_interval
        self._lock = threading.Lock()
        self._last = OrderedDict()  # key -> [last written at, suppressed since]
        self._window_start = None
        self._window_count = 0
        self._overflow = 0  # suppressed by the global budget, not yet reported

    def admit(self, key: Hashable) -> Optional[Tuple[int, int]]:
        """None to stay silent, else the lines not yet reported:
        (same key, any other key)."""
        with self._lock:
            return self._admit(key, self.clock())

    def _admit(self, key, now) -> Optional[Tuple[int, int]]:
        entry = self._last.get(key)
        if entry is not None:
            self._last.move_to_end(key)
            if now - entry[0] < self.interval:
                entry[1] += 1
                return None
        if not self._within_budget(now):
            if entry is not None:
                entry[1] += 1
            else:
                self._overflow += 1
            return None
        counts = (entry[1] if entry else 0), self._overflow
        self._overflow = 0
        self._last[key] = [now, 0]
        self._last.move_to_end(key)
        while len(self._last) > self.max_keys:
            _, (_, unreported) = self._last.popitem(last=False)
            self._overflow += unreported  # forgotten key: still counted
        return counts

    def _within_budget(self, now) -> bool:
        if self._window_start is None or now - self._window_start >= self.interval:
            self._window_start, self._window_count = now, 0
        if self._window_count >= self.max_per_interval:
            return False
        self._window_count += 1
        return True


def with_suppressed(message, args, counts, what):
    """Append the suppressed counts of :meth:`LogBudget.admit` to a log line."""
    similar, others = counts
    if similar:
        message += f" (%d similar {what} suppressed)"
        args.append(similar)
    if others:
        message += f" (%d other {what} suppressed by the overall limit)"
        args.append(others)
    return message, args


class RejectionLog(LogBudget):
    """Warn about refused requests: one line per (client, reason) and interval."""

    def __init__(self, interval_seconds: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 1024, max_per_interval: int = 100,
                 log: Optional[logging.Logger] = None):
        super().__init__(interval_seconds, clock, max_keys, max_per_interval)
        # The guard's logger: operators filter refusals by it.
        self.logger = log or logging.getLogger("dserver_notification_plugin.guard")

    def log(self, client: str, reason: str, detail: Optional[str] = None) -> bool:
        """Record one refusal; True if a warning was written for it.

        ``detail`` (what the request said) is written with the warning but
        does not count as a different reason.
        """
        client, reason = printable(client), printable(reason, 200)
        counts = self.admit((client, reason))
        if counts is None:
            return False
        message, args = "refused notification from %s: %s", [client, reason]
        if detail:
            message += " (%s)"
            args.append(printable(detail, 300))
        message, args = with_suppressed(message, args, counts, "refusals")
        self.logger.warning(message, *args)
        return True
