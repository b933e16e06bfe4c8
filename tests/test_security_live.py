"""Hostile senders against a real dserver under gunicorn (issue 14).

What depends on the server is tested here: the client address as
gunicorn hands it over (forwarding headers, a proxy on a Unix socket,
whose peer gunicorn reports as ""), and SNS fetches that must end within
their deadline inside a gunicorn worker. The rest is in
test_routes_security.py.

Server ``proxied`` trusts loopback as a proxy and reads every forwarding
header; server ``socket_proxied`` trusts only a proxy on its Unix socket and
reads only X-Real-IP. Both also listen on a Unix socket.
"""
import http.client
import json
import socket
import time

import pytest
import requests

from devstack.dserver import LiveDserver, dserver_env, prepare_index_for_server
from devstack.payloads import minio_webhook_body
from devstack.sns import TOPIC

pytestmark = pytest.mark.integration

UUID = "49f0bf41-471b-4781-855e-161fe81ffb0d"
TOKEN = "live-t0ken"
GOOD = {"Authorization": f"Bearer {TOKEN}"}
SNS_TYPE = "text/plain; charset=UTF-8"
MOTO_TOPIC = "arn:aws:sns:us-east-1:123456789012:security-live"  # moto's ARNs are fixed



def serve(tmp_path_factory, mongo, bucket, name, notify):
    workdir = tmp_path_factory.mktemp(name)
    env = dserver_env(workdir, mongo.uri, {bucket.name: bucket.base_uri}, {
        "DSERVER_NOTIFY_ALLOW_ACCESS_FROM": "10.0.0.0/8",
        "DSERVER_NOTIFY_AUTH_TOKEN": TOKEN,
        **notify, **bucket.env})
    prepare_index_for_server(env, [bucket.base_uri])
    server = LiveDserver(env, workdir, workers=2, timeout=10,
                         gunicorn_args=["--bind", f"unix:{workdir / 'g.sock'}"])
    server.socket_path = str(workdir / "g.sock")
    server.bucket = bucket
    return server.start()


@pytest.fixture(scope="module")
def live_bucket(make_bucket):
    return make_bucket("security-live")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory, mongo, moto, live_bucket, sns):
    server = serve(tmp_path_factory, mongo, live_bucket, "proxied", {
        "DSERVER_NOTIFY_TRUSTED_PROXIES": "127.0.0.1,::1",
        "DSERVER_NOTIFY_SNS_TOPICS": f"{TOPIC},{MOTO_TOPIC}",
        "DSERVER_NOTIFY_SNS_HOSTS": f"{sns.origin},{moto.endpoint}",
        "DSERVER_NOTIFY_SNS_TIMEOUT_SECONDS": "2"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def socket_proxied(tmp_path_factory, mongo, live_bucket):
    server = serve(tmp_path_factory, mongo, live_bucket, "socket-proxied", {
        "DSERVER_NOTIFY_TRUSTED_PROXIES": "unix",
        "DSERVER_NOTIFY_FORWARDED_HEADER": "x-real-ip"})
    yield server
    server.stop()


def body(live):
    return minio_webhook_body(live.bucket.name, f"{UUID}/dtool")


def post(live, headers):
    return requests.post(live.url + "/webhook/notify", json=body(live),
                         headers={**GOOD, **headers}, timeout=10)


class UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket, as a proxy on the same host talks to gunicorn."""

    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.socket_path)


def post_unix(live, headers):
    conn = UnixConnection(live.socket_path)
    try:
        conn.request("POST", "/webhook/notify", body=json.dumps(body(live)),
                     headers={"Content-Type": "application/json", **GOOD, **headers})
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")
    finally:
        conn.close()


# --- 3. one client address ---------------------------------------------------------------

def test_a_forged_forwarded_for_behind_a_real_ip_proxy_is_refused(proxied):
    # nginx with only `proxy_set_header X-Real-IP $remote_addr` passes the
    # client's X-Forwarded-For through: 203.0.113.9 claims to be 10.0.5.7.
    answer = post(proxied, {"X-Real-IP": "203.0.113.9", "X-Forwarded-For": "10.0.5.7"})
    assert answer.status_code == 403
    assert "DSERVER_NOTIFY_FORWARDED_HEADER" in answer.json()["message"]
    assert "X-Forwarded-For names 10.0.5.7, X-Real-IP names 203.0.113.9" in \
        proxied.log_tail(200)
    # headers that agree (nginx appending to X-Forwarded-For) still work
    assert post(proxied, {"X-Real-IP": "10.0.5.7",
                          "X-Forwarded-For": "1.2.3.4, 10.0.5.7"}).status_code == 202


def test_rfc_7239_forwarded_from_a_trusted_proxy(proxied):
    assert post(proxied, {"Forwarded": 'for="10.0.5.7:4711";proto=https'}).status_code == 202
    assert post(proxied, {"Forwarded": "for=203.0.113.9"}).status_code == 403
    assert post(proxied, {"Forwarded": "for=10.0.5.7",
                          "X-Real-IP": "203.0.113.9"}).status_code == 403
    assert post(proxied, {"Forwarded": "for=unknown"}).status_code == 403


def test_unix_socket_peers_are_refused_unless_trusted(proxied, socket_proxied):
    status, answer = post_unix(proxied, {"X-Real-IP": "10.0.5.7"})
    assert status == 403 and "Unix socket" in answer["message"]
    assert post_unix(socket_proxied, {"X-Real-IP": "10.0.5.7",
                                      "X-Forwarded-For": "203.0.113.9"})[0] == 202
    assert post_unix(socket_proxied, {"X-Real-IP": "203.0.113.9",
                                      "X-Forwarded-For": "10.0.5.7"})[0] == 403
    status, answer = post_unix(socket_proxied, {})
    assert status == 403 and "names no client" in answer["message"]
    # TCP peers are not trusted there: their headers mean nothing
    assert post(socket_proxied, {"X-Real-IP": "10.0.5.7"}).status_code == 403


def test_browsers_are_refused_by_a_live_server(proxied):
    answer = requests.post(proxied.url + "/webhook/notify", data=json.dumps(body(proxied)),
                           headers={**GOOD, "X-Real-IP": "10.0.5.7",
                                    "Content-Type": "text/plain",
                                    "Origin": "http://intranet.example"}, timeout=10)
    assert answer.status_code == 403 and "browser" in answer.json()["message"]


# --- 1. SNS confirmation under gunicorn ------------------------------------------------------

def post_sns(live, envelope):
    return requests.post(live.url + "/webhook/notify", data=json.dumps(envelope),
                         headers={**GOOD, "X-Real-IP": "10.0.5.7",
                                  "Content-Type": SNS_TYPE}, timeout=30)


def test_a_trickling_subscribe_url_costs_the_deadline_not_the_worker(proxied, sns):
    sns.mode = "slow"  # a byte every 0.3 s for a minute; gunicorn's timeout is 10 s
    started = time.monotonic()
    try:
        answer = post_sns(proxied, sns.confirmation())
    finally:
        sns.mode = "ok"
    assert answer.status_code == 502 and answer.json()["message"]
    assert time.monotonic() - started < 6
    assert post_sns(proxied, sns.confirmation()).status_code == 200
    assert "WORKER TIMEOUT" not in proxied.log_tail(400)


def test_loopback_subscribe_urls_are_not_fetched(proxied, sns):
    for url in (f"http://127.0.0.1:{proxied.port}/webhook/status",
                proxied.url + "/?Action=ConfirmSubscription&TopicArn=" + TOPIC + "&Token=t"):
        answer = post_sns(proxied, sns.confirmation(url=url))
        assert answer.status_code == 403, answer.text


def test_confirmation_at_moto_allowed_through_sns_hosts(proxied, sns, moto):
    """moto sends no SubscriptionConfirmation of its own (it confirms http
    subscriptions at once), so the envelope is signed by the fake, for a
    topic created in moto, with its SubscribeURL at moto. moto answers the
    unsigned GET (it routes it to its S3 listing, not to SNS); its access
    log shows the ConfirmSubscription call the plugin rebuilt."""
    topic = moto.boto3_client("sns").create_topic(Name="security-live")["TopicArn"]
    assert topic == MOTO_TOPIC
    url = f"{moto.endpoint}/?Action=ConfirmSubscription&TopicArn={topic}&Token=moto-t0ken"
    answer = post_sns(proxied, sns.confirmation(topic=topic, url=url))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"confirmed": topic}
    assert f"GET /?Action=ConfirmSubscription&TopicArn={topic}&Token=moto-t0ken " in \
        moto.log_tail(400)
    for bad in (url.replace("&Token", "&Token=1&Token"),            # ambiguous
                url.replace(topic, TOPIC),                           # another topic
                url.replace(f":{moto.port}/", f":{int(moto.port) + 1}/")):  # another port
        assert post_sns(proxied, sns.confirmation(topic=topic, url=bad)).status_code == 403
