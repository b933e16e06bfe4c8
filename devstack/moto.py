"""moto_server: AWS's S3, SNS and SQS on a free loopback port.

S3 keeps real objects (dtool-s3 works against it), and a bucket subscribed
to an SNS topic with an ``http`` subscription makes moto POST real SNS
envelopes of S3 events, as AWS does (see ``subscribe_bucket_to_webhook``);
queues notified by buckets are in ``devstack.sqs``.
"""
import re
from pathlib import Path

from devstack.ports import HOST, Server, find_executable, free_port, start_process, \
    wait_for_port
from devstack.s3 import boto3_client

MOTO_KEY = MOTO_SECRET = "testing"  # moto accepts any credentials

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


class MotoServer(Server):
    """moto_server on a free port: S3 and SNS with real HTTP deliveries.

    ``request_count()`` counts S3 requests by parsing werkzeug's access log
    (moto_server's stderr, captured in ``log_path``): every request handled
    produces exactly one line, written before the response reaches the client.
    ``/moto-api/`` calls and SNS calls (``POST /``) are not counted.
    """

    access_key = MOTO_KEY
    secret_key = MOTO_SECRET

    def __init__(self):
        super().__init__()
        self._count_offset = 0

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def s3_endpoint(self) -> str:
        return self.endpoint

    def start(self):
        self._make_tmp("moto-", "moto.log")
        self.port = free_port()
        args = [find_executable("moto_server"), "-H", HOST, "-p", self.port]
        self.proc = start_process(args, self.log_path, cwd=self._tmp)
        wait_for_port(HOST, self.port, 20, self.proc, self.log_path)
        return self

    def boto3_client(self, service: str = "s3"):
        return boto3_client(service, self.endpoint, self.access_key, self.secret_key)

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

    def _total_s3_requests(self) -> int:
        text = _ANSI.sub("", Path(self.log_path).read_text(errors="replace"))
        return sum(1 for method, path in _ACCESS_LINE.findall(text)
                   if _is_s3_request(method, path))

    def request_count(self) -> int:
        """S3 requests handled since start (or since reset_request_count)."""
        return self._total_s3_requests() - self._count_offset

    def reset_request_count(self) -> None:
        self._count_offset = self._total_s3_requests()
