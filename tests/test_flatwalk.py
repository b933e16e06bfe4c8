"""The flat walk finds exactly what a delimited listing of each dataset finds.

The reference below is the reconciler's former walk: one delimited LIST of
the dataset root, then one LIST of ``tags/`` and one of ``annotations/``.
Buckets are real moto buckets; objects are empty where only their names matter.
"""
import uuid as uuidlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dserver_notification_plugin.flatwalk import FlatWalk
from dserver_notification_plugin.listing import SIGNED_FILES, SIGNED_FOLDERS, Listed, signed_entry
from devstack.datasets import put_empty_objects

pytestmark = pytest.mark.integration


class CountingClient:
    """A boto3 client whose LIST requests are counted (botocore's before-send)."""

    def __init__(self, client):
        self.requests = 0
        client.meta.events.register("before-send", self._count)
        self.client = client

    def _count(self, **_):
        self.requests += 1


def delimited_metadata(client, bucket, root):
    """The reference: what the delimited listings of ``root`` show."""
    def listing(prefix, delimiter=None):
        kwargs = dict(Bucket=bucket, Prefix=prefix, **({"Delimiter": delimiter}
                                                        if delimiter else {}))
        objects, folders = [], set()
        for page in client.get_paginator("list_objects_v2").paginate(**kwargs):
            objects += [signed_entry(obj["Key"][len(root):], obj["ETag"], obj["Size"],
                                     obj["LastModified"]) for obj in page.get("Contents", [])]
            folders |= {p["Prefix"][len(prefix):] for p in page.get("CommonPrefixes", [])}
        return objects, folders
    files, folders = listing(root, "/")
    objects = [obj for obj in files if obj[0] in SIGNED_FILES]
    for folder in SIGNED_FOLDERS:
        if folder in folders:
            objects += listing(root + folder)[0]
    return Listed(tuple(objects))


def flat_metadata(client, bucket, roots, page_size=1000):
    """Each root's Listed from one FlatWalk, asked in key order as the reconciler does."""
    walk = FlatWalk(client, bucket, page_size=page_size)
    return {root: walk.metadata(root) for root in sorted(roots)}


def same(first, second):
    return sorted(first.objects) == sorted(second.objects) and \
        first.signature == second.signature


def dataset_keys(root, files=SIGNED_FILES + ("structure.json", "README.txt"), items=0,
                 tags=(), annotations=(), extra=()):
    keys = [root + name for name in files]
    keys += [f"{root}data/{n:040x}" for n in range(items)]
    keys += [f"{root}tags/{tag}" for tag in tags]
    keys += [f"{root}annotations/{name}.json" for name in annotations]
    return keys + [root + name for name in extra]


@pytest.fixture(scope="module")
def layout_bucket(make_bucket):
    """Versioned; datasets under no prefix, a user prefix and a prefix without
    "/"; 0, 3, 5, 1,500 and 10,000 items; fragments and overlays; keys of no dataset;
    overwritten and deleted metadata (older versions, a delete marker)."""
    bucket = make_bucket()
    bucket.s3.put_bucket_versioning(Bucket=bucket.name,
                                    VersioningConfiguration={"Status": "Enabled"})
    roots, keys = [], ["README", "zzz/unrelated", "dtool-not-a-uuid"]
    for number, prefix in enumerate(["", "", "", "u/alice/", "u/alice/", "pre-", ""]):
        root = f"{prefix}{uuidlib.uuid4()}/"
        roots.append(root)
        items = {0: 0, 1: 10_000, 3: 3, 4: 1_500}.get(number, 5)
        keys += dataset_keys(root, items=items, tags=["red", "big"] if number % 2 else [],
                             annotations=["a", "b"] if number != 2 else [],
                             extra=["fragments/x.json", "overlays/o.json", "data0"])
        keys.append("dtool-" + root.rstrip("/").rsplit("/", 1)[-1].rsplit("-pre", 1)[-1])
    roots.append(f"{uuidlib.uuid4()}/")  # registered, nothing written yet
    put_empty_objects(bucket.s3, bucket.name, keys, workers=10)
    first = roots[1]
    bucket.s3.put_object(Bucket=bucket.name, Key=first + "README.yml", Body=b"edited\n")
    bucket.s3.delete_object(Bucket=bucket.name, Key=first + "tags/red")  # a delete marker
    return bucket, roots


@pytest.mark.parametrize("page_size", [1000, 7])
def test_the_flat_walk_finds_what_the_delimited_walk_finds(layout_bucket, page_size):
    bucket, roots = layout_bucket
    flat = flat_metadata(bucket.s3, bucket.name, roots, page_size)
    for root in roots:
        assert same(flat[root], delimited_metadata(bucket.s3, bucket.name, root)), root
    edited = {name: size for name, _, size, _ in flat[roots[1]].objects}
    assert "red" not in edited and edited["README.yml"] == 7  # the latest versions only
    assert flat[roots[-1]].objects == ()


def test_items_are_never_listed_one_by_one(layout_bucket):
    """The datasets of 10,000 and 1,500 items cost one LIST each; the small ones share."""
    bucket, roots = layout_bucket
    counting = CountingClient(bucket.s3)
    flat_metadata(bucket.s3, bucket.name, roots)
    # One to start, one past the items of each big dataset, and at most one more
    # where a page happens to end among the ~200 other keys: 8 datasets, 4 LISTs.
    assert counting.requests <= 4


KEY_PARTS = st.sampled_from(["", "a/", "a/b-", "z/"])
NAMES = st.lists(st.sampled_from(["x", "y", "dtool", "data", "README.yml"]), max_size=3,
                 unique=True)


@st.composite
def layouts(draw):
    """Datasets in any mix: prefix, which signed files, items, tags, annotations."""
    datasets = []
    for _ in range(draw(st.integers(1, 6))):
        datasets.append(dict(
            root=f"{draw(KEY_PARTS)}{uuidlib.UUID(int=draw(st.integers(0, 2**128 - 1)))}/",
            files=draw(st.lists(st.sampled_from(SIGNED_FILES + ("structure.json",)),
                                unique=True)),
            items=draw(st.integers(0, 25)), tags=draw(NAMES), annotations=draw(NAMES),
            extra=draw(st.lists(st.sampled_from(["fragments/f", "overlays/o", "data0",
                                                 "tags", "zz/x"]), unique=True))))
    return datasets, draw(st.integers(1, 12))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(layout=layouts())
def test_any_layout_walks_the_same(make_bucket, layout):
    datasets, page_size = layout
    bucket = make_bucket()
    keys = [key for d in datasets for key in dataset_keys(
        d["root"], d["files"], d["items"], d["tags"], d["annotations"], d["extra"])]
    put_empty_objects(bucket.s3, bucket.name, keys + ["top", "u/other"])
    roots = {d["root"] for d in datasets}
    flat = flat_metadata(bucket.s3, bucket.name, roots, page_size)
    for root in roots:
        assert same(flat[root], delimited_metadata(bucket.s3, bucket.name, root)), root
