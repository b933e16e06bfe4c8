"""From parsed notifications to durable inbox rows.

Translates each :class:`ObjectEvent` to the dataset it belongs to, drops
what cannot change the index (it costs no row and no S3 request), and
writes the rest to the inbox in one transaction. The caller answers the
sender only after this returns, i.e. after the commit.

Senders decide how much arrives, so :func:`accept` holds the limits that
every producer (HTTP routes, queue consumers) must honour: at most
``DSERVER_NOTIFY_MAX_RECORDS`` records at once (:class:`TooManyRecords`)
and at most ``DSERVER_NOTIFY_MAX_PENDING`` waiting datasets
(:class:`InboxFull`); and it logs what it ignored as one line per request,
through a :class:`~.logbudget.LogBudget`.
"""
import logging
from collections import Counter
from dataclasses import dataclass

from .events import impossible_object
from .keys import Skip, completes_dataset, may_be_edit, translate
from .logbudget import LogBudget, printable, with_suppressed
from .db import WaitingCapReached

logger = logging.getLogger(__name__)

#: What a sender refused with InboxFull is told to wait before retrying.
RETRY_AFTER_SECONDS = 60
EXAMPLE_KEYS = 3
GROUPS_SHOWN = 5
NO_BUCKET = "-"


@dataclass(frozen=True)
class IntakeResult:
    """What one request added: events stored for a sync, events ignored."""
    accepted: int
    ignored: int


class IntakeRefused(Exception):
    """A notification the inbox does not take now. ``status`` and
    ``headers`` are the HTTP answer; a queue consumer leaves the message
    in its queue instead."""
    status = 400
    headers = {}

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class TooManyRecords(IntakeRefused):
    """More records than DSERVER_NOTIFY_MAX_RECORDS: nothing was stored."""
    status = 413

    def __init__(self, records, limit):
        super().__init__(f"{records} records in one notification exceed the limit of "
                         f"{limit} (DSERVER_NOTIFY_MAX_RECORDS); nothing was stored")


class InboxFull(IntakeRefused):
    """DSERVER_NOTIFY_MAX_PENDING datasets wait already. Events for waiting
    datasets were stored; send the notification again later."""
    status = 503
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}

    def __init__(self, refused, limit):
        super().__init__(f"{refused} dataset(s) not queued: {limit} datasets are waiting "
                         "already (DSERVER_NOTIFY_MAX_PENDING); retry later")


def accept(extension, intake) -> IntakeResult:
    """Enqueue what matters in ``intake``; return the counts."""
    settings = extension.settings
    tally = extension.tally
    records = intake.records
    if records > settings.max_records:
        tally.add("refused")
        raise TooManyRecords(records, settings.max_records)
    events, faults = possible_events(intake)
    targets, skipped = [], []
    for event in events:
        found = translate(event, settings.bucket_to_base_uri)
        if isinstance(found, Skip):
            skipped.append((event, found))
        else:
            targets.append(found)
    ignored = len(intake.ignored) + len(faults) + len(skipped)
    tally.add("received", records)
    tally.add("ignored", ignored)
    # a sender sent records we could not read; their neighbours still count
    tally.add("unreadable", len(faults))
    extension.ignored_log.log(intake.ignored, skipped, faults)
    if targets:
        try:
            extension.inbox.enqueue(targets, settings.debounce_seconds,
                                    settings.max_delay_seconds,
                                    max_waiting=settings.max_pending,
                                    due_now=_complete_or_gone(targets),
                                    edits=_possible_edits(targets),
                                    edit_delay=settings.edit_delay_seconds)
        except WaitingCapReached as full:
            tally.add("accepted", full.written)
            tally.add("refused")
            raise InboxFull(len(full.refused), settings.max_pending)
    tally.add("accepted", len(targets))
    return IntakeResult(accepted=len(targets), ignored=ignored)


def possible_events(intake):
    """``(events, faults)``: the events of objects an S3 store can hold, and
    the faults of the intake with one for each event of any other object
    (every producer comes through here, so none stores such a key)."""
    events, faults = [], list(intake.faults)
    for event in intake.events:
        problem = impossible_object(event)
        if problem is None:
            events.append(event)
        else:
            faults.append(f"{problem} (bucket {printable(event.bucket)})")
    return events, faults


class IgnoredLog(LogBudget):
    """One line per request about the records it ignored.

    A warning when something looks misconfigured (a bucket with no base URI,
    keys that are not dtool objects), else a debug line: counts per bucket
    and reason, a few example keys, every value truncated. Lines with the
    same buckets and reasons are rate-limited like refusals. Each record is
    listed at debug level.
    """

    def __init__(self, interval_seconds, log=logger, **kwargs):
        super().__init__(interval_seconds, **kwargs)
        self.logger = log

    def log(self, ignored_reasons, skipped, faults=()) -> bool:
        """``ignored_reasons``: texts of records the formats ignored;
        ``skipped``: (event, Skip) pairs; ``faults``: texts of records that
        could not be understood (always worth a warning). True if a line
        was written."""
        if not ignored_reasons and not skipped and not faults:
            return False
        if self.logger.isEnabledFor(logging.DEBUG):
            for reason in ignored_reasons:
                self.logger.debug("ignored record: %s", printable(reason, 200))
            for reason in faults:
                self.logger.debug("unreadable record: %s", printable(reason, 200))
            for event, skip in skipped:
                self.logger.debug("ignored %s of %s in bucket %s: %s", event.action.value,
                                  printable(event.key, 1024), printable(event.bucket),
                                  skip.reason.text)
        groups, examples = Counter(), {}
        for reason in ignored_reasons:
            groups[(NO_BUCKET, printable(reason, 80), False)] += 1
        for reason in faults:
            groups[(NO_BUCKET, "unreadable: " + printable(reason, 80), True)] += 1
        for event, skip in skipped:
            group = (printable(event.bucket), skip.reason.text, skip.reason.warn)
            groups[group] += 1
            keys = examples.setdefault(group, [])
            if len(keys) < EXAMPLE_KEYS:
                keys.append("'" + printable(event.key, 80) + "'")
        warn = any(group[2] for group in groups)
        level = logging.WARNING if warn else logging.DEBUG
        if not self.logger.isEnabledFor(level):
            return False
        ordered = sorted(groups.items(), key=lambda item: (not item[0][2], -item[1], item[0]))
        # Keyed by what the line says, bounded in size whatever was sent.
        counts = self.admit((tuple(group for group, _ in ordered[:GROUPS_SHOWN]), len(ordered)))
        if counts is None:
            return False
        message, args = _summary(ordered, examples)
        message, args = with_suppressed(message, args, counts, "summaries")
        self.logger.log(level, message, *args)
        return True


def _summary(ordered, examples):
    """``ignored N record(s) ...: n in bucket B (reason, e.g. 'k1', 'k2'); ...``
    for the (group, count) pairs in ``ordered``."""
    parts, args = [], [sum(count for _, count in ordered)]
    for group, count in ordered[:GROUPS_SHOWN]:
        bucket, reason, _ = group
        keys = examples.get(group)
        where = "" if bucket == NO_BUCKET else " in bucket %s"
        parts.append("%d" + where + " (%s" + (", e.g. %s" if keys else "") + ")")
        args += [count] + ([bucket] if where else []) + [reason] + \
            ([", ".join(keys)] if keys else [])
    message = "ignored %d record(s) of one notification: " + "; ".join(parts)
    if len(ordered) > GROUPS_SHOWN:
        message += "; %d more group(s)"
        args.append(len(ordered) - GROUPS_SHOWN)
    return message, args


def _complete_or_gone(targets):
    """URIs of datasets complete (or gone) now: no point waiting for more events."""
    return {target.uri for target in targets if completes_dataset(target)}


def _possible_edits(targets):
    """URIs of datasets whose every event here may be a dtool edit (README,
    tag, annotation): due after the edit delay if the inbox (or, without an
    entry, the reconciler's ledger) knows the dataset indexed and quiet, or
    its open window is an edit's (:mod:`.db.due`). One batch with any other
    part of a dataset is a copy's."""
    uris = {target.uri for target in targets}
    uris.difference_update(target.uri for target in targets if not may_be_edit(target))
    return uris
