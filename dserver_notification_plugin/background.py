"""The loop driver of every background thread, and fork safety.

A :class:`BackgroundThread` subclass says what one iteration does
(:meth:`~BackgroundThread.iterate`) and, by what that returns, how long to
wait before the next one. The driver owns everything around it, as huey's
consumer does for its processes:

- one daemon thread, started and stopped idempotently;
- waiting until the plugin's database is ready (dservercore sets up its
  engines after the extensions) before the first iteration;
- a pause after an iteration that raised, longer after each failure in a row;
- flushing this process's tally to the counters table now and then, and at stop;
- the fork hooks.

What a thread does once per life goes in two hooks: :meth:`on_start` (in the
thread, once the database is ready, before the first iteration) and
:meth:`on_stop` (in the stopping thread, once the thread ended or the stop
timeout passed). Heartbeats and releases on stop belong there.

Under ``gunicorn --preload`` the app is created in the master, which then
forks its workers. Threads do not survive a fork and a lock held by one of
them at that moment stays locked forever in the child, so every owner of a
thread is told before and after each fork (one set of
``os.register_at_fork`` hooks for all of them) and brings itself to a safe
state: by default the thread is paused around the fork, in the parent it
resumes, and in the child every owner first drops what it inherited, then
the threads that ran in the parent start afresh. Owners are held weakly: an
app that is garbage-collected drops out.
"""
import logging
import os
import random
import threading
import time
import weakref

from sqlalchemy.exc import SQLAlchemyError

from .logbudget import describe_database_error

logger = logging.getLogger(__name__)

#: How often a background thread adds its process's counts to the counters table.
FLUSH_INTERVAL_SECONDS = 2.0
#: How often a thread asks whether the database is ready before its first iteration.
READY_POLL_SECONDS = 0.5
#: How long a fork waits for a paused thread.
FORK_JOIN_SECONDS = 30.0
#: What :meth:`BackgroundThread.iterate` returns to end its thread for good.
FINISHED = object()

_owners = weakref.WeakSet()
_hooks_installed = False


def retry_delay(attempts, base, ceiling, jitter=True):
    """Exponential backoff: base, 2*base, 4*base ... up to ``ceiling``, plus
    (with ``jitter``) up to ``base`` at random, so processes that failed
    together do not all try again together."""
    exponential = base * 2 ** min(max(attempts - 1, 0), 32)
    return min(ceiling, exponential) + (random.uniform(0, base) if jitter else 0.0)


class BackgroundThread:
    """Runs :meth:`iterate` in one daemon thread until :meth:`stop`.

    ``db`` (its ``ready()``, a :class:`.db.Database`) gates the first
    iteration, and the ``tally``'s counts go to ``counters`` (a
    :class:`.db.Counters`); a thread that needs neither passes None.
    """

    thread_name = "dserver-notification"
    stop_timeout = 10.0  # how long stop() waits for the thread by default
    # After an iteration that raised, the thread pauses error_pause_seconds,
    # doubling with each failure in a row up to error_pause_max_seconds (the
    # same by default: a constant pause), plus a random jitter if asked for.
    error_pause_seconds = 5.0
    error_pause_max_seconds = 5.0
    error_pause_jitter = False

    def __init__(self, db=None, tally=None, counters=None):
        self.db = db
        self.tally = tally
        self.counters = counters
        self.failures = 0  # iterations that raised in a row
        self._thread = None
        self._stop = threading.Event()
        self._last_flush = 0.0
        self._was_running = False
        register_fork_hooks(self)

    # what a subclass defines ---------------------------------------------
    def iterate(self):
        """One iteration; return the seconds to wait before the next one
        (None or 0: at once), or :data:`FINISHED` to end the thread."""
        raise NotImplementedError

    def on_start(self):
        """In the thread, once the database is ready, before the first iteration."""

    def on_stop(self):
        """In the thread that calls :meth:`stop`, once the thread ended or
        the stop timeout passed."""

    def wake(self):
        """Cut short a :meth:`pause` (called by :meth:`stop`)."""

    def pause(self, seconds):
        """Wait between two iterations; ends early when the thread is stopped."""
        self._stop.wait(seconds)

    def on_error(self, exc, pause):
        """An iteration raised ``exc``; the thread waits ``pause`` seconds."""
        log_iteration_error(self.describe(), exc, pause)

    def describe(self):
        return self.thread_name

    # life cycle -----------------------------------------------------------
    def start(self):
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        logger.info("%s started in process %s", self.describe(), os.getpid())

    def stop(self, timeout=None):
        """Ask the thread to end, wait for it at most ``timeout`` seconds,
        then run :meth:`on_stop` and flush the counts."""
        self._halt(self.stop_timeout if timeout is None else timeout)
        self.on_stop()
        self.flush_stats()

    def join(self, timeout=None):
        """Wait for the thread to end (at most ``timeout`` seconds)."""
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopping(self):
        """True once the thread was asked to end."""
        return self._stop.is_set()

    def flush_stats(self):
        """Add this process's unflushed counts to the counters table."""
        self._last_flush = time.monotonic()
        if self.tally is not None and self.counters is not None:
            self.tally.flush_to(self.counters)

    def _halt(self, timeout):
        self._stop.set()
        self.wake()
        self.join(timeout)

    # the loop -------------------------------------------------------------
    def _run(self):
        if not self._wait_until_ready():
            return
        self.on_start()
        while not self._stop.is_set():
            wait = self._iterate_guarded()
            if wait is FINISHED:
                return
            if time.monotonic() - self._last_flush > FLUSH_INTERVAL_SECONDS:
                self.flush_stats()
            if wait and not self._stop.is_set():
                self.pause(self._until_flush_due(wait))

    def _until_flush_due(self, wait):
        """``wait``, cut short so that counts waiting to be flushed (this
        thread's, the webhook's, other threads') are written within the
        flush interval however long the thread would sleep."""
        if self.tally is None or not self.tally.has_unflushed():
            return wait
        flush_due = FLUSH_INTERVAL_SECONDS - (time.monotonic() - self._last_flush)
        return min(wait, max(flush_due, 0.0) + 0.01)

    def _wait_until_ready(self):
        """True once the database is ready; False when stopped before."""
        while not self._stop.is_set():
            if self.db is None or self.db.ready():
                return True
            self._stop.wait(READY_POLL_SECONDS)
        return False

    def _iterate_guarded(self):
        try:
            wait = self.iterate()
        except Exception as exc:  # the database or S3 unreachable, a bug ...
            self.failures += 1
            delay = retry_delay(self.failures, self.error_pause_seconds,
                                self.error_pause_max_seconds, jitter=self.error_pause_jitter)
            self.on_error(exc, delay)
            self._stop.wait(delay)
            return None
        self.failures = 0
        return wait

    # fork safety ----------------------------------------------------------
    def before_fork(self):
        """Pause the thread: it must not hold a lock when the process forks."""
        self._was_running = self.running
        if self._was_running:
            self._halt(FORK_JOIN_SECONDS)

    def after_fork_in_parent(self):
        if self._was_running:
            self.start()

    def after_fork_in_child(self):
        """Drop what came from the parent; no thread runs yet."""
        self._thread = None  # the parent's thread did not come along
        self._stop = threading.Event()
        self.forget_inherited()

    def restart_after_fork_in_child(self):
        if self._was_running and self.restarts_in_child():
            self.start()

    def forget_inherited(self):
        """In a forked child: drop the parent's connections, clients and locks."""

    def restarts_in_child(self):
        """Whether a thread that ran in the parent runs again in a forked child."""
        return True


def register_fork_hooks(owner):
    """Call ``owner.before_fork``, ``after_fork_in_parent`` and, in the child,
    every owner's ``after_fork_in_child`` and then every owner's
    ``restart_after_fork_in_child``, around every fork of this process."""
    global _hooks_installed
    _owners.add(owner)
    if _hooks_installed or not hasattr(os, "register_at_fork"):
        return
    os.register_at_fork(before=lambda: _tell_owners("before_fork"),
                        after_in_parent=lambda: _tell_owners("after_fork_in_parent"),
                        after_in_child=_after_fork_in_child)
    _hooks_installed = True


def _after_fork_in_child():
    # Every owner drops what it inherited before any thread starts and uses it.
    _tell_owners("after_fork_in_child")
    _tell_owners("restart_after_fork_in_child")


def _tell_owners(hook):
    for owner in list(_owners):
        getattr(owner, hook)()


def log_iteration_error(what, exc, pause):
    """Log a failed iteration once per pause (the backoff bounds the rate).

    A database error is logged without its traceback and without
    SQLAlchemy's text, which appends the statement and its parameters:
    those hold what senders wrote.
    """
    if isinstance(exc, SQLAlchemyError):
        logger.error("%s failed: %s; trying again in %.1f s",
                     what, describe_database_error(exc), pause)
    else:
        logger.exception("%s failed; trying again in %.1f s", what, pause)
