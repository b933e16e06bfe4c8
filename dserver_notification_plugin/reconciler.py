"""The background reconciler: one pass over every mapped base URI per interval.

A thread in every process that runs the sync worker asks for the
``reconciler`` lease; the one process that holds it (across every host
sharing the database) runs the passes and renews the lease while it works,
the others ask again now and then and take over when it expires. The pass's
cursor lives in the database, so a pass interrupted by a restart, a crash
or a lost lease resumes where it stopped, in whichever process holds the
lease next. Passes start ``DSERVER_NOTIFY_RECONCILE_INTERVAL_SECONDS``
apart (start to start) and spend at most
``DSERVER_NOTIFY_RECONCILE_MAX_RPS`` S3 requests per second.
"""
import logging

from .background import BackgroundThread
from .db.attention import UNREADABLE
from .db.processes import MISSED_BEATS
from .evidence import BucketUnreadable
from .listing import Pacer
from .reconcile import BaseUriPass
from .db import Lease, now

logger = logging.getLogger(__name__)

SCOPE = "reconciler"  # the lease's name and the cursor's scope
ERROR_PAUSE_SECONDS = 30.0


def one_pass(extension, base_uri, dry_run=False, confirm_removals=False):
    """An on-demand pass over one base URI (``flask notification resync``):
    the same walk, no lease, no cursor; findings go due now.
    ``confirm_removals``: no limit on removals (``confirm-removals``)."""
    limit = None if confirm_removals else extension.settings.reconcile_max_removals
    walk = BaseUriPass(extension, base_uri, Pacer(extension.settings.reconcile_max_rps),
                       dry_run=dry_run, debounce=0.0, max_removals=limit)
    with extension.app.app_context():
        walk.run()
    return walk


class Reconciler(BackgroundThread):
    thread_name = "dserver-notification-reconciler"
    error_pause_seconds = error_pause_max_seconds = ERROR_PAUSE_SECONDS

    def __init__(self, extension):
        super().__init__(extension.db, extension.tally, extension.counters)
        self.ext = extension
        self.settings = extension.settings
        self.lease = Lease(extension.db, SCOPE, self.settings.reconcile_lease_seconds)
        self._renewed_at = 0.0
        self._lease_lost = False

    @property
    def enabled(self):
        return self.settings.reconcile_interval_seconds > 0

    def start(self):
        if self.enabled:
            super().start()

    # the loop (driven by BackgroundThread) ----------------------------------------
    def iterate(self):
        return self.run_once()

    def on_error(self, exc, pause):
        logger.exception("reconciler failed; trying again in %.0f s", pause)

    def on_stop(self):
        if self._thread is None:
            return  # never started here: no lease to give back
        try:
            self.lease.release()  # the next holder need not wait for the expiry
        except Exception:  # the database may be gone at shutdown; the lease expires
            logger.debug("could not release the reconciler lease", exc_info=True)

    def forget_inherited(self):
        if self._was_running:
            # before our thread touches the database (the worker does the same)
            self.ext.db.dispose_inherited_connections()

    # work -----------------------------------------------------------------------
    @property
    def _renew_every(self):
        return self.settings.reconcile_lease_seconds / 3

    def run_once(self, at=None):
        """Hold the lease, then start or resume a pass when one is due.

        Returns the seconds to wait before asking again.
        """
        if not self.lease.acquire():
            # Ask again soon: a holder that stops gracefully releases the
            # lease at once, and one that dies loses it within a few beats.
            return min(self.settings.reconcile_lease_seconds / 2,
                       self.settings.heartbeat_seconds * MISSED_BEATS)
        self._renewed_at, self._lease_lost = now(), False
        state = self.ext.ledger.pass_state(SCOPE)
        at = now() if at is None else at
        if state is not None and state.finished_at is not None:
            if at < self._next_start(state):
                return self._pause(state, at)
            state = None
        if state is None:
            state = self.ext.ledger.start_pass(SCOPE, self.lease.holder, at)
            logger.info("reconcile pass started by %s", self.lease.holder)
        else:
            logger.info("reconcile pass resumed by %s at %s after %s", self.lease.holder,
                        state.base_uri, state.after_uuid)
        if self._walk(state):
            self.ext.ledger.finish_pass(SCOPE)
            self.ext.tally.add("reconcile_passes")
            logger.info("reconcile pass finished by %s: %s", self.lease.holder,
                        self.ext.ledger.pass_state(SCOPE).figures())
            self.ext.worker.flush_stats()
            return self._pause(state, now())
        self.ext.worker.flush_stats()
        return self._renew_every

    def _next_start(self, state):
        """Passes start the interval apart, start to start."""
        return state.started_at + self.settings.reconcile_interval_seconds

    def _pause(self, state, at):
        """Until the next pass is due, waking in time to renew the lease."""
        return max(0.0, min(self._renew_every, self._next_start(state) - at))

    def _walk(self, state):
        """Every mapped base URI from the cursor on; False if interrupted."""
        pacer = Pacer(self.settings.reconcile_max_rps, should_stop=lambda: self.stopping)
        base_uris = sorted(set(self.settings.bucket_to_base_uri.values()))
        if state.base_uri in base_uris:
            base_uris = base_uris[base_uris.index(state.base_uri):]
        with self.ext.app.app_context():
            for base_uri in base_uris:
                after = state.after_uuid if base_uri == state.base_uri else None
                walk = BaseUriPass(self.ext, base_uri, pacer,
                                   debounce=self.settings.debounce_seconds,
                                   on_chunk=self._save_progress, heartbeat=self._heartbeat,
                                   max_removals=self.settings.reconcile_max_removals)
                try:
                    finished = walk.run(after)
                except BucketUnreadable as exc:
                    self._skip(base_uri, exc)
                    continue
                if not finished:
                    return False
        return True

    def _skip(self, base_uri, exc):
        """A bucket that cannot be listed says nothing about its datasets:
        leave the base URI for the next pass, and say why."""
        logger.warning("reconcile: skipping %s, nothing is removed: %s", base_uri, exc)
        self.ext.attention.raise_concern(base_uri, UNREADABLE, exc.reason)

    def _save_progress(self, base_uri, after_uuid, figures, final):
        """Called after each chunk: save the cursor; go on?"""
        self.ext.ledger.advance(SCOPE, base_uri, after_uuid, figures.as_dict(),
                                self.lease.holder)
        for name, value in figures.as_dict().items():
            self.ext.tally.add(f"reconcile_{name}", value)
        return not (self.stopping or self._lease_lost)

    def _heartbeat(self):
        """Called before each dataset: renew the lease in time. When it was
        lost, the chunk ends (another holder checking the same datasets
        meanwhile only enqueues them twice) and the pass stops."""
        if self._lease_lost or now() - self._renewed_at < self._renew_every:
            return
        if self.lease.renew():
            self._renewed_at = now()
        else:
            self._lease_lost = True
            logger.warning("reconciler lease lost by %s; the next holder resumes the pass",
                           self.lease.holder)
