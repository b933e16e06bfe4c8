"""One plugin through the benchmark story: copy, replay, search, (edit,) delete.

Each plugin gets a fresh bucket on the shared moto_server, a fresh SQLite
file and a fresh database on the shared Mongo-wire server, and its own
gunicorn-served dserver (2 workers). The dataset is copied with dtool
first; the notifications for that copy are then replayed in MinIO's
format. With ``edits``, the four dtool edits of :mod:`bench.edits` follow,
one at a time on the quiet dataset, each notified as MinIO sends it. Every
figure is taken from outside the dserver: latencies at the sender, S3
requests at the S3 server, visibility through dserver's API.
"""
import time
import uuid as uuidlib
from pathlib import Path

import dtoolcore
import requests

from bench.edits import EDITS, notifications_of
from bench.replay import CREATED, REMOVED, bodies, percentile, replay
from bench.server import VenvDserver, prepare_index
from devstack.datasets import Bucket, copy_write_order_with_etags
from devstack.dserver import dserver_env
from devstack.s3 import list_keys, remove_all_objects

POLL_SECONDS = 0.05


class Index:
    """What an admin sees through dserver's HTTP API."""

    def __init__(self, server):
        self.url = server.url
        self.headers = server.admin_headers()
        self.session = requests.Session()

    def in_search(self, uri, word):
        # By a word of the README: the search plugin's "uuids" query compares
        # a UUID object with the stored string and never matches.
        answer = self.session.post(f"{self.url}/uris", json={"free_text": word},
                                   headers=self.headers, timeout=30)
        return answer.ok and uri in [d["uri"] for d in answer.json()]

    def in_listing(self, uri):
        answer = self.session.get(f"{self.url}/uris", headers=self.headers, timeout=30)
        return answer.ok and uri in [d["uri"] for d in answer.json()]

    def retrieved(self, route, uri):
        """What a retrieve route (readmes, tags, annotations ...) answers, or None."""
        answer = self.session.get(f"{self.url}/{route}/{uri.replace('://', '/', 1)}",
                                  headers=self.headers, timeout=30)
        return answer.json() if answer.ok else None


def wait_for(conditions, since, timeout):
    """Poll every 50 ms; name -> seconds after ``since`` each became true, or None.

    Once true, a condition is not asked again.
    """
    found = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(conditions) and time.monotonic() < deadline:
        for name, condition in conditions.items():
            if name not in found and condition():
                found[name] = time.monotonic() - since
        time.sleep(POLL_SECONDS)
    return {name: found.get(name) for name in conditions}


def settled_s3_count(moto, quiet_seconds, timeout):
    """The S3 request count once dserver has made none for quiet_seconds."""
    last, last_change = moto.request_count(), time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.25)
        count = moto.request_count()
        if count != last:
            last, last_change = count, time.monotonic()
        elif time.monotonic() - last_change >= quiet_seconds:
            break
    return last


def _replay_figures(result):
    return {
        "events": result.events,
        "failed_requests": result.failures,
        "http_statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "ack_p50_ms": _ms(percentile(result.latencies, 0.50)),
        "ack_p99_ms": _ms(percentile(result.latencies, 0.99)),
        "ack_max_ms": _ms(max(result.latencies, default=None)),
        "replay_seconds": round(result.wall_seconds, 3),
        "events_per_second": round(result.events_per_second or 0, 1),
    }


def _ms(seconds):
    return None if seconds is None else round(seconds * 1000, 2)


def _rounded(seconds):
    return None if seconds is None else round(seconds, 3)


class PluginRun:
    """Everything for one plugin; ``run()`` returns its figures as a dict."""

    def __init__(self, plugin, python, mongo, moto, options, workdir, database_uri=None,
                 edits=False):
        """``database_uri``: dserver's SQL database (default: a SQLite file);
        ``edits``: time the four dtool edits between copy and delete."""
        self.edits = edits
        self.plugin, self.python = plugin, python
        self.database_uri = database_uri
        self.mongo, self.moto, self.options = mongo, moto, options
        self.workdir = Path(workdir)
        self.bucket = f"bench-{plugin}-{uuidlib.uuid4().hex[:8]}"
        self.base_uri = f"s3://{self.bucket}"
        self.s3 = moto.boto3_client("s3")
        self.storage = self.server = None
        self.word = f"benchword{uuidlib.uuid4().hex[:10]}"  # unique: search is substring

    def start_dserver(self):
        self.storage = Bucket(self.moto, self.bucket)
        notify = {"DSERVER_NOTIFY_DEBOUNCE_SECONDS": str(self.options.debounce)}
        env = dserver_env(self.workdir, self.mongo.uri, {self.bucket: self.base_uri}, notify,
                          database_uri=self.database_uri)
        env.update(self.storage.env)
        prepare_index(self.python, env, self.workdir, [self.base_uri])
        self.server = VenvDserver(self.python, env, self.workdir, workers=2).start()
        self.index = Index(self.server)
        self.webhook = f"{self.server.url}/webhook/notify"
        if self.plugin == "ours":
            # A fresh database starts with a reconcile pass; measured copies
            # are those of a dserver that is past it, as in production.
            wait_for({"pass": self._first_pass_finished}, time.monotonic(),
                     self.options.timeout)

    def _first_pass_finished(self):
        answer = requests.get(f"{self.server.url}/webhook/status",
                              headers=self.index.headers, timeout=30)
        return answer.ok and bool((answer.json()["reconcile"]["pass"] or {}).get("finished_at"))

    def run(self):
        self.start_dserver()
        try:
            figures = {"plugin": self.plugin}
            figures["copy"] = self.copy_phase()
            if self.edits:
                figures["edits"] = self.edits_phase()
            figures["delete"] = self.delete_phase()
            figures.update(self.server_figures())
            return figures
        finally:
            self.server.stop()

    def copy_phase(self):
        started = time.monotonic()
        uri = self.storage.put_dataset(
            "bench", self.options.items, readme=f"description: benchmark dataset {self.word}\n",
            tags=("bench",), annotations={"purpose": "benchmark"})
        self.uri, self.uuid = uri, uri.rsplit("/", 1)[1]
        copy_seconds = time.monotonic() - started
        self.keys = list_keys(self.s3, self.bucket)
        order, etags = copy_write_order_with_etags(self.s3, self.bucket, self.uuid)
        self.moto.reset_request_count()
        result = replay(self.webhook, bodies(self.bucket, order, CREATED, etags),
                        self.options.senders)
        seen = wait_for({"search": lambda: self.index.in_search(self.uri, self.word)},
                        result.last_ack, self.options.timeout)
        s3_at_searchable = self.moto.request_count()
        quiet = self.options.debounce + 2
        figures = _replay_figures(result)
        figures.update({
            "dtool_copy_seconds": round(copy_seconds, 2),
            "objects": len(self.keys),
            "searchable_after_s": _rounded(seen["search"]),
            "s3_requests_until_searchable": s3_at_searchable,
            "s3_requests_total": settled_s3_count(self.moto, quiet, self.options.timeout),
            "registrations": self.server.index_calls()["register"],
        })
        return figures

    def edits_phase(self):
        """Each edit on its own (the copy phase waited until dserver went quiet,
        and so does each edit): last ack to shown by dserver's API, and the
        S3 requests and registrations it caused."""
        dataset = dtoolcore.DataSet.from_uri(self.uri)
        quiet = self.options.debounce + 2
        figures = {}
        for edit in EDITS:
            registered = self.server.index_calls()["register"]
            bodies_ = notifications_of(self.s3, self.bucket,
                                       lambda: edit.apply(dataset, self.word))
            self.moto.reset_request_count()
            result = replay(self.webhook, bodies_, self.options.senders)
            seen = wait_for({"api": lambda: self._shows(edit)}, result.last_ack,
                            self.options.timeout)
            figures[f"{edit.key}_visible_after_s"] = _rounded(seen["api"])
            figures[f"{edit.key}_events"] = result.events
            figures[f"{edit.key}_s3_requests"] = settled_s3_count(self.moto, quiet,
                                                                  self.options.timeout)
            figures[f"{edit.key}_registrations"] = \
                self.server.index_calls()["register"] - registered
        return figures

    def _shows(self, edit):
        found = self.index.retrieved(edit.route, self.uri)
        return found is not None and edit.shows(found, self.word)

    def delete_phase(self):
        calls_before = self.server.index_calls()
        deleted = remove_all_objects(self.s3, self.bucket)
        self.moto.reset_request_count()
        result = replay(self.webhook, bodies(self.bucket, deleted, REMOVED),
                        self.options.senders)
        gone = wait_for({"listing": lambda: not self.index.in_listing(self.uri),
                         "search": lambda: not self.index.in_search(self.uri, self.word)},
                        result.last_ack, self.options.timeout)
        calls_after = self.server.index_calls()
        figures = _replay_figures(result)
        figures.update({
            "gone_from_listing_after_s": _rounded(gone["listing"]),
            "gone_from_search_after_s": _rounded(gone["search"]),
            "s3_requests_total": settled_s3_count(self.moto, self.options.debounce + 2,
                                                  self.options.timeout),
            "registrations": calls_after["register"] - calls_before["register"],
            "delete_dataset_calls": calls_after["delete"] - calls_before["delete"],
        })
        return figures

    def server_figures(self):
        log = self.server.log_path.read_text(errors="replace")
        status = self.server.plugin_status()
        return {
            "peak_memory_mib": round(self.server.peak_memory_kib() / 1024, 1),
            "tracebacks_in_log": log.count("Traceback (most recent call last)"),
            "plugin_status_sync_total": (status or {}).get("sync", {}).get("total"),
            "dserver_log": str(self.server.log_path),
        }
