"""Issue 25: an edit of an indexed dataset is due at once; a copy keeps its debounce.

The rule is SQL in the inbox's upsert (db/due.py), so it runs on SQLite
and PostgreSQL. ``edits`` is what the intake passes for a batch of only
README, tag and annotation events (test_intake_edits checks that part).
"""
import pytest

from dserver_notification_plugin.coverage import Seen, kind_mark
from dserver_notification_plugin.db import Database, Inbox, Ledger
from dserver_notification_plugin.keys import DatasetTarget
from dserver_notification_plugin.states import DatasetKind, Outcome, State

pytestmark = [pytest.mark.integration, pytest.mark.both_databases]

DEBOUNCE, MAX_DELAY, EDIT_DELAY = 2.0, 30.0, 0.1
UUID = "00000001-0000-4000-8000-000000000000"
URI = f"s3://b/{UUID}"


def event(part, key=None):
    return DatasetTarget("s3://b", URI, UUID, part, key=key or f"{UUID}/{part}")


README, TAG, ANNOTATION = event("readme", f"{UUID}/README.yml"), \
    event("tags", f"{UUID}/tags/t"), event("annotations", f"{UUID}/annotations/a.json")
ADMIN, REGISTRATION = event("admin", f"{UUID}/dtool"), event("registration", f"dtool-{UUID}")
MANIFEST = event("manifest", f"{UUID}/manifest.json")
EDIT_PARTS = {"readme", "tags", "annotations"}


@pytest.fixture
def inbox(engine):
    return Inbox(Database(engine=engine))


def notify(inbox, targets, at):
    """As the intake does: ``dtool`` due now; a batch of edit parts only is an edit."""
    edits = {URI} if all(t.part in EDIT_PARTS for t in targets) else set()
    due_now = {URI} if any(t.part == "admin" for t in targets) else set()
    inbox.enqueue(targets, DEBOUNCE, MAX_DELAY, at=at, due_now=due_now, edits=edits,
                  edit_delay=EDIT_DELAY)
    [row] = inbox.entries()
    return row


def sync(inbox, at, outcome, kind):
    """Claim the entry (as a worker would, honouring its due time) and finish it."""
    [claimed] = inbox.claim(claim_timeout=60, at=at)
    assert inbox.finish(claimed, outcome, seen=Seen(kind), at=at + 0.1)
    return claimed


def indexed(inbox, at=100.0):
    """A dataset copied and registered: its entry is done, its last sync found it frozen."""
    notify(inbox, [REGISTRATION], at)
    notify(inbox, [ADMIN], at + 1)
    sync(inbox, at + 1, Outcome.REGISTERED, DatasetKind.FROZEN)
    assert inbox.entries()[0].state is State.DONE


@pytest.mark.parametrize("edit", [README, TAG, ANNOTATION], ids=lambda t: t.part)
def test_an_edit_of_an_indexed_dataset_waits_the_edit_delay_not_the_debounce(inbox, edit):
    indexed(inbox)
    row = notify(inbox, [edit], at=200)
    assert (row.state, row.due_at) == (State.PENDING, 200 + EDIT_DELAY)
    assert inbox.claim(claim_timeout=60, at=200) == []
    [claimed] = inbox.claim(claim_timeout=60, at=200 + EDIT_DELAY)
    assert claimed.dataset_uri == URI


def test_a_tag_removal_is_an_edit_too(inbox):
    indexed(inbox)
    removal = DatasetTarget("s3://b", URI, UUID, "tags", key=f"{UUID}/tags/t", removed=True)
    assert notify(inbox, [removal], at=200).due_at == 200 + EDIT_DELAY


def test_after_an_unchanged_or_a_covered_sync_of_a_frozen_dataset_too(inbox):
    indexed(inbox)
    notify(inbox, [README], at=200)
    sync(inbox, 200.1, Outcome.UNCHANGED, DatasetKind.FROZEN)
    assert notify(inbox, [TAG], at=300).due_at == 300 + EDIT_DELAY
    [claimed] = inbox.claim(claim_timeout=60, at=300.1)
    assert inbox.finish(claimed, Outcome.COVERED, at=300.2)  # keeps the frozen sync's record
    assert notify(inbox, [ANNOTATION], at=400).due_at == 400 + EDIT_DELAY


def test_a_covered_entry_whose_last_sync_found_a_proto_dataset_keeps_the_debounce(inbox):
    notify(inbox, [ADMIN], at=100)
    sync(inbox, 100, Outcome.PROTO, DatasetKind.PROTO)
    notify(inbox, [ADMIN], at=101)  # the same event again: covered
    [claimed] = inbox.claim(claim_timeout=60, at=101)
    assert inbox.finish(claimed, Outcome.COVERED, at=101.1)
    assert notify(inbox, [README], at=102).due_at == 102 + DEBOUNCE


def test_an_edit_of_a_never_seen_dataset_keeps_the_debounce(inbox):
    assert notify(inbox, [README], at=100).due_at == 100 + DEBOUNCE


def test_an_edit_of_a_dataset_the_ledger_holds_indexed_and_the_inbox_forgot(inbox):
    """The inbox row was purged a week after the last sync (or the dataset
    was indexed by the reconciler or ``flask base_uri index``): the ledger's
    signature says indexed. The same statement reads it."""
    ledger = Ledger(inbox.db)
    indexed(inbox)
    ledger.remember_prefix(TAG, "", "etag")          # a reconcile pass listed it
    ledger.settle(URI, Outcome.REGISTERED, "signature")  # a sync verified it
    assert inbox.purge_done(older_than=0, at=300) == 1
    row = notify(inbox, [TAG], at=400)
    assert (row.state, row.due_at) == (State.PENDING, 400 + EDIT_DELAY)
    assert notify(inbox, [README], at=400.05).due_at == 400.05 + EDIT_DELAY  # its window
    assert notify(inbox, [MANIFEST], at=400.1).due_at == 400.1 + DEBOUNCE


def test_a_ledger_row_without_a_signature_or_gone_is_not_indexed(inbox):
    """Listed by a pass but never verified by a sync: debounce. A sync that
    deleted the dataset drops its ledger row: debounce again."""
    ledger = Ledger(inbox.db)
    ledger.remember_prefix(TAG, "", "etag")
    assert notify(inbox, [TAG], at=100).due_at == 100 + DEBOUNCE
    [claimed] = inbox.claim(claim_timeout=60, at=100 + DEBOUNCE)
    inbox.finish(claimed, Outcome.REGISTERED, seen=Seen(DatasetKind.FROZEN), at=103)
    ledger.settle(URI, Outcome.REGISTERED, "signature")
    ledger.settle(URI, Outcome.DELETED)
    assert inbox.purge_done(older_than=0, at=200) == 1
    assert notify(inbox, [TAG], at=300).due_at == 300 + DEBOUNCE


@pytest.mark.parametrize("outcome,kind", [
    (Outcome.PROTO, DatasetKind.PROTO),       # a copy under way
    (Outcome.DELETED, DatasetKind.ABSENT),    # gone, or being copied over
    (Outcome.ABSENT, DatasetKind.ABSENT),
])
def test_an_edit_of_a_dataset_not_found_frozen_keeps_the_debounce(inbox, outcome, kind):
    notify(inbox, [ADMIN], at=100)
    sync(inbox, 100, outcome, kind)
    assert notify(inbox, [TAG], at=200).due_at == 200 + DEBOUNCE


def test_an_edit_of_a_dead_entry_keeps_the_debounce(inbox):
    indexed(inbox)
    notify(inbox, [README], at=200)
    [claimed] = inbox.claim(claim_timeout=60, at=200.1)
    assert inbox.fail(claimed, "S3 away", retry_at=201, max_attempts=1) is State.DEAD
    assert notify(inbox, [TAG], at=300).due_at == 300 + DEBOUNCE


def test_an_edit_within_a_pending_copy_window_keeps_the_debounce(inbox):
    indexed(inbox)
    notify(inbox, [REGISTRATION], at=200)        # a copy starts over the dataset
    assert notify(inbox, [README], at=200.5).due_at == 200.5 + DEBOUNCE


def test_an_edit_while_the_edit_is_synced_is_synced_again_after_the_edit_delay(inbox):
    """``tag set a``, then ``tag set b`` while the first one's sync reads S3."""
    indexed(inbox)
    notify(inbox, [TAG], at=200)
    [claimed] = inbox.claim(claim_timeout=60, at=200.1)
    row = notify(inbox, [TAG], at=200.15)
    assert (row.state, row.due_at) == (State.PROCESSING, 200.15 + EDIT_DELAY)
    assert inbox.finish(claimed, Outcome.REGISTERED, seen=Seen(DatasetKind.FROZEN), at=200.2)
    [row] = inbox.entries()
    assert (row.state, row.due_at) == (State.PENDING, 200.15 + EDIT_DELAY)  # synced again
    assert len(inbox.claim(claim_timeout=60, at=200.15 + EDIT_DELAY)) == 1


def test_an_edit_while_a_copy_is_synced_keeps_the_debounce(inbox):
    """The window being synced was a copy's (debounced, or made due by its
    ``dtool`` object): an edit event then is the copy's too."""
    notify(inbox, [REGISTRATION], at=100)
    [claimed] = inbox.claim(claim_timeout=60, at=100 + DEBOUNCE)
    assert notify(inbox, [README], at=102.1).due_at == 102.1 + DEBOUNCE
    inbox.finish(claimed, Outcome.PROTO, seen=Seen(DatasetKind.PROTO), at=102.2)
    notify(inbox, [ADMIN], at=103)
    [claimed] = inbox.claim(claim_timeout=60, at=103)
    assert notify(inbox, [TAG], at=103.05).due_at == 103.05 + DEBOUNCE


def test_a_duplicate_delivery_of_an_edit_stays_in_the_edit_window(inbox):
    indexed(inbox)
    notify(inbox, [TAG], at=200)
    row = notify(inbox, [TAG], at=200.05)        # the sender delivers it again
    assert (row.events, row.due_at) == (2, 200.05 + EDIT_DELAY)
    assert notify(inbox, [README], at=200.1).due_at == 200.1 + EDIT_DELAY
    [claimed] = inbox.claim(claim_timeout=60, at=200.1 + EDIT_DELAY)
    assert claimed.dataset_uri == URI


def test_an_edit_after_its_window_is_due_stays_due_and_keeps_the_window(inbox):
    indexed(inbox)
    notify(inbox, [TAG], at=200)
    assert notify(inbox, [TAG], at=200.5).due_at == 200 + EDIT_DELAY  # the worker is late
    [claimed] = inbox.claim(claim_timeout=60, at=200.6)
    assert notify(inbox, [README], at=200.7).due_at == 200.7 + EDIT_DELAY


def test_edits_keep_their_window_up_to_the_max_delay(inbox):
    """A sync that takes long, and edits all the while: never later than
    ``max_delay`` after the window's first edit."""
    indexed(inbox)
    notify(inbox, [TAG], at=200)
    [claimed] = inbox.claim(claim_timeout=60, at=200.1)
    assert notify(inbox, [TAG], at=215).due_at == 215 + EDIT_DELAY
    assert notify(inbox, [TAG], at=229.95).due_at == 200 + MAX_DELAY


def test_any_other_event_turns_an_edit_window_into_a_debounce_window_for_good(inbox):
    indexed(inbox)
    notify(inbox, [TAG], at=200)
    assert notify(inbox, [MANIFEST], at=200.05).due_at == 200.05 + DEBOUNCE
    assert notify(inbox, [README], at=200.1).due_at == 200.1 + DEBOUNCE
    [claimed] = inbox.claim(claim_timeout=60, at=200.1 + DEBOUNCE)
    assert notify(inbox, [TAG], at=203).due_at == 203 + DEBOUNCE  # during its sync too


def test_a_copy_over_an_indexed_dataset_while_an_edit_waits_is_debounced(inbox):
    """dtool's write order from an open edit window: the registration key
    debounces it, the proto ``dtool`` is due at once, the rest is debounced."""
    indexed(inbox)
    notify(inbox, [TAG], at=200)
    assert notify(inbox, [REGISTRATION], at=200.02).due_at == 200.02 + DEBOUNCE
    assert notify(inbox, [ADMIN], at=200.03).due_at == 200.03
    sync(inbox, 200.03, Outcome.DELETED, DatasetKind.PROTO)
    for n, target in enumerate([README, TAG, ANNOTATION, MANIFEST]):
        assert notify(inbox, [target], at=201 + n).due_at == 201 + n + DEBOUNCE
    assert notify(inbox, [ADMIN], at=205).due_at == 205


def test_a_burst_over_an_indexed_dataset_gets_the_debounce(inbox):
    """Objects of an indexed dataset copied over in any order, closer together
    than the edit delay: the first edit event opens a window, the next one
    pushes it to the debounce, and one sync takes them all."""
    indexed(inbox)
    at = 200.0
    for target in [README, ANNOTATION, TAG, MANIFEST, README, TAG]:
        row = notify(inbox, [target], at)
        at += 0.02
    last = at - 0.02
    assert (row.state, row.events, row.due_at) == (State.PENDING, 6, last + DEBOUNCE)
    assert inbox.claim(claim_timeout=60, at=last + DEBOUNCE - 0.01) == []
    assert len(inbox.claim(claim_timeout=60, at=last + DEBOUNCE)) == 1


def test_a_burst_that_pauses_while_its_first_sync_runs_costs_one_sync_more(inbox):
    indexed(inbox)
    notify(inbox, [README], at=200)
    [claimed] = inbox.claim(claim_timeout=60, at=200.1)   # the burst pauses: one sync
    for n, target in enumerate([ANNOTATION, TAG, MANIFEST, TAG]):
        notify(inbox, [target], at=200.15 + n * 0.02)      # the rest arrives meanwhile
    assert inbox.finish(claimed, Outcome.REGISTERED, seen=Seen(DatasetKind.FROZEN), at=200.3)
    due = inbox.entries()[0].due_at
    assert due == pytest.approx(200.21 + DEBOUNCE)
    assert inbox.claim(claim_timeout=60, at=due - 0.01) == []
    sync(inbox, due, Outcome.REGISTERED, DatasetKind.FROZEN)  # the second and last
    assert inbox.entries()[0].state is State.DONE


def test_a_dtool_copy_over_an_indexed_dataset_makes_no_edit_early(inbox):
    """dtool's write order: registration key, proto ``dtool``, README, tags,
    annotations, manifest, frozen ``dtool``. One sync for each ``dtool``
    event, as for any copy, and only the last one registers."""
    indexed(inbox)
    assert notify(inbox, [REGISTRATION], at=200).due_at == 200 + DEBOUNCE
    assert notify(inbox, [ADMIN], at=200.1).due_at == 200.1
    sync(inbox, 200.1, Outcome.DELETED, DatasetKind.PROTO)  # the index entry goes
    for n, target in enumerate([README, TAG, ANNOTATION, MANIFEST]):
        assert notify(inbox, [target], at=201 + n).due_at == 201 + n + DEBOUNCE
    assert notify(inbox, [ADMIN], at=205).due_at == 205
    sync(inbox, 205, Outcome.REGISTERED, DatasetKind.FROZEN)
    assert inbox.entries()[0].state is State.DONE


@pytest.mark.parametrize("second", [TAG, MANIFEST], ids=lambda t: t.part)
def test_concurrent_hosts_agree_whatever_order_their_events_commit_in(inbox, second):
    """Two hosts stamp an event each with their own clock: whichever commits
    second folds into the window the first opened, as an edit (edit delay)
    or as a copy's event (debounce)."""
    indexed(inbox)
    assert notify(inbox, [README], at=200.3).due_at == pytest.approx(200.3 + EDIT_DELAY)
    row = notify(inbox, [second], at=200.1)      # stamped earlier, committed later
    wait = EDIT_DELAY if second is TAG else DEBOUNCE
    assert (row.due_at, row.events) == (200.1 + wait, 2)


def test_the_frozen_mark_is_what_a_frozen_sync_record_says_and_no_key_spells():
    assert kind_mark(DatasetKind.FROZEN) in Seen(DatasetKind.FROZEN).to_text()
    tricky = f'x"kind":"frozen"/{UUID}/tags/t'
    record = Seen(DatasetKind.PROTO, objects={tricky: "e"}, missing=frozenset({tricky}))
    assert kind_mark(DatasetKind.FROZEN) not in record.to_text()
