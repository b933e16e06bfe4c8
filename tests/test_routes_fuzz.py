"""No input yields a 500, and refused or malformed input never changes the index."""
import json

import pytest
from dservercore import sql_db
from dservercore.sql_models import Dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration

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
