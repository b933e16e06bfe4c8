"""Waking the worker: the in-process alarm, and LISTEN/NOTIFY between hosts."""
import threading
import time

from devstack.ports import wait_until
from dserver_notification_plugin.db import Database, Inbox
from dserver_notification_plugin.keys import DatasetTarget
from dserver_notification_plugin.wakeup import Alarm, Listener

PATIENCE = 30.0  # a loaded machine is slow; a failure still ends


def target(n, part="admin"):
    uuid = f"{n:08d}-0000-4000-8000-000000000000"
    return DatasetTarget("s3://b", f"s3://b/{uuid}", uuid, part)


def wait_for(condition, what):
    wait_until(condition, what, PATIENCE, interval=0.02)


def test_a_ring_ends_a_long_sleep():
    alarm = Alarm()
    sleeper = threading.Thread(target=alarm.sleep_until, args=(time.time() + 3600,))
    sleeper.start()
    alarm.ring()
    sleeper.join(PATIENCE)
    assert not sleeper.is_alive()


def test_a_ring_for_later_shortens_the_sleep_to_that_time():
    alarm = Alarm()
    alarm.ring(time.time() + 0.2)
    alarm.sleep_until(time.time() + 3600)  # returns: the rung time came first
    alarm.sleep_until(time.time() - 1)     # the ring was used up; past deadline returns


class Rings:
    """An alarm that records the due times it is rung for."""

    def __init__(self):
        self.alarm = Alarm()
        self.due_times = []
        ring = self.alarm.ring
        self.alarm.ring = lambda due_at=None: (self.due_times.append(due_at), ring(due_at))


def test_an_enqueue_on_one_host_wakes_the_listener_of_another(engine, database):
    host_a, host_b = Database(engine=engine), Inbox(Database(engine=engine))
    host_a.migrate()
    rings = Rings()
    listener = Listener(host_a.listening_connection, rings.alarm)
    listener.start()
    try:
        if database.startswith("sqlite"):
            # no channel between processes: the worker polls instead
            assert host_a.listening_connection() is None
            listener._thread.join(PATIENCE)
            assert not listener.listening
            return
        wait_for(lambda: listener.listening, "the listener listens")
        host_b.enqueue([target(1, part="readme")], debounce=2, max_delay=30, at=1000.0)
        host_b.enqueue([target(2)], debounce=2, max_delay=30, at=2000.0,
                       due_now={target(2).uri})
        wait_for(lambda: 2000.0 in rings.due_times, "the due-now entry was announced")
        assert 1002.0 in rings.due_times  # the debounced one too, for its due time
    finally:
        listener.stop()
