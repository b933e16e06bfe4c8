"""Which object each Elasticsearch document id stood for.

Elasticsearch-style targets (MinIO, StorageGRID) delete by document id and
send no body, so a later delete can only be told apart from noise if the
plugin remembers the bucket and key the id named when the object was put.
"""
import sqlalchemy as sa

from .database import now, upsert
from .tables import es_documents

#: Longest Elasticsearch document id the plugin remembers (its column's size).
MAX_DOC_ID_LENGTH = es_documents.c.doc_id.type.length


#: How long an id is remembered after its last document, and how many are
#: at most: senders choose ids freely (issue 23).
DOCUMENT_MAX_AGE_SECONDS = 30 * 24 * 3600
MAX_DOCUMENTS = 100_000


class Documents:
    """The document ids, on the plugin's :class:`.Database`."""

    max_age = DOCUMENT_MAX_AGE_SECONDS
    most = MAX_DOCUMENTS

    def __init__(self, db):
        self.db = db

    def remember(self, doc_id, bucket, key, at=None):
        """Remember the object ``doc_id`` names, unless it names one already.

        Returns ``(bucket, key)`` the id names from now on: the first object
        remembered for it, so that no later document re-points the id and
        makes a DELETE miss what it named. A document for the same object
        makes the id young again. Ids older than :attr:`max_age`, and the
        oldest beyond :attr:`most`, make room for a new one.
        """
        at = now() if at is None else at
        with self.db.transaction() as conn:
            known = _recall(conn, doc_id, at - self.max_age)
            if known is None:
                _forget_old(conn, at - self.max_age, self.most)
                values = dict(doc_id=doc_id, bucket=bucket, key=key, updated_at=at)
                upsert(conn, es_documents, values, es_documents.c.doc_id,
                       {"bucket": bucket, "key": key, "updated_at": at})
                return bucket, key
            if known == (bucket, key):
                conn.execute(es_documents.update()
                             .where(es_documents.c.doc_id == doc_id).values(updated_at=at))
            return known

    def recall(self, doc_id, at=None):
        """``(bucket, key)`` a document id stood for, or None (also once it
        is older than :attr:`max_age`, purged or not)."""
        with self.db.transaction() as conn:
            return _recall(conn, doc_id, (now() if at is None else at) - self.max_age)

    def forget(self, doc_id):
        with self.db.transaction() as conn:
            conn.execute(es_documents.delete().where(es_documents.c.doc_id == doc_id))


def _recall(conn, doc_id, since):
    """``(bucket, key)`` of ``doc_id`` if its last document came ``since`` or later."""
    c = es_documents.c
    row = conn.execute(sa.select(c.bucket, c.key).where(
        sa.and_(c.doc_id == doc_id, c.updated_at >= since))).first()
    return None if row is None else (row.bucket, row.key)


def _forget_old(conn, before, most):
    """Delete ids last seen ``before``, then the oldest beyond ``most``,
    counting the one about to be added."""
    c = es_documents.c
    conn.execute(es_documents.delete().where(c.updated_at < before))
    excess = conn.execute(sa.select(sa.func.count()).select_from(es_documents)).scalar() \
        - (most - 1)
    if excess > 0:
        oldest = sa.select(c.doc_id).order_by(c.updated_at, c.doc_id).limit(excess)
        conn.execute(es_documents.delete().where(c.doc_id.in_(oldest.scalar_subquery())))
