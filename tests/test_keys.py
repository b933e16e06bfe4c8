"""Object keys -> dtool datasets (dtool-s3 0.14 layout)."""
import pytest
from hypothesis import given, settings, strategies as st

from dserver_notification_plugin.events import Action, ObjectEvent
from dserver_notification_plugin.keys import (
    DatasetObject, DatasetTarget, Skip, SkipReason, can_change_index, classify_key, dataset_uri,
    may_be_edit, registration_uuid, translate)

pytestmark = pytest.mark.unit

U = "49f0bf41-471b-4781-855e-161fe81ffb0d"
OTHER = "3f0c1d2e-0000-4000-8000-123456789abc"
BASES = {"test-bucket": "s3://test-bucket"}


@pytest.mark.parametrize("key,expected", [
    (f"dtool-{U}", DatasetObject(U, "", "registration")),
    (f"{U}/dtool", DatasetObject(U, "", "admin")),
    (f"u/testuser/{U}/dtool", DatasetObject(U, "u/testuser/", "admin")),
    (f"{U}/README.yml", DatasetObject(U, "", "readme")),
    (f"{U}/manifest.json", DatasetObject(U, "", "manifest")),
    (f"{U}/structure.json", DatasetObject(U, "", "structure")),
    (f"{U}/README.txt", DatasetObject(U, "", "readme_txt")),
    (f"{U}/http_manifest.json", DatasetObject(U, "", "http_manifest")),
    (f"{U}/data/a010ac3220426ba6ceb4a5a56bf7f5a908e078c8", DatasetObject(U, "", "data")),
    (f"{U}/tags/t1", DatasetObject(U, "", "tags")),
    (f"{U}/tags/dtool", DatasetObject(U, "", "tags")),  # a tag named like the admin object
    (f"{U}/annotations/color.json", DatasetObject(U, "", "annotations")),
    (f"{U}/overlays/is_raw.json", DatasetObject(U, "", "overlays")),
    (f"{U}/fragments/abc.size.json", DatasetObject(U, "", "fragments")),
    # prefixes holding UUIDs: the dataset UUID is the one directly before the part
    (f"projects/{OTHER}/u/me/{U}/README.yml",
     DatasetObject(U, f"projects/{OTHER}/u/me/", "readme")),
    (f"{OTHER}/{U}/dtool", DatasetObject(U, f"{OTHER}/", "admin")),
    (f"{OTHER}/data/{U}/tags/x", DatasetObject(U, f"{OTHER}/data/", "tags")),  # data/ in prefix
    (f"data/{U}/data/ff", DatasetObject(U, "data/", "data")),
    (f"{OTHER}/data/{U}", DatasetObject(OTHER, "", "data")),  # an item, not a dataset
    # a prefix need not end with "/": dtool-s3 concatenates prefix and UUID
    (f"archive-{U}/manifest.json", DatasetObject(U, "archive-", "manifest")),
    # spaces, "+", unicode in the prefix (keys arrive here already decoded)
    (f"my data/a+b/ä €/{U}/dtool", DatasetObject(U, "my data/a+b/ä €/", "admin")),
    # an upper-case UUID in the prefix is only text
    (f"{U.upper()}/{OTHER}/dtool", DatasetObject(OTHER, f"{U.upper()}/", "admin")),
])
def test_classify_dtool_keys(key, expected):
    assert classify_key(key) == expected


@pytest.mark.parametrize("key", [
    "dtool", "README.yml", "dir/hello.txt", f"x/dtool-{U}", f"dtool-{U}.bak", f"dtool-{U[:-1]}",
    f"{U}", f"{U}/", f"{U}/other.json", f"{U}/data/", f"{U}/data/sub/dir/file",
    f"{U}/annotations/color.txt", f"{U}/annotations/.json", f"{U}/tags/", f"{U[:-1]}/dtool",
    f"{U}x/dtool", f"{U}/README.yml/extra", "",
    "49f0bf41-471b-4781-855e-161fe81ffb0g/dtool",
    # dtool's UUIDs are lower-case; S3 keys are case-sensitive (issue 23)
    f"{U.upper()}/dtool", f"dtool-{U.upper()}", f"{U[:8].upper()}{U[8:]}/README.yml",
    f"u/me/{U[:-1]}D/manifest.json",
])
def test_non_dtool_keys(key):
    assert classify_key(key) is None


def test_spellings_of_one_uuid_make_no_inbox_rows_of_their_own():
    spellings = [U, U.upper(), U[:8].upper() + U[8:], U[:-1] + U[-1].upper()]
    targets = [translate(ObjectEvent("test-bucket", f"{u}/dtool", Action.CREATED), BASES)
               for u in spellings]
    assert {t.uri for t in targets if isinstance(t, DatasetTarget)} == {
        dataset_uri(BASES["test-bucket"], U)}
    assert all(t == Skip(SkipReason.NOT_DTOOL_KEY) for t in targets[1:])


def test_a_listing_still_sees_registrations_in_any_case():
    # the reconciler compares the bucket with an index that dtool-s3 built
    assert registration_uuid(f"dtool-{U.upper()}") == U.upper()


@pytest.mark.parametrize("part,indexed", [
    ("registration", True), ("admin", True), ("readme", True), ("manifest", True),
    ("tags", True), ("annotations", True), ("data", False), ("fragments", False),
    ("structure", False), ("readme_txt", False), ("overlays", False), ("http_manifest", False),
])
def test_can_change_index(part, indexed):
    assert can_change_index(DatasetObject(U, "", part)) is indexed


def test_registration_uuid():
    assert registration_uuid(f"dtool-{U}") == U
    assert registration_uuid(f"dtool-{U}/x") is None
    assert registration_uuid(f"x/dtool-{U}") is None


def test_dataset_uri_ignores_prefix_and_trailing_slash():
    assert dataset_uri("s3://test-bucket", U) == f"s3://test-bucket/{U}"
    assert dataset_uri("s3://test-bucket/", U) == f"s3://test-bucket/{U}"


def test_translate_names_the_dataset():
    event = ObjectEvent("test-bucket", f"u/testuser/{U}/dtool", Action.CREATED,
                        etag="5a1ecb9d0bcda01457c2c4782c444c5f")
    assert translate(event, BASES) == DatasetTarget(
        "s3://test-bucket", f"s3://test-bucket/{U}", U, "admin", key=f"u/testuser/{U}/dtool",
        etag="5a1ecb9d0bcda01457c2c4782c444c5f", removed=False)
    removal = translate(ObjectEvent("test-bucket", f"dtool-{U}", Action.REMOVED), BASES)
    assert (removal.part, removal.key, removal.etag, removal.removed) == \
        ("registration", f"dtool-{U}", None, True)


@pytest.mark.parametrize("event,skip,warn", [
    (ObjectEvent("elsewhere", f"{U}/dtool", Action.CREATED),
     Skip(SkipReason.UNMAPPED_BUCKET, "elsewhere"), True),
    (ObjectEvent("test-bucket", "dir/hello.txt", Action.CREATED),
     Skip(SkipReason.NOT_DTOOL_KEY), True),
    (ObjectEvent("test-bucket", f"{U}/data/ab", Action.REMOVED),
     Skip(SkipReason.NOT_INDEXED, "data item"), False),
    (ObjectEvent("test-bucket", f"{U}/fragments/x.json", Action.CREATED),
     Skip(SkipReason.NOT_INDEXED, "item metadata fragment"), False),
    (ObjectEvent("test-bucket", f"{U}/structure.json", Action.CREATED),
     Skip(SkipReason.NOT_INDEXED, "structure.json"), False),
])
def test_translate_reasons(event, skip, warn):
    assert translate(event, BASES) == skip
    assert skip.reason.warn is warn


# ---- properties ------------------------------------------------------------------------

uuids = st.uuids().map(str)
prefixes = st.text(max_size=40)  # anything: slashes, UUIDs, "data/", unicode
name = st.text("abcdefghijklmnopqrstuvwxyzABC0123456789_.-", min_size=1, max_size=20)
suffixes = st.one_of(
    st.sampled_from([("dtool", "admin"), ("README.yml", "readme"), ("manifest.json", "manifest"),
                     ("structure.json", "structure"), ("README.txt", "readme_txt")]),
    st.builds(lambda n: (f"tags/{n}", "tags"), name),
    st.builds(lambda n: (f"annotations/{n}.json", "annotations"), name),
    st.builds(lambda n: (f"overlays/{n}.json", "overlays"), name),
    st.builds(lambda n: (f"data/{n}", "data"), name),
    st.builds(lambda n: (f"fragments/{n}", "fragments"), name))


@settings(max_examples=500, deadline=None)
@given(prefix=prefixes, uuid=uuids, suffix=suffixes)
def test_any_prefix_uuid_and_part_round_trip(prefix, uuid, suffix):
    text, part = suffix
    assert classify_key(prefix + uuid + "/" + text) == DatasetObject(uuid, prefix, part)


@settings(max_examples=300, deadline=None)
@given(key=st.text(max_size=80))
def test_classify_never_raises(key):
    found = classify_key(key)
    if found is not None and found.part != "registration":
        assert key.startswith(found.prefix + found.uuid + "/")


def test_readme_backups_are_dtool_objects_that_cannot_change_the_index():
    uuid = "49f0bf41-471b-4781-855e-161fe81ffb0d"
    obj = classify_key(f"u/me/{uuid}/README.yml-2026-11-28T12:00:00.123456")
    assert (obj.uuid, obj.part) == (uuid, "readme_backup")
    assert not can_change_index(obj)


@pytest.mark.parametrize("key,action,edit", [
    (f"{U}/README.yml", Action.CREATED, True),              # dtool readme write / edit
    (f"{U}/tags/fresh", Action.CREATED, True),              # dtool tag set
    (f"{U}/tags/old", Action.REMOVED, True),                # dtool tag delete
    (f"{U}/annotations/colour.json", Action.CREATED, True),  # dtool annotation set
    (f"dtool-{U}", Action.CREATED, False),                  # a copy starts
    (f"{U}/dtool", Action.CREATED, False),                  # due at once anyway
    (f"{U}/manifest.json", Action.CREATED, False),          # items changed: a copy
])
def test_only_readme_tag_and_annotation_events_may_be_edits(key, action, edit):
    target = translate(ObjectEvent("test-bucket", key, action), BASES)
    assert may_be_edit(target) is edit
    finding = DatasetTarget(target.base_uri, target.uri, target.uuid, target.part)
    assert not may_be_edit(finding)  # no event (a reconcile finding): never an edit
