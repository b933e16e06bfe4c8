"""The inbox's queue operations on SQLite and PostgreSQL, no other server."""
import threading

import pytest

from dserver_notification_plugin.db import (
    Claim, Counters, Database, Documents, Inbox, WaitingCapReached,
)
from dserver_notification_plugin.keys import DatasetTarget
from dserver_notification_plugin.states import Outcome, State

pytestmark = [pytest.mark.integration, pytest.mark.both_databases]


def target(n, part="readme"):
    uuid = f"{n:08d}-0000-4000-8000-000000000000"
    return DatasetTarget("s3://b", f"s3://b/{uuid}", uuid, part)


@pytest.fixture
def inbox(engine):
    return Inbox(Database(engine=engine))


def enqueue(inbox, targets, at, debounce=2, max_delay=30, due_now=()):
    return inbox.enqueue(targets, debounce, max_delay, at=at, due_now=due_now)


def claim(inbox, at, **kwargs):
    return inbox.claim(claim_timeout=60, at=at, **kwargs)


def test_events_of_a_dataset_fold_and_push_the_due_time_back(inbox):
    assert enqueue(inbox, [target(1), target(1)], at=100) == 2
    enqueue(inbox, [target(1)], at=101)
    [row] = inbox.entries()
    assert (row.state, row.events, row.due_at) == (State.PENDING, 3, 103)
    assert claim(inbox, at=102.9) == []
    [claimed] = claim(inbox, at=103)
    assert isinstance(claimed, Claim) and claimed.dataset_uri == target(1).uri


def test_an_entry_due_now_is_claimable_at_once_and_stays_due(inbox):
    enqueue(inbox, [target(1)], at=100)
    enqueue(inbox, [target(1)], at=100.5, due_now={target(1).uri})
    [row] = inbox.entries()
    assert row.due_at == 100.5
    enqueue(inbox, [target(1)], at=100.6)       # later events do not delay it
    assert inbox.entries()[0].due_at == 100.5
    [claimed] = claim(inbox, at=100.7)
    enqueue(inbox, [target(1)], at=101)         # while it syncs: debounced again
    assert inbox.finish(claimed, Outcome.PROTO, at=101.1)
    [row] = inbox.entries()
    assert (row.state, row.due_at) == (State.PENDING, 103)


def test_an_urgent_entry_stays_due_whatever_the_order_of_concurrent_enqueues(inbox):
    """Processes (and hosts) stamp events with their own clock and commit in
    any order: a README event stamped before the dtool event but committed
    after it must not debounce the entry again."""
    enqueue(inbox, [target(1)], at=100)
    enqueue(inbox, [target(1, "admin")], at=100.5, due_now={target(1).uri})
    enqueue(inbox, [target(1)], at=100.4)       # stamped earlier, committed later
    enqueue(inbox, [target(1)], at=101.5)       # and a later one
    assert inbox.entries()[0].due_at == 100.5
    [claimed] = claim(inbox, at=100.6)
    enqueue(inbox, [target(1, "admin")], at=101, due_now={target(1).uri})  # while it syncs
    enqueue(inbox, [target(1)], at=100.9)
    assert inbox.finish(claimed, Outcome.REGISTERED, at=101.2)
    [row] = inbox.entries()
    assert row.state is State.PENDING and row.due_at <= 101
    [again] = claim(inbox, at=101.2)            # the claim clears the mark ...
    assert inbox.finish(again, Outcome.COVERED, at=101.3)
    enqueue(inbox, [target(1)], at=102)         # ... so later events debounce it again
    assert inbox.entries()[0].due_at == 104


def test_a_failing_entry_keeps_its_backoff_even_when_due_now(inbox):
    enqueue(inbox, [target(1)], at=0, due_now={target(1).uri})
    [entry] = claim(inbox, at=0)
    inbox.fail(entry, "S3 down", retry_at=60, max_attempts=8, at=1)
    enqueue(inbox, [target(1)], at=2, due_now={target(1).uri})
    assert inbox.entries()[0].due_at == 60
    assert claim(inbox, at=59) == []


def test_the_next_due_time_covers_waiting_entries_and_expiring_claims(inbox):
    assert inbox.next_due_at(claim_timeout=60) is None
    enqueue(inbox, [target(1)], at=10)
    enqueue(inbox, [target(2)], at=20)
    assert inbox.next_due_at(claim_timeout=60) == 12
    claim(inbox, at=12, limit=1)                # claim expires at 72
    assert inbox.next_due_at(claim_timeout=60) == 22
    claim(inbox, at=22, limit=1)
    assert inbox.next_due_at(claim_timeout=60) == 72


def test_anything_claimable_skips_the_debounce_only_when_asked_never_the_backoff(inbox):
    """What a drain thread asks after a claim that took nothing."""
    assert not inbox.any_claimable(claim_timeout=60, at=10)
    enqueue(inbox, [target(1)], at=10)          # due at 12
    assert not inbox.any_claimable(claim_timeout=60, at=11)
    assert inbox.any_claimable(claim_timeout=60, ignore_due=True, at=11)
    [taken] = claim(inbox, at=12)
    assert not inbox.any_claimable(claim_timeout=60, ignore_due=True, at=12)  # held
    inbox.fail(taken, "S3 away", retry_at=20, max_attempts=5, at=13)
    assert not inbox.any_claimable(claim_timeout=60, ignore_due=True, at=14)  # backing off
    assert inbox.any_claimable(claim_timeout=60, at=20)


def test_enqueue_rings_the_alarm_for_the_earliest_due_time(inbox):
    rung = []
    inbox.alarm.ring = rung.append
    enqueue(inbox, [target(1), target(2)], at=10)
    enqueue(inbox, [target(3)], at=11, due_now={target(3).uri})
    assert rung == [12, 11]


def test_a_never_ending_stream_is_still_due_after_max_delay(inbox):
    for second in range(0, 60):
        enqueue(inbox, [target(1)], at=1000 + second, debounce=2, max_delay=30)
    [row] = inbox.entries()
    assert row.due_at == 1030
    assert len(claim(inbox, at=1030)) == 1


def test_events_during_processing_send_the_entry_back_to_pending(inbox):
    enqueue(inbox, [target(1)], at=0)
    [entry] = claim(inbox, at=5)
    enqueue(inbox, [target(1)], at=6)           # arrives while we sync
    assert inbox.finish(entry, Outcome.REGISTERED, at=7)
    [row] = inbox.entries()
    assert row.state is State.PENDING
    assert len(claim(inbox, at=row.due_at)) == 1


def test_finished_entry_is_done_and_revived_by_a_new_event(inbox):
    enqueue(inbox, [target(1)], at=0)
    [entry] = claim(inbox, at=5)
    assert inbox.finish(entry, Outcome.REGISTERED, fingerprint="f", at=6)
    [row] = inbox.entries()
    assert (row.state, row.last_outcome) == (State.DONE, "registered")
    enqueue(inbox, [target(1)], at=50)
    [row] = inbox.entries()
    assert (row.state, row.events, row.fingerprint) == (State.PENDING, 1, "f")


def test_failures_back_off_then_die_and_can_be_requeued(inbox):
    enqueue(inbox, [target(1)], at=0)
    for attempt in range(1, 4):
        [entry] = claim(inbox, at=10 * attempt, ignore_due=True)
        assert entry.attempts == attempt
        state = inbox.fail(entry, "S3 down", retry_at=10 * attempt + 5, max_attempts=3,
                           at=10 * attempt)
        # a drain does not spin on a failing entry: backoff is respected
        assert claim(inbox, at=10 * attempt + 1, ignore_due=True) == []
    assert state is State.DEAD
    assert inbox.dead_entries()[0].last_error == "S3 down"
    assert inbox.requeue_dead(at=100) == 1
    [row] = inbox.entries()
    assert (row.state, row.attempts) == (State.PENDING, 0)


def test_giving_up_kills_at_once(inbox):
    enqueue(inbox, [target(1)], at=0)
    [entry] = claim(inbox, at=5)
    assert inbox.fail(entry, "base URI unknown", retry_at=5, max_attempts=8,
                      give_up=True) is State.DEAD
    assert [e.dataset_uri for e in inbox.dead_entries()] == [target(1).uri]


def test_a_vanished_claim_is_reclaimed_after_the_timeout(inbox):
    enqueue(inbox, [target(1)], at=0)
    assert len(claim(inbox, at=5, owner="gone:1")) == 1
    assert claim(inbox, at=30) == []
    [entry] = claim(inbox, at=70, owner="alive:2")
    assert entry.claimed_by == "alive:2"


def test_a_lost_claim_is_noticed_and_changes_nothing(inbox):
    enqueue(inbox, [target(1)], at=0)
    [lost] = claim(inbox, at=5, owner="slow:1")
    [taken] = claim(inbox, at=70, owner="other:2")   # the slow claim expired
    assert inbox.finish(lost, Outcome.REGISTERED, fingerprint="stale", at=80) is False
    assert inbox.fail(lost, "late error", retry_at=90, max_attempts=8, at=80) is None
    [row] = inbox.entries()
    assert (row.state, row.claimed_by, row.fingerprint) == (State.PROCESSING, "other:2", None)
    assert inbox.finish(taken, Outcome.DELETED, at=81) is True
    assert inbox.entries()[0].state is State.DONE


def test_every_entry_is_claimed_by_exactly_one_of_several_claimers(inbox):
    enqueue(inbox, [target(n) for n in range(60)], at=0, debounce=0)
    claimed, errors = [], []

    def claimer(name):
        try:
            while True:
                got = inbox.claim(claim_timeout=60, limit=5, owner=name, at=1)
                if not got:
                    return
                claimed.extend((name, e.id) for e in got)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"p{i}",)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    ids = [entry_id for _, entry_id in claimed]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 60


def test_counters_add_up_and_documents_are_remembered(inbox):
    counters, documents = Counters(inbox.db), Documents(inbox.db)
    counters.add({"received": 3, "accepted": 0})
    counters.add({"received": 2, "ignored": 1})
    assert counters.totals() == {"received": 5, "ignored": 1}
    documents.remember("doc1", "b", "k1")
    documents.remember("doc1", "b", "k2")  # not re-pointed (issue 23)
    assert documents.recall("doc1") == ("b", "k1")
    documents.forget("doc1")
    assert documents.recall("doc1") is None


def test_state_counts_and_oldest_waiting_age(inbox):
    enqueue(inbox, [target(1), target(2)], at=10)
    [entry] = claim(inbox, at=12, limit=1)
    inbox.finish(entry, Outcome.UNCHANGED, at=13)
    counts = inbox.state_counts()
    assert (counts[State.DONE], counts[State.PENDING], counts[State.DEAD]) == (1, 1, 0)
    assert inbox.oldest_waiting_age(at=20) == 10


def test_the_cap_admits_new_datasets_only_while_there_is_room(inbox):
    assert inbox.enqueue([target(1), target(2)], 0, 0, at=0, max_waiting=3) == 2
    with pytest.raises(WaitingCapReached) as full:
        inbox.enqueue([target(1), target(3), target(4), target(4)], 0, 0, at=1, max_waiting=3)
    assert full.value.refused == [target(4).uri] and full.value.written == 2
    assert {e.uuid: e.events for e in inbox.entries()} == \
        {target(1).uuid: 2, target(2).uuid: 1, target(3).uuid: 1}
    with pytest.raises(WaitingCapReached):
        inbox.enqueue([target(5)], 0, 0, at=2, max_waiting=3)
    # done rows do not count as waiting
    for claimed in claim(inbox, at=3):
        inbox.finish(claimed, Outcome.REGISTERED)
    assert inbox.enqueue([target(5), target(6)], 0, 0, at=4, max_waiting=3) == 2
    assert inbox.enqueue([target(7)], 0, 0, at=5) == 1  # no cap: resync, for instance


def test_the_cap_holds_when_many_requests_arrive_at_once(inbox):
    """Issue 23: each request used to count, see room, and insert."""
    threads, per_thread, cap = 8, 12, 20
    start = threading.Barrier(threads)
    outcomes = []

    def sender(number):
        start.wait()
        for n in range(per_thread):
            try:
                inbox.enqueue([target(number * 100 + n)], 0, 0, at=n, max_waiting=cap)
                outcomes.append("taken")
            except WaitingCapReached:
                outcomes.append("refused")

    workers = [threading.Thread(target=sender, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(outcomes) == threads * per_thread  # no thread died of a database error
    assert inbox.state_counts()[State.PENDING] == cap == outcomes.count("taken")


def test_purges_delete_only_old_done_rows_or_dead_ones(inbox):
    enqueue(inbox, [target(n) for n in range(4)], at=0, debounce=0)
    claims = {c.uuid: c for c in claim(inbox, at=1)}
    inbox.finish(claims[target(0).uuid], Outcome.REGISTERED, at=10)
    inbox.finish(claims[target(1).uuid], Outcome.REGISTERED, at=100)
    inbox.fail(claims[target(2).uuid], "boom", retry_at=0, max_attempts=1, at=10)
    assert inbox.purge_done(older_than=50, at=101) == 1
    assert sorted(e.state.value for e in inbox.entries()) == ["dead", "done", "processing"]
    dead = [e.id for e in inbox.entries() if e.state is State.DEAD]
    assert inbox.purge_dead([9999]) == 0
    assert inbox.purge_dead(dead) == 1
    assert inbox.purge_dead() == 0


def test_a_document_id_keeps_the_object_it_first_named(inbox):
    documents = Documents(inbox.db)
    assert documents.remember("d1", "b", "k1", at=0) == ("b", "k1")
    assert documents.remember("d1", "b", "decoy", at=1) == ("b", "k1")
    assert documents.recall("d1", at=2) == ("b", "k1")


def test_remembered_document_ids_are_bounded_in_age_and_number(inbox):
    documents = Documents(inbox.db)
    documents.max_age, documents.most = 100, 3
    documents.remember("old", "b", "k0", at=0)
    assert documents.recall("old", at=100) == ("b", "k0")
    assert documents.recall("old", at=101) is None  # too old, even before a purge
    documents.remember("old", "b", "k0", at=150)  # named again: young again
    for n in range(1, 4):
        documents.remember(f"d{n}", "b", f"k{n}", at=150 + n)
    assert [documents.recall(d, at=160) for d in ("old", "d1", "d2", "d3")] == [
        None, ("b", "k1"), ("b", "k2"), ("b", "k3")]  # the oldest made room
    documents.remember("d4", "b", "k4", at=300)  # the others have aged out
    assert [documents.recall(d, at=300) for d in ("d1", "d2", "d3", "d4")] == [
        None, None, None, ("b", "k4")]
