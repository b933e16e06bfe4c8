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


class Documents:
    """The document ids, on the plugin's :class:`.Database`."""

    def __init__(self, db):
        self.db = db

    def remember(self, doc_id, bucket, key):
        with self.db.transaction() as conn:
            values = dict(doc_id=doc_id, bucket=bucket, key=key, updated_at=now())
            upsert(conn, es_documents, values, es_documents.c.doc_id,
                   {"bucket": bucket, "key": key, "updated_at": values["updated_at"]})

    def recall(self, doc_id):
        """``(bucket, key)`` a document id stood for, or None."""
        with self.db.transaction() as conn:
            row = conn.execute(
                sa.select(es_documents.c.bucket, es_documents.c.key)
                .where(es_documents.c.doc_id == doc_id)).first()
        return None if row is None else (row.bucket, row.key)

    def forget(self, doc_id):
        with self.db.transaction() as conn:
            conn.execute(es_documents.delete().where(es_documents.c.doc_id == doc_id))
