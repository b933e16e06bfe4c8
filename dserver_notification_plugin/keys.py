"""Object keys -> dtool datasets, following dtool-s3's bucket layout.

dtool-s3 (0.14) writes a dataset with UUID ``u`` and dataset prefix ``p``
(``DTOOL_S3_DATASET_PREFIX_<bucket>``, any string, often ``u/<user>/``) as:

- ``dtool-<u>`` at the top of the bucket, whose body is ``p`` (registration);
- ``<p><u>/dtool`` (admin metadata), ``<p><u>/README.yml``,
  ``<p><u>/manifest.json``, ``<p><u>/structure.json``, ``<p><u>/README.txt``
  and, after ``dtool publish``, ``<p><u>/http_manifest.json``;
- ``<p><u>/data/<sha1 of the item's relpath>``, ``<p><u>/fragments/<file>``
  (temporary item metadata), ``<p><u>/overlays/<name>.json``,
  ``<p><u>/annotations/<name>.json`` and ``<p><u>/tags/<tag>``.

The prefix is arbitrary text and may itself hold a UUID, and it need not end
with ``/``, so the dataset UUID is the 36 characters directly before one of
the suffixes above, read from the end of the key. Item, tag, annotation and
overlay names never contain ``/`` (dtoolcore allows ``[0-9a-zA-Z_.-]`` for
names; item keys are SHA-1 hex), so the suffix is one or two segments long
and the reading is unambiguous. The dataset URI is ``s3://<bucket>/<u>``
whatever the prefix, so no S3 request is needed to name the dataset.
"""
import re
from dataclasses import dataclass
from enum import Enum
from typing import Dict, Optional, Union

from .events import Action, ObjectEvent

UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# dtoolcore makes UUIDs with str(uuid.uuid4()): lower-case hex. S3 keys are
# case-sensitive, so a key spelling one in upper case is no object of that
# dataset, and taking it would give every spelling an inbox row of its own.
DTOOL_UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
UUID_LENGTH = 36
_UUID = re.compile(DTOOL_UUID_PATTERN)
_REGISTRATION = re.compile(rf"dtool-({DTOOL_UUID_PATTERN})")
# What a bucket listing counts as a registration: any case, as dtool-s3's
# own listing does, so the reconciler never takes an indexed dataset for gone.
_LISTED_REGISTRATION = re.compile(rf"dtool-({UUID_PATTERN})")
_README_BACKUP = re.compile(r"README\.yml-[^/]+")

# The last key segment -> part, for objects directly under <prefix><uuid>/.
FILE_PARTS = {
    "dtool": "admin",
    "README.yml": "readme",
    "manifest.json": "manifest",
    "structure.json": "structure",
    "README.txt": "readme_txt",
    "http_manifest.json": "http_manifest",
}
# The second-to-last segment -> part, for objects under <prefix><uuid>/<dir>/.
DIRECTORY_PARTS = {
    "data": "data",
    "tags": "tags",
    "annotations": "annotations",
    "overlays": "overlays",
    "fragments": "fragments",
}
# Parts whose change can alter what dservercore's generate_dataset_info reads.
INDEXED_PARTS = frozenset({"registration", "admin", "readme", "manifest", "tags", "annotations"})
# How the reasons for skipping an event name a part.
_PART_NAMES = {
    "data": "data item",
    "fragments": "item metadata fragment",
    "overlays": "overlay",
    "structure": "structure.json",
    "readme_txt": "README.txt",
    "http_manifest": "http_manifest.json",
    "readme_backup": "README backup",
}


@dataclass(frozen=True)
class DatasetObject:
    """Where a key sits in a dataset.

    ``prefix`` is the dataset prefix (the text before the UUID); it is ""
    for the registration key, whose body holds the prefix instead.
    ``part`` is one of: registration, admin, readme, manifest, structure,
    readme_txt, http_manifest, data, tags, annotations, overlays, fragments.
    """
    uuid: str
    prefix: str
    part: str


@dataclass(frozen=True)
class DatasetTarget:
    """The dataset an event is about, named without asking S3.

    ``key``, ``etag``, ``removed`` and ``may_restore`` say what the event
    told of the object (see :mod:`.coverage`); a target that comes from no
    event (a reconcile finding, a resync) has no ``key`` and always asks
    for a sync.
    """
    base_uri: str
    uri: str
    uuid: str
    part: str
    key: Optional[str] = None
    etag: Optional[str] = None
    removed: bool = False
    may_restore: bool = False  # a removal that may bring an older version back


def classify_key(key: str) -> Optional[DatasetObject]:
    """The dataset object ``key`` is in dtool-s3's layout, or None."""
    registration = _REGISTRATION.fullmatch(key)
    if registration:
        return DatasetObject(uuid=registration.group(1), prefix="", part="registration")
    segments = key.split("/")
    if len(segments) >= 2 and _README_BACKUP.fullmatch(segments[-1]):
        # dtoolcore keeps the previous README as README.yml-<timestamp>
        return _under_dataset(segments[:-1], "readme_backup")
    # A tag may be called "dtool": try both readings; at most one matches,
    # since "tags" and the other directory names do not end with a UUID.
    found = None
    if len(segments) >= 2 and segments[-1] in FILE_PARTS:
        found = _under_dataset(segments[:-1], FILE_PARTS[segments[-1]])
    if found is None and len(segments) >= 3 and segments[-2] in DIRECTORY_PARTS \
            and _is_valid_leaf(segments):
        found = _under_dataset(segments[:-2], DIRECTORY_PARTS[segments[-2]])
    return found


def _is_valid_leaf(segments):
    """Annotations and overlays are ``<name>.json``; every name is non-empty."""
    leaf, directory = segments[-1], segments[-2]
    if not leaf:
        return False
    if directory in ("annotations", "overlays"):
        return leaf.endswith(".json") and len(leaf) > len(".json")
    return True


def _under_dataset(head_segments, part):
    """The object when the segments before the suffix end with a UUID."""
    head = "/".join(head_segments)
    uuid = head[-UUID_LENGTH:]
    if len(head) < UUID_LENGTH or not _UUID.fullmatch(uuid):
        return None
    return DatasetObject(uuid=uuid, prefix=head[:-UUID_LENGTH], part=part)


def registration_uuid(key: str) -> Optional[str]:
    """The UUID of a listed registration key ``dtool-<uuid>``, else None."""
    match = _LISTED_REGISTRATION.fullmatch(key)
    return match.group(1) if match else None


def can_change_index(obj: DatasetObject) -> bool:
    """Whether creating or removing ``obj`` can change what dserver indexes.

    dservercore's ``generate_dataset_info`` builds the index entry from the
    admin metadata (``dtool``), the README (``README.yml``), the manifest
    (``manifest.json``, which lists the items, so it alone speaks for the
    data), the annotations and the tags; the registration key is how a
    dataset is found in the bucket. Item data, fragments (temporary, written
    before the dataset is frozen), overlays, ``structure.json``,
    ``README.txt`` and ``http_manifest.json`` are not read, so events on
    them need no sync. This holds for creations and removals alike: a
    removed dataset always loses its ``dtool`` object too.
    """
    return obj.part in INDEXED_PARTS


def completes_dataset(target: DatasetTarget) -> bool:
    """Whether an event on ``target`` may be the last one of a copy or removal.

    dtool writes the admin metadata object (``dtool``) last: when it creates
    a proto-dataset and again when it freezes it. So its creation is the
    moment a copied dataset is complete, and its removal the moment a
    dataset is gone. An early or reordered one costs a cheap look at S3
    ("still a proto-dataset"), as any event may.
    """
    return target.part == "admin"


#: The parts ``dtool readme write``/``edit``, ``dtool tag set``/``delete`` and
#: ``dtool annotation set`` write or remove on a frozen dataset (the README
#: backup ``README.yml-<time>`` is skipped before this), and nothing else.
EDIT_PARTS = frozenset({"readme", "tags", "annotations"})


def may_be_edit(target: DatasetTarget) -> bool:
    """Whether an event on ``target`` may be a dtool edit of a frozen dataset.

    A copy writes these parts too, but between the registration key, a
    ``dtool`` object and the manifest, which no edit writes: the inbox
    decides from what the dataset's entry remembers whether an edit is
    what this is (:meth:`.db.Inbox.enqueue`, ``edits``).
    """
    return target.key is not None and target.part in EDIT_PARTS


def dataset_uri(base_uri: str, uuid: str) -> str:
    """``<base_uri>/<uuid>``: dtool-s3 names datasets by UUID, not by prefix."""
    return f"{base_uri.rstrip('/')}/{uuid}"


class SkipReason(Enum):
    """Why an event needs no sync. ``warn``: the operator probably
    misconfigured something (a bucket or prefix that should not notify)."""
    UNMAPPED_BUCKET = ("bucket has no base URI mapping", True)
    NOT_DTOOL_KEY = ("key is not a dtool object", True)
    NOT_INDEXED = ("part cannot change the index", False)

    def __init__(self, text, warn):
        self.text = text
        self.warn = warn


@dataclass(frozen=True)
class Skip:
    """An event that costs no inbox row: the reason and what it concerned."""
    reason: SkipReason
    detail: str = ""

    def __str__(self):
        return f"{self.reason.text}: {self.detail}" if self.detail else self.reason.text


def translate(event: ObjectEvent, bucket_to_base_uri: Dict[str, str]
              ) -> Union[DatasetTarget, Skip]:
    """The dataset ``event`` may change, or why it cannot change the index."""
    base_uri = bucket_to_base_uri.get(event.bucket)
    if base_uri is None:
        return Skip(SkipReason.UNMAPPED_BUCKET, event.bucket)
    obj = classify_key(event.key)
    if obj is None:
        return Skip(SkipReason.NOT_DTOOL_KEY)
    if not can_change_index(obj):
        return Skip(SkipReason.NOT_INDEXED, _PART_NAMES.get(obj.part, obj.part))
    return DatasetTarget(base_uri=base_uri, uri=dataset_uri(base_uri, obj.uuid),
                         uuid=obj.uuid, part=obj.part, key=event.key, etag=event.etag,
                         removed=event.action is Action.REMOVED,
                         may_restore=event.action is Action.REMOVED and event.may_restore)

