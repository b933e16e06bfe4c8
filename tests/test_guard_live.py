"""Issue 4 with the app served as a real dserver: gunicorn, real sockets.

Every request here comes from a loopback TCP peer, so "allowed" and
"trusted" networks are chosen around that: the allowed client network is
10.9.0.0/16, reachable only through a forwarding header, and only when the
loopback peer is configured as a trusted proxy.
"""
import pytest
import requests

from devstack.dserver import LiveDserver, dserver_env, prepare_index_for_server, token_for
from devstack.payloads import minio_webhook_body
from devstack.ports import wait_until

pytestmark = pytest.mark.integration

UUID = "49f0bf41-471b-4781-855e-161fe81ffb0d"
TOKENS = "old-token-rotated-out-soon,new-token"


@pytest.fixture(scope="module")
def live(tmp_path_factory, mongo, make_bucket):
    bucket = make_bucket("guard-live")
    workdir = tmp_path_factory.mktemp("guard-live")
    env = dserver_env(workdir, mongo.uri, {bucket.name: bucket.base_uri}, {
        "DSERVER_NOTIFY_ALLOW_ACCESS_FROM": "10.9.0.0/16,fd00:9::/64",
        "DSERVER_NOTIFY_TRUSTED_PROXIES": "127.0.0.1/32,::1/128",
        "DSERVER_NOTIFY_AUTH_TOKEN": TOKENS,
        "DSERVER_NOTIFY_BASIC_AUTH": "minio:es-password",
        "DSERVER_NOTIFY_DEBOUNCE_SECONDS": "0",
        # only requests may change the index here, not a reconcile pass
        "DSERVER_NOTIFY_RECONCILE_INTERVAL_SECONDS": "0",
        **bucket.env})
    prepare_index_for_server(env, [bucket.base_uri])
    server = LiveDserver(env, workdir, workers=2, ipv6=True).start()
    server.bucket = bucket
    yield server
    server.stop()


def post(live, headers, base=None):
    body = minio_webhook_body(live.bucket.name, f"{UUID}/dtool")
    return requests.post((base or live.url) + "/webhook/notify", json=body,
                         headers=headers, timeout=10)


GOOD = {"Authorization": "Bearer new-token"}


def test_spoofed_header_is_refused_when_the_peer_is_not_a_trusted_proxy(tmp_path, mongo):
    env = dserver_env(tmp_path, mongo.uri, {"b": "s3://b"}, {
        "DSERVER_NOTIFY_ALLOW_ACCESS_FROM": "10.9.0.0/16"})
    prepare_index_for_server(env, ["s3://b"])
    with LiveDserver(env, tmp_path, workers=1) as server:
        answer = requests.post(server.url + "/webhook/notify", json={"Records": []},
                               headers={"X-Forwarded-For": "10.9.1.1",
                                        "X-Real-IP": "10.9.1.1"}, timeout=10)
    assert answer.status_code == 403
    assert answer.json()["message"]


def test_header_from_trusted_proxy_is_honoured(live):
    assert post(live, {**GOOD, "X-Forwarded-For": "10.9.1.1"}).status_code == 202
    assert post(live, {**GOOD, "X-Forwarded-For": "10.8.1.1"}).status_code == 403


def test_chain_of_proxies_resolves_to_the_right_hop(live):
    # client 10.9.1.1 -> untrusted hop 192.0.2.7 -> us: the client is 192.0.2.7
    assert post(live, {**GOOD, "X-Forwarded-For": "10.9.1.1, 192.0.2.7"}).status_code == 403
    # spoofed left part, real client 10.9.1.1 appended by trusted proxies
    assert post(live, {**GOOD, "X-Forwarded-For": "1.2.3.4, 10.9.1.1, 127.0.0.1"}) \
        .status_code == 202


def test_ipv6_peers_are_matched(live):
    assert post(live, {**GOOD, "X-Forwarded-For": "fd00:9::5"}, base=live.url6).status_code == 202
    assert post(live, {**GOOD, "X-Forwarded-For": "fd00:8::5"}, base=live.url6).status_code == 403


def test_tokens_old_rotated_missing_and_wrong(live):
    client = {"X-Forwarded-For": "10.9.1.1"}
    assert post(live, {**client, "Authorization": "Bearer old-token-rotated-out-soon"}) \
        .status_code == 202
    assert post(live, {**client, "Authorization": "Bearer new-token"}).status_code == 202
    for authorization in (None, "Bearer wrong", "Bearer retired-token", "Basic !!!",
                          "Bearer", "new-token"):
        headers = dict(client)
        if authorization is not None:
            headers["Authorization"] = authorization
        answer = post(live, headers)
        assert answer.status_code == 401, authorization
        assert "Bearer" in answer.headers["WWW-Authenticate"]


def test_basic_credentials_for_elasticsearch_targets(live):
    ok = requests.get(live.url + "/elastic-search/", auth=("minio", "es-password"),
                      headers={"X-Forwarded-For": "10.9.1.1"}, timeout=10)
    bad = requests.get(live.url + "/elastic-search/", auth=("minio", "nope"),
                       headers={"X-Forwarded-For": "10.9.1.1"}, timeout=10)
    assert ok.status_code == 200 and bad.status_code == 401


def test_malformed_headers_never_cause_a_500(live):
    for forwarded in ("", ",,,", "not-an-ip", "10.9.1.1:99999", "[::1", "10.9.1.1, garbage",
                      "\u00e9", "999.1.1.1"):
        answer = post(live, {**GOOD, "X-Forwarded-For": forwarded, "X-Real-IP": forwarded})
        assert answer.status_code in (202, 403), (forwarded, answer.status_code)


def inbox_entries(live, headers):
    """Entries in the live dserver's inbox, whatever their state (read from SQL)."""
    answer = requests.get(live.url + "/webhook/status", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return sum(answer.json()["inbox"].values())


def test_refused_requests_change_nothing(live, mongo):
    uri = live.bucket.put_dataset("refused")
    token = token_for("admin", live.env["JWT_PRIVATE_KEY_FILE"])
    admin = {"Authorization": f"Bearer {token}"}
    keys = [f"dtool-{uri.rsplit('/', 1)[1]}", f"{uri.rsplit('/', 1)[1]}/dtool"]
    before = inbox_entries(live, admin)
    for key in keys:
        body = minio_webhook_body(live.bucket.name, key)
        assert requests.post(live.url + "/webhook/notify", json=body, timeout=10,
                             headers={"X-Forwarded-For": "10.8.0.1", **GOOD}).status_code == 403
        assert requests.post(live.url + "/webhook/notify", json=body, timeout=10,
                             headers={"X-Forwarded-For": "10.9.0.1"}).status_code == 401
    # An accepted event is committed before its 202; so no new inbox entry
    # now means none will ever be processed (no need to wait and see).
    assert inbox_entries(live, admin) == before
    listing = requests.get(live.url + "/uris", headers=admin, timeout=10)
    assert listing.status_code == 200
    assert listing.json() == []
    # control: the same notifications from an allowed client with a valid
    # token do make an entry and index the dataset
    for key in keys:
        body = minio_webhook_body(live.bucket.name, key)
        assert requests.post(live.url + "/webhook/notify", json=body, timeout=10,
                             headers={"X-Forwarded-For": "10.9.0.1", **GOOD}).status_code == 202
    assert inbox_entries(live, admin) == before + 1

    def listed():
        answer = requests.get(live.url + "/uris", headers=admin, timeout=10)
        return [d["uri"] for d in answer.json()]
    wait_until(lambda: listed() == [uri], f"{uri} indexed", timeout=60)
