"""Which events the last sync already saw: the rules, and the inbox that keeps them.

The rules are pure; the inbox part runs on SQLite and PostgreSQL.
"""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dserver_notification_plugin.coverage import (
    HEARD_LIMIT, UNKNOWN, Heard, Seen, covered, heard_text, parse_heard)
from dserver_notification_plugin.db import Database, Inbox
from dserver_notification_plugin.events import Action, ObjectEvent, clean_etag
from dserver_notification_plugin.keys import DatasetTarget, translate
from dserver_notification_plugin.states import DatasetKind, Outcome, State

pytestmark = pytest.mark.unit

U = "8ecd8e05-558a-48e2-b563-0c9ea273e71e"
ROOT = f"u/me/{U}/"
URI = f"s3://b/{U}"
BASES = {"b": "s3://b"}
FROZEN = Seen(DatasetKind.FROZEN,
              objects={f"dtool-{U}": "e0", ROOT + "dtool": "e1", ROOT + "README.yml": "e2",
                       ROOT + "manifest.json": "e3", ROOT + "tags/keep": "e4"},
              missing=frozenset(), listed=frozenset({ROOT + "tags/", ROOT + "annotations/"}))


def event(key, etag=None, removed=False, may_restore=False):
    """``may_restore``: a removal on a versioned bucket that may show an older version."""
    action = Action.REMOVED if removed else Action.CREATED
    return translate(ObjectEvent("b", key, action, etag=etag, may_restore=may_restore), BASES)


def heard(*targets):
    return heard_text(targets)


# --- the rules ----------------------------------------------------------------------

@pytest.mark.parametrize("targets", [
    [event(ROOT + "dtool", "e1")],
    [event(ROOT + "README.yml", "e2"), event(ROOT + "manifest.json", "e3"),
     event(f"dtool-{U}", "e0"), event(ROOT + "dtool", "e1")],
    [event(ROOT + "tags/gone", removed=True)],          # listed, not found
    [event(ROOT + "annotations/x.json", removed=True)],
], ids=["dtool-again", "the-rest-of-a-copy", "removed-tag-not-listed", "removed-annotation"])
def test_events_a_frozen_sync_saw_are_covered(targets):
    assert covered(FROZEN.to_text(), heard(*targets))


@pytest.mark.parametrize("targets", [
    [event(ROOT + "README.yml", "changed")],            # new content
    [event(ROOT + "README.yml")],                        # no ETag given
    [event(ROOT + "tags/new", "e9")],                    # a tag it did not list
    [event(ROOT + "tags/keep", removed=True)],           # removal of what it read
    [event(ROOT + "dtool", removed=True)],
    [event(f"other/{U}/dtool", "e1")],                   # same UUID, other prefix
    [event(ROOT + "dtool", "e1"), event(ROOT + "README.yml", "x")],  # one is enough
    [event(ROOT + "tags/gone", removed=True, may_restore=True)],  # an older one back?
    [event(ROOT + "annotations/x.json", removed=True, may_restore=True)],
], ids=["changed", "no-etag", "new-tag", "removed-tag", "removed-dtool", "other-prefix",
        "one-of-many", "restoring-removal-of-a-tag", "restoring-removal-of-an-annotation"])
def test_anything_else_needs_a_sync(targets):
    assert not covered(FROZEN.to_text(), heard(*targets))


def test_after_a_look_at_a_proto_dataset_only_what_it_read_is_covered():
    proto = Seen(DatasetKind.PROTO, {f"dtool-{U}": "e0", ROOT + "dtool": "p1"},
                 missing=frozenset({ROOT + "manifest.json"}))
    assert covered(proto.to_text(), heard(event(ROOT + "dtool", "p1"), event(f"dtool-{U}", "e0"),
                                          event(ROOT + "manifest.json", removed=True)))
    # a README written later may belong to a dataset frozen since (its event lost)
    assert not covered(proto.to_text(), heard(event(ROOT + "README.yml", "r")))
    assert not covered(proto.to_text(), heard(event(ROOT + "dtool", "frozen")))


def test_once_a_dataset_is_gone_every_removal_is_covered_and_no_creation():
    absent = Seen(DatasetKind.ABSENT, missing=frozenset({f"dtool-{U}", ROOT + "dtool"}))
    assert covered(absent.to_text(), heard(event(ROOT + "dtool", removed=True),
                                           event(ROOT + "README.yml", removed=True),
                                           event(f"dtool-{U}", removed=True)))
    assert not covered(absent.to_text(), heard(event(ROOT + "dtool", "new copy")))
    assert not covered(absent.to_text(), heard(event(ROOT + "README.yml", "r")))
    # ... unless it may have shown an older version of the dataset again
    assert not covered(absent.to_text(), heard(event(ROOT + "dtool", removed=True,
                                                     may_restore=True)))


def test_a_key_the_sync_saw_change_while_it_read_is_covered_by_nothing():
    changing = Seen(DatasetKind.FROZEN, dict(FROZEN.objects),
                    listed=FROZEN.listed, changed=frozenset({ROOT + "annotations/a.json"}))
    for etag in ("before", "after", None):
        assert not covered(changing.to_text(), heard(event(ROOT + "annotations/a.json", etag)))
    assert not covered(changing.to_text(),
                       heard(event(ROOT + "annotations/a.json", removed=True)))
    assert Seen.from_text(changing.to_text()) == changing


@pytest.mark.parametrize("seen,heard_", [
    (None, heard(event(ROOT + "dtool", "e1"))),          # never synced
    (FROZEN.to_text(), ""),                              # nothing heard: sync to be sure
    (FROZEN.to_text(), UNKNOWN),
    (FROZEN.to_text(), None),                            # a row older than the column
    (FROZEN.to_text(), "not json\n"),
    (FROZEN.to_text(), '["C", 1, 2]\n'),
    ("{broken", heard(event(ROOT + "dtool", "e1"))),
])
def test_what_is_not_known_is_not_covered(seen, heard_):
    assert not covered(seen, heard_)


def test_targets_without_an_event_and_too_many_events_are_unknown():
    finding = DatasetTarget("s3://b", URI, U, "reconcile")
    assert heard(event(ROOT + "dtool", "e1"), finding) == UNKNOWN
    many = [event(ROOT + f"tags/{n:05d}", "e") for n in range(HEARD_LIMIT // 40)]
    assert heard(*many) == UNKNOWN


def test_a_sync_record_too_big_to_keep_is_not_kept():
    objects = {ROOT + f"annotations/{n:06d}.json": "0" * 32 for n in range(2000)}
    assert Seen(DatasetKind.FROZEN, objects).to_text() is None


@given(st.lists(st.tuples(st.text(min_size=1, max_size=60),
                          st.none() | st.from_regex(r"[0-9a-f]{32}(-[0-9]{1,3})?", fullmatch=True),
                          st.booleans()), min_size=1, max_size=20))
def test_any_key_survives_the_inbox_text(events):
    targets = [DatasetTarget("s3://b", URI, U, "readme", key=key, etag=etag, removed=removed)
               for key, etag, removed in events]
    assert parse_heard(heard_text(targets)) == [Heard(*e) for e in events]


@pytest.mark.parametrize("raw,clean", [
    ('"5A1ECB9D0BCDA01457C2C4782C444C5F"', "5a1ecb9d0bcda01457c2c4782c444c5f"),
    ("d41d8cd98f00b204e9800998ecf8427e-12", "d41d8cd98f00b204e9800998ecf8427e-12"),
    ("object eTag", None), ("", None), (None, None), (17, None), ("a" * 129, None),
])
def test_etags_are_compared_in_one_form(raw, clean):
    assert clean_etag(raw) == clean


# --- the inbox keeps what each entry heard since its last claim ---------------------------

@pytest.fixture
def inbox(engine):
    return Inbox(Database(engine=engine))


def enqueue(inbox, targets, at):
    inbox.enqueue(targets, debounce=0, max_delay=30, at=at)


def claim_one(inbox, at, timeout=60):
    [claim] = inbox.claim(claim_timeout=timeout, at=at)
    return claim


def test_a_claim_takes_what_was_heard_and_later_events_start_afresh(inbox):
    first, second = event(ROOT + "dtool", "e1"), event(ROOT + "README.yml", "e2")
    enqueue(inbox, [first], at=1)
    enqueue(inbox, [second], at=2)
    claimed = claim_one(inbox, at=3)
    assert parse_heard(claimed.heard) == parse_heard(heard(first, second))
    enqueue(inbox, [first], at=4)                    # while it syncs
    assert inbox.finish(claimed, Outcome.REGISTERED, fingerprint="f", seen=FROZEN, at=5)
    again = claim_one(inbox, at=6)
    assert parse_heard(again.heard) == parse_heard(heard(first))
    assert Seen.from_text(again.seen) == FROZEN
    assert covered(again.seen, again.heard)
    assert inbox.finish(again, Outcome.COVERED, at=7)   # keeps the record
    enqueue(inbox, [first], at=8)
    assert claim_one(inbox, at=9).seen == FROZEN.to_text()


def test_after_a_failed_or_vanished_sync_the_entry_syncs_again(inbox):
    enqueue(inbox, [event(ROOT + "dtool", "e1")], at=1)
    inbox.finish(claim_one(inbox, at=2), Outcome.REGISTERED, seen=FROZEN, at=3)
    enqueue(inbox, [event(ROOT + "dtool", "e1")], at=4)
    failing = claim_one(inbox, at=5)
    inbox.fail(failing, "S3 down", retry_at=6, max_attempts=8, at=5)
    enqueue(inbox, [event(ROOT + "dtool", "e1")], at=5.5)
    retry = claim_one(inbox, at=6)
    assert retry.heard == UNKNOWN and not covered(retry.seen, retry.heard)
    # the process holding ``retry`` vanishes; its claim expires
    taken_over = claim_one(inbox, at=6 + 61)
    assert taken_over.heard == UNKNOWN
    assert inbox.entries()[0].state is State.PROCESSING


def test_a_reconcile_finding_or_a_forgotten_fingerprint_forces_a_sync(inbox):
    enqueue(inbox, [event(ROOT + "dtool", "e1")], at=1)
    inbox.finish(claim_one(inbox, at=2), Outcome.REGISTERED, seen=FROZEN, at=3)
    enqueue(inbox, [event(ROOT + "dtool", "e1"), DatasetTarget("s3://b", URI, U, "reconcile")],
            at=4)
    assert claim_one(inbox, at=5).heard == UNKNOWN
    inbox.forget_fingerprints([URI])
    assert inbox.entries()[0].fingerprint is None
    enqueue(inbox, [event(ROOT + "dtool", "e1")], at=6)
    assert claim_one(inbox, at=7 + 61).seen is None


def test_a_disagreement_seen_before_a_sync_ended_forgets_nothing(inbox):
    """The reconciler read the index at 5.5, while the sync claimed at 5
    had written the search documents but not yet the SQL row: what it saw
    disagree was that registration half done, over by 6."""
    enqueue(inbox, [event(ROOT + "dtool", "e1")], at=1)
    inbox.finish(claim_one(inbox, at=2), Outcome.REGISTERED, fingerprint="f1", seen=FROZEN,
                 at=3)
    enqueue(inbox, [event(ROOT + "README.yml", "e2")], at=4)
    running = claim_one(inbox, at=5)
    inbox.forget_fingerprints([URI], unless_synced_since=5.5)  # being synced: kept
    assert inbox.entries()[0].fingerprint == "f1"
    inbox.finish(running, Outcome.REGISTERED, fingerprint="f2", seen=FROZEN, at=6)
    inbox.forget_fingerprints([URI], unless_synced_since=5.5)  # synced since: kept
    assert inbox.entries()[0].fingerprint == "f2"
    inbox.forget_fingerprints([URI], unless_synced_since=6.5)  # nothing since: forgotten
    assert inbox.entries()[0].fingerprint is None


def test_heard_events_are_bounded_per_entry(inbox):
    for n in range(HEARD_LIMIT // 100 + 10):
        enqueue(inbox, [event(ROOT + f"tags/{n:06d}-{'x' * 60}", "e")], at=n)
    assert claim_one(inbox, at=10_000).heard == UNKNOWN


# --- what a sync's requests record ---------------------------------------------------

class Answer:
    def __init__(self, status_code):
        self.status_code = status_code


def recorded(*calls):
    """Feed botocore-shaped calls to the recorder; return what it kept."""
    from dserver_notification_plugin import dtool_private
    with dtool_private.observed_reads() as reads:
        for operation, params, status, parsed in calls:
            context = {}
            dtool_private._remember_params(params=params, context=context)
            handler = dtool_private._after_listing if operation == "list" \
                else dtool_private._after_object_read
            handler(http_response=Answer(status), parsed=parsed, context=context)
    return reads.seen(DatasetKind.FROZEN)


def test_reads_record_etags_missing_keys_and_only_complete_listings():
    seen = recorded(
        ("get", {"Key": ROOT + "dtool"}, 200, {"ETag": '"E1"'}),
        ("get", {"Key": ROOT + "README.yml"}, 404, {"Error": {"Code": "NoSuchKey"}}),
        ("list", {"Prefix": ROOT + "tags/"}, 200,
         {"Contents": [{"Key": ROOT + "tags/a", "ETag": '"t"'}], "IsTruncated": False}),
        ("list", {"Prefix": ROOT + "annotations/"}, 200, {"Contents": [], "IsTruncated": True}),
        ("list", {"Prefix": ROOT, "Delimiter": "/"}, 200, {"Contents": []}),
        ("get", {"Key": ROOT + "manifest.json"}, 500, {}),
    )
    assert seen.objects == {ROOT + "dtool": "e1", ROOT + "tags/a": "t"}
    assert seen.missing == {ROOT + "README.yml"}
    assert seen.listed == {ROOT + "tags/"}   # truncated and delimited listings prove nothing


def test_keys_a_sync_saw_in_two_states_are_recorded_as_changed():
    a, c, readme = ROOT + "annotations/a.json", ROOT + "annotations/c.json", ROOT + "README.yml"
    seen = recorded(
        ("list", {"Prefix": ROOT + "annotations/"}, 200,
         {"Contents": [{"Key": a, "ETag": '"1"'}], "IsTruncated": False}),
        ("get", {"Key": a}, 200, {"ETag": '"1"'}),       # the content the index got
        ("list", {"Prefix": ROOT + "annotations/"}, 200,  # rewritten, and c added, since
         {"Contents": [{"Key": a, "ETag": '"2"'}, {"Key": c, "ETag": '"3"'}],
          "IsTruncated": False}),
        ("get", {"Key": readme}, 404, {}),
        ("get", {"Key": readme}, 200, {"ETag": '"r"'}),
        ("list", {"Prefix": ROOT + "tags/", "ContinuationToken": "t"}, 200,
         {"Contents": [], "IsTruncated": False}),         # one page of many: proves nothing
    )
    assert seen.changed == {a, c, readme}
    assert (seen.objects, seen.missing, seen.listed) == ({}, frozenset(), {ROOT + "annotations/"})


@pytest.mark.parametrize("file,etag", [
    ("minio/webhook-objectcreated-put.json", "5a1ecb9d0bcda01457c2c4782c444c5f"),
    ("ceph/doc-put.json", "37b51d194a7513e45b56f6524f2d51f2"),
    ("aws/eventbridge-object-created.json", "b1946ac92492d2347c6235b4d2611184"),
    # the gateway's own ETag, base64 in the entry's extended attributes
    ("seaweedfs/versioned-readme-create.json", "48705d4b677ac499e32af9227a1dd6c9"),
])
def test_senders_etags_are_read_from_their_corpus_payloads(file, etag):
    import json

    from dserver_notification_plugin.formats import parse_document
    from tests.corpus import CORPUS
    events = parse_document(json.loads((CORPUS / file).read_text())).events
    assert events and {event.etag for event in events} == {etag}


def test_a_seaweedfs_file_without_gateway_etag_has_its_md5_as_etag():
    from dserver_notification_plugin.formats.seaweed import entry_etag
    assert entry_etag({"attributes": {"md5": "XUFAKrxLKna5cZ2REBfFkg=="}}) == \
        "5d41402abc4b2a76b9719d911017c592"   # md5("hello"), as SeaweedFS answers it
    for entry in ({}, {"attributes": {"md5": "not base64!"}}, {"extended": {"Seaweed-X-Amz-ETag": 5}},
                  {"attributes": {"md5": "AAAA"}}):
        assert entry_etag(entry) is None


@pytest.mark.parametrize("file,restores", [
    ("aws/s3-objectremoved-delete.json", True),        # a version deleted: an older one shows
    ("aws/s3-lifecycleexpiration-delete.json", True),
    ("aws/s3-objectremoved-deletemarkercreated.json", False),  # hidden, nothing restored
    ("aws/eventbridge-object-deleted.json", False),    # deletion-type: Delete Marker Created
    ("seaweedfs/versioned-delete.json", True),         # a version file removed
])
def test_removals_that_may_restore_an_older_version_are_told_from_the_payload(file, restores):
    import json

    from dserver_notification_plugin.formats import parse_document
    from tests.corpus import CORPUS
    events = parse_document(json.loads((CORPUS / file).read_text())).events
    assert events and {event.may_restore for event in events} == {restores}


def test_removals_from_buckets_without_versions_restore_nothing():
    from devstack.payloads import minio_webhook_body
    from dserver_notification_plugin.formats import parse_document
    [removal] = parse_document(minio_webhook_body(
        "b", ROOT + "README.yml", "s3:ObjectRemoved:Delete")).events  # no versionId
    assert not removal.may_restore


def test_a_copy_pins_no_etag_since_it_may_carry_new_user_metadata():
    import json

    from dserver_notification_plugin.formats import parse_document
    from dserver_notification_plugin.formats.seaweed import parse_seaweed_event
    from tests.corpus import CORPUS
    [copy] = parse_document(json.loads((CORPUS / "aws/s3-objectcreated-copy.json")
                                       .read_text())).events
    assert copy.etag is None
    entry = {"name": "dtool", "attributes": {"md5": "XUFAKrxLKna5cZ2REBfFkg=="}}
    rewrite = {"event_type": "update", "key": f"/buckets/b/{ROOT}dtool",
               "message": {"old_entry": entry, "new_entry": dict(entry, extended={}),
                           "new_parent_path": f"/buckets/b/{ROOT[:-1]}"}}
    [same] = parse_seaweed_event(rewrite).events      # same content, maybe new metadata
    assert same.etag is None
    rewrite["message"]["new_entry"] = {"name": "dtool", "attributes": {"md5": "A" * 22 + "=="}}
    [changed] = parse_seaweed_event(rewrite).events   # new content: its ETag pins it
    assert changed.etag is not None
