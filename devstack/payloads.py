"""Notification bodies as storage systems send them, for keys we choose.

The MinIO body is the first request a real MinIO server sent to its webhook
target in 2022 while ``dtool cp`` wrote a dataset
(``devstack/data/minio-webhook-record.json``, a byte-for-byte copy of
``tests/data/formats/minio-2022/webhook/copy_dataset_to_bucket/001.json``;
see tests/data/README.md for where those came from), with bucket, key, event
name, time and sequencer replaced, so its shape is exactly MinIO's.
"""
import copy
import datetime
import json
import urllib.parse
from pathlib import Path

TEMPLATE = json.loads(
    (Path(__file__).parent / "data" / "minio-webhook-record.json").read_text())["body"]


def s3_escape(key):
    """How S3 and MinIO escape keys in event records (space becomes '+')."""
    return urllib.parse.quote_plus(key, safe="")


def minio_webhook_body(bucket, key, event_name="s3:ObjectCreated:Put", sequence=0, etag=None):
    """``etag``: the object's ETag as MinIO sends it (the template's otherwise)."""
    body = copy.deepcopy(TEMPLATE)
    now = datetime.datetime.now(datetime.timezone.utc)
    record = body["Records"][0]
    record["eventName"] = event_name
    record["eventTime"] = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    record["s3"]["object"]["key"] = s3_escape(key)
    record["s3"]["object"]["sequencer"] = f"{int(now.timestamp() * 1e9) + sequence:X}"
    if etag is not None:
        record["s3"]["object"]["eTag"] = etag
    body["EventName"] = event_name
    body["Key"] = f"{bucket}/{key}"
    return body


def minio_bodies_for_keys(bucket, keys, event_name="s3:ObjectCreated:Put", etags=None):
    """One body per key; ``etags``, if given, holds each key's ETag, in order."""
    etags = etags or [None] * len(keys)
    return [minio_webhook_body(bucket, key, event_name, i, etag)
            for i, (key, etag) in enumerate(zip(keys, etags))]
