"""No input yields a 500, and refused or malformed input never changes the index."""
import json

import pytest

from dservercore import sql_db
from dservercore.sql_models import Dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROUTES = ["/webhook/notify", "/webhook/notify/", "/webhook/notify/x/y",
          "/elastic-search/", "/elastic-search/idx", "/elastic-search/idx/_doc",
          "/elastic-search/notify/all/_doc/abc=", "/elastic-search/idx/type/b_k",
          "/elastic-search/_resolve/index/idx", "/webhook/status", "/webhook/metrics"]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
CONTENT_TYPES = [None, "application/json", "text/plain; charset=UTF-8",
                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                 "application/xml", "", "application/json; charset=latin-1"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(
        ["Records", "EventName", "Key", "Type", "Message", "TopicArn", "SubscribeURL",
         "eventName", "s3", "bucket", "object", "key", "name", "event_type", "message",
         "new_entry", "old_entry", "Action", "Event", "eventSource", "detail-type",
         "detail", "source", "Service"]) | st.text(max_size=8),
        children, max_size=5),
    max_leaves=20)

bodies = st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                   st.just(b'"test notification"'))
header_values = st.text(max_size=40).filter(lambda v: "\n" not in v and "\r" not in v)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES) | st.text(max_size=30).map(lambda t: "/webhook/notify/" + t),
       method=st.sampled_from(METHODS), body=bodies,
       content_type=st.sampled_from(CONTENT_TYPES),
       forwarded=header_values, authorization=header_values)
def test_no_input_causes_a_500(app, client, route, method, body, content_type, forwarded,
                               authorization):
    headers = {"X-Forwarded-For": forwarded, "Authorization": authorization}
    if content_type is not None:
        headers["Content-Type"] = content_type
    answer = client.open(route, method=method, data=body, headers=headers)
    assert answer.status_code < 500, (route, method, answer.data[:300])
    if method != "HEAD" and answer.status_code >= 400:
        assert answer.is_json, (route, method, answer.status_code, answer.data[:200])
    with app.app_context():
        assert sql_db.session.query(Dataset).count() == 0


# --- issue 23: SNS envelope fields and Elasticsearch routes -------------------------------

SNS_FIELDS = ["Type", "MessageId", "TopicArn", "Message", "Timestamp", "SignatureVersion",
              "Signature", "SigningCertURL", "Subject", "SubscribeURL", "Token"]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(SNS_FIELDS), json_values, min_size=1,
                               max_size=3))
def test_no_sns_envelope_field_causes_a_500(sns_app, bucket, sns, changes):
    from dserver_notification_plugin.consumer import read_batch
    app = sns_app
    envelope = sns.signed({"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {
        "bucket": {"name": bucket.name},
        "object": {"key": "00000001-2323-4323-8323-232323232323/dtool"}}}]})
    envelope.update(changes)
    body = json.dumps(envelope)
    answer = app.test_client().post("/webhook/notify", data=body,
                                    content_type="text/plain; charset=UTF-8")
    assert answer.status_code < 500 or answer.status_code == 503, answer.data[:300]
    assert answer.is_json
    ext = app.extensions["dserver_notification"]
    # the same body from a queue: sorted into done or left, never raised
    message = {"MessageId": "m", "ReceiptHandle": "r", "Body": body}
    batch = read_batch([message], 1 << 20, 1000, ext.sns.check)
    assert len(batch.done) + len(batch.left) == 1


@pytest.fixture
def sns_app(make_app, bucket, sns):
    """Verifying signatures of the fake SNS; one app for all examples of a test."""
    return make_app([bucket], notify={"DSERVER_NOTIFY_SNS_HOSTS": sns.origin,
                                      "DSERVER_NOTIFY_SNS_TIMEOUT_SECONDS": "1"})


id_text = st.text(max_size=40) | st.sampled_from(["a\x00b", "x" * 600, "%00", "_", "b_"])
keys = st.text(max_size=30) | st.sampled_from(
    ["a\x00b/00000001-2323-4323-8323-232323232323/dtool", "k" * 2000,
     "00000001-2323-4323-8323-232323232323/README.yml"])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["PUT", "POST", "DELETE", "HEAD", "GET"]),
       layout=st.sampled_from(["notify/all/_doc/{id}", "idx/type/{id}", "idx/_doc/{id}",
                               "idx/type/{bucket}_{id}"]),
       doc_id=id_text, key=keys, storagegrid=st.booleans())
def test_no_elasticsearch_call_causes_a_500(app, client, bucket, method, layout, doc_id, key,
                                            storagegrid):
    from urllib.parse import quote
    path = "/elastic-search/" + layout.format(id=quote(doc_id, safe=""), bucket=bucket.name)
    doc = {"bucket": bucket.name, "key": key} if storagegrid else \
        {"Records": [{"eventName": "s3:ObjectCreated:Put",
                      "s3": {"bucket": {"name": bucket.name}, "object": {"key": key}}}]}
    answer = client.open(path, method=method, json=doc if method in ("PUT", "POST") else None)
    assert answer.status_code < 500, (path, method, answer.data[:300])
    if method != "HEAD" and answer.status_code >= 400:
        assert answer.is_json
