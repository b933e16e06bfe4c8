"""dtool datasets in S3 buckets: configure dtool-s3, copy datasets, know their keys.

dtool-s3 0.14 writes a copy as ``dtool-<uuid>`` at the top of the bucket,
then under ``<prefix><uuid>/``: ``structure.json``, ``README.txt``,
``dtool`` (a proto-dataset), the data items, ``README.yml``, tags, overlays,
annotations, ``manifest.json`` and ``dtool`` again (frozen) last.
"""
import hashlib
import json
import os
import tempfile
import threading
import uuid as uuidlib
from pathlib import Path

from devstack.s3 import list_etags, list_keys


def dtool_s3_env(bucket: str, endpoint: str, key: str, secret: str) -> dict:
    """dtool-s3's per-bucket settings; also put into os.environ.

    dtool-s3 reads them with dtoolcore.utils.get_config_value, i.e. from
    os.environ at call time, so setting them here configures this process
    (and any child started afterwards). The dict is returned for subprocess
    environments and app configs.
    """
    env = {f"DTOOL_S3_ENDPOINT_{bucket}": endpoint,
           f"DTOOL_S3_ACCESS_KEY_ID_{bucket}": key,
           f"DTOOL_S3_SECRET_ACCESS_KEY_{bucket}": secret}
    os.environ.update(env)
    return env


def put_dtool_dataset(base_uri: str, name: str, items, readme: str = "description: test dataset\n",
                      tags=(), annotations=None, env=None, creator_username=None) -> str:
    """Create a frozen dtool dataset locally, copy it to base_uri, return its URI.

    ``items`` maps relpath -> bytes, or is a count of generated items. ``env``
    (e.g. from dtool_s3_env) is applied to os.environ first, because that is
    where dtool-s3 looks. The copy writes keys in dtool-s3's order (see
    :func:`copy_write_order`); the result is ``s3://<bucket>/<uuid>``.
    """
    import dtoolcore  # imported late: importing devstack stays cheap

    if env:
        os.environ.update(env)
    with tempfile.TemporaryDirectory(prefix="dtool-src-") as tmp:
        proto = dtoolcore.create_proto_dataset(
            name, Path(tmp).as_uri(), readme_content=readme,
            creator_username=creator_username)
        if isinstance(items, int):
            items = {f"item_{i:03d}.txt": f"item {i}\n".encode() for i in range(items)}
        for relpath, content in items.items():
            source = Path(tmp, "_payload", relpath)
            source.parent.mkdir(parents=True, exist_ok=True)
            source.write_bytes(content)
            proto.put_item(str(source), relpath)
        for tag in tags:
            proto.put_tag(tag)
        for annotation_name, value in (annotations or {}).items():
            proto.put_annotation(annotation_name, value)
        proto.freeze()
        return dtoolcore.copy(proto.uri, base_uri)


class Bucket:
    """A fresh bucket on an S3 server (moto or SeaweedFS), configured for dtool-s3.

    ``env`` holds dtool-s3's settings for it (already in os.environ; pass
    them on to a dserver that must read the bucket), ``s3`` a boto3 client.
    ``put_dataset`` copies with dtool the first time it sees a set of items
    and clones that copy afterwards (:class:`Templates`).
    """

    def __init__(self, server, name):
        self.server = server
        self.name = name
        self.base_uri = f"s3://{name}"
        server.create_bucket(name)
        self.env = dtool_s3_env(name, server.s3_endpoint, server.access_key,
                                server.secret_key)
        self.s3 = server.boto3_client("s3")

    def put_dataset(self, name="testdata", items=3, readme="description: test dataset\n",
                    tags=(), annotations=None, real_copy=False, **kwargs):
        """A fresh frozen dtool dataset in the bucket; return its URI.

        ``real_copy`` makes dtool copy it (where the copy itself, with its
        proto-dataset and fragment writes, is what a test watches); else a
        clone of an earlier copy with the same items is written, with its own
        UUID, name, README, tags and annotations.
        """
        if real_copy or kwargs:
            return put_dtool_dataset(self.base_uri, name, items, readme, tags, annotations,
                                     env=self.env, **kwargs)
        return TEMPLATES.put(self, name, items, readme, tags, annotations or {})


# Rank of each part of a dataset in dtool-s3's write order.
_SECTION_RANK = {"structure.json": 1, "README.txt": 2, "dtool": 3, "data": 4,
                 "README.yml": 5, "tags": 6, "overlays": 7, "annotations": 8,
                 "manifest.json": 10}
_OTHER_RANK = 9  # anything unforeseen: before manifest.json


def _rank(key, uuid):
    if key == f"dtool-{uuid}":
        return 0
    inside = key.split(f"{uuid}/", 1)[-1]
    return _SECTION_RANK.get(inside.split("/", 1)[0], _OTHER_RANK)


def copy_write_order(keys, uuid):
    """The keys of one dataset as dtool-s3 writes them, ``dtool`` twice.

    ``dtool`` is written once as a proto-dataset (after ``README.txt``) and
    once more, frozen, as the very last key; so it is listed twice.
    """
    ordered = sorted(keys, key=lambda key: (_rank(key, uuid), key))
    dtool_key = next(key for key in keys if key.endswith(f"{uuid}/dtool"))
    return ordered + [dtool_key]


def copy_write_order_with_etags(s3, bucket, uuid):
    """``(keys, etags)`` of one dataset in :func:`copy_write_order`, each
    with the ETag a sender would give: S3's for every object as it is now,
    and for the first (proto-dataset) ``dtool`` write, whose content S3 no
    longer holds, a stand-in that differs from the frozen one, as the real
    one did (the admin metadata said ``protodataset`` then)."""
    etags = list_etags(s3, bucket)
    keys = copy_write_order([key for key in etags if uuid in key], uuid)
    frozen_dtool = keys[-1]
    proto_etag = hashlib.md5(f"protodataset {etags[frozen_dtool]}".encode()).hexdigest()
    first_dtool = keys.index(frozen_dtool)
    return keys, [proto_etag if i == first_dtool else etags[key] for i, key in enumerate(keys)]


def clone_dataset(s3, bucket, source_uri, count, workers=1):
    """``count`` copies of the dataset at ``source_uri``, fast; returns their URIs.

    Copying hundreds of datasets with dtool takes minutes; a clone is one
    PUT per object (``workers`` clones at a time), a complete frozen dataset
    in dtool-s3's layout with a new UUID (in the admin metadata's body and
    in the ``dtool`` object's user metadata), so dtool, dservercore and the
    plugin read it like any other.
    """
    from concurrent.futures import ThreadPoolExecutor
    source = source_uri.rsplit("/", 1)[1]
    prefix = s3.get_object(Bucket=bucket, Key=f"dtool-{source}")["Body"].read().decode()
    root = f"{prefix}{source}/"
    objects = []
    for key in list_keys(s3, bucket, root):
        answer = s3.get_object(Bucket=bucket, Key=key)
        objects.append((key[len(root):], answer["Body"].read(), answer.get("Metadata", {})))
    objects.sort(key=lambda obj: obj[0] == "dtool")  # last, as dtool-s3 freezes

    def clone(_):
        new = str(uuidlib.uuid4())
        s3.put_object(Bucket=bucket, Key=f"dtool-{new}", Body=prefix.encode())
        for relative, body, metadata in objects:
            if relative == "dtool":
                admin = json.loads(body)
                admin["uuid"] = new
                body = json.dumps(admin).encode()
                metadata = dict(metadata, uuid=new)
            s3.put_object(Bucket=bucket, Key=f"{prefix}{new}/{relative}", Body=body,
                          Metadata=metadata)
        return f"s3://{bucket}/{new}"

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(clone, range(count)))


def put_empty_objects(s3, bucket, keys, workers=8):
    """One empty PUT per key, ``workers`` at a time: bulk items for listing tests
    and benchmarks, which read names, not content."""
    from concurrent.futures import ThreadPoolExecutor

    def put(key):
        s3.put_object(Bucket=bucket, Key=key, Body=b"")

    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(put, keys))


class Templates:
    """Clones of real dtool copies: a dataset in a second, not a copy in one.

    A dtool copy of even three items costs a second or more of local files,
    fragments and requests; the tests need hundreds of datasets. The first
    dataset with a given set of items is copied with dtool for real; its
    objects are kept, and later datasets with the same items are written
    from them in dtool-s3's layout and order (``dtool``, frozen, last), with
    their own UUID and name in the admin metadata (body and S3 user
    metadata), and their own README, tags and annotations written as
    dtool-s3 writes them. Only timestamps are shared with the template.
    """

    def __init__(self):
        self._objects = {}  # (endpoint, items) -> (prefix, [(relative, body, metadata)])
        self._lock = threading.Lock()

    @staticmethod
    def _items_key(bucket, items):
        hashable = items if isinstance(items, int) else tuple(sorted(items.items()))
        return bucket.server.s3_endpoint, hashable

    def put(self, bucket, name, items, readme, tags, annotations):
        key = self._items_key(bucket, items)
        with self._lock:
            if key not in self._objects:
                uri = put_dtool_dataset(bucket.base_uri, name, items, readme, tags, annotations,
                                        env=bucket.env)
                self._objects[key] = _read_dataset(bucket.s3, bucket.name, uri)
                return uri
        prefix, objects = self._objects[key]
        return _write_clone(bucket, prefix, objects, name, readme, tags, annotations)


# What a template keeps: what does not depend on name, README, tags or annotations.
_TEMPLATE_PARTS = ("structure.json", "README.txt", "data/", "manifest.json", "dtool")


def _read_dataset(s3, bucket, uri):
    source = uri.rsplit("/", 1)[1]
    prefix = s3.get_object(Bucket=bucket, Key=f"dtool-{source}")["Body"].read().decode()
    root = f"{prefix}{source}/"
    objects = []
    for key in list_keys(s3, bucket, root):
        relative = key[len(root):]
        if relative.startswith(_TEMPLATE_PARTS):
            answer = s3.get_object(Bucket=bucket, Key=key)
            objects.append((relative, answer["Body"].read(), answer.get("Metadata", {})))
    return prefix, objects


def _write_clone(bucket, prefix, objects, name, readme, tags, annotations):
    """Put one clone in dtool-s3's write order; return its URI."""
    new = str(uuidlib.uuid4())
    root = f"{prefix}{new}/"

    def put(relative, body, metadata=None):
        bucket.s3.put_object(Bucket=bucket.name, Key=root + relative, Body=body,
                             Metadata=metadata or {})

    bucket.s3.put_object(Bucket=bucket.name, Key=f"dtool-{new}", Body=prefix.encode())
    parts = dict((relative, (body, metadata)) for relative, body, metadata in objects)
    for relative in ("structure.json", "README.txt"):
        put(relative, *parts[relative])
    for relative, (body, metadata) in sorted(parts.items()):
        if relative.startswith("data/"):
            put(relative, body, metadata)
    put("README.yml", readme.encode())
    for tag in tags:
        put(f"tags/{tag}", b"")
    for annotation_name, value in annotations.items():
        put(f"annotations/{annotation_name}.json", json.dumps(value, indent=2).encode())
    put("manifest.json", *parts["manifest.json"])
    admin_body, admin_metadata = parts["dtool"]
    admin = dict(json.loads(admin_body), uuid=new, name=name)
    put("dtool", json.dumps(admin).encode(), dict(admin_metadata, uuid=new, name=name))
    return f"s3://{bucket.name}/{new}"


TEMPLATES = Templates()
