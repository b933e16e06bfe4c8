"""Everything the plugin keeps in dservercore's SQL database.

One :class:`Database` (the connector: engine, transactions, migrations, the
LISTEN connection, fork safety) and small classes composed on it, one per
thing kept::

    db = Database(app)            # or Database(engine=...)
    inbox = Inbox(db)             # the queue of datasets to sync
    ledger = Ledger(db)           # what the reconciler remembers
    lease = Lease(db, name, ttl)  # one holder at a time, across hosts
    documents = Documents(db)     # Elasticsearch document ids
    counters = Counters(db)       # totals across processes and restarts
    attention = Attention(db)     # base URIs an operator must look at
    processes = Processes(db, 2)  # processes known alive, their heartbeats

Modules: :mod:`.tables` (the current tables), :mod:`.migrations` (the
versioned steps that reach them), :mod:`.database`, :mod:`.inbox`,
:mod:`.claims` (its claim statements) and :mod:`.due` (its due times),
:mod:`.ledger`, :mod:`.leases`, :mod:`.documents`, :mod:`.counters`,
:mod:`.attention`, :mod:`.processes`.
Nothing else in the plugin writes SQL.
"""
from .claims import Claim
from .counters import Counters
from .database import CHANNEL, Database, now, process_id
from .documents import MAX_DOC_ID_LENGTH, Documents
from .inbox import KEEP, Entry, Inbox, WaitingCapReached
from .ledger import Known, Ledger, PassState
from .leases import Lease, LeaseInfo
from .migrations import LATEST_VERSION, MIGRATIONS, Step, migrate

__all__ = [
    "CHANNEL", "Claim", "Counters", "Database", "Documents", "Entry", "Inbox", "KEEP",
    "Known", "LATEST_VERSION", "Lease", "LeaseInfo", "Ledger", "MAX_DOC_ID_LENGTH",
    "MIGRATIONS", "PassState", "Step", "WaitingCapReached", "migrate", "now", "process_id",
]
