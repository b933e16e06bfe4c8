"""Waking the worker: the in-process alarm, and LISTEN/NOTIFY between hosts."""
import threading
import time

import pytest

from devstack.ports import wait_until
from dserver_notification_plugin.db import Database, Inbox
from dserver_notification_plugin.keys import DatasetTarget
from dserver_notification_plugin.wakeup import Alarm, Listener

pytestmark = [pytest.mark.integration, pytest.mark.both_databases]

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
    """An alarm that records the due times it is rung or armed for."""

    def __init__(self):
        self.alarm = Alarm()
        self.due_times = []
        ring, arm = self.alarm.ring, self.alarm.arm
        self.alarm.ring = lambda due_at=None: (self.due_times.append(due_at), ring(due_at))
        self.alarm.arm = lambda at: (self.due_times.append(at), arm(at))


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


def test_wake_all_ends_every_sleep_and_a_ring_wakes_one_sleeper():
    """The worker's threads share one alarm: a ring is one thread's
    deadline, and a stop (wake_all) ends every thread's sleep."""
    alarm = Alarm()
    sleepers = [threading.Thread(target=alarm.sleep_until, args=(time.time() + 3600,))
                for _ in range(3)]
    for sleeper in sleepers:
        sleeper.start()
    wait_for(lambda: len(alarm._condition._waiters) == 3, "three threads asleep")
    alarm.ring()
    wait_for(lambda: sum(not s.is_alive() for s in sleepers) == 1, "one sleeper woken")
    time.sleep(0.2)
    assert sum(not s.is_alive() for s in sleepers) == 1  # the others sleep on
    alarm.wake_all()
    for sleeper in sleepers:
        sleeper.join(PATIENCE)
    assert not any(s.is_alive() for s in sleepers)


def test_arm_rings_only_when_no_sleeper_wakes_by_then():
    alarm = Alarm()
    alarm.ring(time.time() + 0.3)
    sleeper = threading.Thread(target=alarm.sleep_until, args=(time.time() + 3600,))
    sleeper.start()
    wait_for(lambda: alarm._taken, "the sleeper took the rung time")
    alarm.arm(time.time() + 60)  # the sleeper wakes sooner: nothing to ring
    assert alarm._earliest is None
    alarm.arm(time.time() + 0.1)  # sooner than that: rung
    assert alarm._earliest is not None
    sleeper.join(PATIENCE)
    assert not sleeper.is_alive()


def test_an_entry_due_now_is_left_to_a_sleeping_thread_of_the_enqueuing_process(
        engine, database):
    """Waking a thread of every other process for an entry a thread of this
    one takes within milliseconds only makes them look in vain; with no
    thread of its own asleep, the enqueue tells the others (PostgreSQL)."""
    host_a, host_b = Database(engine=engine), Inbox(Database(engine=engine))
    host_a.migrate()
    rings = Rings()
    listener = Listener(host_a.listening_connection, rings.alarm)
    listener.start()
    sleeper = threading.Thread(target=host_b.alarm.sleep_until, args=(time.time() + 3600,))
    sleeper.start()
    try:
        wait_for(lambda: host_b.alarm._sleeping == 1, "a sync thread of host b asleep")
        notifies = not database.startswith("sqlite")
        if notifies:
            wait_for(lambda: listener.listening, "the listener listens")
        host_b.enqueue([target(3)], debounce=2, max_delay=30, at=3000.0,
                       due_now={target(3).uri})
        sleeper.join(PATIENCE)
        assert not sleeper.is_alive()  # its own thread was woken for it
        host_b.enqueue([target(4)], debounce=2, max_delay=30, at=4000.0,
                       due_now={target(4).uri})  # nobody of host b asleep now
        if notifies:  # notifications arrive in order: the first would be in by now
            wait_for(lambda: 4000.0 in rings.due_times, "the second entry announced")
            assert 3000.0 not in rings.due_times
    finally:
        host_b.alarm.wake_all()
        listener.stop()


def test_a_sleeping_thread_is_promised_to_one_enqueue_at_a_time():
    alarm = Alarm()
    assert not alarm.promise_wake()  # nobody asleep
    sleeper = threading.Thread(target=alarm.sleep_until, args=(time.time() + 3600,))
    sleeper.start()
    wait_for(lambda: alarm._sleeping == 1, "one thread asleep")
    assert alarm.promise_wake()
    assert not alarm.promise_wake()  # that one is counted on already
    alarm.ring()
    sleeper.join(PATIENCE)
    assert (alarm._sleeping, alarm._promised) == (0, 0)


def test_a_stop_flagged_before_the_sleep_began_ends_it_at_once():
    """A stop sets its flag, then wakes every sleeper; a thread that was
    between its last look and its sleep then must not sleep on."""
    alarm, stopped = Alarm(), threading.Event()
    stopped.set()
    alarm.wake_all()  # before the sleep: it cannot end this one
    sleeper = threading.Thread(target=alarm.sleep_until,
                               args=(time.time() + 3600,), kwargs={"cancelled": stopped.is_set})
    sleeper.start()
    sleeper.join(PATIENCE)
    assert not sleeper.is_alive()
