"""The background worker: claims due inbox entries and syncs their datasets.

One worker thread runs in every dserver process (gunicorn workers included)
unless ``DSERVER_NOTIFY_WORKER=off``. Claims are atomic in the database, so
any number of processes may run one. Under ``gunicorn --preload`` the app is
created in the master before it forks: threads do not survive a fork, so the
thread is paused around every fork and a fresh one is started in each child,
with the inherited database connections discarded, never shared.
"""
import logging
import random
import time

from .background import BackgroundThread
from .states import Outcome, State
from .store import now
from .sync import PermanentSyncError, sync_dataset

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_SECONDS = 2.0
# Done entries older than DSERVER_NOTIFY_DONE_RETENTION_SECONDS are deleted
# this often (by every worker: the delete is one cheap statement).
PURGE_INTERVAL_SECONDS = 60.0


def retry_delay(attempts, base, ceiling):
    """Exponential backoff with jitter: base, 2*base, 4*base ... up to ``ceiling``."""
    exponential = base * 2 ** min(max(attempts - 1, 0), 32)
    return min(ceiling, exponential) + random.uniform(0, base)


class Worker(BackgroundThread):
    thread_name = "dserver-notification-worker"

    def __init__(self, app, settings, store, tally, ledger=None):
        super().__init__()
        self.app = app
        self.settings = settings
        self.store = store
        self.tally = tally
        self.ledger = ledger  # the reconciler's memory of what the index reflects
        self._last_flush = 0.0
        self._last_purge = 0.0

    # life cycle ---------------------------------------------------------
    def _after_stop(self):
        self.flush_stats()

    def _loop(self):
        while not self._stop.is_set():
            if not self.store.ready():
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
            if time.time() - self._last_purge > PURGE_INTERVAL_SECONDS:
                self.purge_done()
            if not processed:
                self._stop.wait(self.settings.poll_seconds)

    # work ---------------------------------------------------------------
    def run_once(self, ignore_due=False):
        """Claim one batch of due entries and process it; return its size."""
        from dservercore import sql_db
        with self.app.app_context():
            claims = self.store.claim(self.settings.claim_timeout_seconds,
                                      ignore_due=ignore_due)
            for claim in claims:
                if self._stop.is_set() and not ignore_due:
                    break  # the claim times out and another process takes it
                self.process(claim)
            sql_db.session.remove()
        return len(claims)

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

    def process(self, claim):
        """Sync one claimed entry and record the outcome. Needs an app context.

        Returns the :class:`Outcome`, or None when the claim was lost to
        another process meanwhile (its result is that process's to record).
        """
        from dservercore import sql_db
        try:
            outcome, digest = sync_dataset(claim.base_uri, claim.dataset_uri, claim.fingerprint)
        except PermanentSyncError as exc:
            sql_db.session.rollback()
            logger.error("giving up on %s: %s", claim.dataset_uri, exc)
            return self._record_failure(claim, exc, give_up=True)
        except Exception as exc:  # S3, Mongo or SQL unreachable: retry later
            sql_db.session.rollback()
            return self._record_failure(claim, exc)
        if not self.store.finish(claim, outcome, fingerprint=digest):
            return self._claim_lost(claim, outcome)
        self._settle(claim, outcome)
        self.tally.add(outcome.value)
        self.tally.observe_latency(max(0.0, time.time() - claim.first_event_at))
        logger.info("synced %s: %s", claim.dataset_uri, outcome)
        return outcome

    def _settle(self, claim, outcome):
        """Tell the reconciler's ledger what the index reflects now; no S3 cost.
        Failing here only costs the next pass one verifying sync."""
        if self.ledger is None:
            return
        try:
            self.ledger.settle(claim.dataset_uri, outcome, claim.claimed_at)
        except Exception:
            logger.warning("could not record the sync of %s for the reconciler",
                           claim.dataset_uri, exc_info=True)

    def _record_failure(self, claim, exc, give_up=False):
        error = f"{type(exc).__name__}: {exc}"
        delay = retry_delay(claim.attempts, self.settings.retry_base_seconds,
                            self.settings.retry_max_seconds)
        state = self.store.fail(claim, error, now() + delay, self.settings.max_attempts,
                                give_up=give_up)
        if state is None:
            return self._claim_lost(claim, "error")
        outcome = Outcome.DEAD if state is State.DEAD else Outcome.RETRIED
        self.tally.add(outcome.value)
        if not give_up:
            logger.warning("sync of %s failed (attempt %d of %d, %s): %s",
                           claim.dataset_uri, claim.attempts, self.settings.max_attempts,
                           "giving up" if state is State.DEAD else f"retry in {delay:.1f}s",
                           error)
        return outcome

    def _claim_lost(self, claim, outcome):
        logger.warning("claim of %s expired before it finished (%s) and another process "
                       "took it; its result is not recorded here (raise "
                       "DSERVER_NOTIFY_CLAIM_TIMEOUT_SECONDS if syncs take that long)",
                       claim.dataset_uri, outcome)
        return None

    def purge_done(self):
        """Delete entries done for longer than the retention; return how many."""
        self._last_purge = time.time()
        try:
            purged = self.store.purge_done(self.settings.done_retention_seconds)
        except Exception:
            logger.warning("could not purge old done inbox entries; will try again",
                           exc_info=True)
            return 0
        if purged:
            logger.info("purged %d inbox entries done for longer than %g s", purged,
                        self.settings.done_retention_seconds)
        return purged

    def flush_stats(self):
        self._last_flush = time.time()
        self.tally.flush_to(self.store)

    # fork safety --------------------------------------------------------
    def _before_fork(self):
        self._was_running = self.running
        if self._was_running:
            self.stop(timeout=30.0)

    def _after_fork_in_parent(self):
        if getattr(self, "_was_running", False):
            self.start()

    def _after_fork_in_child(self):
        self._forget_thread()
        self.tally.take_unflushed()  # the parent flushes its own counts
        try:
            self.store.dispose_inherited_connections()
        except Exception:
            logger.debug("no engines to dispose after fork", exc_info=True)
        if self.settings.worker and getattr(self, "_was_running", False):
            self.start()

