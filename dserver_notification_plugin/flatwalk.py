"""The metadata objects of many datasets from one flat listing of the bucket.

A LIST without a delimiter returns up to 1,000 keys in key order, whatever
dataset they belong to. Asked for dataset roots (``<prefix><uuid>/``) in key
order, :class:`FlatWalk` reads each root's keys from the page it already
holds and lists again only when that page ends:

- inside a root's ``data/`` (or ``fragments/``) folder, the next LIST starts
  just past that folder, so items are never listed one by one: a dataset of
  10,000 items costs about one request, its metadata being on both sides;
- anywhere else, the next LIST starts where the page ended, or at the next
  root asked for when that lies further on (a jump over keys of no interest).

So small datasets next to each other share a request. What a root yields is
exactly what a delimited listing of it yields (:class:`~.listing.Listed`:
the signed files directly under the root and everything under the signed
folders, each named by its key below the root and in
:func:`~.listing.signed_entry`'s form, as a sync's own reads record it), so
a pass compares like with like.
"""
import bisect
from typing import List, Optional, Tuple

from .listing import SIGNED_FILES, SIGNED_FOLDERS, Listed, signed_entry

#: Folders of a dataset whose keys are one per item; a walk never pages through them.
SKIPPED_FOLDERS = ("data/", "fragments/")
PAGE_SIZE = 1000


def key_range_end(prefix):
    """The smallest key past every key that starts with ``prefix`` (which ends in
    "/"): keys in ``[prefix, key_range_end(prefix))`` are exactly those."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def relative_entry(root, key):
    """The name a signature gives ``key`` (its key below the dataset, as a
    sync's reads have it), or None if it signs nothing."""
    relative = key[len(root):]
    if relative in SIGNED_FILES or relative.startswith(SIGNED_FOLDERS):
        return relative
    return None


class FlatWalk:
    """Flat LIST pages of one bucket, kept while roots are asked for in key order."""

    def __init__(self, client, bucket, page_size=PAGE_SIZE):
        self.client = client
        self.bucket = bucket
        self.page_size = page_size
        self._after: Optional[str] = None  # the page holds every key in (after, last]
        self._keys: List[str] = []
        self._objects: List[Tuple] = []  # (key, ETag, size, LastModified) as listed
        self._truncated = True
        self._fetched = False

    def metadata(self, root) -> Listed:
        """The signed objects of the dataset under ``root`` (``<prefix><uuid>/``)."""
        if not self._holds_start_of(root):
            self._fetch(start_after=root)  # every key of the dataset sorts after its root
        end = key_range_end(root)
        found = []
        while True:
            start = bisect.bisect_right(self._keys, root)
            for key, etag, size, modified in self._objects[start:]:
                if key >= end:
                    return Listed(tuple(found))
                name = relative_entry(root, key)
                if name is not None:
                    found.append(signed_entry(name, etag, size, modified))
            if not self._truncated:
                return Listed(tuple(found))
            self._fetch(start_after=self._resume_after(root))

    def _holds_start_of(self, root):
        """Whether the page holds the first keys of ``root`` (or shows there are none)."""
        if not self._fetched or (self._after is not None and self._after > root):
            return False
        return not self._truncated or (self._keys and self._keys[-1] > root)

    def _resume_after(self, root):
        """Where to list on when the page ended inside ``root``: past a skipped
        folder if it ended in one, else after its last key."""
        last = self._keys[-1]
        for folder in SKIPPED_FOLDERS:
            if last.startswith(root + folder):
                return key_range_end(root + folder)
        return last

    def _fetch(self, start_after):
        page = self.client.list_objects_v2(Bucket=self.bucket, StartAfter=start_after,
                                           MaxKeys=self.page_size)
        contents = page.get("Contents", [])
        self._after, self._fetched = start_after, True
        self._keys = [obj["Key"] for obj in contents]
        self._objects = [(obj["Key"], obj.get("ETag"), obj.get("Size"),
                          obj.get("LastModified")) for obj in contents]
        self._truncated = bool(page.get("IsTruncated")) and bool(contents)
