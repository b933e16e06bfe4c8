"""A deletion reaches every store: also the collections of loaded extensions.

The published dserver-direct-mongo-plugin and dserver-dependency-graph-plugin
(the reference composition loads both) keep their own Mongo collection and
implement no ``delete_dataset``; after a notified deletion ``/mongo/query``
must not return the dataset any more.
"""
from devstack.payloads import minio_bodies_for_keys
from devstack.s3 import list_keys, remove_all_objects


def mongo_query(client, headers, **query):
    response = client.post("/mongo/query", json=query, headers=headers)
    assert response.status_code == 200, response.get_json()
    return sorted(d["uri"] for d in response.get_json())


def extension(app, name):
    [found] = [e for e in app.custom_extensions if type(e).__name__ == name]
    return found


def test_a_notified_deletion_leaves_direct_mongo_and_dependency_graph_too(
        make_app, bucket, auth_headers, notify_all, drain, listed):
    app = make_app([bucket])
    client, headers = app.test_client(), auth_headers(app)
    kept = bucket.put_dataset("kept", items=1, readme="project: kept\n")
    gone = bucket.put_dataset("gone", items=1, readme="project: gone\n")
    notify_all(client, minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name)))
    drain(app)
    assert mongo_query(client, headers) == sorted([kept, gone])
    assert mongo_query(client, headers, query={"readme.project": "gone"}) == [gone]
    graph = extension(app, "DependencyGraphExtension").collection
    direct = extension(app, "DirectMongoExtension").collection
    assert graph.name == direct.name == "metadata"  # their own, not the search collection
    assert graph.count_documents({"uri": gone}) == 1

    uuid = gone.rsplit("/", 1)[1]
    keys = [k for k in list_keys(bucket.s3, bucket.name) if uuid in k]
    remove_all_objects(bucket.s3, bucket.name, uuid + "/")
    bucket.s3.delete_object(Bucket=bucket.name, Key=f"dtool-{uuid}")
    notify_all(client, minio_bodies_for_keys(bucket.name, keys,
                                             event_name="s3:ObjectRemoved:Delete"))
    drain(app)

    assert listed(client, headers) == [kept]
    assert mongo_query(client, headers) == [kept]
    assert mongo_query(client, headers, query={"readme.project": "gone"}) == []
    assert graph.count_documents({"uri": gone}) == 0
    assert graph.count_documents({"uri": kept}) == 1
