"""dserver's dataset index, as the plugin reads it and cleans it.

The index is dservercore's SQL table of datasets plus the documents that
extensions keep of them: today the search and retrieve plugins' Mongo
collections (by default both use the same one) and those of extensions such
as dserver-direct-mongo-plugin. dservercore's ``delete_dataset`` only asks
the plugins to delete, and the Mongo search and retrieve plugins and those
extensions implement no ``delete_dataset``: they keep their documents. So this module is the plugin's one view of the index:

- :func:`remove_dataset`: the sync's deletion, SQL row and every document
  an extension demonstrably left behind;
- :func:`read_index`: what the index holds under a base URI, for the
  reconciler (:class:`IndexView`).

Which extensions keep documents is :func:`document_keepers`; widening the
clean-up to more extensions means widening that one function.
"""
import bisect
import logging
import re
import time
from dataclasses import dataclass, field
from typing import List, Optional

import sqlalchemy as sa
from flask import current_app

from .keys import UUID_PATTERN

logger = logging.getLogger(__name__)

_URI_UUID = re.compile(rf".*/({UUID_PATTERN})")


# --- the extensions that keep documents ----------------------------------------------

def document_keepers():
    """The extensions whose documents of a dataset may outlive its deletion:
    the search and retrieve plugins and every loaded extension, such as
    dserver-direct-mongo-plugin (whose collection dserver-dependency-graph-plugin
    reads); those without a pymongo ``collection`` are passed over."""
    return (current_app.search, current_app.retrieve,
            *getattr(current_app, "custom_extensions", ()))


def plugin_collections():
    """``(plugin, collection)`` for each distinct Mongo collection of the
    :func:`document_keepers` (the search and retrieve plugins by default
    share one)."""
    seen, found = set(), []
    for plugin in document_keepers():
        collection = getattr(plugin, "collection", None)
        if collection is None or not hasattr(collection, "find_one"):
            continue
        ident = (collection.database.name, collection.name) \
            if hasattr(collection, "database") else id(collection)
        if ident not in seen:
            seen.add(ident)
            found.append((plugin, collection))
    return found


def plugins_holding(uri):
    """The plugins whose collection still holds a document of ``uri``."""
    return [plugin for plugin, collection in plugin_collections()
            if collection.find_one({"uri": uri}, {"_id": 1}) is not None]


# --- the sync's side -----------------------------------------------------------------

def remove_dataset(uri, before_write=lambda: None):
    """Delete ``uri`` from the index, documents left behind included.

    Returns False when nothing held it (nothing was done). ``before_write``
    is called right before the first write (the sync's claim fence, which
    may raise); the documents go first and dservercore's ``delete_dataset``
    commits last, so all of it happens in the transaction the fence opened.
    Needs an app context.
    """
    from dservercore.utils import dataset_uri_exists, delete_dataset
    holding = plugins_holding(uri)
    if not dataset_uri_exists(uri) and not holding:
        return False
    before_write()
    for plugin in holding:  # the Mongo plugins would keep them (module docstring)
        plugin.collection.delete_many({"uri": uri})
        logger.info("removed the documents of %s from %s", uri, type(plugin).__name__)
    delete_dataset(uri)
    return True


# --- the reconciler's side -----------------------------------------------------------

@dataclass
class IndexView:
    """The URIs the index holds under a base URI: SQL rows and Mongo documents."""
    in_sql: set
    in_plugins: set
    uuids: List[str] = field(default_factory=list)  # sorted, for range look-ups
    read_at: Optional[float] = None  # when reading began (epoch seconds)

    def __post_init__(self):
        self.uuids = sorted(uuid_of(uri) for uri in self.in_sql | self.in_plugins)

    def holds(self, uri):
        return uri in self.in_sql or uri in self.in_plugins

    def disagrees(self, uri):
        return (uri in self.in_sql) != (uri in self.in_plugins)

    def uuids_between(self, low, high):
        """Indexed UUIDs in ``(low, high]``; ``None`` bounds are open."""
        start = 0 if low is None else bisect.bisect_right(self.uuids, low)
        end = len(self.uuids) if high is None else bisect.bisect_right(self.uuids, high)
        return self.uuids[start:end]


def uuid_of(uri):
    match = _URI_UUID.fullmatch(uri)
    return match.group(1) if match else uri.rsplit("/", 1)[-1]


def read_index(base_uri):
    """The index of ``base_uri`` as it is now (needs an app context)."""
    from dservercore import sql_db
    from dservercore.sql_models import BaseURI, Dataset
    read_at = time.time()
    in_sql = set(sql_db.session.execute(
        sa.select(Dataset.uri).join(BaseURI, Dataset.base_uri_id == BaseURI.id)
        .where(BaseURI.base_uri == base_uri)).scalars())
    in_plugins = set()
    for _, collection in plugin_collections():
        for doc in collection.find({"base_uri": base_uri}, {"uri": 1, "_id": 0}):
            if isinstance(doc.get("uri"), str):
                in_plugins.add(doc["uri"])
    return IndexView(in_sql, in_plugins, read_at=read_at)
