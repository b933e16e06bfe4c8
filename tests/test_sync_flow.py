"""A dataset lands in S3, its notifications arrive, the index follows."""
from tests.payloads import minio_bodies_for_keys
from tests.services import list_keys


def search(client, headers, **query):
    response = client.post("/uris", json=query, headers=headers)
    assert response.status_code == 200, response.get_json()
    return [d["uri"] for d in response.get_json()]


def notify_all(client, bodies):
    for body in bodies:
        response = client.post("/webhook/notify", json=body)
        assert response.status_code == 202, response.get_json()


def test_copied_dataset_becomes_searchable(app, client, bucket, admin_headers):
    uri = bucket.put_dataset("first", items=4, readme="project: unicorn\n", tags=["blue"])
    notify_all(client, minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name)))
    assert search(client, admin_headers) == []  # nothing before the worker ran

    app.extensions["dserver_notification"].worker.drain(include_waiting=True)

    assert search(client, admin_headers) == [uri]
    assert search(client, admin_headers, tags=["blue"]) == [uri]
    assert search(client, admin_headers, free_text="unicorn") == [uri]
