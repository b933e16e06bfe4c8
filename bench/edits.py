"""The four dtool edits of an indexed dataset that ``python -m bench latency`` times.

Each edit is dtoolcore's own call, the one ``dtool readme write``, ``dtool
tag set``, ``dtool annotation set`` and ``dtool tag delete`` make, on the
dataset the copy phase indexed. What it wrote (with S3's ETags) and removed
is notified in MinIO's format, as MinIO sends it; dserver's API (the
retrieve routes) is asked until it shows the edit.
"""
from dataclasses import dataclass
from typing import Callable

from devstack.payloads import minio_bodies_for_keys
from devstack.s3 import list_etags

CREATED, REMOVED = "s3:ObjectCreated:Put", "s3:ObjectRemoved:Delete"
ADDED_TAG, COPIED_TAG = "edited", "bench"  # the copy phase tags the dataset "bench"


@dataclass(frozen=True)
class Edit:
    name: str                   # as the dtool command says it
    apply: Callable             # (dtoolcore.DataSet, word) -> None
    route: str                  # dserver's retrieve route that shows it
    shows: Callable             # (answer JSON, word) -> bool

    @property
    def key(self):
        """The edit's name as a figure's key: ``readme_write``."""
        return self.name.replace(" ", "_")


EDITS = (
    # the README keeps the word the delete phase searches for
    Edit("readme write", lambda ds, word: ds.put_readme(f"description: edited {word}\n"),
         "readmes", lambda found, word: f"edited {word}" in str(found)),
    Edit("tag set", lambda ds, word: ds.put_tag(ADDED_TAG),
         "tags", lambda found, word: ADDED_TAG in found.get("tags", ())),
    Edit("annotation set", lambda ds, word: ds.put_annotation("stage", "edited"),
         "annotations", lambda found, word: found.get("annotations", {}).get("stage") == "edited"),
    Edit("tag delete", lambda ds, word: ds.delete_tag(COPIED_TAG),
         "tags", lambda found, word: sorted(found.get("tags", ())) == [ADDED_TAG]),
)


def notifications_of(s3, bucket, change):
    """Run ``change``; return MinIO's bodies for the objects it wrote (with
    their ETags) and removed, as MinIO would send them."""
    before = list_etags(s3, bucket)
    change()
    after = list_etags(s3, bucket)
    written = sorted(key for key, etag in after.items() if before.get(key) != etag)
    removed = sorted(set(before) - set(after))
    return (minio_bodies_for_keys(bucket, written, CREATED, [after[k] for k in written])
            + minio_bodies_for_keys(bucket, removed, REMOVED))
