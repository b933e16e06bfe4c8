"""A dataset lands in S3, its notifications arrive, the index follows."""
from devstack.payloads import minio_bodies_for_keys
from devstack.s3 import list_keys


def test_copied_dataset_becomes_searchable(app, client, bucket, admin_headers, drain,
                                           notify_all, search):
    uri = bucket.put_dataset("first", items=4, readme="project: unicorn\n", tags=["blue"])
    notify_all(client, minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name)))
    assert search(client, admin_headers) == []  # nothing before the worker ran

    drain(app)

    assert search(client, admin_headers) == [uri]
    assert search(client, admin_headers, tags=["blue"]) == [uri]
    assert search(client, admin_headers, free_text="unicorn") == [uri]
