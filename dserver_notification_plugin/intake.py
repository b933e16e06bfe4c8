"""From parsed notifications to durable inbox rows.

Translates each :class:`ObjectEvent` to the dataset it belongs to, drops
what cannot change the index (it costs no row and no S3 request), and
writes the rest to the inbox in one transaction. The caller answers the
sender only after this returns, i.e. after the commit.
"""
import logging
from dataclasses import dataclass

from .guard import printable
from .keys import Skip, completes_dataset, translate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntakeResult:
    """What one request added: events stored for a sync, events ignored."""
    accepted: int
    ignored: int


def accept(extension, intake) -> IntakeResult:
    """Enqueue what matters in ``intake``; return the counts."""
    settings = extension.settings
    targets, ignored = [], len(intake.ignored) + len(intake.faults)
    for reason in intake.ignored:
        logger.debug("ignored record: %s", reason)
    for reason in intake.faults:
        # the sender sent something we could not read; its neighbours still count
        logger.warning("ignored a record that could not be understood: %s", reason)
    for event in intake.events:
        found = translate(event, settings.bucket_to_base_uri)
        if isinstance(found, Skip):
            ignored += 1
            _log_skip(event, found)
        else:
            targets.append(found)
    if targets:
        # The dataset is complete (or gone) now: no point waiting for more.
        due_now = {target.uri for target in targets if completes_dataset(target)}
        extension.store.enqueue(targets, settings.debounce_seconds,
                                settings.max_delay_seconds, due_now=due_now)
    tally = extension.tally
    tally.add("received", len(intake.events) + len(intake.ignored) + len(intake.faults))
    tally.add("accepted", len(targets))
    tally.add("ignored", ignored)
    tally.add("unreadable", len(intake.faults))
    return IntakeResult(accepted=len(targets), ignored=ignored)


def _log_skip(event, skip):
    level = logging.WARNING if skip.reason.warn else logging.DEBUG
    logger.log(level, "ignored %s of %s in bucket %s: %s", event.action.value,
               printable(event.key, 200), printable(event.bucket), skip.reason.text)
