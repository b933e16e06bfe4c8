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
from .db.processes import process_identity
from .states import FIGURES, Drift, Outcome, State
from .tally import EVENT_COUNTERS

# Outcomes counted by the worker (see worker.Worker.process), the S3
# requests its syncs sent, then dservercore's calls of our hooks: every
# change of the index, whoever made it (see NotificationExtension.register_dataset).
OUTCOME_COUNTERS = tuple(o.value for o in Outcome) + (
    "s3_requests", "index_registrations", "index_deletions")
# Counted by the reconciler, per chunk of datasets and per finished pass.
RECONCILE_COUNTERS = tuple(f"reconcile_{name}" for name in FIGURES) + ("reconcile_passes",)
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
    totals = dict(extension.counters.totals())
    for name, delta in _unflushed(extension.tally).items():
        totals[name] = totals.get(name, 0) + delta
    return totals


def gather_status(extension):
    """The status dict shown by ``flask notification status`` and the route.

    ``oldest_pending_age_seconds`` is None when no entry is waiting
    (pending, failed or processing). ``warnings`` lists the settings that
    leave a door open (see config.open_configuration_warnings).
    """
    inbox = extension.inbox
    since_start = extension.tally.since_start()
    totals = _totals(extension)
    states = inbox.state_counts()
    dead = [{"id": e.id, "dataset_uri": e.dataset_uri, "attempts": e.attempts,
             "last_error": e.last_error} for e in inbox.dead_entries(DEAD_ENTRIES_SHOWN)]
    return {
        "process": process_identity(),
        "process_started_at": extension.tally.started_at,
        "events": {"since_start": _pick(since_start, EVENT_COUNTERS),
                   "total": _pick(totals, EVENT_COUNTERS)},
        "sync": {"since_start": _pick(since_start, OUTCOME_COUNTERS),
                 "total": _pick(totals, OUTCOME_COUNTERS)},
        "inbox": {state.value: int(states.get(state, 0)) for state in State},
        "oldest_pending_age_seconds": inbox.oldest_waiting_age(),
        "dead_entries": dead,
        "reconcile": _reconcile_status(extension, totals),
        # base URIs whose bucket cannot be read, removals held back
        "attention": [concern.as_dict() for concern in extension.attention.concerns()],
        # processes that claim or lease: what each holds, its last heartbeat
        "processes": [process.as_dict() for process in extension.processes.known()],
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


def _reconcile_status(extension, totals):
    """The reconciler's settings, lease holder, latest pass and totals."""
    from .reconciler import SCOPE
    settings = extension.settings
    lease = extension.reconciler.lease.current()
    state = extension.ledger.pass_state(SCOPE)
    return {
        "interval_seconds": settings.reconcile_interval_seconds,
        "max_rps": settings.reconcile_max_rps,
        "lease": None if lease is None else {
            "holder": lease.holder, "active": lease.active(),
            "acquired_at": lease.acquired_at, "expires_at": lease.expires_at},
        # the running pass, or the last one when none runs
        "pass": None if state is None else {
            "started_at": state.started_at, "finished_at": state.finished_at,
            "base_uri": state.base_uri, "after_uuid": state.after_uuid,
            "holder": state.holder, **state.figures()},
        "total": _pick(totals, RECONCILE_COUNTERS),
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
    lines.extend(_format_reconcile(status["reconcile"]))
    lines.append("processes              claims  last heartbeat")
    for process in status["processes"]:
        lines.append(f"  {process['id']:<40} {process['claims']:>6}  "
                     f"{_when(process['heartbeat_at'])}"
                     f"{'' if process['alive'] else ' (silent: taken for dead)'}"
                     + "".join(f", holds the {name} lease" for name in process["leases"])
                     + f"  [{process['role']}]")
    for concern in status["attention"]:
        lines.append(f"ATTENTION {concern['base_uri']} ({concern['kind'].replace('_', ' ')} "
                     f"since {_when(concern['since'])}): {concern['reason']}")
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


def _format_reconcile(reconcile):
    lease, last = reconcile["lease"], reconcile["pass"]
    interval = reconcile["interval_seconds"]
    lines = [f"reconciler: every {interval:g} s, at most {reconcile['max_rps']} S3 requests/s"
             if interval else "reconciler: off"]
    if lease is not None:
        held = "holds" if lease["active"] else "held (expired)"
        lines.append(f"  {lease['holder']} {held} the lease")
    if last is not None:
        how = "running since" if last["finished_at"] is None else "last pass started"
        lines.append(f"  {how} {_when(last['started_at'])}"
                     + ("" if last["finished_at"] is None
                        else f", finished {_when(last['finished_at'])}"))
        lines.append("  " + ", ".join(f"{last[name]} {name.replace('_', ' ')}"
                                      for name in FIGURES))
    return lines


def _when(timestamp):
    import datetime
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc) \
        .strftime("%Y-%m-%d %H:%M:%S UTC")


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
                queue_error_time,
                *_reconcile_families(None if status is None else status["reconcile"]),
                *_attention_families(None if status is None else status["attention"]),
                *_process_families(None if status is None else status["processes"]))


def _process_families(known):
    heartbeat = GaugeMetricFamily(
        f"{METRIC_PREFIX}_process_heartbeat_timestamp_seconds", "Last heartbeat of each "
        "process that claims entries or leases (gone once it stops or is taken for dead).",
        labels=["process", "role"])
    claims = GaugeMetricFamily(
        f"{METRIC_PREFIX}_process_claims", "Inbox entries each process is syncing now.",
        labels=["process"])
    for process in known or ():
        heartbeat.add_metric([process["id"], process["role"]], process["heartbeat_at"])
        claims.add_metric([process["id"]], process["claims"])
    return heartbeat, claims


def _attention_families(concerns):
    from .db.attention import REMOVALS_HELD, UNREADABLE
    unreadable = GaugeMetricFamily(
        f"{METRIC_PREFIX}_base_uri_unreadable", "1 for a base URI whose bucket cannot be "
        "read (reason: missing at the endpoint, access denied, ...); nothing of it is "
        "deleted meanwhile.", labels=["base_uri", "reason"])
    held = GaugeMetricFamily(
        f"{METRIC_PREFIX}_reconcile_removals_held", "Datasets of a base URI a reconcile "
        "pass found gone but did not remove (more than DSERVER_NOTIFY_RECONCILE_MAX_"
        "REMOVALS); `flask notification confirm-removals` removes them.", labels=["base_uri"])
    for concern in concerns or ():
        if concern["kind"] == UNREADABLE:
            unreadable.add_metric([concern["base_uri"], concern["reason"]], 1)
        elif concern["kind"] == REMOVALS_HELD:
            held.add_metric([concern["base_uri"]], concern["count"] or 0)
    return unreadable, held


def _reconcile_families(reconcile):
    name = f"{METRIC_PREFIX}_reconcile"
    checked = CounterMetricFamily(f"{name}_datasets_checked",
                                  "Datasets checked by reconcile passes, all processes.")
    drift = CounterMetricFamily(f"{name}_drift", "Datasets whose index entry disagreed with "
                                "S3, by kind (missing, extra, changed).", labels=["kind"])
    spent = CounterMetricFamily(f"{name}_s3_requests", "S3 requests spent by reconcile passes.")
    passes = CounterMetricFamily(f"{name}_passes", "Finished reconcile passes.")
    lease = GaugeMetricFamily(f"{name}_lease_held", "1 for the process holding the "
                              "reconciler's lease (absent when nobody does).", labels=["holder"])
    started = GaugeMetricFamily(f"{name}_last_pass_started_timestamp_seconds",
                                "Start of the running or last reconcile pass (0: none yet).")
    finished = GaugeMetricFamily(f"{name}_last_pass_finished_timestamp_seconds",
                                 "End of the last finished reconcile pass (0: running or none).")
    figures = GaugeMetricFamily(f"{name}_pass_figures", "Figures of the running or last "
                                "reconcile pass.", labels=["figure"])
    if reconcile is not None:
        total = reconcile["total"]
        checked.add_metric([], total["reconcile_checked"])
        for kind in Drift:
            drift.add_metric([kind.value], total[f"reconcile_{kind.value}"])
        spent.add_metric([], total["reconcile_s3_requests"])
        passes.add_metric([], total["reconcile_passes"])
        if reconcile["lease"] is not None and reconcile["lease"]["active"]:
            lease.add_metric([reconcile["lease"]["holder"]], 1)
        last = reconcile["pass"] or {}
        started.add_metric([], last.get("started_at") or 0)
        finished.add_metric([], last.get("finished_at") or 0)
        for figure in FIGURES:
            figures.add_metric([figure], last.get(figure, 0))
    return checked, drift, spent, passes, lease, started, finished, figures


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
