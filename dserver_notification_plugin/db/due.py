"""When an inbox entry becomes due: the SET clause that folds events into a row.

Every rule is SQL evaluated on the row as the upsert finds it, in the one
statement of :meth:`.Inbox.enqueue`: processes and hosts that enqueue for
the same dataset at once agree, whatever order their statements take.

- A copy is debounced: each event pushes the due time back by the debounce,
  up to ``max_delay`` after the first event of the window, so one sync
  reads the finished dataset instead of one sync per object.
- ``urgent`` (a ``dtool`` object: a copy complete, a dataset gone): due now.
- ``edit`` (only README, tag and annotation events in this batch): due
  after ``edit_delay`` (a fraction of a second) instead of the debounce,
  when the dataset's entry is done and its last sync found a frozen,
  indexed dataset, so nothing of a copy is on its way. That is what ``dtool
  readme write``, ``tag set``, ``tag delete`` and ``annotation set`` do.
  Only the event that opens a window is; any event within that short wait
  (an indexed dataset copied over, its objects in any order) folds in and
  pushes the window to the end of the debounce, as a copy's events do. A
  burst whose events come closer together than that wait costs the syncs
  it cost before; one that pauses longer while its first sync runs costs
  one more (the rest waits for the debounce), and each pause after a sync
  has finished one more again, as a further edit would. A copy by dtool
  makes no edit early: its first event is the registration key, and its
  proto-dataset's ``dtool`` object makes the last sync find no frozen
  dataset.
"""
import sqlalchemy as sa

from ..coverage import HEARD_LIMIT, UNKNOWN, kind_mark
from ..states import FINISHED_STATES, DatasetKind, Outcome, State
from .tables import inbox

c = inbox.c


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
    for the row. Not marked urgent: the next event within that delay
    debounces it again, as the burst of a copy must.
    """
    finished = c.state.in_([s.value for s in FINISHED_STATES])
    window_start = sa.case((finished, at), else_=c.first_event_at)
    due, marked = _due_and_mark(at, debounce, max_delay, urgent, window_start, finished)
    if edit and not urgent:
        due = sa.case((edit_opens_window(), at + edit_delay), else_=due)
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
