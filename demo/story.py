"""The demo's scenes: copy a dataset, find it, delete it, find it gone.

The S3 writes run in a background thread while the main thread watches
dserver (status route, search) and draws the timeline, because the
notifications arrive *while* dtool is still copying.
"""
import threading

from devstack.datasets import put_dtool_dataset
from devstack.s3 import list_keys, remove_all_objects

from .watch import COUNTER_FLUSH_SECONDS, DserverClient, SyncTimeline, poll_until

WAIT_TIMEOUT_SECONDS = 60
SECONDS_PER_ITEM = 0.5  # generous: each S3 write waits for its notification's 202
# After search shows the change, how long the status route may take to count
# the sync that made it: the worker that synced flushes within 2 s.
OUTCOME_REPORT_SECONDS = 4 * COUNTER_FLUSH_SECONDS


class Background:
    """Run one function in a daemon thread and keep its result or error.

    A daemon thread: if the user presses Ctrl-C mid-copy, the demo stops the
    servers and exits without waiting for a copy that can no longer finish.
    """

    def __init__(self, function, *args, **kwargs):
        self.result = self.error = None
        self._thread = threading.Thread(target=self._run, args=(function, args, kwargs),
                                        daemon=True)
        self._thread.start()

    def _run(self, function, args, kwargs):
        try:
            self.result = function(*args, **kwargs)
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    @property
    def done(self):
        return not self._thread.is_alive()

    def outcome(self):
        if self.error is not None:
            raise self.error
        return self.result


class Story:
    def __init__(self, console, stack, sample):
        self.say = console
        self.stack = stack
        self.sample = sample
        self.client = DserverClient(stack.dserver.url, stack.admin_token)
        self.timeline = SyncTimeline(console, self.client)
        self.s3 = stack.moto.boto3_client("s3")
        self.uri = None
        self._writes_done_at = 0.0  # seconds since start when the S3 writes ended
        self._explained_ignored = False

    def run(self):
        self.copy_and_find()
        self.show_search_result()
        self.delete_and_see_gone()

    # watching ---------------------------------------------------------
    def in_search(self):
        return [d["uri"] for d in self.client.search(base_uris=[self.stack.base_uri])]

    def _tick(self, doing, tell=True):
        """Poll the counters (printing what grew, if ``tell``) and redraw the spinner."""
        figures = self.timeline.update() if tell else self.timeline.fetch()
        if self.say.interactive:
            self.say.waiting(f"{doing} | {self._live_figures(figures)}")

    @staticmethod
    def _live_figures(figures):
        events = figures.events
        if not events["received"]:
            return "waiting for the first notification"
        return (f"{events['received']} events ({events['accepted']} accepted, "
                f"{events['ignored']} ignored) | {figures.waiting} waiting in the inbox")

    def _wait_for_outcome(self, outcome):
        """Wait until the status route counts a sync with ``outcome`` in this
        scene, printing nothing meanwhile (the caller tells it in its place);
        say so if it never does."""
        try:
            poll_until(lambda: self.timeline.grown(outcome) > 0, OUTCOME_REPORT_SECONDS,
                       on_tick=lambda: self._tick("reading the plugin's counters", tell=False))
        except TimeoutError:
            self.say.failure(f"GET /webhook/status counted no {outcome!r} sync within "
                             f"{OUTCOME_REPORT_SECONDS:g} s")

    def _report_counters(self):
        """The plugin's own event counters, from its status route.

        Each gunicorn worker counts in memory and adds its counts to the
        totals about every COUNTER_FLUSH_SECONDS; wait until the S3 writes
        ended that long ago, so the totals include their notifications.
        """
        flushed_at = self._writes_done_at + COUNTER_FLUSH_SECONDS
        poll_until(lambda: self.say.elapsed() >= flushed_at, COUNTER_FLUSH_SECONDS + 1,
                   on_tick=lambda: self._tick("reading the plugin's counters"))
        figures = self.timeline.update(force=True)
        self.say.done_waiting()
        received, accepted, ignored = (figures.events[name]
                                       for name in ("received", "accepted", "ignored"))
        self.say.event(f"GET /webhook/status: {received} notifications received so far, "
                       f"{accepted} accepted, {ignored} ignored")
        scene_accepted = self.timeline.grown("accepted")
        syncs = figures.syncs() - self.timeline.scene_start.syncs()
        self.say.explain(f"In this step: {scene_accepted} accepted notifications, "
                         f"{syncs} sync{'s' if syncs != 1 else ''} of the dataset.")
        if not self._explained_ignored and ignored:
            self._explained_ignored = True
            self.say.explain("Ignored: objects that cannot change the index (data items, "
                             "structure.json, README.txt); the manifest speaks for the data.")

    # scenes -----------------------------------------------------------
    def copy_and_find(self):
        say, stack = self.say, self.stack
        say.heading("Copying a dataset into the bucket with dtool")
        say.explain("dtool writes the dataset object by object, and S3 sends a "
                    "notification for every object.")
        say.explain("The plugin answers each one with 202 at once and files the dataset "
                    "in its inbox (a table in dserver's SQL database).")
        say.explain("dtool writes the dataset's 'dtool' object early (a proto-dataset) and "
                    "last (frozen); its events make the dataset due at once,")
        say.explain(f"other events after {stack.debounce_seconds:g} s without new ones. A "
                    "background worker then reads the dataset from S3 and registers it:")
        say.explain("a copy of many objects costs a sync or two, not one per object.")
        items = len(self.sample.items)
        self.timeline.begin_scene()
        say.event(f"copy started: {self.sample.name!r}, {items} data files, "
                  f"to {stack.base_uri}")
        copy = Background(put_dtool_dataset, stack.base_uri, self.sample.name,
                          self.sample.items, readme=self.sample.readme,
                          tags=self.sample.tags, env=stack.s3_env)
        poll_until(lambda: copy.done, WAIT_TIMEOUT_SECONDS + items * SECONDS_PER_ITEM,
                   on_tick=lambda: self._tick("copying"))
        self.uri = copy.outcome()
        self._writes_done_at = say.elapsed()
        keys = list_keys(self.s3, stack.bucket)
        say.event(f"copy finished: dtool wrote {len(keys)} objects "
                  f"(data, README, manifest, admin metadata) for {self.uri}")
        self._wait_for_search(lambda: self.uri in self.in_search(),
                              "found in search", "after the copy finished", "registered")

    def show_search_result(self):
        say = self.say
        say.heading("The search result, through dservercore's API")
        say.explain("POST /uris with an admin JWT, body {\"base_uris\": [...]}; "
                    "the tags from GET /tags/<uri>.")
        found = [d for d in self.client.search(base_uris=[self.stack.base_uri])
                 if d["uri"] == self.uri][0]
        say.table([
            ("URI", found["uri"]),
            ("name", found["name"]),
            ("creator", found["creator_username"]),
            ("tags", ", ".join(self.client.tags(self.uri)) or "(none)"),
            ("items", f"{found['number_of_items']} files, {found['size_in_bytes']} bytes"),
        ])
        text_hits = [d["uri"] for d in self.client.search(free_text="rooftop")]
        if self.uri in text_hits:
            say.explain("Its README is indexed too: a free-text search for 'rooftop' "
                        "finds it.")

    def delete_and_see_gone(self):
        say, stack = self.say, self.stack
        say.heading("Deleting the dataset's objects from the bucket")
        say.explain("dtool has no delete for S3; people remove the objects, as "
                    "`aws s3 rm --recursive` does: one DeleteObject per key.")
        say.explain("Each removal is notified; once the dataset's 'dtool' object is "
                    "gone, the worker deletes it from the index.")
        keys = list_keys(self.s3, stack.bucket)
        self.timeline.begin_scene()
        say.event(f"deleting all {len(keys)} objects under s3://{stack.bucket}/")
        removal = Background(remove_all_objects, self.s3, stack.bucket)
        poll_until(lambda: removal.done, WAIT_TIMEOUT_SECONDS + len(keys) * SECONDS_PER_ITEM,
                   on_tick=lambda: self._tick("deleting"))
        self._writes_done_at = say.elapsed()
        say.event(f"objects deleted: {len(removal.outcome())} keys removed, the bucket is empty")
        self._wait_for_search(lambda: self.uri not in self.in_search(),
                              "gone from search", "after the objects were deleted", "deleted")

    def _wait_for_search(self, condition, outcome, since_what, sync_outcome):
        """Poll search until ``condition`` holds and report how long it took.

        Search shows a sync's work at once; the plugin's counters report that
        sync up to a flush later. So wait for the counters first, then tell
        the story in the order it happened: notifications, the sync (stamped
        when search showed its work: it was done by then), what search showed.
        """
        say = self.say
        started = say.elapsed()
        poll_until(condition, WAIT_TIMEOUT_SECONDS,
                   on_tick=lambda: self._tick("waiting for search"))
        seen_at = say.elapsed()
        self._wait_for_outcome(sync_outcome)
        say.done_waiting()
        self.timeline.tell_lead_up(sync_outcome, at=seen_at)
        say.success(f"{outcome} (POST /uris), {seen_at - started:.1f} s {since_what}",
                    at=seen_at)
        self._report_counters()

    def close(self):
        self.client.session.close()
