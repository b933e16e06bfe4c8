"""When may a dataset leave the index? Only on positive evidence.

A dataset is gone when its bucket answers and its ``dtool`` object is
definitely absent there. Everything else says nothing about the dataset:
a bucket that does not exist at the configured endpoint (a typo in
``DTOOL_S3_ENDPOINT_<bucket>``, a DNS change, a failover to a replica),
access denied, an endpoint that does not answer. Those raise
:class:`BucketUnreadable`, which the worker retries with backoff and the
reconciler skips; status and metrics name the base URI and the reason
(:mod:`.attention`).
"""
import botocore.exceptions

#: Codes with which S3 says that an object is not there (HeadObject has no
#: body, so its 404 carries the bare status as code).
OBJECT_ABSENT_CODES = {"NoSuchKey", "404", "NotFound"}
#: Codes with which S3 says that the bucket itself cannot be read.
BUCKET_CODES = {"NoSuchBucket": "the bucket does not exist at {endpoint}",
                "AccessDenied": "access denied at {endpoint}",
                "403": "access denied at {endpoint}",
                "AllAccessDisabled": "access disabled at {endpoint}",
                "InvalidAccessKeyId": "the access key is not known at {endpoint}",
                "SignatureDoesNotMatch": "the secret key does not match at {endpoint}",
                "PermanentRedirect": "the bucket lives at another endpoint than {endpoint}"}


class BucketUnreadable(Exception):
    """The bucket of ``base_uri`` cannot be read; ``reason`` says why, for people."""

    def __init__(self, bucket, reason):
        super().__init__(f"bucket {bucket} cannot be read: {reason}")
        self.bucket = bucket
        self.reason = reason


def error_code(exc):
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_object_absent(exc):
    return isinstance(exc, botocore.exceptions.ClientError) \
        and error_code(exc) in OBJECT_ABSENT_CODES


def unreadable_from(exc, bucket, client=None):
    """The :class:`BucketUnreadable` an S3 error amounts to, or None when it
    is about something else (a throttled request, a server error: retried
    as before)."""
    endpoint = endpoint_of(client)
    if isinstance(exc, botocore.exceptions.ClientError):
        template = BUCKET_CODES.get(error_code(exc))
        if template is None:
            return None
        return BucketUnreadable(bucket, f"{template.format(endpoint=endpoint)} "
                                        f"({error_code(exc)})")
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError,
                        botocore.exceptions.ConnectTimeoutError)):
        return BucketUnreadable(bucket, f"the endpoint {endpoint} does not answer ({exc})")
    return None


def endpoint_of(client):
    return getattr(getattr(client, "meta", None), "endpoint_url", None) or "the default endpoint"


def confirm_bucket_answers(client, bucket):
    """Raise :class:`BucketUnreadable` unless ``bucket`` answers at ``client``'s
    endpoint: the other half of the evidence that an absent object is gone."""
    try:
        client.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise BucketUnreadable(bucket, f"the bucket does not exist at "
                                           f"{endpoint_of(client)} (NoSuchBucket)") from exc
        raise unreadable_from(exc, bucket, client) or exc
    except botocore.exceptions.BotoCoreError as exc:
        raise unreadable_from(exc, bucket, client) or exc
