"""Looking at the running dserver from outside, as an operator would.

Two sources, both HTTP, both public:

* dservercore's own API: ``POST /uris`` (search) and ``GET /tags/<uri>``;
* the plugin's status route ``GET /webhook/status`` (admins only): its
  counters of received, accepted and ignored notifications and of sync
  outcomes (registered, deleted, ...), totals over all gunicorn workers.

The timeline is made from those counters alone. They only grow, so whatever
happened between two polls shows in the next one, however late that poll
comes: nothing depends on catching a passing state (an inbox entry while it
waits, say) at the right moment. The price: each worker adds its counts to
the totals about every ``COUNTER_FLUSH_SECONDS``, so a line may come up to
that long after the fact, later than search shows what the sync did. The
story therefore waits for the counters before it says what search showed,
and tells the syncs that led there first (:meth:`SyncTimeline.tell_lead_up`).
"""
import time
from dataclasses import dataclass, field

import requests

STATUS_PATH = "/webhook/status"
HTTP_TIMEOUT_SECONDS = 30
COUNTER_FLUSH_SECONDS = 2.5  # the plugin's workers flush their counters every 2 s
STATUS_POLL_SECONDS = 0.25

EVENT_COUNTERS = ("received", "accepted", "ignored")
# Every inbox entry the worker takes ends in exactly one of these outcomes.
OUTCOME_TEXT = {
    "proto": "sync done: still a proto-dataset (copy running); waiting for more events",
    "registered": "sync done: dataset registered in dserver's index",
    "unchanged": "sync done: the index already matched S3",
    "deleted": "sync done: dataset deleted from the index (SQL table and search plugin)",
    "absent": "sync done: not in S3 and not in the index, nothing to do",
    "covered": "no sync needed: the last sync had already read what these events announced",
    "retried": "sync failed, will retry (`flask notification status` shows why)",
    "dead": "sync gave up: a dead entry (`flask notification status` shows why)",
}
# "covered" finishes an entry without reading S3: not a sync.
NOT_SYNCS = ("covered",)
# What search shows changes at the moment of one sync (registered, deleted).
# The outcomes listed with it came before it in the same scene: a dataset is
# seen as a proto-dataset while dtool copies it, never after it was registered.
LEAD_UP = {"registered": ("proto", "registered"), "deleted": ("deleted",)}
OUTCOME_STYLE = {"retried": "red", "dead": "red"}
WAITING_STATES = ("pending", "processing", "failed")


class DserverClient:
    """The dserver HTTP API with an admin token."""

    def __init__(self, url, token):
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def search(self, **query):
        """Datasets matching the query, via the search plugin (Mongo)."""
        answer = self.session.post(f"{self.url}/uris", json=query,
                                   timeout=HTTP_TIMEOUT_SECONDS)
        answer.raise_for_status()
        return answer.json()

    def tags(self, uri):
        suffix = uri.replace("://", "/", 1)  # dservercore's URL form of a URI
        answer = self.session.get(f"{self.url}/tags/{suffix}", timeout=HTTP_TIMEOUT_SECONDS)
        return answer.json().get("tags", []) if answer.ok else []

    def status(self):
        """The plugin's status JSON, or None if it cannot be had just now."""
        try:
            answer = self.session.get(self.url + STATUS_PATH, timeout=HTTP_TIMEOUT_SECONDS)
            answer.raise_for_status()
            return answer.json()
        except (requests.RequestException, ValueError):
            return None


def _ints(section, names):
    section = section if isinstance(section, dict) else {}
    return {name: int(section.get(name) or 0) for name in names}


@dataclass
class Figures:
    """The counters of one status answer: totals since the database was made."""

    events: dict = field(default_factory=lambda: _ints({}, EVENT_COUNTERS))
    outcomes: dict = field(default_factory=lambda: _ints({}, OUTCOME_TEXT))
    waiting: int = 0  # inbox entries not synced yet (at the moment of the answer)

    @classmethod
    def from_status(cls, status):
        if not isinstance(status, dict):
            return None
        inbox = status.get("inbox") or {}
        return cls(events=_ints((status.get("events") or {}).get("total"), EVENT_COUNTERS),
                   outcomes=_ints((status.get("sync") or {}).get("total"), OUTCOME_TEXT),
                   waiting=sum(int(inbox.get(state) or 0) for state in WAITING_STATES))

    def syncs(self):
        return sum(n for outcome, n in self.outcomes.items() if outcome not in NOT_SYNCS)


class SyncTimeline:
    """Timeline lines from what grew in the plugin's counters.

    ``latest`` is the last status answer, ``told`` what the lines printed so
    far account for. A scene (``begin_scene``) sets the baseline for "first
    notifications accepted" and for :meth:`grown`.
    """

    def __init__(self, console, client):
        self.say = console
        self.client = client
        self.scene_start = self.latest = self.told = Figures()
        self._arrivals_told = False
        self._next_poll = 0.0

    def begin_scene(self):
        self.update(force=True)
        self.scene_start = self.told = self.latest
        self._arrivals_told = False

    def fetch(self, force=False):
        """Poll the status route (at most every STATUS_POLL_SECONDS unless
        ``force``) without printing; return the latest figures."""
        if not force and time.monotonic() < self._next_poll:
            return self.latest
        self._next_poll = time.monotonic() + STATUS_POLL_SECONDS
        current = Figures.from_status(self.client.status())
        if current is not None:
            self.latest = current
        return self.latest

    def update(self, force=False):
        """Fetch, print a line for everything that grew since the last line
        (stamped now), and return the latest figures."""
        self.fetch(force)
        self._tell_arrivals()
        self._tell_outcomes(OUTCOME_TEXT)
        return self.latest

    def tell_lead_up(self, outcome, at):
        """Print, stamped ``at``, the lines of what happened by the time search
        showed the work of an ``outcome`` sync: the first notifications, and
        that sync with those before it (:data:`LEAD_UP`). Other outcomes wait
        for the next :meth:`update`: they may have come later."""
        self._tell_arrivals(at)
        self._tell_outcomes(LEAD_UP.get(outcome, (outcome,)), at)

    def _tell_arrivals(self, at=None):
        accepted = self.latest.events["accepted"] - self.scene_start.events["accepted"]
        if accepted > 0 and not self._arrivals_told:
            self._arrivals_told = True
            self.say.event(f"first notifications accepted ({accepted} so far): the dataset "
                           "waits in the plugin's inbox", at=at)

    def _tell_outcomes(self, outcomes, at=None):
        told = dict(self.told.outcomes)
        for outcome in outcomes:
            count = self.latest.outcomes[outcome] - told[outcome]
            if count > 0:
                self.say.event(OUTCOME_TEXT[outcome] + (f" ({count} times)" if count > 1 else ""),
                               at=at, style=OUTCOME_STYLE.get(outcome))
                told[outcome] = self.latest.outcomes[outcome]
        self.told = Figures(events=self.latest.events, outcomes=told,
                            waiting=self.latest.waiting)

    def grown(self, counter):
        """How much an outcome (or event) counter grew in this scene so far."""
        for section in ("outcomes", "events"):
            now, then = getattr(self.latest, section), getattr(self.scene_start, section)
            if counter in now:
                return now[counter] - then[counter]
        raise KeyError(counter)


def poll_until(predicate, timeout, interval=0.1, on_tick=None):
    """Call ``predicate`` until it returns something truthy; return that.

    ``on_tick`` runs every round (timeline and spinner). A request that times
    out or cannot connect counts as "not yet": on a busy machine dserver may
    answer slowly. Raises TimeoutError.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if on_tick is not None:
                on_tick()
            result = predicate()
        except (requests.Timeout, requests.ConnectionError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s")
        time.sleep(interval)
