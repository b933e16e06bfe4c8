"""Pull S3 events from Amazon SQS queues into the inbox.

For dservers that the storage side cannot reach: S3 notifies a queue
(directly, through SNS or through EventBridge) and dserver fetches from it.
One thread per queue runs in every dserver process when
``DSERVER_NOTIFY_WORKER`` is on, or in ``flask notification consume``. Each
round of a thread:

1. long-polls up to 10 messages (``WaitTimeSeconds=20``);
2. parses every body with the webhook's adapters (:mod:`.formats.queue`);
   a message that cannot be parsed, or holds a record that cannot be
   understood, is left in the queue, counted and logged (the events it
   does hold are committed all the same): SQS shows it again after its visibility timeout, and the queue's
   redrive policy moves it to the dead-letter queue after
   ``maxReceiveCount`` receives;
3. puts the events of the parsed messages into the inbox in one
   transaction (:func:`.intake.accept`, the path of the HTTP routes);
4. only then deletes those messages, in one ``DeleteMessageBatch``.

A failure before step 4 deletes nothing: the messages reappear after the
visibility timeout and are read again, by this process or another one, and
the inbox folds the duplicates. After a failure the thread backs off with
jitter, and checks that the database takes writes before it receives messages
again, so an outage does not push good messages towards the dead-letter
queue by receiving them over and over. For the same reason, a round refused
because ``DSERVER_NOTIFY_MAX_PENDING`` datasets wait already stops the
thread from receiving until the workers have brought the inbox a tenth below
that cap.
"""
import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import List, Tuple

from .events import Intake
from .background import BackgroundThread
from .formats import PayloadError
from .formats.queue import parse_queue_message
from .logbudget import LogBudget, describe_database_error, printable, with_suppressed
from .intake import InboxFull, accept
from .sns_trust import SnsRefusal

logger = logging.getLogger(__name__)

WAIT_SECONDS = 20          # the longest long poll SQS allows: fewest empty receives
MAX_MESSAGES = 10          # the most SQS hands out per receive
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
STOP_JOIN_SECONDS = 1.0    # a thread inside a long poll is left to end on its own
ROOM_CHECK_SECONDS = 5.0   # how often a consumer held by a full inbox counts the waiting
PARSER_FAILURE_LOG_SECONDS = 60.0
#: Per-queue counters: messages received, deleted after their events were
#: committed, left for redrive (not understood), whose deletion SQS refused,
#: and failed rounds (SQS or database unavailable).
QUEUE_COUNTERS = ("received", "deleted", "left_for_redrive", "delete_failed", "errors")
_AWS_QUEUE_HOST = re.compile(r"^sqs[.-]([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


def counter_name(queue_url, kind):
    """The counter of one queue's figure (counter names are at most 64 characters)."""
    digest = hashlib.sha1(queue_url.encode("utf-8")).hexdigest()[:12]
    return f"sqs.{digest}.{kind}"


def resume_below(max_pending):
    """After a full inbox, receive again once at most this many datasets
    wait: a tenth below the cap, so the next batch does not hit it at once."""
    return max_pending - max(1, max_pending // 10)


def region_in_url(queue_url):
    """``eu-central-1`` for ``https://sqs.eu-central-1.amazonaws.com/...``, else None."""
    from urllib.parse import urlsplit
    match = _AWS_QUEUE_HOST.match(urlsplit(queue_url).hostname or "")
    return match.group(1) if match else None


@dataclass
class Batch:
    """One receive, sorted: what to commit, and what to do with each message."""
    intakes: List[Intake] = field(default_factory=list)         # one per readable message
    done: List[dict] = field(default_factory=list)              # delete after the commit
    left: List[Tuple[dict, str]] = field(default_factory=list)  # (message, why) for redrive

    @property
    def intake(self) -> Intake:
        """Everything the batch carried, as one intake."""
        return merged(self.intakes)

    def commit_groups(self, max_records):
        """The intakes merged into as few groups as fit ``max_records`` each,
        the limit :func:`.intake.accept` applies to one notification."""
        group, size = [], 0
        for intake in self.intakes:
            if group and size + intake.records > max_records:
                yield merged(group)
                group, size = [], 0
            group.append(intake)
            size += intake.records
        if group:
            yield merged(group)


def merged(intakes):
    whole = Intake()
    for intake in intakes:
        whole.extend(intake)
    return whole


def read_batch(messages, max_bytes, max_records, check_sns) -> Batch:
    """Read each message on its own, so one bad message spoils nothing else.

    ``check_sns(envelope)`` applies the webhook's SNS checks (listed topic,
    signature) to messages that came through SNS without raw delivery; it
    raises :class:`SnsRefusal`. Whatever a message's failure (a forged
    signature, a certificate SNS does not have, SNS unreachable, a parser
    bug), that message alone is left in the queue: SQS shows it again after
    its visibility timeout, so a passing failure costs one more receive, and
    the redrive policy ends a lasting one. The rest of the batch goes on.
    """
    batch = Batch()
    for message in messages:
        parsed, problem = read_message(message, max_bytes, max_records, check_sns)
        if parsed is not None:
            batch.intakes.append(parsed)  # a faulty message's readable events too
        if problem is None:
            batch.done.append(message)
        else:
            batch.left.append((message, problem))
    return batch


def read_message(message, max_bytes, max_records, check_sns):
    """``(intake to commit or None, why the message stays or None)``."""
    try:
        parsed = parse_queue_message(message.get("Body"), max_bytes)
        if parsed.sns_envelope is not None:
            check_sns(parsed.sns_envelope)
    except PayloadError as exc:
        return None, exc.message
    except SnsRefusal as exc:
        return None, f"{exc.message} ({exc.detail})" if exc.detail else exc.message
    except Exception as exc:  # a parser bug must not block the other messages
        log_parser_failure(message, exc)
        return None, f"parser failed: {type(exc).__name__}"
    if parsed.records > max_records:
        return None, (f"{parsed.records} records exceed the limit of {max_records} "
                      "(DSERVER_NOTIFY_MAX_RECORDS)")
    if parsed.sns_confirmation is not None:
        return None, ("an SNS subscription confirmation for topic "
                      f"{printable(parsed.sns_confirmation.topic_arn, 200)}; confirm it "
                      "with `aws sns confirm-subscription`")
    if parsed.faults:
        # Its readable events still go in; the message itself stays for the
        # dead-letter queue, where someone can look at it.
        return parsed, "unreadable record(s): " + "; ".join(parsed.faults[:3])
    return parsed, None


# A sender can repeat a message that trips a parser bug without end: its
# traceback is worth one line per kind of failure and minute.
_parser_failures = LogBudget(PARSER_FAILURE_LOG_SECONDS)


def log_parser_failure(message, exc):
    counts = _parser_failures.admit(type(exc).__name__)
    if counts is None:
        return
    text, args = with_suppressed("reading SQS message %s failed",
                                 [printable(message.get("MessageId"))], counts, "failures")
    logger.error(text, *args, exc_info=exc)


class QueueConsumer(BackgroundThread):
    """One SQS queue, consumed by one thread of this process.

    ``stop`` waits only briefly: a thread inside a long poll ends when the
    poll returns, and messages it has not committed by then are not deleted
    and come back after the visibility timeout.
    """

    thread_name = "dserver-notification-sqs"
    stop_timeout = STOP_JOIN_SECONDS
    error_pause_seconds = BACKOFF_BASE_SECONDS
    error_pause_max_seconds = BACKOFF_MAX_SECONDS
    error_pause_jitter = True

    def __init__(self, extension, queue_url):
        super().__init__(extension.db, extension.tally, extension.counters)
        self.extension = extension
        self.queue_url = queue_url
        self.last_error = None
        self.last_error_at = None
        self._client = None
        self._inherited_clients = []
        # Held while a received batch is being committed and deleted; a
        # fork waits for it, so no child inherits a half-done batch.
        self._busy = threading.Lock()
        # Set by a round the full inbox refused; cleared once there is room.
        self._held_by_full_inbox = False
        # A message left in the queue comes back every visibility timeout
        # until redriven: one line per reason and interval, not per receive.
        self._left_log = LogBudget(extension.settings.reject_log_interval_seconds)

    # the loop (driven by BackgroundThread) ------------------------------
    def describe(self):
        return f"consumer of SQS queue {self.queue_url}"

    def iterate(self):
        """Receive and commit one batch, or say how long to wait.

        Every receive raises a message's receive count towards the queue's
        ``maxReceiveCount``, so the thread receives only what it can commit.
        """
        if self.failures:
            # Take messages again only once they can be committed.
            self.extension.db.check_writable()
        if self._held_by_full_inbox and not self._inbox_has_room():
            return ROOM_CHECK_SECONDS
        try:
            self.poll_once()
        except InboxFull as full:
            self._held_by_full_inbox = True
            self._record_error(full, "receiving again once at most "
                               f"{resume_below(self.extension.settings.max_pending)} "
                               "datasets wait")
        return None

    def on_error(self, exc, pause):
        # SQS or the database unavailable
        self._record_error(exc, f"retrying in {pause:.1f} s")

    def _inbox_has_room(self):
        waiting = self.extension.inbox.waiting_count()
        if waiting > resume_below(self.extension.settings.max_pending):
            return False
        self._held_by_full_inbox = False
        logger.info("SQS queue %s: %d datasets wait in the inbox; receiving again",
                    self.queue_url, waiting)
        return True

    # work ---------------------------------------------------------------
    def poll_once(self, wait_seconds=WAIT_SECONDS):
        """Receive one batch, commit its events, delete what was committed.

        Returns the :class:`Batch`. Raises when SQS or the database fails;
        then no message of the batch has been deleted.
        """
        answer = self.client().receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=MAX_MESSAGES,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"])
        messages = answer.get("Messages") or []
        if not messages:
            return Batch()
        with self._busy:
            self._count("received", len(messages))
            settings = self.extension.settings
            batch = read_batch(messages, settings.max_body_bytes, settings.max_records,
                               self.extension.sns.check)
            self._leave(batch.left)
            for group in batch.commit_groups(settings.max_records):
                accept(self.extension, group)  # committed when it returns
            if batch.done:
                self._delete(batch.done)
        return batch

    def client(self):
        """This process's SQS client, made on first use with boto3's usual
        configuration (credentials chain, region, ``AWS_ENDPOINT_URL_SQS``)."""
        if self._client is None:
            import boto3
            from botocore.config import Config
            session = boto3.session.Session()
            region = session.region_name or region_in_url(self.queue_url)
            if region is None:
                raise RuntimeError("no AWS region for SQS: set AWS_DEFAULT_REGION")
            self._client = session.client("sqs", region_name=region, config=Config(
                connect_timeout=10, read_timeout=WAIT_SECONDS + 20,
                retries={"mode": "standard"}))
        return self._client

    def _leave(self, left):
        """Count messages left for the queue's redrive policy, and log them
        within the budget: one line per reason and interval."""
        self._count("left_for_redrive", len(left))
        for message, reason in left:
            counts = self._left_log.admit(printable(reason, 80))
            if counts is None:
                continue
            attributes = message.get("Attributes") or {}
            text, args = with_suppressed(
                "left SQS message %s in %s for its redrive policy (received %s times): %s",
                [printable(message.get("MessageId"), 100), self.queue_url,
                 printable(attributes.get("ApproximateReceiveCount", "?")),
                 printable(reason, 300)], counts, "messages")
            logger.warning(text, *args)

    def _delete(self, messages):
        entries = [{"Id": str(number), "ReceiptHandle": message["ReceiptHandle"]}
                   for number, message in enumerate(messages)]
        answer = self.client().delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        self._count("deleted", len(answer.get("Successful") or []))
        failed = answer.get("Failed") or []
        self._count("delete_failed", len(failed))
        for failure in failed:
            # Its events are committed: reading it again costs one folded event.
            logger.warning("SQS did not delete a message of %s: %s %s", self.queue_url,
                           printable(failure.get("Code")), printable(failure.get("Message"), 200))

    def _count(self, kind, amount):
        self.extension.tally.add(counter_name(self.queue_url, kind), amount)

    def _record_error(self, exc, what_next):
        self._count("errors", 1)
        # the database's text would carry the statement and what senders wrote
        self.last_error = describe_database_error(exc)
        self.last_error_at = time.time()
        logger.warning("SQS queue %s: %s; nothing deleted, %s",
                       self.queue_url, self.last_error, what_next)

    # fork safety (see background.py) ------------------------------------
    def before_fork(self):
        # Not paused: a thread inside a long poll would hold the fork for up
        # to WAIT_SECONDS. Waiting for the batch it commits is enough.
        self._was_running = self.running
        self._busy.acquire()

    def after_fork_in_parent(self):
        self._busy.release()

    def forget_inherited(self):
        # The parent's lock stays held here. Its client shares the parent's
        # sockets: keep it unused and unclosed, and make a fresh one on first use.
        self._busy = threading.Lock()
        if self._client is not None:
            self._inherited_clients.append(self._client)
            self._client = None

    def restarts_in_child(self):
        return self.extension.settings.worker


def make_consumers(extension):
    """One consumer per queue in ``DSERVER_NOTIFY_SQS_QUEUE_URLS``."""
    return [QueueConsumer(extension, url) for url in extension.settings.sqs_queue_urls]
