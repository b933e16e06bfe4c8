"""The thread that beats for this process and releases the work of silent ones.

The rows and statements are :mod:`.db.processes`; see there why heartbeats.
"""
import logging
import os
import threading
from typing import Optional

from .background import register_fork_hooks
from .db.processes import Processes

logger = logging.getLogger(__name__)


class Heartbeat:
    """The daemon thread that beats for this process and reaps the dead.

    Started by the first claim or lease request of the process (and again
    in a forked child); ``stop`` ends it and leaves.
    """

    def __init__(self, registry: Processes):
        self.registry = registry
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pid = None
        self._paused = False
        register_fork_hooks(self)

    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive() \
            and self._pid == os.getpid()

    def ensure_running(self):
        """Join and start beating, unless already doing so in this process."""
        if self.running and self.registry.joined:
            return
        with self._lock:
            if not self.registry.joined:
                self.registry.join()
            if not self.running:
                self._start_thread()

    def _start_thread(self):
        self._stop = threading.Event()
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="dserver-notification-heartbeat")
        self._thread.start()

    def _loop(self):
        stop = self._stop
        while not stop.wait(self.registry.heartbeat_seconds):
            try:
                self.registry.beat()
                self.registry.reap()
            except Exception:  # the database may be away for a moment
                logger.warning("heartbeat failed; trying again", exc_info=True)

    # fork safety (see background.py): no database call may be under way
    # in the parent while it forks; the child joins on its first claim.
    def before_fork(self):
        self._paused = self.running
        if self._paused:
            self._stop.set()
            self._thread.join(2 * self.registry.heartbeat_seconds)

    def after_fork_in_parent(self):
        if self._paused:
            self._paused = False
            self._start_thread()

    def after_fork_in_child(self):
        self._paused = False
        self._thread = None
        self._lock = threading.Lock()

    def restart_after_fork_in_child(self):
        pass  # the child joins with its first claim or lease request

    def stop(self):
        """Stop beating and release this process's work."""
        self._stop.set()
        if self.running and self._thread is not threading.current_thread():
            self._thread.join(2 * self.registry.heartbeat_seconds)
        self._thread = None
        try:
            self.registry.leave()
        except Exception:  # at shutdown the database may be gone: the others reap us
            logger.debug("could not leave", exc_info=True)
