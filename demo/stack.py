"""The servers of the demo: Mongo-wire, S3 with notifications, dserver.

Every server comes from ``devstack``, the development stack the tests and
the benchmark start too, so the demo runs exactly what the tests run. Each
server is a subprocess in its own session on a free loopback port; ``stop``
ends each one and then its whole process group, whatever state ``start``
reached.
"""
import os
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path

import requests

from devstack.datasets import Bucket
from devstack.dserver import ADMIN, LiveDserver, dserver_env, prepare_index_in_subprocess, token_for
from devstack.mongo import MongoServer
from devstack.moto import MotoServer
from devstack.ports import ServerError, free_port


class DemoStack:
    """Starts the three servers in order, explaining each step."""

    def __init__(self, console, debounce_seconds=2.0, gunicorn_workers=2):
        self.console = console
        self.debounce_seconds = debounce_seconds
        self.gunicorn_workers = gunicorn_workers
        # No hyphen: dtool-s3 reads DTOOL_S3_ENDPOINT_<bucket>, which a shell
        # can only export if the bucket name is a valid identifier.
        self.bucket = f"demo{uuid.uuid4().hex[:8]}"
        self.base_uri = f"s3://{self.bucket}"
        self.workdir = Path(tempfile.mkdtemp(prefix="dserver-demo-"))
        self.mongo = self.moto = self.dserver = None
        self.s3_env = {}
        self.topic_arn = None
        self.admin_token = None

    # start ------------------------------------------------------------
    def start(self):
        self._start_mongo()
        self._start_s3()
        port = free_port()  # chosen first: moto must know where to POST
        self._subscribe(f"http://127.0.0.1:{port}/webhook/notify")
        self._start_dserver(port)
        return self

    def _start_mongo(self):
        say = self.console
        say.explain("dserver keeps its search index in MongoDB; here a MongoDB "
                    "wire-protocol server (nx-27017, backed by SQLite) stands in.")
        self.mongo = MongoServer().start()
        where = self.mongo.uri if self.mongo.managed else f"{self.mongo.uri} (external)"
        say.event(f"Mongo-wire server ready at {where}")

    def _start_s3(self):
        say = self.console
        say.explain("moto_server plays AWS: S3 for the data, SNS to deliver "
                    "bucket notifications over HTTP.")
        self.moto = MotoServer().start()
        # dtool-s3 reads per-bucket endpoint and keys from the environment.
        self.s3_env = Bucket(self.moto, self.bucket).env
        say.event(f"S3 ready at {self.moto.endpoint}, bucket {self.bucket!r} created")

    def _subscribe(self, webhook_url):
        say = self.console
        say.explain("As on AWS: the bucket notifies an SNS topic of every created "
                    "and removed object; the topic POSTs each one to the plugin.")
        self.topic_arn = self.moto.subscribe_bucket_to_webhook(self.bucket, webhook_url)
        say.event(f"bucket -> SNS topic {self.topic_arn} -> {webhook_url}")

    def _notify_settings(self):
        return {
            # Take SNS messages of this topic only (AWS sends a
            # SubscriptionConfirmation first; moto does not, but it is harmless).
            "DSERVER_NOTIFY_SNS_TOPICS": self.topic_arn,
            # moto signs with no real key: against AWS, leave verification on.
            "DSERVER_NOTIFY_SNS_VERIFY": "off",
            "DSERVER_NOTIFY_ALLOW_ACCESS_FROM": "127.0.0.1/32,::1/128",
            "DSERVER_NOTIFY_DEBOUNCE_SECONDS": str(self.debounce_seconds),
            "DSERVER_NOTIFY_POLL_SECONDS": "0.2",
        }

    def _start_dserver(self, port):
        say = self.console
        say.explain(f"dserver with this plugin, served by gunicorn ({self.gunicorn_workers} "
                    f"workers). DSERVER_NOTIFY_BUCKET_TO_BASE_URI maps bucket "
                    f"{self.bucket!r} to base URI {self.base_uri}.")
        env = dserver_env(self.workdir / "dserver", self.mongo.uri,
                          {self.bucket: self.base_uri}, self._notify_settings())
        env.update(self.s3_env)  # the sync worker reads the bucket with dtool-s3
        say.waiting("creating dserver's tables, users and base URI ...")
        prepare_index_in_subprocess(env, [self.base_uri])
        say.event(f"dserver database ready: users {ADMIN!r} (admin) and 'alice', "
                  f"base URI {self.base_uri} registered")
        self.dserver = LiveDserver(env, self.workdir / "dserver",
                                   workers=self.gunicorn_workers)
        self.dserver.port = port
        say.waiting("starting gunicorn ...")
        try:
            self.dserver.start()
        except requests.Timeout:
            # LiveDserver's readiness probe gives up on the first slow answer;
            # on a busy machine the workers may still be creating the app.
            _wait_until_answering(self.dserver.url + "/config/versions")
        say.done_waiting()
        self.admin_token = token_for(ADMIN, env["JWT_PRIVATE_KEY_FILE"])
        say.event(f"dserver ready at {self.dserver.url}")

    # stop -------------------------------------------------------------
    def stop(self):
        """Stop whatever was started, newest first; never raises."""
        if self.dserver is not None:
            _stop_quietly(self.dserver.stop, self.dserver.proc)
        for server in (self.moto, self.mongo):
            if server is not None:
                _stop_quietly(server.stop, server.proc)
        for name in self.s3_env:
            os.environ.pop(name, None)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tails(self, lines=25):
        """The last log lines of every server, for a failure report."""
        tails = []
        for name, server in (("dserver (gunicorn)", self.dserver), ("moto", self.moto),
                             ("mongo", self.mongo)):
            if server is not None and server.log_path is not None:
                tails.append((name, server.log_tail(lines)))
        return tails


def _wait_until_answering(url, timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=10).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise ServerError(f"dserver did not answer {url} within {timeout} s")
        time.sleep(0.5)


def _stop_quietly(stop, proc):
    """Call ``stop`` and then make sure the whole process group is gone."""
    try:
        stop()
    except Exception:  # a stop that fails must not keep the others running
        pass
    if proc is not None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # each server leads its own group
        except (ProcessLookupError, PermissionError):
            pass
