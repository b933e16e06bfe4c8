"""Background threads (the sync worker, the queue consumers) and forks.

A :class:`BackgroundThread` runs its ``_loop`` in one daemon thread until
``stop``. Under ``gunicorn --preload`` the app is created in the master,
which then forks its workers. Threads do not survive a fork and a lock held
by one of them at that moment stays locked forever in the child, so every
owner of a thread is told before and after each fork (one set of
``os.register_at_fork`` hooks for all of them) and brings itself to a safe
state. Owners are held weakly: an app that is garbage-collected drops out.
"""
import logging
import os
import threading
import weakref

logger = logging.getLogger(__name__)

_owners = weakref.WeakSet()
_hooks_installed = False


class BackgroundThread:
    """Start, stop and join one daemon thread that runs ``self._loop()``.

    Subclasses implement ``_loop`` (ending when ``self._stop`` is set),
    ``_after_stop`` and the three fork hooks.
    """

    thread_name = "dserver-notification"
    stop_timeout = 10.0  # how long stop() waits for the thread by default

    def __init__(self):
        self._thread = None
        self._stop = threading.Event()
        register_fork_hooks(self)

    def start(self):
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()
        logger.info("%s started in process %s", self.describe(), os.getpid())

    def stop(self, timeout=None):
        """Ask the thread to end and wait for it at most ``timeout`` seconds."""
        self._stop.set()
        self.join(self.stop_timeout if timeout is None else timeout)
        self._after_stop()

    def join(self, timeout=None):
        """Wait for the thread to end (at most ``timeout`` seconds)."""
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive()

    def describe(self):
        return self.thread_name

    def _forget_thread(self):
        """In a forked child: the parent's thread did not come along."""
        self._thread = None
        self._stop = threading.Event()


def register_fork_hooks(owner):
    """Call ``owner._before_fork``, ``_after_fork_in_parent`` and
    ``_after_fork_in_child`` around every fork of this process."""
    global _hooks_installed
    _owners.add(owner)
    if _hooks_installed or not hasattr(os, "register_at_fork"):
        return
    os.register_at_fork(
        before=lambda: [o._before_fork() for o in list(_owners)],
        after_in_parent=lambda: [o._after_fork_in_parent() for o in list(_owners)],
        after_in_child=lambda: [o._after_fork_in_child() for o in list(_owners)])
    _hooks_installed = True
