"""SNS trust without a dserver: URL policy, bounded fetching, signatures.

Signatures are made in the tests with a key and self-signed certificate of
their own (tests/fake_sns.py), served from loopback, which the policy
admits only because the settings name that exact origin.
"""
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from devstack.sns import OTHER_CERT_PATH, TOPIC, canonical, sign
from dserver_notification_plugin.config import load_settings
from dserver_notification_plugin.events import SnsConfirmation
from dserver_notification_plugin.sns_trust import (
    CertificateCache, Fetcher, FetchError, SnsRefusal, SnsTrust, Target, allowed_origins,
    arn_region, certificate_target, string_to_sign, subscribe_target,
)

AWS = allowed_origins((), TOPIC)
HOST = "sns.eu-central-1.amazonaws.com"
GOOD = (f"https://{HOST}/?Action=ConfirmSubscription&TopicArn={TOPIC}"
        "&Token=2336412f37fb687f5d51e6e2425")


def settings(**values):
    config = {"DSERVER_NOTIFY_" + name.upper(): value for name, value in values.items()}
    return load_settings(config, environ={})



# --- URL policy -------------------------------------------------------------------

def test_default_hosts_are_sns_of_the_topics_region():
    assert AWS == (("https", HOST, 443), ("https", HOST + ".cn", 443))
    assert arn_region("arn:aws-cn:sns:cn-north-1:1:t") == "cn-north-1"
    assert arn_region("arn:aws-us-gov:sns:us-gov-west-1:1:t") == "us-gov-west-1"
    for arn in ("arn:aws:sns:evil.com#:1:t", "arn:aws:s3:::bucket", "nonsense", None,
                "arn:aws:sns:eu-central-1:1:t:extra", "arn:aws:sns:EU-1:1:t"):
        assert arn_region(arn) is None
        assert allowed_origins((), arn) == ()


def test_a_subscribe_url_at_sns_for_the_topic_is_rebuilt_from_its_parts():
    target = subscribe_target(GOOD, TOPIC, AWS)
    assert (target.scheme, target.host, target.port) == ("https", HOST, 443)
    assert target.path_and_query == (
        "/?Action=ConfirmSubscription&TopicArn=arn%3Aaws%3Asns%3Aeu-central-1%3A"
        "123456789012%3Adserver-events&Token=2336412f37fb687f5d51e6e2425")
    assert subscribe_target(GOOD.replace(HOST, HOST + ".cn"), TOPIC, AWS).host == HOST + ".cn"
    assert subscribe_target(GOOD.replace(HOST, HOST + ":443"), TOPIC, AWS).port == 443
    assert subscribe_target(GOOD.replace(HOST, HOST.upper()), TOPIC, AWS).host == HOST


@pytest.mark.parametrize("url, status", [
    (GOOD.replace("https://", "http://"), 403),                       # not https
    (GOOD.replace(HOST, HOST + ":8443"), 403),                        # other port
    (GOOD.replace(HOST, "127.0.0.1"), 403),                           # loopback
    (GOOD.replace(HOST, "169.254.169.254"), 403),                     # cloud metadata
    (GOOD.replace(HOST, "localhost"), 403),
    (GOOD.replace(HOST, "sns.us-east-1.amazonaws.com"), 403),         # other region
    (GOOD.replace(HOST, HOST + ".evil.example"), 403),
    (GOOD.replace(HOST, "evil.example#" + HOST), 403),
    (GOOD.replace(HOST, HOST + "@evil.example"), 403),
    (GOOD.replace(HOST, f"{HOST}:443@evil.example"), 403),
    (GOOD.replace(HOST, f"evil.example\\@{HOST}"), 400),
    (GOOD.replace(HOST, HOST + "."), 403),
    (GOOD.replace("/?", "/redirect?"), 403),                          # another path
    (GOOD.replace("ConfirmSubscription", "Subscribe"), 403),
    (GOOD.replace("ConfirmSubscription", "ConfirmSubscription&Action=Publish"), 403),
    (GOOD.replace(TOPIC, TOPIC + "-other"), 403),
    (GOOD.replace("&Token=2336412f37fb687f5d51e6e2425", ""), 403),
    (GOOD + "#fragment", 403),
    (GOOD.replace(HOST, HOST + ":99999"), 400),                       # malformed port
    (GOOD.replace(HOST, "[::1"), 400),
    ("https://", 400), ("", 400), (None, 400), (42, 400), ("ftp://" + HOST + "/", 400),
    (" " + GOOD, 400), (GOOD + "\n", 400), (GOOD.replace("Token", "To ken"), 400),
    ("https://" + HOST + "/?Action=ConfirmSubscription&TopicArn=%ff", 400),
])
def test_anything_else_is_refused_before_any_request(url, status):
    with pytest.raises(SnsRefusal) as refused:
        subscribe_target(url, TOPIC, AWS)
    assert refused.value.status == status


def test_an_origin_entry_allows_exactly_that_origin():
    origins = settings(sns_hosts="http://127.0.0.1:5123").sns_hosts
    url = f"http://127.0.0.1:5123/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=t"
    assert subscribe_target(url, TOPIC, origins).port == 5123
    for other in (url.replace("5123", "5124"), url.replace("http:", "https:"),
                  url.replace("127.0.0.1", "localhost")):
        with pytest.raises(SnsRefusal):
            subscribe_target(other, TOPIC, origins)
    with pytest.raises(SnsRefusal):  # the AWS default is replaced, not extended
        subscribe_target(GOOD, TOPIC, origins)


def test_certificate_urls_name_a_pem_file_at_sns():
    url = f"https://{HOST}/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
    assert certificate_target(url, AWS).path_and_query.endswith(".pem")
    for bad in (url.replace(HOST, "evil.example"), url.replace("https", "http"),
                url + "?x=1", url.replace(".pem", ".txt"), f"https://{HOST}/../x.pem",
                f"https://{HOST}/a/./x.pem", f"https://{HOST}/.pem"):
        with pytest.raises(SnsRefusal) as refused:
            certificate_target(bad, AWS)
        assert refused.value.status in (400, 403)


# --- fetching ---------------------------------------------------------------------

def target_of(sns, path="/?Action=ConfirmSubscription&TopicArn=t&Token=t"):
    return Target("http", "127.0.0.1", sns.server.server_port, path)


def test_fetch_reads_a_small_answer(sns):
    sns.mode = "ok"
    assert Fetcher(2).get(target_of(sns)) == b"<ConfirmSubscriptionResponse/>"


@pytest.mark.parametrize("mode, complaint", [
    ("redirect", "HTTP 302 (redirects are not followed)"),
    ("error", "HTTP 500"),
    ("huge", "larger than"),
])
def test_redirects_errors_and_floods_fail(sns, mode, complaint):
    sns.mode = mode
    with pytest.raises(FetchError) as failed:
        Fetcher(5, max_bytes=4096).get(target_of(sns))
    assert complaint in str(failed.value)
    sns.mode = "ok"


def test_a_trickling_server_is_cut_off_at_the_deadline(sns):
    sns.mode = "slow"  # a byte every 0.3 s: no single read ever times out
    started = time.monotonic()
    with pytest.raises(FetchError) as failed:
        Fetcher(1.0).get(target_of(sns))
    assert time.monotonic() - started < 2.5
    assert "within 1 s" in str(failed.value)
    sns.mode = "ok"


def test_a_silent_server_is_cut_off_at_the_deadline():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    started = time.monotonic()
    with pytest.raises(FetchError):
        Fetcher(0.5).get(Target("http", "127.0.0.1", listener.getsockname()[1], "/"))
    assert time.monotonic() - started < 2
    listener.close()


def test_a_closed_port_is_a_fetch_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError):
        Fetcher(1).get(Target("http", "127.0.0.1", port, "/"))


# --- signatures ---------------------------------------------------------------------

def trust(sns, **values):
    values.setdefault("sns_hosts", sns.origin)
    values.setdefault("sns_timeout_seconds", "2")
    return SnsTrust(settings(**values))


def test_string_to_sign_matches_the_aws_rules(sns):
    envelope = sns.signed({"Records": []}, subject="s")
    assert string_to_sign(envelope) == canonical(envelope)
    assert string_to_sign(envelope).startswith(b"Message\n")
    without_subject = sns.signed({"Records": []})
    assert b"Subject" not in string_to_sign(without_subject)
    confirmation = sns.confirmation()
    assert string_to_sign(confirmation) == canonical(confirmation)
    assert b"SubscribeURL\n" in string_to_sign(confirmation)


@pytest.mark.parametrize("version", ["1", "2"])
def test_signed_messages_verify(sns, version):
    checker = trust(sns)
    checker.check(sns.signed({"Records": []}, version=version))
    checker.check(sns.signed({"Records": []}, version=version, subject="Amazon S3 Notification"))
    listed = trust(sns, sns_topics=TOPIC)  # confirmations need a listed topic
    listed.check(sns.confirmation(version=version))


def test_certificates_are_fetched_once(sns):
    checker = trust(sns)
    before = len(sns.hits)
    for _ in range(3):
        checker.check(sns.signed({"Records": []}))
    assert len(sns.hits) == before + 1


def refusal(checker, envelope):
    with pytest.raises(SnsRefusal) as refused:
        checker.check(envelope)
    return refused.value


def test_tampered_messages_are_refused(sns):
    checker = trust(sns)
    for field, value in (("Message", '{"Records": [{"forged": true}]}'),
                         ("TopicArn", TOPIC + "-2"), ("Timestamp", "2030-01-01T00:00:00Z"),
                         ("Subject", "added later"), ("MessageId", "other")):
        envelope = sns.signed({"Records": []})
        envelope[field] = value
        answer = refusal(checker, envelope)
        assert (answer.status, answer.message) == (403, "SNS message signature does not verify")


def test_signatures_by_another_key_or_certificate_are_refused(sns):
    checker = trust(sns)
    by_stranger = sign({**sns.signed({"Records": []})}, sns.other_key, sns.cert_url)
    assert refusal(checker, by_stranger).status == 403
    # signed with the stranger's key and pointing at the stranger's certificate,
    # on the allowed host: verifies (the host vouches for the certificate) ...
    stranger = sign(sns.signed({"Records": []}), sns.other_key, sns.origin + OTHER_CERT_PATH)
    checker.check(stranger)
    # ... but the same certificate from a host not allowed is never fetched
    elsewhere = sign(sns.signed({"Records": []}), sns.other_key,
                     "https://evil.example/SimpleNotificationService-x.pem")
    before = len(sns.hits)
    answer = refusal(checker, elsewhere)
    assert answer.status == 403 and "allowed SNS host" in answer.message
    assert len(sns.hits) == before


def test_default_policy_refuses_a_test_certificate_host(sns):
    checker = SnsTrust(settings(sns_timeout_seconds="1"))  # AWS hosts only
    answer = refusal(checker, sns.signed({"Records": []}))
    assert answer.status == 403 and "allowed SNS host" in answer.message


@pytest.mark.parametrize("change, message", [
    ({"SignatureVersion": "3"}, "SignatureVersion is not 1 or 2"),
    ({"SignatureVersion": None}, "SignatureVersion is not 1 or 2"),
    ({"Signature": "!!!"}, "Signature is not base64"),
    ({"Signature": None}, "signature does not verify"),
    ({"Message": None}, "lacks a signed field"),
    ({"SigningCertURL": None}, "not a URL"),
])
def test_malformed_signatures_are_refused(sns, change, message):
    envelope = sns.signed({"Records": []})
    for key, value in change.items():
        if value is None:
            envelope.pop(key)
        else:
            envelope[key] = value
    assert message in refusal(trust(sns), envelope).message


def test_unreachable_certificate_host_is_502(sns):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    envelope = sign(sns.signed({"Records": []}), sns.key,
                    f"http://127.0.0.1:{port}/SimpleNotificationService-x.pem")
    checker = trust(sns, sns_hosts=f"http://127.0.0.1:{port}")
    assert refusal(checker, envelope).status == 502


def test_topics_listed_refuse_others_and_confirmations_need_a_listed_topic(sns):
    listed = trust(sns, sns_topics=TOPIC, sns_verify="off")
    listed.check({"Type": "Notification", "TopicArn": TOPIC})
    answer = refusal(listed, {"Type": "Notification", "TopicArn": TOPIC + "-other"})
    assert answer.status == 403 and "not listed" in answer.message
    unlisted = trust(sns, sns_verify="off")
    unlisted.check({"Type": "Notification", "TopicArn": "arn:aws:sns:x-y-1:1:anything"})
    assert refusal(unlisted, {"Type": "SubscriptionConfirmation", "TopicArn": TOPIC}) \
        .status == 403


def test_confirm_fetches_the_checked_url_only(sns):
    sns.mode = "ok"
    checker = trust(sns, sns_topics=TOPIC)
    before = len(sns.hits)
    checker.confirm(SnsConfirmation(TOPIC, sns.subscribe_url()))
    assert len(sns.hits) == before + 1
    assert sns.hits[-1].startswith("/?Action=ConfirmSubscription&TopicArn=arn%3Aaws")
    with pytest.raises(SnsRefusal):
        checker.confirm(SnsConfirmation(TOPIC, sns.subscribe_url(TOPIC + "-x")))
    sns.mode = "redirect"
    with pytest.raises(SnsRefusal) as refused:
        checker.confirm(SnsConfirmation(TOPIC, sns.subscribe_url()))
    assert refused.value.status == 502
    sns.mode = "ok"


def test_certificate_cache_is_bounded_and_expires():
    clock = SimpleNamespace(now=0.0)
    cache = CertificateCache(size=2, seconds=10, clock=lambda: clock.now)
    for n in range(3):
        cache.put(f"u{n}", n, not_after=1e12)
    assert cache.get("u0") is None and cache.get("u2") == 2
    clock.now = 11
    assert cache.get("u2") is None
    cache.put("short", 1, not_after=5)
    assert cache.get("short") is None  # certificate expired already


# --- issue 23: malformed envelopes and certificate fetches an attacker causes -------

@pytest.mark.parametrize("field, value", [
    ("SignatureVersion", []), ("SignatureVersion", {}), ("SignatureVersion", ["1"]),
    ("SignatureVersion", 1), ("SignatureVersion", True), ("Signature", ["abc"]),
    ("Signature", {"a": 1}), ("SigningCertURL", ["http://x/y.pem"]), ("TopicArn", [TOPIC]),
    ("TopicArn", {"arn": TOPIC}),
])
def test_envelope_fields_of_another_type_are_refused_not_raised(sns, field, value):
    envelope = sns.signed({"Records": []})
    envelope[field] = value
    for checker in (trust(sns), trust(sns, sns_topics=TOPIC)):
        assert refusal(checker, envelope).status in (400, 403)


def test_a_missing_certificate_is_asked_for_once(sns):
    checker = trust(sns)
    missing = sign(sns.signed({"Records": []}), sns.key,
                   sns.origin + "/SimpleNotificationService-missing.pem")
    before = len(sns.hits)
    for _ in range(3):
        answer = refusal(checker, missing)
        assert answer.status == 403 and "no such signing certificate" in answer.message
    assert len(sns.hits) == before + 1
    checker.check(sns.signed({"Records": []}))  # the real certificate still works


def test_certificate_fetches_per_minute_are_bounded(sns):
    checker = trust(sns)
    before = len(sns.hits)
    answers = [refusal(checker, sign(sns.signed({"Records": []}), sns.key,
                                     sns.origin + f"/SimpleNotificationService-{n}.pem"))
               for n in range(25)]
    assert len(sns.hits) - before == checker.fetch_limit.per_minute < 25
    assert {a.status for a in answers[checker.fetch_limit.per_minute:]} == {503}
    assert answers[-1].headers == {"Retry-After": "60"}
    # a certificate already fetched costs no fetch, so the limit does not stop it
    fresh = trust(sns)
    fresh.check(sns.signed({"Records": []}))
    fresh.fetch_limit.per_minute = 1
    for _ in range(3):
        fresh.check(sns.signed({"Records": []}))


def test_fetch_limit_is_a_sliding_minute():
    from dserver_notification_plugin.sns_certificates import FetchLimit
    clock = SimpleNamespace(now=0.0)
    limit = FetchLimit(per_minute=2, clock=lambda: clock.now)
    assert limit.take() and limit.take() and not limit.take()
    clock.now = 59.9
    assert not limit.take()
    clock.now = 60.0  # both earlier fetches are a minute old
    assert limit.take() and limit.take() and not limit.take()
