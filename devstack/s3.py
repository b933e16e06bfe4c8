"""S3 clients and bulk operations, the same for every S3 server here.

Each S3 server (``MotoServer``, ``SeaweedServer``) offers ``s3_endpoint``,
``access_key``, ``secret_key``, ``boto3_client(service)`` and
``create_bucket(name)``; :class:`devstack.datasets.Bucket` needs no more.
"""
import boto3

DUMMY_REGION = "us-east-1"


def boto3_client(service: str, endpoint: str, key: str, secret: str):
    """A boto3 client for a local server (no AWS config files consulted)."""
    return boto3.client(service, endpoint_url=endpoint, region_name=DUMMY_REGION,
                        aws_access_key_id=key, aws_secret_access_key=secret)


def list_keys(s3_client, bucket: str, prefix: str = "") -> list:
    """Every object key in bucket under prefix, sorted."""
    return sorted(list_etags(s3_client, bucket, prefix))


def list_etags(s3_client, bucket: str, prefix: str = "") -> dict:
    """key -> ETag (without quotes, as senders give it) of every object under prefix."""
    etags = {}
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        etags.update((obj["Key"], obj["ETag"].strip('"')) for obj in page.get("Contents", []))
    return etags


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
