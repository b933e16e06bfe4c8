"""How the sync is doing: one status dict, and the same figures for Prometheus.

The figures come from two places. Event and outcome counters are counted in
memory by each process (:mod:`.tally`) and flushed now and then to the
``notification_counters`` table; a total is therefore the persisted value
plus what this process has not flushed yet (we flush first, so normally
nothing). Inbox figures are read from the inbox table at the moment of the
request, so every process reports the same queue.

Metrics live in a :class:`prometheus_client.CollectorRegistry` of their own
per extension (i.e. per app): the global registry would mix the figures of
two apps in one process and refuse the second app's metric names.
"""
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .consumer import QUEUE_COUNTERS, counter_name
from .states import Outcome, State
from .store import process_id
from .tally import EVENT_COUNTERS

# Outcomes counted by the worker (see worker.Worker.process), then
# dservercore's calls of our hooks: every change of the index, whoever made
# it (see NotificationExtension.register_dataset).
OUTCOME_COUNTERS = tuple(o.value for o in Outcome) + ("index_registrations", "index_deletions")
# Seconds from the first event of an entry to its successful sync.
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600, float("inf"))
DEAD_ENTRIES_SHOWN = 100
METRIC_PREFIX = "dserver_notification"


def _pick(counts, names):
    return {name: int(counts.get(name, 0)) for name in names}


def _unflushed(stats):
    """This process's counts that have not reached the database yet."""
    deltas = stats.take_unflushed()
    stats.give_back(deltas)
    return deltas


def _totals(extension):
    """Persisted counters plus this process's unflushed deltas.

    Flushes first, so that another process reading the table sees our
    counts too; if the flush fails, the deltas stay in memory and are added
    here instead.
    """
    extension.worker.flush_stats()
    totals = dict(extension.store.counter_totals())
    for name, delta in _unflushed(extension.tally).items():
        totals[name] = totals.get(name, 0) + delta
    return totals


def gather_status(extension):
    """The status dict shown by ``flask notification status`` and the route.

    ``oldest_pending_age_seconds`` is None when no entry is waiting
    (pending, failed or processing). ``warnings`` lists the settings that
    leave a door open (see config.open_configuration_warnings).
    """
    store = extension.store
    since_start = extension.tally.since_start()
    totals = _totals(extension)
    states = store.state_counts()
    dead = [{"id": e.id, "dataset_uri": e.dataset_uri, "attempts": e.attempts,
             "last_error": e.last_error} for e in store.dead_entries(DEAD_ENTRIES_SHOWN)]
    return {
        "process": process_id(),
        "process_started_at": extension.tally.started_at,
        "events": {"since_start": _pick(since_start, EVENT_COUNTERS),
                   "total": _pick(totals, EVENT_COUNTERS)},
        "sync": {"since_start": _pick(since_start, OUTCOME_COUNTERS),
                 "total": _pick(totals, OUTCOME_COUNTERS)},
        "inbox": {state.value: int(states.get(state, 0)) for state in State},
        "oldest_pending_age_seconds": store.oldest_waiting_age(),
        "dead_entries": dead,
        "warnings": list(getattr(extension, "warnings", [])),
        "queues": [_queue_status(consumer, since_start, totals)
                   for consumer in extension.consumers],
    }


def _queue_status(consumer, since_start, totals):
    """Message counters of one SQS queue; ``consuming``, ``last_error`` and
    ``last_error_at`` describe this process's consumer."""
    names = {kind: counter_name(consumer.queue_url, kind) for kind in QUEUE_COUNTERS}
    return {
        "queue_url": consumer.queue_url,
        "consuming": consumer.running,
        "since_start": {kind: int(since_start.get(name, 0)) for kind, name in names.items()},
        "total": {kind: int(totals.get(name, 0)) for kind, name in names.items()},
        "last_error": consumer.last_error,
        "last_error_at": consumer.last_error_at,
    }


def format_status(status):
    """A human-readable table of :func:`gather_status`'s dict."""
    lines = [f"WARNING: {warning}" for warning in status.get("warnings", [])]
    lines.append("events                 since start      total")
    for name in EVENT_COUNTERS:
        lines.append(f"  {name:<20} {status['events']['since_start'][name]:>11} "
                     f"{status['events']['total'][name]:>10}")
    lines.append("sync                   since start      total")
    for name in OUTCOME_COUNTERS:
        lines.append(f"  {name:<20} {status['sync']['since_start'][name]:>11} "
                     f"{status['sync']['total'][name]:>10}")
    lines.append("inbox")
    for state, count in status["inbox"].items():
        lines.append(f"  {state:<20} {count:>11}")
    age = status["oldest_pending_age_seconds"]
    lines.append("oldest pending entry: " + ("none" if age is None else f"{age:.1f} s old"))
    dead = status["dead_entries"]
    if dead:
        lines.append(f"dead entries ({len(dead)} shown; retry with "
                     "`flask notification retry ID ...` or `--all-dead`):")
    for entry in dead:
        lines.append(f"  #{entry['id']} {entry['dataset_uri']} after {entry['attempts']} "
                     f"attempt(s): {entry['last_error']}")
    for queue in status["queues"]:
        lines.extend(_format_queue(queue))
    return "\n".join(lines)


def _format_queue(queue):
    lines = [f"SQS queue {queue['queue_url']}   since start      total"]
    for kind in QUEUE_COUNTERS:
        lines.append(f"  {kind:<20} {queue['since_start'][kind]:>11} {queue['total'][kind]:>10}")
    if queue["last_error"]:
        lines.append(f"  last error: {queue['last_error']}")
    return lines


# --- Prometheus ----------------------------------------------------------------

class _StatusCollector:
    """Reads the status at scrape time and exposes it as metric families.

    A collector (rather than Counter/Gauge objects that we would keep
    setting) because totals and inbox figures live in the database: they are
    read when Prometheus asks, never cached.
    """

    def __init__(self, extension):
        self.extension = extension

    def describe(self):
        # Names only: registering must not touch the database.
        return list(self._families(None))

    def collect(self):
        return list(self._families(gather_status(self.extension)))

    def _families(self, status):
        events = CounterMetricFamily(
            f"{METRIC_PREFIX}_events", "Notification events, all processes, persisted "
            "totals (kind: received, accepted, ignored, unreadable, refused).", labels=["kind"])
        process_events = CounterMetricFamily(
            f"{METRIC_PREFIX}_process_events", "Notification events seen by the process "
            "that answers this scrape, since it started.", labels=["kind"])
        outcomes = CounterMetricFamily(
            f"{METRIC_PREFIX}_sync_outcomes", "Sync outcomes, all processes, persisted "
            "totals.", labels=["outcome"])
        states = GaugeMetricFamily(
            f"{METRIC_PREFIX}_inbox_entries", "Inbox entries by state.", labels=["state"])
        age = GaugeMetricFamily(
            f"{METRIC_PREFIX}_oldest_pending_age_seconds",
            "Age of the oldest entry waiting to be synced (0 when none waits).")
        queue_messages = CounterMetricFamily(
            f"{METRIC_PREFIX}_queue_messages", "SQS messages, all processes, persisted "
            "totals (kind: " + ", ".join(QUEUE_COUNTERS) + ").", labels=["queue", "kind"])
        queue_error_time = GaugeMetricFamily(
            f"{METRIC_PREFIX}_queue_last_error_timestamp_seconds", "When the consumer of "
            "this process last failed on the queue (0: never).", labels=["queue"])
        if status is not None:
            for name in EVENT_COUNTERS:
                events.add_metric([name], status["events"]["total"][name])
                process_events.add_metric([name], status["events"]["since_start"][name])
            for name in OUTCOME_COUNTERS:
                outcomes.add_metric([name], status["sync"]["total"][name])
            for state, count in status["inbox"].items():
                states.add_metric([state], count)
            age.add_metric([], status["oldest_pending_age_seconds"] or 0.0)
            for queue in status["queues"]:
                for kind in QUEUE_COUNTERS:
                    queue_messages.add_metric([queue["queue_url"], kind], queue["total"][kind])
                queue_error_time.add_metric([queue["queue_url"]], queue["last_error_at"] or 0.0)
        return (events, process_events, outcomes, states, age, queue_messages,
                queue_error_time)


class Metrics:
    """One extension's Prometheus registry: status collector plus latency histogram.

    The histogram is fed by the worker of this process through
    ``stats.latency_observers``; like every histogram it describes the
    process that answers the scrape.
    """

    def __init__(self, extension):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_StatusCollector(extension))
        self.latency = Histogram(
            f"{METRIC_PREFIX}_processing_latency_seconds",
            "Seconds from the first event of an inbox entry to its successful sync "
            "(this process).", buckets=LATENCY_BUCKETS, registry=self.registry)
        extension.tally.latency_observers.append(self.latency.observe)

    def text(self):
        """The Prometheus text exposition (reads the database)."""
        from prometheus_client import generate_latest
        return generate_latest(self.registry)
