"""The lease and the reconciler's ledger on a real SQLite file; pure pass logic.

Two :class:`Lease` objects with different holders stand for two processes
(or hosts) sharing the database; time is passed explicitly.
"""
import threading
import time

import pytest
import sqlalchemy as sa

from dserver_notification_plugin.datasetindex import IndexView
from dserver_notification_plugin.db import Database, Lease, Ledger
from dserver_notification_plugin.keys import DatasetTarget
from dserver_notification_plugin.listing import Listed, Pacer, signature
from dserver_notification_plugin.reconcile import judge
from dserver_notification_plugin.states import Drift, Outcome

pytestmark = [pytest.mark.integration, pytest.mark.both_databases]

URI = "s3://b/00000000-0000-4000-8000-000000000001"


@pytest.fixture
def db(tmp_path):
    return Database(engine=sa.create_engine(f"sqlite:///{tmp_path / 'shared.db'}"))


def lease(db, holder, duration=10):
    return Lease(db, "reconciler", duration, holder=holder)


# --- lease ----------------------------------------------------------------------

def test_one_holder_at_a_time_until_the_lease_expires(db):
    a, b = lease(db, "host-a:1"), lease(db, "host-b:2")
    assert a.acquire(at=100) and not b.acquire(at=101)
    assert a.acquire(at=105)  # renewing: now valid until 115
    assert not b.acquire(at=114)
    assert b.acquire(at=116)  # a died: it expired and b took over
    assert not a.renew(at=117) and not a.acquire(at=117)
    info = b.current()
    assert (info.holder, info.acquired_at, info.expires_at) == ("host-b:2", 116, 126)


def test_release_lets_another_take_over_at_once(db):
    a, b = lease(db, "a"), lease(db, "b")
    assert a.acquire(at=100)
    a.release(at=101)
    assert not b.current().active(at=101)
    assert b.acquire(at=101)


def test_many_processes_racing_for_a_free_lease_get_one_holder(tmp_path):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    Database(engine=sa.create_engine(url)).migrate()  # create the tables
    won, barrier = [], threading.Barrier(6)

    def contender(n):
        candidate = lease(Database(engine=sa.create_engine(url)), f"p{n}")
        barrier.wait()
        for _ in range(20):
            try:
                if candidate.acquire(at=100):
                    won.append(n)
                return
            except sa.exc.OperationalError:  # "database is locked": ask again
                time.sleep(0.05)
    threads = [threading.Thread(target=contender, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1


def test_holder_names_name_the_process_and_never_repeat(db):
    import os
    a, b = Lease(db, "x", 10), Lease(db, "x", 10)
    assert f":{os.getpid()}:" in a.holder and a.holder != b.holder
    assert a.holder == a.holder  # stable within the process


# --- ledger -----------------------------------------------------------------------

@pytest.fixture
def ledger(db):
    ledger = Ledger(db)
    ledger.remember_prefix(DatasetTarget("s3://b", URI, URI[-36:], "reconcile"), "u/me/", '"e1"')
    return ledger


def test_the_signature_is_what_the_last_sync_read_never_what_a_pass_listed(ledger):
    ledger.expect({URI: "listed"}, at=100)
    ledger.settle(URI, Outcome.REGISTERED, "read-1")
    known = ledger.known([URI])[URI]
    assert (known.signature, known.prefix, known.registration_etag) == ("read-1", "u/me/", '"e1"')
    ledger.settle(URI, Outcome.UNCHANGED, "read-2")
    assert ledger.known([URI])[URI].signature == "read-2"
    ledger.settle(URI, Outcome.REGISTERED, None)  # it could not tell: the next pass checks
    assert ledger.known([URI])[URI].signature is None


def test_a_proto_or_failed_sync_records_nothing_and_a_deletion_forgets(ledger):
    ledger.settle(URI, Outcome.REGISTERED, "read-1")
    ledger.settle(URI, Outcome.PROTO, None)
    assert ledger.known([URI])[URI].signature == "read-1"
    ledger.settle(URI, Outcome.DELETED)
    assert ledger.known([URI]) == {}


def test_the_cursor_keeps_a_pass_and_its_figures(ledger):
    state = ledger.start_pass("reconciler", "h", at=50)
    assert (state.finished_at, state.after_uuid, state.counted.checked) == (None, None, 0)
    ledger.advance("reconciler", "s3://b", "uuid-1", {"checked": 50, "missing": 2,
                                                      "s3_requests": 151}, "h")
    ledger.advance("reconciler", "s3://b", "uuid-2", {"checked": 10, "extra": 1}, "h")
    state = ledger.pass_state("reconciler")
    assert state.figures() == {"checked": 60, "missing": 2, "extra": 1, "changed": 0,
                               "s3_requests": 151}
    assert (state.base_uri, state.after_uuid) == ("s3://b", "uuid-2")
    ledger.finish_pass("reconciler", at=70)
    state = ledger.pass_state("reconciler")
    assert (state.finished_at, state.after_uuid, state.counted.checked) == (70, None, 60)
    assert ledger.start_pass("reconciler", "h", at=80).counted.checked == 0


# --- what a listing means ----------------------------------------------------------

def listed(*names, etag='"x"'):
    return Listed(tuple((name, etag, 1, "2026-01-01") for name in names))


FROZEN = listed("dtool", "README.yml", "manifest.json", "tags/red")


def test_judging_a_dataset_from_its_listing():
    sig = FROZEN.signature
    assert judge(FROZEN, indexed=True, disagrees=False, recorded=sig) is None
    assert judge(FROZEN, True, False, "other")[0] is Drift.CHANGED
    assert judge(FROZEN, True, False, None) == (Drift.CHANGED, "never verified")
    assert judge(FROZEN, True, True, sig)[0] is Drift.CHANGED
    assert judge(FROZEN, False, False, sig)[0] is Drift.MISSING
    assert judge(listed("README.yml"), True, False, sig)[0] is Drift.EXTRA
    assert judge(listed("README.yml"), False, False, None) is None
    proto = listed("dtool", "README.yml")
    assert judge(proto, False, False, None) is None


def test_the_signature_follows_every_signed_object_and_not_their_order():
    objects = list(FROZEN.objects)
    assert signature(objects) == signature(reversed(objects))
    assert listed("dtool", "README.yml", "manifest.json", "tags/red", etag='"y"').signature \
        != FROZEN.signature
    assert listed("dtool", "README.yml", "manifest.json").signature != FROZEN.signature


def test_indexed_uuids_between_two_registrations():
    index = IndexView({"s3://b/a", "s3://b/c"}, {"s3://b/e"})
    assert index.uuids_between(None, "b") == ["a"]
    assert index.uuids_between("a", "e") == ["c", "e"]
    assert index.uuids_between("c", None) == ["e"]
    assert index.holds("s3://b/e") and index.disagrees("s3://b/e")
    assert not index.disagrees("s3://b/zz")


def test_the_pacer_spends_at_most_max_rps_requests_per_second():
    pacer = Pacer(5)
    started = time.monotonic()
    for _ in range(11):  # a burst of 5, then 5 more per second
        pacer.wait()
    assert pacer.spent == 11
    assert time.monotonic() - started >= 1.9
