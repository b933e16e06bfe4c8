"""Issue 3 at the HTTP boundary: every dialect in, clear 4xx for bad input."""
import json
from pathlib import Path

from devstack.payloads import minio_webhook_body

DATA = Path(__file__).parent / "data" / "formats"
UUID = "49f0bf41-471b-4781-855e-161fe81ffb0d"


def inbox_rows(app):
    return app.extensions["dserver_notification"].inbox.entries()


def test_head_probes_answer_200(client):
    for path in ("/webhook/notify", "/webhook/notify/", "/webhook/notify/minio/x"):
        assert client.head(path).status_code == 200


def test_every_record_of_a_batch_is_accepted(app, client, bucket):
    keys = [f"u/me/{uuid}/dtool" for uuid in (
        "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222",
        "33333333-3333-4333-8333-333333333333")]
    records = [minio_webhook_body(bucket.name, key)["Records"][0] for key in keys]
    answer = client.post("/webhook/notify", json={"Records": records})
    assert answer.status_code == 202
    assert answer.get_json() == {"accepted": 3, "ignored": 0}
    assert sorted(row.uuid for row in inbox_rows(app)) == sorted(k.split("/")[2] for k in keys)


def test_events_of_one_dataset_fold_into_one_entry(app, client, bucket):
    keys = [f"dtool-{UUID}", f"{UUID}/README.yml", f"{UUID}/manifest.json", f"{UUID}/dtool",
            f"{UUID}/data/abc", f"{UUID}/tags/x"]
    for key in keys:
        assert client.post("/webhook/notify", json=minio_webhook_body(bucket.name, key)) \
            .status_code == 202
    rows = inbox_rows(app)
    assert len(rows) == 1
    assert rows[0].dataset_uri == f"{bucket.base_uri}/{UUID}"
    assert rows[0].events == 5  # the data item costs nothing


def test_keys_are_decoded_exactly(app, client, bucket):
    body = minio_webhook_body(bucket.name, f"my data+x/{UUID}/README.yml")
    assert body["Records"][0]["s3"]["object"]["key"].startswith("my+data%2Bx")
    assert client.post("/webhook/notify", json=body).get_json()["accepted"] == 1
    assert inbox_rows(app)[0].uuid == UUID


def test_unmapped_bucket_and_foreign_keys_are_acknowledged_and_ignored(app, client, bucket,
                                                                       caplog):
    unmapped = client.post("/webhook/notify", json=minio_webhook_body("elsewhere", f"{UUID}/dtool"))
    foreign = client.post("/webhook/notify", json=minio_webhook_body(bucket.name, "notes.txt"))
    assert unmapped.status_code == foreign.status_code == 202
    assert unmapped.get_json() == foreign.get_json() == {"accepted": 0, "ignored": 1}
    assert "no base URI" in caplog.text or "elsewhere" in caplog.text
    assert inbox_rows(app) == []


def test_real_minio_access_events_are_ignored(app, client):
    capture = json.loads((DATA / "minio-2022/webhook/download_single_item/001.json").read_text())
    answer = client.post("/webhook/notify", json=capture["body"])
    assert answer.status_code == 202
    assert answer.get_json() == {"accepted": 0, "ignored": 1}


def test_storagegrid_endpoint_test_message_answers_2xx(client):
    answer = client.post(
        "/webhook/notify", content_type="application/x-www-form-urlencoded",
        data="Action=Publish&Message=StorageGRID+Test+Message"
             "&TopicArn=urn%3Atest%3Asns%3Atest%3Atest%3Atest&Version=2010-03-31")
    assert 200 <= answer.status_code < 300


def test_bad_input_gets_a_clear_json_4xx(client):
    cases = [
        (dict(data="{not json", content_type="application/json"), 400),
        (dict(json={"Records": "nope"}), 400),
        (dict(json={"something": "else"}), 400),
        (dict(data="<xml/>", content_type="application/xml"), 415),
        (dict(data=b"x" * (1024 * 1024 + 1), content_type="application/json"), 413),
    ]
    for kwargs, status in cases:
        answer = client.post("/webhook/notify", **kwargs)
        assert answer.status_code == status, (kwargs.get("content_type"), answer.data[:200])
        assert answer.is_json and answer.get_json()["message"]


def test_a_bad_record_is_ignored_and_its_neighbours_accepted(app, client, bucket, caplog):
    good = minio_webhook_body(bucket.name, f"u/me/{UUID}/dtool")["Records"][0]
    bad_key = {**good, "s3": {**good["s3"], "object": {"key": "%FF%FE"}}}
    answer = client.post("/webhook/notify", json={"Records": [
        {"eventName": "s3:ObjectCreated:Put"}, bad_key, good]})
    assert answer.status_code == 202
    assert answer.get_json() == {"accepted": 1, "ignored": 2}
    assert [row.uuid for row in inbox_rows(app)] == [UUID]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("Records[0].s3" in w for w in warnings), warnings
    assert any("'%FF%FE' does not decode" in w for w in warnings), warnings
    metrics = client.get("/webhook/metrics").get_data(as_text=True)
    assert 'dserver_notification_process_events_total{kind="unreadable"} 2.0' in metrics
    assert 'dserver_notification_process_events_total{kind="ignored"} 2.0' in metrics


def test_minio_elasticsearch_target_start_up_and_documents(app, client, bucket):
    assert client.get("/elastic-search/").get_json()["version"]["number"].startswith("7.")
    assert client.head("/elastic-search/").status_code == 200
    assert client.get("/elastic-search/_resolve/index/notify/all").status_code == 200
    assert client.put("/elastic-search/notify/all").status_code == 200
    body = minio_webhook_body(bucket.name, f"u/me/{UUID}/dtool")
    doc = {"Records": body["Records"]}
    put = client.put("/elastic-search/notify/all/_doc/abc=", json=doc)
    assert put.status_code == 201 and put.get_json()["accepted"] == 1
    assert client.head("/elastic-search/notify/all/_doc/abc=").status_code == 200
    assert client.head("/elastic-search/notify/all/_doc/unknown=").status_code == 404
    deleted = client.delete("/elastic-search/notify/all/_doc/abc=")
    assert deleted.status_code == 200 and deleted.get_json()["accepted"] == 1
    rows = inbox_rows(app)
    assert [row.events for row in rows] == [2]


def test_storagegrid_search_integration_documents(app, client, bucket):
    doc = {"bucket": bucket.name, "key": f"{UUID}/README.yml", "versionID": "",
           "size": 10, "metadata": {}, "tags": {}}
    doc_id = f"{bucket.name}_{UUID}/README.yml".replace("/", "%2F")
    put = client.put(f"/elastic-search/idx/type/{doc_id}", json=doc)
    assert put.status_code == 201
    gone = client.delete(f"/elastic-search/idx/type/{bucket.name}_{UUID}%2Fmanifest.json")
    assert gone.status_code == 200 and gone.get_json()["accepted"] == 1
    assert inbox_rows(app)[0].events == 2


def test_refusals_and_errors_share_one_documented_envelope(make_app, bucket):
    app = make_app([bucket], notify={"DSERVER_NOTIFY_AUTH_TOKEN": "right-token"})
    client = app.test_client()
    refused = client.post("/webhook/notify", json={"Records": []},
                          headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    assert refused.get_json() == {"code": 401, "status": "Unauthorized",
                                  "message": "invalid credentials"}
    malformed = client.post("/webhook/notify", data=b"{", content_type="application/json",
                            headers={"Authorization": "Bearer right-token"})
    assert malformed.status_code == 400
    assert set(malformed.get_json()) >= {"code", "status", "message"}

    spec = client.get("/doc/openapi.json").get_json()
    answers = spec["paths"]["/webhook/notify"]["post"]["responses"]
    for status in ("400", "401", "403", "413", "415", "503"):
        schema = answers[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}, (status, schema)
