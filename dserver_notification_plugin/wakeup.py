"""Waking the worker when there is work, instead of polling for it.

:class:`Alarm` is what a worker sleeps on: it wakes at the earliest due
time anyone rang for, or at the deadline the worker chose. The inbox rings
it after every enqueue in this process. :class:`Listener` carries the
rings of other processes and hosts: on PostgreSQL every enqueue sends
``NOTIFY dserver_notification, '<due time>'`` and a dedicated connection
per process ``LISTEN``\\ s for it. Elsewhere (SQLite) there is no such
channel, and the worker polls at the poll interval.
"""
import logging
import threading
import time

from .background import FINISHED, BackgroundThread

logger = logging.getLogger(__name__)

# How often the listener checks whether it should stop (it blocks on the socket).
LISTEN_TICK_SECONDS = 0.5
RECONNECT_SECONDS = 5.0


class Alarm:
    """Wakes a sleeping worker at the earliest time rung for.

    The threads of one worker sleep on one alarm, and a ring wakes only one
    of them: the first to see it takes the rung time as its own deadline.
    :meth:`arm` rings only when no thread will wake by then anyway, so the
    worker's threads share one timer (:meth:`.Worker._sync_round`).
    :meth:`wake_all` ends every sleep (a stop).
    """

    def __init__(self):
        self._condition = threading.Condition()
        self._earliest = None
        self._taken = []  # the rung times sleeping threads took as deadlines
        self._wake_alls = 0
        self._sleeping = 0  # threads in sleep_until
        self._promised = 0  # wakes promised (promise_wake) not yet taken

    def ring(self, due_at=None):
        """Work is due at ``due_at`` (epoch seconds; None: now)."""
        due_at = time.time() if due_at is None else due_at
        with self._condition:
            if self._earliest is None or due_at < self._earliest:
                self._earliest = due_at
            self._condition.notify_all()

    def arm(self, at):
        """Have a sleeping thread wake by ``at``, unless a ring already makes
        one wake by then."""
        with self._condition:
            if any(taken <= at for taken in self._taken) or (
                    self._earliest is not None and self._earliest <= at):
                return
            self._earliest = at
            self._condition.notify_all()

    def promise_wake(self):
        """True, and one sleeping thread is counted on to take the next ring,
        if a thread sleeps that no earlier promise counts on already.

        An enqueue whose entry is due at once asks this before it tells the
        other processes (``NOTIFY``): a thread of its own will claim the
        entry within milliseconds, and waking one thread of every other
        process too would only make each of them look in vain. Should the
        thread be taken by other work meanwhile, the entry waits at most for
        one of the process's syncs to end: every thread that finishes one
        claims the next due entry at once.
        """
        with self._condition:
            if self._sleeping - self._promised <= 0:
                return False
            self._promised += 1
            return True

    def wake_all(self):
        """End the sleep of every thread now."""
        with self._condition:
            self._wake_alls += 1
            self._condition.notify_all()

    def sleep_until(self, deadline, cancelled=lambda: False):
        """Sleep until ``deadline`` or the earliest time rung for, if sooner.

        ``cancelled()`` is asked under the alarm's lock before each wait: a
        stop that set its flag before calling :meth:`wake_all` is seen even
        by a thread that was on its way to sleep then.
        """
        with self._condition:
            wake_alls, taken = self._wake_alls, None
            self._sleeping += 1
            try:
                while self._wake_alls == wake_alls and not cancelled():
                    if self._earliest is not None and self._earliest <= deadline:
                        deadline, self._earliest = self._earliest, None
                        self._promised = max(0, self._promised - 1)
                        if taken is not None:
                            self._taken.remove(taken)
                        taken = deadline
                        self._taken.append(taken)
                    remaining = deadline - time.time()
                    if remaining <= 0:
                        return
                    self._condition.wait(remaining)
            finally:
                self._sleeping -= 1
                if taken is not None:
                    self._taken.remove(taken)

    def reset(self):
        """After a fork: a fresh lock, never one a vanished thread may hold."""
        self.__init__()


class Listener(BackgroundThread):
    """A thread that turns PostgreSQL notifications into rings of ``alarm``.

    Each notification arms the alarm for its due time (:meth:`Alarm.arm`):
    the events of one copy, announced one by one with ever later due
    times, wake one thread of each process, not one per event.

    ``connect()`` returns a psycopg 3 connection already listening on
    :data:`.db.CHANNEL`, or None when the database cannot notify (SQLite, or
    another driver); then the thread ends and :attr:`listening` stays False.
    Its owner (the worker) starts and stops it; around a fork it pauses
    like every background thread, and in a forked child its owner starts it.
    """

    thread_name = "dserver-notification-listener"

    def __init__(self, connect, alarm):
        super().__init__()
        self.connect = connect
        self.alarm = alarm
        self.listening = False

    def iterate(self):
        """One connection's life: connect, relay until stopped or lost, close."""
        try:
            connection = self.connect()
        except Exception as exc:  # database down or not ready: poll meanwhile
            logger.warning("cannot LISTEN for notification work (%s); polling", exc)
            return RECONNECT_SECONDS
        if connection is None:
            return FINISHED
        try:
            self._relay(connection)
        except Exception as exc:
            logger.warning("LISTEN connection lost (%s); polling until it is back", exc)
            return RECONNECT_SECONDS
        finally:
            self.listening = False
            _close_quietly(connection)
        return None

    def _relay(self, connection):
        self.listening = True
        self.alarm.ring()  # whatever was announced while we were not listening
        while not self.stopping:
            for notification in connection.notifies(timeout=LISTEN_TICK_SECONDS):
                # every enqueue of every host is announced: a thread that
                # wakes by then finds this entry too (or, on waking, asks
                # the database when the next one is due)
                self.alarm.arm(_due_time(notification.payload))

    def forget_inherited(self):
        self.listening = False  # the parent's connection did not come along

    def restarts_in_child(self):
        return False  # the worker starts it when its own thread starts


def _due_time(payload):
    try:
        return float(payload)
    except ValueError:
        return None  # an unknown sender: look now


def _close_quietly(connection):
    try:
        connection.close()
    except Exception:
        logger.debug("closing the LISTEN connection failed", exc_info=True)
