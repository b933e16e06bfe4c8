"""The inbox's queue operations on a real SQLite file, no other server."""
import threading
from collections import namedtuple

import pytest
import sqlalchemy as sa

from dserver_notification_plugin import inbox

Target = namedtuple("Target", "uri base_uri uuid")


def target(n):
    uuid = f"{n:08d}-0000-4000-8000-000000000000"
    return Target(f"s3://b/{uuid}", "s3://b", uuid)


@pytest.fixture
def engine(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'inbox.db'}")
    inbox.ensure_schema(engine)
    return engine


def rows(engine):
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(inbox.inbox)).mappings()]


def enqueue(engine, targets, now, debounce=2, max_delay=30):
    with engine.begin() as conn:
        return inbox.enqueue(conn, targets, now, debounce, max_delay)


def claim(engine, now, **kwargs):
    with engine.begin() as conn:
        return inbox.claim(conn, now, claim_timeout=60, **kwargs)


def test_events_of_a_dataset_fold_and_push_the_due_time_back(engine):
    enqueue(engine, [target(1), target(1)], now=100)
    enqueue(engine, [target(1)], now=101)
    [row] = rows(engine)
    assert (row["state"], row["events"], row["due_at"]) == ("pending", 3, 103)
    assert claim(engine, now=102.9) == []
    assert [e["dataset_uri"] for e in claim(engine, now=103)] == [target(1).uri]


def test_a_never_ending_stream_is_still_due_after_max_delay(engine):
    for second in range(0, 60):
        enqueue(engine, [target(1)], now=1000 + second, debounce=2, max_delay=30)
    [row] = rows(engine)
    assert row["due_at"] == 1030
    assert len(claim(engine, now=1030)) == 1


def test_events_during_processing_send_the_entry_back_to_pending(engine):
    enqueue(engine, [target(1)], now=0)
    [entry] = claim(engine, now=5)
    enqueue(engine, [target(1)], now=6)           # arrives while we sync
    with engine.begin() as conn:
        inbox.finish(conn, entry, "registered", now=7)
    [row] = rows(engine)
    assert row["state"] == "pending"
    assert len(claim(engine, now=row["due_at"])) == 1


def test_finished_entry_is_done_and_revived_by_a_new_event(engine):
    enqueue(engine, [target(1)], now=0)
    [entry] = claim(engine, now=5)
    with engine.begin() as conn:
        inbox.finish(conn, entry, "registered", now=6, fingerprint="f")
    assert rows(engine)[0]["state"] == "done"
    enqueue(engine, [target(1)], now=50)
    row = rows(engine)[0]
    assert (row["state"], row["events"], row["fingerprint"]) == ("pending", 1, "f")


def test_failures_back_off_then_die_and_can_be_retried(engine):
    enqueue(engine, [target(1)], now=0)
    for attempt in range(1, 4):
        [entry] = claim(engine, now=10 * attempt, ignore_due=True)
        assert entry["attempts"] == attempt
        with engine.begin() as conn:
            state = inbox.fail(conn, entry, "S3 down", now=10 * attempt,
                               retry_at=10 * attempt + 5, max_attempts=3)
        # a drain does not spin on a failing entry: backoff is respected
        assert claim(engine, now=10 * attempt + 1, ignore_due=True) == []
    assert state == "dead"
    with engine.begin() as conn:
        assert inbox.dead_entries(conn)[0]["last_error"] == "S3 down"
        assert inbox.retry(conn, now=100) == 1
    row = rows(engine)[0]
    assert (row["state"], row["attempts"]) == ("pending", 0)


def test_a_vanished_claim_is_reclaimed_after_the_timeout(engine):
    enqueue(engine, [target(1)], now=0)
    assert len(claim(engine, now=5, owner="gone:1")) == 1
    with engine.begin() as conn:
        assert inbox.claim(conn, now=30, claim_timeout=60) == []
        [entry] = inbox.claim(conn, now=70, claim_timeout=60, owner="alive:2")
    assert entry["claimed_by"] == "alive:2"


def test_every_entry_is_claimed_by_exactly_one_of_several_claimers(engine):
    enqueue(engine, [target(n) for n in range(60)], now=0, debounce=0)
    claimed, errors = [], []

    def claimer(name):
        try:
            while True:
                with engine.begin() as conn:
                    got = inbox.claim(conn, now=1, claim_timeout=60, limit=5, owner=name)
                if not got:
                    return
                claimed.extend((name, e["id"]) for e in got)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"p{i}",)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    ids = [entry_id for _, entry_id in claimed]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 60
