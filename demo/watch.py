"""Looking at the running dserver from outside, as an operator would.

Three sources, each optional:

* dservercore's own API: ``POST /uris`` (search) and ``GET /tags/<uri>``;
* the plugin's status route ``GET /webhook/status`` (admins only) for its
  counters of received, accepted and ignored events, if this version has it;
* the plugin's inbox table in dserver's SQL database (read-only). The demo
  created that database itself, so it may look inside: each row carries
  exact server-side times (first event, claim, finish) for the timeline.
"""
import time

import requests
import sqlalchemy as sa

from dserver_notification_plugin.store import inbox

STATUS_PATH = "/webhook/status"
HTTP_TIMEOUT_SECONDS = 30


class DserverClient:
    """The dserver HTTP API with an admin token."""

    def __init__(self, url, token):
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.status_available = True

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
        """The plugin's status JSON, or None if this version has no such route."""
        if not self.status_available:
            return None
        try:
            answer = self.session.get(self.url + STATUS_PATH, timeout=HTTP_TIMEOUT_SECONDS)
        except requests.RequestException:
            return None
        if answer.status_code in (404, 405):
            self.status_available = False
            return None
        if not answer.ok:
            return None
        try:
            return answer.json()
        except ValueError:
            return None


def status_counters(status):
    """Integer fields of the status JSON, flattened: {"counters.received": 3, ...}.

    Flattening keeps the demo independent of the exact layout of the route.
    """
    flat = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, int) and not isinstance(value, bool):
            flat[prefix] = value

    walk("", status or {})
    return flat


def counter(flat, name):
    """The value of a counter whose last path part is ``name`` (0 if absent).

    Prefers a since-start or total figure if the route reports several.
    """
    matches = {key: value for key, value in flat.items() if key.split(".")[-1] == name}
    for hint in ("total", "since_start", ""):
        for key, value in matches.items():
            if hint in key:
                return value
    return 0


class InboxReader:
    """Read-only view of the plugin's inbox rows."""

    def __init__(self, sqlalchemy_uri):
        path = sqlalchemy_uri.removeprefix("sqlite:///")
        self.engine = sa.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")

    def latest_row(self, base_uri):
        """The most recently notified inbox row of base_uri, or None.

        None also while the table does not exist yet: the plugin creates it
        with the first event it accepts.
        """
        c = inbox.c
        try:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(inbox).where(c.base_uri == base_uri)
                                   .order_by(c.last_event_at.desc()).limit(1)).mappings().first()
        except sa.exc.SQLAlchemyError:
            return None
        return dict(row) if row else None

    def close(self):
        self.engine.dispose()


OUTCOME_TEXT = {
    "registered": "sync done: dataset registered in dserver's index",
    "unchanged": "sync done: the index already matched S3",
    "deleted": "sync done: dataset deleted from the index (SQL table and search plugin)",
    "absent": "sync done: not in S3 and not in the index, nothing to do",
    "proto": "sync done: still a proto-dataset (copy running); waiting for more events",
}


class InboxStory:
    """Turns successive snapshots of one inbox row into timeline lines.

    Times come from the row itself (server wall clock), so a poll that comes
    late still reports when things really happened.
    """

    def __init__(self, console):
        self.console = console
        self.reported = set()

    def _once(self, key, at, text, style=None):
        if key in self.reported or at is None:
            return False
        self.reported.add(key)
        self.console.event(text, at=self.console.since_start(at), style=style)
        return True

    def update(self, row):
        """Report what is new in ``row``; returns the last outcome seen, if new."""
        if row is None:
            return None
        self._once(("first", row["first_event_at"]), row["first_event_at"],
                   "first notification accepted: the dataset waits in the plugin's inbox")
        claimed_at = row["claimed_at"]
        if claimed_at is not None and row["state"] != "pending":
            self._once(("claim", claimed_at), claimed_at,
                       f"sync worker claimed the inbox entry: {row['events']} event(s) "
                       f"folded into one sync, {self._quiet_text(row)}")
        finished_at = row["finished_at"]
        if finished_at is not None and row["state"] in ("done", "pending", "dead", "failed"):
            outcome = row["last_outcome"] or row["state"]
            style = "red" if outcome == "error" else None
            text = OUTCOME_TEXT.get(outcome, outcome)
            if row["state"] == "dead":
                text = f"sync gave up (dead entry): {row['last_error']}"
            elif outcome == "error":
                text = f"sync failed, will retry: {row['last_error']}"
            if self._once(("finish", finished_at), finished_at, text, style=style):
                return outcome
        return None

    @staticmethod
    def _quiet_text(row):
        quiet = row["claimed_at"] - row["last_event_at"]
        return f"{quiet:.1f} s after the last event"


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
