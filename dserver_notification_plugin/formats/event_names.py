"""S3 event names, as every sender spells them, -> created, removed or nothing.

AWS, MinIO, StorageGRID, NooBaa and Ceph share the ``ObjectCreated:*`` and
``ObjectRemoved:*`` families, but each adds its own names for lifecycle,
replication and multi-site events, and some drop the ``s3:`` prefix (AWS
records and Ceph never send it, MinIO always does). Only what can make an
object appear or disappear matters here; sync looks at S3 anyway, so a
removal that turns out to be a creation (or the reverse) costs nothing.

Sources of the names: AWS "Event notification types" (S3 user guide),
MinIO ``internal/event/name.go``, Ceph ``src/rgw/rgw_notify_event_type.cc``
and ``doc/radosgw/s3-notification-compatibility.rst``, NooBaa
``src/util/notifications_util.js``.
"""
from typing import Optional, Tuple

from ..events import Action
from .errors import clip

PREFIX = "s3:"

# Prefixes (compared case-insensitively, after dropping "s3:") of names
# that make an object appear or disappear. The longest match wins, so a
# specific name can override its family.
_CHANGES = {
    "objectcreated:": Action.CREATED,
    "objectremoved:": Action.REMOVED,
    # AWS and Ceph (Squid): a lifecycle rule expired the current version,
    # deleting it or hiding it behind a delete marker.
    "lifecycleexpiration:": Action.REMOVED,
    # MinIO: a lifecycle rule removed an expired delete marker.
    "lifecycledelmarkerexpiration:": Action.REMOVED,
    # Ceph's own lifecycle names: the current version, or the delete marker
    # in front of it, expired.
    "objectlifecycle:expiration:current": Action.REMOVED,
    "objectlifecycle:expiration:deletemarker": Action.REMOVED,
    # Ceph multisite: the object arrived in (or left) this zone by sync;
    # "Replication:Create" is Squid's AWS-style alias.
    "objectsynced:create": Action.CREATED,
    "objectsynced:delete": Action.REMOVED,
    "objectsynced:deletionmarkercreated": Action.REMOVED,
    "replication:create": Action.CREATED,
    "replication:delete": Action.REMOVED,
    "replication:deletionmarkercreated": Action.REMOVED,
    # AWS: a Reduced Redundancy object was lost, i.e. it is gone.
    "reducedredundancylostobject": Action.REMOVED,
}

_CHANGES_LONGEST_FIRST = sorted(_CHANGES.items(), key=lambda item: len(item[0]), reverse=True)

# Names that are understood and leave every object where it was. The
# reason logged for them is the name as sent.
_NO_CHANGE = (
    "objectaccessed:",            # reads (MinIO)
    "objectrestore:",             # archive restores (AWS, MinIO, NooBaa)
    "objecttagging:",             # tags (AWS, NooBaa)
    "objectacl:",                 # ACLs (AWS, NooBaa)
    "objecttransition:",          # MinIO tiering
    "objectlifecycle:transition:",  # Ceph transitions
    "lifecycletransition",        # AWS and Ceph transitions
    "intelligenttiering",         # AWS archive tiers
    "replication:",               # replication status (AWS, MinIO)
    "scanner:",                   # MinIO scanner warnings
    "bucketcreated:",             # MinIO bucket events
    "bucketremoved:",
    "testevent",
)

# Ceph lifecycle names whose object was never visible or stays hidden.
_NOTHING_VISIBLE = {
    "objectlifecycle:expiration:noncurrent": "a noncurrent version expired",
    "objectlifecycle:expiration:abortmpu": "an unfinished multipart upload was aborted",
    "objectlifecycle:expiration:abortmultipartupload":
        "an unfinished multipart upload was aborted",
}

UNKNOWN = "unknown event name"


def classify_event_name(name: str) -> Tuple[Optional[Action], Optional[str], bool]:
    """``(action, None, False)`` for a change, else ``(None, reason, is_fault)``.

    ``is_fault`` is True for a name nobody documented: the record is
    ignored but worth a warning, since it may be a change we miss.
    """
    bare = name[len(PREFIX):] if name.startswith(PREFIX) else name
    folded = bare.lower()
    for prefix, action in _CHANGES_LONGEST_FIRST:
        if _matches(folded, prefix):
            return action, None, False
    for full, reason in _NOTHING_VISIBLE.items():
        if folded == full:
            return None, f"{name}: {reason}", False
    if any(_matches(folded, prefix) for prefix in _NO_CHANGE) or folded == "objectlifecycle:*":
        return None, name, False
    return None, f"{UNKNOWN} {clip(name)}", True


def _matches(folded, prefix):
    """A family prefix ends with ':'; a full name must match exactly."""
    if prefix.endswith(":"):
        return folded.startswith(prefix)
    return folded == prefix or folded.startswith(prefix + ":")
