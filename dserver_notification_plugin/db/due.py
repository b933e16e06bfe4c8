"""When an inbox entry becomes due: the values of a new row, and the SET
clause that folds events into an existing one.

Every rule is SQL evaluated on the row as the upsert finds it, in the one
statement of :meth:`.Inbox.enqueue`: processes and hosts that enqueue for
the same dataset at once agree, whatever order their statements take.

- A copy is debounced: each event pushes the due time back by the debounce,
  up to ``max_delay`` after the first event of the window, so one sync
  reads the finished dataset instead of one sync per object.
- ``urgent`` (a ``dtool`` object: a copy complete, a dataset gone): due now.
- ``edit`` (only README, tag and annotation events in this batch) opens an
  *edit window*, due after ``edit_delay`` (a fraction of a second) instead
  of the debounce, when nothing of a copy is on its way: the dataset's
  entry is done and its last sync found a frozen, indexed dataset; or it
  has no entry (purged a week after its last sync, or never notified) and
  the reconciler's ledger holds the signature a sync recorded of it
  indexed (:func:`ledger_holds_indexed`). That is what ``dtool readme
  write``, ``tag set``, ``tag delete`` and ``annotation set`` do.
- An edit window stays one while only edits fold into it (a duplicate
  delivery, ``tag set a`` then ``tag set b``): each is due ``edit_delay``
  after it, up to ``max_delay`` after the window's start, and one that
  lands while the window's sync runs makes the entry due that soon after
  the claim finishes. Column ``edit_window`` marks it.
- Any other event folds into an edit window as into any other: the window
  becomes a debounce window for good (an indexed dataset copied over, its
  objects in any order), and later edits in it wait the debounce too. A
  burst of edits only that pauses longer than ``edit_delay`` costs one sync
  per pause, as separate edits would. A copy by dtool opens no edit
  window: its first event is the registration key, and its proto-dataset's
  ``dtool`` object makes the last sync find no frozen dataset (and is
  urgent, which ends any edit window).
"""
import sqlalchemy as sa

from ..coverage import HEARD_LIMIT, UNKNOWN, kind_mark
from ..states import FINISHED_STATES, DatasetKind, Outcome, State
from .tables import datasets, inbox

c = inbox.c


def new_row_due(uri, at, debounce, urgent=False, edit=False, edit_delay=0.0):
    """``(due_at, edit_window)`` of a dataset's first row: the INSERT of the upsert.

    Due now when ``urgent``; after ``edit_delay`` for an edit of a dataset
    the ledger holds indexed (in the same statement, so an entry purged
    since its last sync costs an edit no debounce); else after the debounce.
    """
    if urgent:
        return at, False
    if not edit:
        return at + debounce, False
    known = ledger_holds_indexed(uri)
    return (sa.case((known, at + edit_delay), else_=at + debounce),
            sa.case((known, sa.true()), else_=sa.false()))


def ledger_holds_indexed(uri):
    """The reconciler's ledger (:mod:`.ledger`) records a signature of ``uri``.

    A sync that registered or found unchanged a frozen dataset records it;
    one that deleted the dataset or found it gone deletes the ledger row.
    Only datasets a reconcile pass has listed have a row: with the
    background reconciler off, an edit of a dataset whose entry was purged
    (or that never had one) waits the debounce. A last sync that found a
    proto-dataset keeps the frozen one's signature; its edit is synced at
    once and finds the proto-dataset, one sync as after the debounce.
    """
    d = datasets.c
    return sa.exists().where(d.dataset_uri == uri, d.signature.is_not(None))


def fold_assignments(count, at, debounce, max_delay, urgent=False, heard=UNKNOWN,
                     edit=False, edit_delay=0.0):
    """SET clause that folds ``count`` new events into an existing row.

    ``heard`` (:func:`.coverage.heard_text` of the events) is added to what
    the row heard since its last claim, up to HEARD_LIMIT characters in all.

    ``urgent``: due now, and marked so (column ``urgent``, cleared by the
    claim). Otherwise the due time moves to the end of the debounce, unless
    the row is pending and due already (the worker is about to take it, and
    delaying it would only add latency) or marked urgent: the mark, not a
    comparison of times, keeps it due, because the ``at`` of concurrent
    enqueues (other processes, other hosts' clocks) arrive in any order.

    ``edit``: due after ``edit_delay`` when :func:`edit_opens_window` holds
    for the row, or when it continues an open edit window
    (:func:`_edit_window_due`). Not marked urgent: any other event debounces
    it again, as the burst of a copy must.
    """
    finished = c.state.in_([s.value for s in FINISHED_STATES])
    window_start = sa.case((finished, at), else_=c.first_event_at)
    due, marked = _due_and_mark(at, debounce, max_delay, urgent, window_start, finished)
    edit_window = sa.false()
    if edit and not urgent:
        opens, continues = edit_opens_window(), _in_edit_window()
        due = sa.case((opens, at + edit_delay),
                      (continues, _edit_window_due(at, edit_delay, max_delay)), else_=due)
        edit_window = sa.case((sa.or_(opens, continues), sa.true()), else_=sa.false())
    return {
        "state": sa.case((finished, State.PENDING.value), else_=c.state),
        "generation": c.generation + 1,
        "events": sa.case((finished, count), else_=c.events + count),
        "first_event_at": window_start,
        "last_event_at": at,
        # A row waiting for a retry keeps its backoff.
        "due_at": sa.case((c.state == State.FAILED.value, sa.case(
            (c.due_at > due, c.due_at), else_=due)), else_=due),
        "attempts": sa.case((finished, 0), else_=c.attempts),
        "urgent": marked,
        "edit_window": edit_window,
        "heard": UNKNOWN if heard == UNKNOWN else sa.case(
            (sa.or_(c.heard.is_(None), c.heard == UNKNOWN,
                    sa.func.length(c.heard) + len(heard) > HEARD_LIMIT), UNKNOWN),
            else_=c.heard + heard),
    }


def _due_and_mark(at, debounce, max_delay, urgent, window_start, finished):
    """The new due time (before a retry's backoff) and ``urgent`` mark."""
    open_ = c.state.in_([State.PENDING.value, State.PROCESSING.value])
    if urgent:
        return sa.case((sa.and_(open_, c.due_at < at), c.due_at), else_=at), sa.true()
    # min(at + debounce, window_start + max_delay), portable SQL
    debounced = sa.case(
        (window_start + max_delay > at + debounce, at + debounce),
        else_=window_start + max_delay)
    stays_due = sa.or_(sa.and_(c.state == State.PENDING.value, c.due_at <= at),
                       sa.and_(open_, c.urgent.is_(True)))
    return (sa.case((stays_due, c.due_at), else_=debounced),
            sa.case((finished, sa.false()), else_=c.urgent))


def edit_opens_window():
    """The row is done and its last sync left a frozen dataset indexed.

    Its last outcome is REGISTERED or UNCHANGED; or COVERED, which keeps the
    record of the sync before it (``seen``), and that sync found it frozen.
    Not DEAD (its sync keeps failing), not a proto-dataset or a dataset gone
    (a copy under way, or one starting over), and nothing pending: a row
    pending or processing is in a window already.
    """
    indexed = sa.or_(
        c.last_outcome.in_([Outcome.REGISTERED.value, Outcome.UNCHANGED.value]),
        sa.and_(c.last_outcome == Outcome.COVERED.value,
                c.seen.contains(kind_mark(DatasetKind.FROZEN))))
    return sa.and_(c.state == State.DONE.value, indexed)


def _in_edit_window():
    """The row is pending or being synced in a window only edits opened and
    joined (a failed row waits for its backoff; its window is over)."""
    return sa.and_(c.state.in_([State.PENDING.value, State.PROCESSING.value]),
                   c.edit_window.is_(True))


def _edit_window_due(at, edit_delay, max_delay):
    """``at + edit_delay``, up to ``max_delay`` after the window's start; a
    pending row due already stays due (the worker is about to take it).

    A row being synced keeps this due time when its claim finishes and it
    turns pending again (:meth:`.Inbox.finish`): a quick resync."""
    bounded = sa.case((c.first_event_at + max_delay > at + edit_delay, at + edit_delay),
                      else_=c.first_event_at + max_delay)
    return sa.case((sa.and_(c.state == State.PENDING.value, c.due_at <= at), c.due_at),
                   else_=bounded)
