"""From parsed notifications to durable inbox rows.

Translates each :class:`ObjectEvent` to the dataset it belongs to, drops
what cannot change the index (it costs no row and no S3 request), and
writes the rest to the inbox in one transaction. The caller answers the
sender only after this returns, i.e. after the commit.
"""
import logging

from dservercore import sql_db

from . import inbox
from .keys import translate

logger = logging.getLogger(__name__)

# reasons that deserve a warning: the operator probably misconfigured something
WARN_PREFIXES = ("bucket ", "key is not a dtool object")


def accept(extension, intake):
    """Enqueue what matters in ``intake``; return ``(accepted, ignored)``."""
    settings = extension.settings
    targets, ignored = [], len(intake.ignored) + len(intake.faults)
    for reason in intake.ignored:
        logger.debug("ignored record: %s", reason)
    for reason in intake.faults:
        # the sender sent something we could not read; its neighbours still count
        logger.warning("ignored a record that could not be understood: %s", reason)
    for event in intake.events:
        target, reason = translate(event, settings.bucket_to_base_uri)
        if target is None:
            ignored += 1
            _log_ignored(event, reason)
        else:
            targets.append(target)
    if targets:
        extension.ensure_schema()
        with sql_db.engine.begin() as conn:
            inbox.enqueue(conn, targets, inbox.now(), settings.debounce_seconds,
                          settings.max_delay_seconds)
    stats = extension.stats
    stats.add("received", len(intake.events) + len(intake.ignored) + len(intake.faults))
    stats.add("accepted", len(targets))
    stats.add("ignored", ignored)
    return len(targets), ignored


def _log_ignored(event, reason):
    if reason and reason.startswith(WARN_PREFIXES):
        logger.warning("ignored %s of %r in bucket %r: %s",
                       event.action.value, event.key, event.bucket, reason)
    else:
        logger.debug("ignored %s of %r in bucket %r: %s",
                     event.action.value, event.key, event.bucket, reason)
