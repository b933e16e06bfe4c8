"""Processes known to be alive: heartbeats, and the work of a silent one moving on.

Real SQL on SQLite and PostgreSQL; times are given explicitly (``at=``), so
nothing here waits for a clock.
"""
import sqlalchemy as sa

from dserver_notification_plugin.db import Database, Inbox, Lease
from dserver_notification_plugin.db.processes import MISSED_BEATS, Processes, process_identity
from dserver_notification_plugin.keys import DatasetTarget
from dserver_notification_plugin.states import State

BEAT = 2.0
TIMEOUT = 300.0


def store_on(engine):
    """The inbox, on a database that knows how long an owner stays alive."""
    db = Database(engine=engine)
    db.alive_within = BEAT * MISSED_BEATS
    return Inbox(db)


def enqueue(store, *uuids, at=0.0):
    store.enqueue([DatasetTarget("s3://b", f"s3://b/{u}", u, "readme") for u in uuids],
                  debounce=0, max_delay=0, at=at)


def as_process(engine, name, at):
    """A registry whose rows stand for another process called ``name``."""
    registry = Processes(store_on(engine).db, BEAT, role=name)
    with registry.db.transaction() as conn:
        conn.execute(sa.text("INSERT INTO notification_processes (id, role, started_at, "
                             "heartbeat_at) VALUES (:id, :role, :at, :at)"),
                     {"id": name, "role": name, "at": at})
    return registry


def beat_as(store, name, at):
    with store.db.transaction() as conn:
        conn.execute(sa.text("UPDATE notification_processes SET heartbeat_at = :at "
                             "WHERE id = :id"), {"id": name, "at": at})


def test_a_live_owner_keeps_its_claim_however_long_its_sync_takes(engine):
    store = store_on(engine)
    enqueue(store, "a")
    as_process(engine, "slow-host:1:aa", at=10.0)
    [claim] = store.claim(TIMEOUT, owner="slow-host:1:aa", at=10.0)
    later = 10.0 + 10 * TIMEOUT  # far past the claim timeout, and it keeps beating
    beat_as(store, "slow-host:1:aa", later)
    assert store.claim(TIMEOUT, owner="other:2:bb", at=later) == []
    assert Processes(store.db, BEAT).reap(at=later) == []
    assert store.finish(claim, "registered", at=later)


def test_a_silent_owner_loses_its_claims_and_lease_within_a_few_beats(engine):
    store = store_on(engine)
    enqueue(store, "a", "b")
    as_process(engine, "killed:1:aa", at=10.0)
    taken = store.claim(TIMEOUT, owner="killed:1:aa", at=10.0)
    assert len(taken) == 2
    lease = Lease(store.db, "reconciler", 3600, holder="killed:1:aa")
    assert lease.acquire(at=10.0)
    survivor = Processes(store.db, BEAT)
    survivor.join(at=10.0)

    assert survivor.reap(at=10.0 + BEAT * MISSED_BEATS - 0.1) == []  # not yet silent enough
    assert survivor.reap(at=10.0 + BEAT * MISSED_BEATS + 0.1) == ["killed:1:aa"]

    at = 10.0 + BEAT * MISSED_BEATS + 0.2
    entries = store.entries()
    assert {(e.state, e.claimed_by) for e in entries} == {(State.PENDING, None)}
    assert len(store.claim(TIMEOUT, owner=process_identity(), at=at)) == 2
    assert not lease.current().active(at)
    assert Lease(store.db, "reconciler", 3600, holder=process_identity()).acquire(at=at)
    assert [p.id for p in survivor.known(at=at)] == [process_identity()]


def test_leaving_releases_at_once_and_status_shows_who_holds_what(engine):
    store = store_on(engine)
    enqueue(store, "a", "b")
    me = Processes(store.db, BEAT, role="dserver")
    me.join(at=10.0)
    [first, second] = store.claim(TIMEOUT, owner=process_identity(), at=10.0)
    lease = Lease(store.db, "reconciler", 3600)
    assert lease.acquire(at=10.0)
    [known] = me.known(at=11.0)
    assert (known.id, known.role, known.claims, known.leases, known.alive) == \
        (process_identity(), "dserver", 2, ("reconciler",), True)
    assert store.finish(first, "registered", at=11.0)

    me.leave(at=12.0)

    [entry] = [e for e in store.entries() if e.dataset_uri == second.dataset_uri]
    assert (entry.state, entry.claimed_by, entry.due_at) == (State.PENDING, None, 12.0)
    assert not lease.current().active(12.0)
    assert me.known(at=12.0) == []
    assert Lease(store.db, "reconciler", 3600, holder="next:3:cc").acquire(at=12.0)


def test_an_owner_that_never_joined_keeps_the_claim_timeout_as_last_resort(engine):
    store = store_on(engine)
    enqueue(store, "a")
    [claim] = store.claim(TIMEOUT, owner="old-version:1", at=10.0)
    assert store.claim(TIMEOUT, owner="other:2:bb", at=10.0 + TIMEOUT - 1) == []
    [taken] = store.claim(TIMEOUT, owner="other:2:bb", at=10.0 + TIMEOUT + 1)
    assert taken.dataset_uri == claim.dataset_uri
