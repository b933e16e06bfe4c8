"""The background worker: claims due inbox entries and syncs their datasets.

One worker thread runs in every dserver process (gunicorn workers included)
unless ``DSERVER_NOTIFY_WORKER=off``. Claims are atomic in the database, so
any number of processes may run one. Under ``gunicorn --preload`` the app is
created in the master before it forks: threads do not survive a fork, so the
thread is paused around every fork and a fresh one is started in each child,
with the inherited database connections discarded, never shared.
"""
import logging
import os
import threading
import time
import weakref

import tenacity
from dservercore import sql_db

from . import inbox
from .sync import PermanentSyncError, sync_dataset

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_SECONDS = 2.0


class Worker:
    def __init__(self, app, settings, stats):
        self.app = app
        self.settings = settings
        self.stats = stats
        self._thread = None
        self._stop = threading.Event()
        self._schema_ready = False
        self._last_flush = 0.0
        self._backoff = tenacity.wait_exponential_jitter(
            multiplier=settings.retry_base_seconds, max=settings.retry_max_seconds,
            jitter=settings.retry_base_seconds)
        _install_fork_hooks(self)

    # life cycle ---------------------------------------------------------
    def start(self):
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name="dserver-notification-worker", daemon=True)
        self._thread.start()
        logger.info("notification worker started in process %s", os.getpid())

    def stop(self, timeout=10.0):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush_stats()

    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive()

    def _app_ready(self):
        # dservercore initialises its SQLAlchemy after the extensions.
        return "sqlalchemy" in self.app.extensions

    def _loop(self):
        while not self._stop.is_set():
            if not self._app_ready():
                self._stop.wait(self.settings.poll_seconds)
                continue
            try:
                processed = self.run_once()
            except Exception:  # database unreachable, app not ready yet ...
                logger.exception("notification worker loop failed; retrying")
                processed = 0
                self._stop.wait(min(5.0, 10 * self.settings.poll_seconds))
            if time.time() - self._last_flush > FLUSH_INTERVAL_SECONDS:
                self.flush_stats()
            if not processed:
                self._stop.wait(self.settings.poll_seconds)

    # work ---------------------------------------------------------------
    def ensure_schema(self):
        if not self._schema_ready:
            with self.app.app_context():
                inbox.ensure_schema(sql_db.engine)
            self._schema_ready = True

    def run_once(self, ignore_due=False):
        """Claim one batch of due entries and process it; return its size."""
        self.ensure_schema()
        with self.app.app_context():
            with sql_db.engine.begin() as conn:
                entries = inbox.claim(conn, inbox.now(), self.settings.claim_timeout_seconds,
                                      ignore_due=ignore_due)
            for entry in entries:
                if self._stop.is_set() and not ignore_due:
                    break  # the claim times out and another process takes it
                self.process(entry)
            sql_db.session.remove()
        return len(entries)

    def drain(self, include_waiting=False, on_progress=None):
        """Process everything due now (or everything, if asked); return count.

        ``on_progress(n)`` is called with the size of each processed batch.
        """
        total = 0
        while True:
            done = self.run_once(ignore_due=include_waiting)
            if not done:
                break
            total += done
            if on_progress is not None:
                on_progress(done)
        self.flush_stats()
        return total

    def process(self, entry):
        """Sync one claimed entry and record the outcome. Needs an app context."""
        uri = entry["dataset_uri"]
        try:
            outcome, digest = sync_dataset(entry["base_uri"], uri, entry["fingerprint"])
        except PermanentSyncError as exc:
            sql_db.session.rollback()
            logger.error("giving up on %s: %s", uri, exc)
            with sql_db.engine.begin() as conn:
                inbox.bury(conn, entry, str(exc), inbox.now())
            self.stats.add("dead")
            return "dead"
        except Exception as exc:  # S3, Mongo or SQL unreachable: retry later
            sql_db.session.rollback()
            return self._record_failure(entry, exc)
        with sql_db.engine.begin() as conn:
            inbox.finish(conn, entry, outcome, inbox.now(), fingerprint=digest)
        self.stats.add(outcome)
        self.stats.observe_latency(max(0.0, time.time() - entry["first_event_at"]))
        logger.info("synced %s: %s", uri, outcome)
        return outcome

    def _record_failure(self, entry, exc):
        error = f"{type(exc).__name__}: {exc}"
        delay = self._backoff(_retry_state(entry["attempts"]))
        now = inbox.now()
        with sql_db.engine.begin() as conn:
            state = inbox.fail(conn, entry, error, now, now + delay,
                               self.settings.max_attempts)
        self.stats.add("dead" if state == "dead" else "retried")
        logger.warning("sync of %s failed (attempt %d of %d, %s): %s",
                       entry["dataset_uri"], entry["attempts"], self.settings.max_attempts,
                       "giving up" if state == "dead" else f"retry in {delay:.1f}s", error)
        return state

    def flush_stats(self):
        deltas = self.stats.take_unflushed()
        self._last_flush = time.time()
        if not deltas:
            return
        try:
            self.ensure_schema()
            with self.app.app_context():
                with sql_db.engine.begin() as conn:
                    inbox.add_counters(conn, deltas)
        except Exception:
            self.stats.give_back(deltas)
            logger.warning("could not persist notification counters; will retry")

    # fork safety --------------------------------------------------------
    def _before_fork(self):
        self._was_running = self.running
        if self._was_running:
            self.stop(timeout=30.0)

    def _after_fork_in_parent(self):
        if getattr(self, "_was_running", False):
            self.start()

    def _after_fork_in_child(self):
        self._thread = None
        self._stop = threading.Event()
        self.stats.take_unflushed()  # the parent flushes its own counts
        try:
            with self.app.app_context():
                for engine in sql_db.engines.values():
                    engine.dispose(close=False)
        except Exception:
            logger.debug("no engines to dispose after fork", exc_info=True)
        if self.settings.worker and getattr(self, "_was_running", False):
            self.start()


def _retry_state(attempt_number):
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
    state.attempt_number = max(1, attempt_number)
    return state


_workers = weakref.WeakSet()
_hooks_installed = False


def _install_fork_hooks(worker):
    global _hooks_installed
    _workers.add(worker)
    if _hooks_installed or not hasattr(os, "register_at_fork"):
        return
    os.register_at_fork(
        before=lambda: [w._before_fork() for w in list(_workers)],
        after_in_parent=lambda: [w._after_fork_in_parent() for w in list(_workers)],
        after_in_child=lambda: [w._after_fork_in_child() for w in list(_workers)])
    _hooks_installed = True
