"""The background worker: claims due inbox entries and syncs their datasets.

One worker runs in every dserver process (gunicorn workers included)
unless ``DSERVER_NOTIFY_WORKER=off``, with ``DSERVER_NOTIFY_SYNC_THREADS``
threads that each claim and sync one entry at a time. Claims are atomic in
the database, so any number of threads and processes may claim; one entry
per dataset means one dataset is synced by one of them at a time. When
nothing is due its threads sleep on one timer until the earliest due entry
(one of them wakes, :meth:`Worker._sync_round`), and are woken sooner by an
enqueue in its own process or, on PostgreSQL, by a notification from any
other (:mod:`.wakeup`); only without such notifications (SQLite) does it
look every poll interval.

Under ``gunicorn --preload`` the app is created in the master before it
forks: threads do not survive a fork, so the threads are paused around
every fork and fresh ones are started in each child, with the inherited
database connections discarded, never shared.
"""
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from .background import BackgroundThread, log_iteration_error, retry_delay
from .coverage import covered
from .db import KEEP, now
from .db.attention import UNREADABLE, Attention
from .dtool_private import observed_reads, prepare_clients
from .evidence import BucketUnreadable
from .states import DatasetKind, Outcome, State
from .sync import ClaimLost, PermanentSyncError, sync_dataset
from .wakeup import Listener

logger = logging.getLogger(__name__)

# An entry due in the past that no claim found is held by another claimer's
# open transaction: look again shortly instead of spinning.
RECHECK_SECONDS = 0.05
# The worker claims one entry at a time: a claim is one cheap statement next
# to a sync that reads S3, and entries are better left in the table, where
# any idle worker of any host can take them, than queued in a busy worker's
# batch, where they wait and their claims age. A drain takes bigger bites.
CLAIM_BATCH = 1
DRAIN_BATCH = 16
# Done entries older than DSERVER_NOTIFY_DONE_RETENTION_SECONDS are deleted
# this often (by every worker: the delete is one cheap statement).
PURGE_INTERVAL_SECONDS = 60.0
# Pauses between the tries to record a sync's outcome. SQLite refuses a
# write while another holds the lock longer than its busy timeout, and a
# PostgreSQL connection may drop; the sync is done and its result is worth
# a short wait, or the entry would be synced (and registered) again.
RECORD_RETRY_PAUSES = (0.1, 0.5, 2.0)


class Worker(BackgroundThread):
    thread_name = "dserver-notification-worker"

    def __init__(self, app, settings, db, inbox, counters, tally, ledger=None):
        super().__init__(db, tally, counters)
        self.app = app
        self.settings = settings
        self.inbox = inbox
        self.ledger = ledger  # the reconciler's memory of what the index reflects
        self.listener = Listener(db.listening_connection, inbox.alarm)
        self._last_purge = 0.0
        self._helpers = []  # the further sync threads (DSERVER_NOTIFY_SYNC_THREADS - 1)
        # Claims a failure left in this process's hands, given back next round.
        self._orphans, self._orphans_lock = [], threading.Lock()
        self.attention = Attention(db)
        # Base URIs this process reported unreadable: a sync that reads one
        # again settles the concern.
        self._unreadable = set()

    @property
    def error_pause_seconds(self):
        """After a failed round (the database unreachable ...)."""
        return min(5.0, 10 * self.settings.poll_seconds)

    error_pause_max_seconds = error_pause_seconds

    # the loop (driven by BackgroundThread) ---------------------------------
    def on_start(self):
        self.listener.start()
        prepare_clients(self.settings.bucket_to_base_uri)
        # More syncs at once: further threads claim and sync as this one does,
        # one entry at a time, until the same stop (see join).
        self._helpers = [threading.Thread(target=self._help, daemon=True,
                                          name=f"{self.thread_name}-{number}")
                         for number in range(1, self.settings.sync_threads)]
        for helper in self._helpers:
            helper.start()

    def iterate(self):
        """Claim and sync; when nothing was due, how long to sleep. Purging
        old entries is this thread's alone."""
        wait = self._sync_round()
        if time.time() - self._last_purge > PURGE_INTERVAL_SECONDS:
            self.purge_done()
        return wait

    def _sync_round(self):
        """Claim and sync one entry; how long to sleep after (None: not at all).

        The threads share one timer, the alarm, which a ring wakes one
        thread of: a thread that claimed rings it, so that another claims
        beside it while entries are due, and one that found nothing arms it
        for the next look (unless a thread will wake by then anyway) and
        sleeps with the rest until rung. A due moment thus wakes one thread
        of each process, not every thread (each looking again, and finding
        nothing, after the first took the entry): the load run of ``python
        -m bench load`` spent about a quarter of its hosts' time on such
        looks (py-spy, 2026-12-03).
        """
        if self.run_once():
            self.inbox.alarm.ring()
            return None
        self.inbox.alarm.arm(self._next_look())
        return self.settings.idle_seconds

    def _help(self):
        """A further sync thread, with S3 clients of its own; the driver's
        thread flushes the counts for all of them."""
        prepare_clients(self.settings.bucket_to_base_uri)
        while not self.stopping:
            try:
                wait = self._sync_round()
            except Exception as exc:  # the database unreachable ...
                wait = self.error_pause_seconds
                self.on_error(exc, wait)
            if wait and not self.stopping:
                self.pause(wait)

    def join(self, timeout=None):
        """Wait for the driver's thread and then for the further sync threads."""
        super().join(timeout)
        for helper in self._helpers:
            helper.join(timeout)

    def pause(self, seconds):
        # on the alarm: an enqueue (here, or NOTIFYed by another process) wakes it
        self.inbox.alarm.sleep_until(now() + seconds, cancelled=lambda: self.stopping)

    def wake(self):
        self.inbox.alarm.wake_all()  # every thread out of its sleep: a stop

    def on_error(self, exc, pause):
        log_iteration_error("notification worker loop", exc, pause)

    def on_stop(self):
        self.listener.stop()  # its connection is closed too

    def _next_look(self):
        """When to look for work again unless rung sooner (epoch seconds).

        Without notifications from other processes, after the poll
        interval; with them (PostgreSQL), when the next entry is due (the
        database says), at the latest after the idle interval.
        """
        start = now()
        if not self.listener.listening:
            return start + self.settings.poll_seconds
        deadline = start + self.settings.idle_seconds
        with self.app.app_context():
            next_due = self.inbox.next_due_at(self.settings.claim_timeout_seconds)
        if next_due is not None:
            deadline = min(deadline, max(next_due, start + RECHECK_SECONDS))
        return deadline

    # work ---------------------------------------------------------------
    def run_once(self, ignore_due=False, limit=CLAIM_BATCH):
        """Claim due entries (up to ``limit``) and process them; return how many."""
        from dservercore import sql_db
        with self.app.app_context():
            self._give_back_orphans()
            claims = self.inbox.claim(self.settings.claim_timeout_seconds, limit=limit,
                                      ignore_due=ignore_due)
            for number, claim in enumerate(claims):
                if self.stopping and not ignore_due:
                    # stopping: give the rest back, due now, for any process
                    self.inbox.release(claims[number:])
                    break
                try:
                    self.process(claim)
                except Exception:
                    self._adopt_orphans(claims[number:])
                    raise
            sql_db.session.remove()
        return len(claims)

    def _adopt_orphans(self, claims):
        """A failure nothing recorded (the database unreachable when the
        outcome or the failure was to be written): the claims are still
        ours, and a live process's claims are never taken over, so they
        would wait until this process ends. Give them back once the
        database answers again."""
        with self._orphans_lock:
            self._orphans.extend(claims)

    def _give_back_orphans(self):
        with self._orphans_lock:
            orphans, self._orphans = self._orphans, []
        if not orphans:
            return
        try:
            released = self.inbox.release(orphans)
        except Exception:
            self._adopt_orphans(orphans)
            raise
        logger.warning("gave back %d inbox entr%s whose outcome could not be recorded",
                       released, "y" if released == 1 else "ies")

    def drain(self, include_waiting=False, on_progress=None, threads=1):
        """Process everything due now (or everything, if asked); return count.

        ``on_progress(n)`` is called with the size of each processed batch.
        ``threads``: syncs at once. The commands pass DSERVER_NOTIFY_SYNC_THREADS,
        so that the syncs a resync causes (a whole bucket on a first indexing)
        run as concurrently as the worker's; one thread keeps every sync in
        the caller's thread.
        """
        if threads <= 1:
            total = self._drain_here(include_waiting, on_progress, DRAIN_BATCH)
        else:
            total = self._drain_in_threads(include_waiting, on_progress, threads)
        self.flush_stats()
        return total

    def _drain_here(self, include_waiting, on_progress, limit, among_others=False):
        """``among_others``: other threads of this drain claim too, so a claim
        that took nothing may have lost a race: go on while anything is left."""
        total = 0
        while True:
            done = self.run_once(ignore_due=include_waiting, limit=limit)
            if not done and among_others and self._anything_left(include_waiting):
                time.sleep(RECHECK_SECONDS)
                continue
            if not done:
                return total
            total += done
            if on_progress is not None:
                on_progress(done)

    def _drain_in_threads(self, include_waiting, on_progress, threads):
        """Each thread claims one entry at a time, as the worker's threads do:
        a thread holding a batch would leave the others idle at the end. Each
        has S3 clients of its own; a claim is atomic, so no entry is synced twice."""
        lock = threading.Lock()

        def report(done):
            if on_progress is not None:
                with lock:  # progress bars are not thread-safe
                    on_progress(done)

        def drain_in_this_thread():
            prepare_clients(self.settings.bucket_to_base_uri)
            return self._drain_here(include_waiting, report, CLAIM_BATCH, among_others=True)

        with ThreadPoolExecutor(threads, thread_name_prefix=f"{self.thread_name}-drain") \
                as pool:
            futures = [pool.submit(drain_in_this_thread) for _ in range(threads)]
            return sum(future.result() for future in futures)

    def _anything_left(self, include_waiting):
        with self.app.app_context():
            return self.inbox.any_claimable(self.settings.claim_timeout_seconds,
                                            ignore_due=include_waiting)

    def process(self, claim):
        """Sync one claimed entry and record the outcome. Needs an app context.

        An entry whose every event since the last claim was seen by the last
        sync is done without reading S3 (:mod:`.coverage`). Returns the
        :class:`Outcome`, or None when the claim was lost to another process
        meanwhile (its result is that process's to record).
        """
        if covered(claim.seen, claim.heard):
            return self._record(claim, Outcome.COVERED, claim.fingerprint, KEEP)
        started = time.monotonic()
        result, failure, reads = self._sync(claim)
        # counted whatever the sync's fate: a failed sync spent requests too
        self.tally.add("s3_requests", reads.requests)
        if isinstance(failure, ClaimLost):  # taken over before it wrote: the new owner writes
            return self._claim_lost(claim, "not written")
        if isinstance(failure, PermanentSyncError):
            logger.error("giving up on %s: %s", claim.dataset_uri, failure)
            return self._record_failure(claim, failure, give_up=True)
        if isinstance(failure, BucketUnreadable):  # says nothing of the dataset: never delete
            self._report_unreadable(claim.base_uri, failure)
            return self._record_failure(claim, failure, keep_trying=True)
        if failure is not None:  # S3, Mongo or SQL unreachable: retry later
            return self._record_failure(claim, failure)
        self._readable_again(claim.base_uri)
        # the listing signature of what it read describes the index now
        signature = reads.signature(claim.uuid) if result.kind is DatasetKind.FROZEN else None
        return self._record(claim, result.outcome, result.fingerprint, reads.seen(result.kind),
                            f" ({reads.requests} S3 requests, "
                            f"{time.monotonic() - started:.2f} s)", signature)

    def _sync(self, claim):
        """``(SyncResult or None, exception or None, Reads)``: the sync, with
        its S3 requests recorded."""
        from dservercore import sql_db
        with observed_reads() as reads:
            try:
                # index writes happen only while this claim holds (sync.py)
                fence = partial(self.inbox.hold_claim, claim, sql_db.session)
                return sync_dataset(claim.base_uri, claim.dataset_uri, claim.fingerprint,
                                    fence), None, reads
            except Exception as exc:
                sql_db.session.rollback()
                return None, exc, reads

    def _record(self, claim, outcome, fingerprint, seen, detail="", signature=None):
        if not self._finish(claim, outcome, fingerprint, seen):
            return self._claim_lost(claim, outcome)
        self._settle(claim, outcome, signature)
        self.tally.add(outcome.value)
        self.tally.observe_latency(max(0.0, time.time() - claim.first_event_at))
        logger.info("synced %s: %s%s", claim.dataset_uri, outcome, detail)
        return outcome

    def _finish(self, claim, outcome, fingerprint, seen):
        """:meth:`.Inbox.finish`, tried again after RECORD_RETRY_PAUSES."""
        for pause in RECORD_RETRY_PAUSES:
            try:
                return self.inbox.finish(claim, outcome, fingerprint=fingerprint, seen=seen)
            except Exception as exc:
                logger.warning("could not record that %s was %s, trying again in %.1f s: %s",
                               claim.dataset_uri, outcome, pause, type(exc).__name__)
                time.sleep(pause)
        return self.inbox.finish(claim, outcome, fingerprint=fingerprint, seen=seen)

    def _settle(self, claim, outcome, signature):
        """Tell the reconciler's ledger what the index reflects now; no S3 cost.
        Failing here only costs the next pass one verifying sync."""
        if self.ledger is None:
            return
        try:
            self.ledger.settle(claim.dataset_uri, outcome, signature)
        except Exception:
            logger.warning("could not record the sync of %s for the reconciler",
                           claim.dataset_uri, exc_info=True)

    def _report_unreadable(self, base_uri, exc):
        """Say in status and metrics which base URI cannot be read, and why."""
        logger.warning("base URI %s cannot be read, nothing is deleted: %s", base_uri, exc)
        try:
            self.attention.raise_concern(base_uri, UNREADABLE, exc.reason)
            self._unreadable.add(base_uri)
        except Exception:
            logger.warning("could not record that %s cannot be read", base_uri, exc_info=True)

    def _readable_again(self, base_uri):
        if base_uri not in self._unreadable:
            return  # the common case costs no statement
        try:
            self.attention.settle(base_uri, UNREADABLE)
            self._unreadable.discard(base_uri)
        except Exception:
            logger.debug("could not settle the concern about %s", base_uri, exc_info=True)

    def _record_failure(self, claim, exc, give_up=False, keep_trying=False):
        """Retry later with backoff, or bury the entry. ``keep_trying``: an
        unreadable bucket may be fixed any time (an endpoint corrected), so its
        entries never go dead; they retry every RETRY_MAX_SECONDS at most."""
        error = f"{type(exc).__name__}: {exc}"
        delay = retry_delay(claim.attempts, self.settings.retry_base_seconds,
                            self.settings.retry_max_seconds)
        max_attempts = float("inf") if keep_trying else self.settings.max_attempts
        state = self.inbox.fail(claim, error, now() + delay, max_attempts, give_up=give_up)
        if state is None:
            return self._claim_lost(claim, "error")
        outcome = Outcome.DEAD if state is State.DEAD else Outcome.RETRIED
        self.tally.add(outcome.value)
        if not give_up:
            logger.warning("sync of %s failed (attempt %d of %s, %s): %s",
                           claim.dataset_uri, claim.attempts,
                           "no limit" if keep_trying else self.settings.max_attempts,
                           "giving up" if state is State.DEAD else f"retry in {delay:.1f}s",
                           error)
        return outcome

    def _claim_lost(self, claim, outcome):
        logger.warning("claim of %s was taken by another process before it finished (%s): "
                       "this process had missed its heartbeats (a pause longer than three "
                       "DSERVER_NOTIFY_HEARTBEAT_SECONDS, or the database away) or the claim "
                       "timeout passed; its result is not recorded here",
                       claim.dataset_uri, outcome)
        return None

    def purge_done(self):
        """Delete entries done for longer than the retention; return how many."""
        self._last_purge = time.time()
        try:
            purged = self.inbox.purge_done(self.settings.done_retention_seconds)
        except Exception:
            logger.warning("could not purge old done inbox entries; will try again",
                           exc_info=True)
            return 0
        if purged:
            logger.info("purged %d inbox entries done for longer than %g s", purged,
                        self.settings.done_retention_seconds)
        return purged

    # fork safety (see background.py) ------------------------------------
    def forget_inherited(self):
        self._helpers = []  # the parent's threads did not come along
        self.inbox.alarm.reset()
        self.tally.take_unflushed()  # the parent flushes its own counts
        try:
            self.db.dispose_inherited_connections()
        except Exception:
            logger.debug("no engines to dispose after fork", exc_info=True)

    def restarts_in_child(self):
        return self.settings.worker
