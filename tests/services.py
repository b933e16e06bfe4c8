"""Launchers for the real servers used by tests, the demo and the benchmark.

Plain module (no pytest), importable as ``tests.services`` or by path. Each
server is a subprocess with its own free ports and temp dir, so parallel runs
do not collide; one that dies while starting raises ``ServerError`` with its
log tail. MongoServer: nx-27017 (or DSERVER_TEST_MONGO_URI); MotoServer: S3
plus SNS deliveries; SeaweedServer: S3 gateway plus filer webhook.
"""

import atexit
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent  # not resolved: the venv's python is a symlink
DUMMY_REGION = "us-east-1"
MOTO_KEY = MOTO_SECRET = "testing"


class ServerError(RuntimeError):
    """A test server failed to start or answer; the message holds its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _port_is_free(port: int) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, port))
        return True
    except OSError:
        return False


def free_port_pair(offset: int = 10000) -> int:
    """A free port p whose p+offset is free too (SeaweedFS's gRPC convention).

    Drawn below the kernel's ephemeral range so that p+offset stays valid.
    """
    for _ in range(500):
        port = random.randint(10000, 22000)
        if _port_is_free(port) and _port_is_free(port + offset):
            return port
    raise ServerError(f"no free port pair (p, p+{offset}) found")


def log_tail(path, lines: int = 40) -> str:
    """The last lines of a log file, or a note that there is none."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as error:
        return f"<no log at {path}: {error}>"
    return "\n".join(text.splitlines()[-lines:])


def wait_for_port(host: str, port: int, timeout: float, proc=None, log_path=None) -> None:
    """Wait until host:port accepts TCP connections.

    Fails at once, with the log tail, if ``proc`` (a Popen) has exited; that
    is far more useful than a timeout when the server crashed on start.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerError(
                f"{proc.args[0]} exited with code {proc.returncode} before "
                f"listening on {host}:{port}. Log tail:\n{log_tail(log_path)}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServerError(f"nothing listens on {host}:{port} after {timeout} s. "
                      f"Log tail:\n{log_tail(log_path)}")


def find_executable(name: str) -> str:
    """An executable from the venv's bin (next to sys.executable), else PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServerError(f"executable {name!r} not found in {VENV_BIN} or on PATH")
    return found


_LIVE_PROCESSES = set()


def _start_process(args, log_path, cwd=None, env=None) -> subprocess.Popen:
    """Start a server with stdout and stderr appended to log_path."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(a) for a in args], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=cwd, env=env,
            start_new_session=True)  # a Ctrl-C in the terminal is ours to handle
    _LIVE_PROCESSES.add(proc)
    return proc


def _stop_process(proc, term_timeout: float = 5.0) -> None:
    """SIGTERM, wait up to term_timeout, then SIGKILL (this PID only; 0: SIGKILL now)."""
    if proc is not None and proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM if term_timeout else signal.SIGKILL)
            proc.wait(term_timeout or 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    _LIVE_PROCESSES.discard(proc)


@atexit.register
def _stop_leftovers() -> None:
    """Never leave a server behind when a script or test run aborts."""
    for proc in list(_LIVE_PROCESSES):
        _stop_process(proc, term_timeout=0)


class _Server:
    """Shared plumbing: one subprocess, one temp dir holding its log."""

    TERM_TIMEOUT = 5.0

    def __init__(self):
        self.port = None
        self.proc = None
        self._tmp = None
        self.log_path = None

    def _make_tmp(self, prefix: str, log_name: str) -> None:
        self._tmp = tempfile.mkdtemp(prefix=prefix)
        self.log_path = Path(self._tmp, log_name)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and remove the temp dir."""
        _stop_process(self.proc, self.TERM_TIMEOUT)
        self.proc = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)


class MongoServer(_Server):
    """nx-27017 on a free port, or the MongoDB named by DSERVER_TEST_MONGO_URI.

    ``kill()`` and ``restart()`` keep the port and data directory, so a test
    can take the database away mid-processing and bring it back.
    """

    ENV_URI = "DSERVER_TEST_MONGO_URI"

    def __init__(self):
        super().__init__()
        self.external_uri = os.environ.get(self.ENV_URI) or None

    @property
    def managed(self) -> bool:
        """False when an external MongoDB is used (it cannot be stopped here)."""
        return self.external_uri is None

    @property
    def uri(self) -> str:
        if not self.managed:
            return self.external_uri
        return f"mongodb://{HOST}:{self.port}/"

    def start(self):
        if not self.managed:
            return self
        if self._tmp is None:  # a restart keeps port and data
            self._make_tmp("nx27017-", "server.log")
            self.port = free_port()
        data_dir = Path(self._tmp, "data")
        data_dir.mkdir(exist_ok=True)
        args = [sys.executable, HERE / "nx_mongo_server.py", "--host", HOST,
                "-p", self.port, "--data-dir", data_dir,
                "--log-file", Path(self._tmp, "nx.log"),
                "--pid-file", Path(self._tmp, "nx.pid")]
        self.proc = _start_process(args, self.log_path)
        wait_for_port(HOST, self.port, 20, self.proc, self.log_path)
        return self

    def _require_managed(self, action: str) -> None:
        if not self.managed:
            raise ServerError(f"cannot {action} the external MongoDB at {self.external_uri}")

    def kill(self) -> None:
        """SIGKILL: the database vanishes without a goodbye."""
        self._require_managed("kill")
        _stop_process(self.proc, term_timeout=0)

    def restart(self):
        """Stop (if running) and start again on the same port and data dir."""
        self._require_managed("restart")
        _stop_process(self.proc)
        return self.start()

    def stop(self) -> None:
        if self.managed:
            super().stop()


def _boto3_client(service: str, endpoint: str, key: str, secret: str):
    return boto3.client(service, endpoint_url=endpoint, region_name=DUMMY_REGION,
                        aws_access_key_id=key, aws_secret_access_key=secret)


# One werkzeug access-log line per handled request, written when the response
# headers go out, i.e. before the client sees the response:
#   127.0.0.1 - - [28/Nov/2026 12:39:57] "PUT /bucket/key HTTP/1.1" 200 -
_ACCESS_LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/[\d.]+" \d{3}')
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _is_s3_request(method: str, path: str) -> bool:
    """S3 uses path-style URLs; SNS (query protocol) is always ``POST /``."""
    if path.startswith("/moto-api"):
        return False
    return not (method == "POST" and path.split("?")[0] == "/")


class MotoServer(_Server):
    """moto_server on a free port: S3 and SNS with real HTTP deliveries.

    ``request_count()`` counts S3 requests by parsing werkzeug's access log
    (moto_server's stderr, captured in ``log_path``): every request handled
    produces exactly one line, written before the response reaches the client.
    ``/moto-api/`` calls and SNS calls (``POST /``) are not counted.
    """

    def __init__(self):
        super().__init__()
        self._count_offset = 0

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self):
        self._make_tmp("moto-", "moto.log")
        self.port = free_port()
        args = [find_executable("moto_server"), "-H", HOST, "-p", self.port]
        self.proc = _start_process(args, self.log_path, cwd=self._tmp)
        wait_for_port(HOST, self.port, 20, self.proc, self.log_path)
        return self

    def boto3_client(self, service: str):
        return _boto3_client(service, self.endpoint, MOTO_KEY, MOTO_SECRET)

    def create_bucket(self, name: str) -> None:
        self.boto3_client("s3").create_bucket(Bucket=name)

    def subscribe_bucket_to_webhook(self, bucket: str, webhook_url: str) -> str:
        """Make moto POST SNS-wrapped S3 events for bucket to webhook_url.

        Returns the topic ARN. The first delivery carries an ``s3:TestEvent``.
        """
        sns = self.boto3_client("sns")
        topic_arn = sns.create_topic(Name=f"{bucket}-events")["TopicArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="http", Endpoint=webhook_url)
        self.boto3_client("s3").put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={"TopicConfigurations": [{
                "TopicArn": topic_arn,
                "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
            }]})
        return topic_arn

    def _s3_requests(self) -> list:
        text = _ANSI.sub("", Path(self.log_path).read_text(errors="replace"))
        return [(method, path) for method, path in _ACCESS_LINE.findall(text)
                if _is_s3_request(method, path)]

    def _total_s3_requests(self) -> int:
        return len(self._s3_requests())

    def request_count(self) -> int:
        """S3 requests handled since start (or since reset_request_count)."""
        return self._total_s3_requests() - self._count_offset

    def requests(self) -> list:
        """``(method, path)`` of the S3 requests counted by request_count."""
        return self._s3_requests()[self._count_offset:]

    def reset_request_count(self) -> None:
        self._count_offset = self._total_s3_requests()


NOTIFICATION_TOML = """\
[notification.webhook]
enabled = true
endpoint = "{endpoint}"
timeout_seconds = 5
max_retries = 3
backoff_seconds = 1
workers = 2
buffer_size = 1000
"""


class SeaweedServer(_Server):
    """``weed server`` (master, volume, filer, S3 gateway) on free ports.

    With ``webhook_url`` the filer POSTs one JSON per change to it: weed reads
    ``notification.toml`` from its working directory, a fresh temp dir here.
    """

    SERVICES = ("master", "volume", "filer", "s3")
    TERM_TIMEOUT = 1.0  # weed ignores SIGTERM for ~30 s: brief wait, then SIGKILL

    def __init__(self, webhook_url: str = None, access_key: str = "seaweedkey",
                 secret_key: str = "seaweedsecret", start_timeout: float = 40):
        self.webhook_url = webhook_url
        self.access_key = access_key
        self.secret_key = secret_key
        self.start_timeout = start_timeout
        self.ports = {}
        super().__init__()

    @property
    def s3_endpoint(self) -> str:
        return f"http://{HOST}:{self.ports['s3']}"

    def _command(self, data_dir: Path) -> list:
        """Every port explicit (gRPC = http + 10000, as weed would pick);
        Iceberg (8181) and Lance (9101) endpoints off; sockets in our temp dir."""
        cmd = [find_executable("weed"), "server", f"-ip={HOST}", f"-ip.bind={HOST}",
               f"-dir={data_dir}", "-master.volumeSizeLimitMB=64",
               "-master.telemetry=false", "-volume.max=100",
               "-volume.preStopSeconds=0", "-filer", "-s3",
               "-s3.port.iceberg=0", "-s3.port.lance=0",
               f"-filer.localSocket={self._tmp}/filer.sock",
               f"-s3.localSocket={self._tmp}/s3.sock"]
        for service, port in self.ports.items():
            cmd += [f"-{service}.port={port}", f"-{service}.port.grpc={port + 10000}"]
        return cmd

    def start(self):
        self._make_tmp("weed-", "weed.log")
        data_dir = Path(self._tmp, "data")
        data_dir.mkdir()
        if self.webhook_url:
            Path(self._tmp, "notification.toml").write_text(
                NOTIFICATION_TOML.format(endpoint=self.webhook_url))
        self.ports = {service: free_port_pair() for service in self.SERVICES}
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.access_key,
                   AWS_SECRET_ACCESS_KEY=self.secret_key)
        self.proc = _start_process(self._command(data_dir), self.log_path,
                                   cwd=self._tmp, env=env)
        try:
            wait_for_port(HOST, self.ports["s3"], self.start_timeout, self.proc, self.log_path)
            self._wait_until_writable()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_writable(self) -> None:
        """The port opens before volumes exist; retry a real write until it works."""
        s3 = self.boto3_client()
        probe = "weed-readiness-probe"
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                s3.create_bucket(Bucket=probe)
                s3.put_object(Bucket=probe, Key="probe", Body=b"ok")
                s3.delete_object(Bucket=probe, Key="probe")
                s3.delete_bucket(Bucket=probe)
                return
            except Exception as error:  # any botocore error means "not yet"
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise ServerError(f"SeaweedFS S3 not writable: {error}. "
                                      f"Log tail:\n{self.log_tail()}") from error
                time.sleep(0.3)

    def boto3_client(self, service: str = "s3"):
        return _boto3_client(service, self.s3_endpoint, self.access_key, self.secret_key)

    def create_bucket(self, name: str) -> None:
        self.boto3_client().create_bucket(Bucket=name)


def dtool_s3_env(bucket: str, endpoint: str, key: str, secret: str) -> dict:
    """dtool-s3's per-bucket settings; also put into os.environ.

    dtool-s3 reads them with dtoolcore.utils.get_config_value, i.e. from
    os.environ at call time, so setting them here configures this process
    (and any child started afterwards). The dict is returned for subprocess
    environments and app configs.
    """
    env = {f"DTOOL_S3_ENDPOINT_{bucket}": endpoint,
           f"DTOOL_S3_ACCESS_KEY_ID_{bucket}": key,
           f"DTOOL_S3_SECRET_ACCESS_KEY_{bucket}": secret}
    os.environ.update(env)
    return env


def put_dtool_dataset(base_uri: str, name: str, items, readme: str = "description: test dataset\n",
                      tags=(), annotations=None, env=None, creator_username=None) -> str:
    """Create a frozen dtool dataset locally, copy it to base_uri, return its URI.

    ``items`` maps relpath -> bytes, or is a count of generated items. ``env``
    (e.g. from dtool_s3_env) is applied to os.environ first, because that is
    where dtool-s3 looks. The copy writes keys in dtool-s3's order (see
    services.md); the result is ``s3://<bucket>/<uuid>``.
    """
    if env:
        os.environ.update(env)
    with tempfile.TemporaryDirectory(prefix="dtool-src-") as tmp:
        import dtoolcore  # imported late: scripts may load this module without it
        proto = dtoolcore.create_proto_dataset(
            name, Path(tmp).as_uri(), readme_content=readme,
            creator_username=creator_username)
        if isinstance(items, int):
            items = {f"item_{i:03d}.txt": f"item {i}\n".encode() for i in range(items)}
        for relpath, content in items.items():
            source = Path(tmp, "_payload", relpath)
            source.parent.mkdir(parents=True, exist_ok=True)
            source.write_bytes(content)
            proto.put_item(str(source), relpath)
        for tag in tags:
            proto.put_tag(tag)
        for annotation_name, value in (annotations or {}).items():
            proto.put_annotation(annotation_name, value)
        proto.freeze()
        return dtoolcore.copy(proto.uri, base_uri)


def list_keys(s3_client, bucket: str, prefix: str = "") -> list:
    """Every object key in bucket under prefix, sorted."""
    keys = []
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


def remove_all_objects(s3_client, bucket: str, prefix: str = "", batch: bool = False) -> list:
    """Delete every object under prefix; returns the deleted keys.

    By default one DeleteObject per key, as ``aws s3 rm --recursive`` does;
    ``batch=True`` uses DeleteObjects with up to 1000 keys, as ``mc rm
    --recursive`` does. Both make moto and SeaweedFS emit one event per key.
    """
    keys = list_keys(s3_client, bucket, prefix)
    if not batch:
        for key in keys:
            s3_client.delete_object(Bucket=bucket, Key=key)
        return keys
    for start in range(0, len(keys), 1000):
        chunk = [{"Key": key} for key in keys[start:start + 1000]]
        s3_client.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
    return keys
