"""The guard: client address behind proxies, networks, secrets, refusal logs.

Pure tests: no server. Only guard_request uses a tiny in-process Flask app.
"""
import base64
import ipaddress
import logging

import pytest
from flask import Flask
from hypothesis import given, settings as hyp_settings, strategies as st
from werkzeug.datastructures import Headers

from dserver_notification_plugin.config import load_settings
from dserver_notification_plugin.forwarding import (
    HEADERS_DISAGREE, UNIX_PEER, UNIX_PEER_UNNAMED, _resolve, address_allowed, client_address,
    parse_address, parse_forwarded,
)
from dserver_notification_plugin.guard import (
    BROWSER, Decision, RejectionLog, check_secret, decide, guard_request,
)

pytestmark = pytest.mark.unit

LOGGER = "dserver_notification_plugin.guard"


def make_settings(**values):
    config = {"DSERVER_NOTIFY_" + name.upper(): value for name, value in values.items()}
    return load_settings(config, environ={})


def nets(text):
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in text.split(","))


def basic(pair):
    return "Basic " + base64.b64encode(pair.encode()).decode()


PROXIES = nets("10.0.0.0/24, fd00::/64")


# --- parse_address ----------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("192.0.2.7", "192.0.2.7"),
    (" 192.0.2.7 ", "192.0.2.7"),
    ("192.0.2.7:5000", "192.0.2.7"),
    ("2001:db8::1", "2001:db8::1"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("fe80::1%eth0", "fe80::1"),
])
def test_address_forms_that_are_unambiguous_are_parsed(text, expected):
    assert parse_address(text) == ipaddress.ip_address(expected)


@pytest.mark.parametrize("text", [
    None, "", " ", "garbage", "unknown", "192.0.2", "192.0.2.256", "01.2.3.4",
    "192.0.2.7:", "[192.0.2.7]:80:", "[2001:db8::1", "2001:db8::1]:80", "fe80::1%",
    "1.2.3.4, 5.6.7.8", "_hidden",
])
def test_unparseable_addresses_are_none(text):
    assert parse_address(text) is None


# --- client_address -----------------------------------------------------------

def test_untrusted_peer_is_the_client_whatever_it_forwards():
    headers = {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"}
    assert client_address("203.0.113.9", headers, PROXIES) == ipaddress.ip_address("203.0.113.9")


def test_no_trusted_proxies_means_headers_are_never_read():
    headers = {"X-Forwarded-For": "127.0.0.1"}
    assert client_address("203.0.113.9", headers, ()) == ipaddress.ip_address("203.0.113.9")


def test_garbage_headers_from_untrusted_peer_do_not_matter():
    headers = {"X-Forwarded-For": "%%%, ,", "X-Real-IP": "nonsense"}
    assert client_address("127.0.0.1", headers, ()) == ipaddress.ip_address("127.0.0.1")


def test_trusted_proxy_forwarded_for_is_honoured():
    headers = {"X-Forwarded-For": "192.0.2.7"}
    assert client_address("10.0.0.5", headers, PROXIES) == ipaddress.ip_address("192.0.2.7")


def test_header_names_are_case_insensitive_in_plain_mappings():
    headers = {"x-forwarded-for": "192.0.2.7"}
    assert client_address("10.0.0.5", headers, PROXIES) == ipaddress.ip_address("192.0.2.7")


def test_chain_resolves_to_first_untrusted_hop_from_the_right():
    # client claims 127.0.0.1; real client 198.51.100.3; then two trusted proxies.
    headers = {"X-Forwarded-For": "127.0.0.1, 198.51.100.3, 10.0.0.9, 10.0.0.8"}
    assert client_address("10.0.0.5", headers, PROXIES) == ipaddress.ip_address("198.51.100.3")


def test_junk_left_of_the_real_client_is_not_even_parsed():
    headers = {"X-Forwarded-For": "junk,, 198.51.100.3, 10.0.0.9"}
    assert client_address("10.0.0.5", headers, PROXIES) == ipaddress.ip_address("198.51.100.3")


def test_all_hops_trusted_gives_the_leftmost():
    headers = {"X-Forwarded-For": "10.0.0.20, 10.0.0.9"}
    assert client_address("10.0.0.5", headers, PROXIES) == ipaddress.ip_address("10.0.0.20")


@pytest.mark.parametrize("value", ["", "garbage", "10.0.0.9,", "192.0.2.7,,10.0.0.9",
                                   "192.0.2.7;10.0.0.9", "192.0.2.7 10.0.0.9"])
def test_unparseable_walked_hop_from_trusted_proxy_is_refused(value):
    assert client_address("10.0.0.5", {"X-Forwarded-For": value}, PROXIES) is None


def test_unbracketed_ipv6_with_port_is_read_as_an_address():
    # Ambiguous: "2001:db8::1:443" is itself a valid address, so it is taken as one.
    headers = {"X-Forwarded-For": "2001:db8::1:443"}
    assert client_address("10.0.0.5", headers, PROXIES) == ipaddress.ip_address("2001:db8::1:443")


def test_repeated_forwarded_for_lines_are_walked_as_one_list():
    headers = Headers([("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-For", "192.0.2.7")])
    assert client_address("10.0.0.5", headers, PROXIES) == ipaddress.ip_address("192.0.2.7")


def test_real_ip_alone_names_the_client():
    assert client_address("10.0.0.5", {"X-Real-IP": "192.0.2.7"}, PROXIES) \
        == ipaddress.ip_address("192.0.2.7")
    assert client_address("10.0.0.5", {"X-Real-IP": "bad"}, PROXIES) is None


def test_headers_that_name_different_clients_refuse_the_request():
    # nginx with only `proxy_set_header X-Real-IP $remote_addr` passes the
    # client's own X-Forwarded-For through: the forgery must not win.
    forged = {"X-Real-IP": "203.0.113.9", "X-Forwarded-For": "10.0.5.7"}
    found = _resolve("10.0.0.5", forged, PROXIES)
    assert found.address is None and found.reason == HEADERS_DISAGREE
    assert "X-Forwarded-For names 10.0.5.7" in found.detail
    assert "X-Real-IP names 203.0.113.9" in found.detail
    agreeing = {"X-Real-IP": "203.0.113.9", "X-Forwarded-For": "10.0.5.7, 203.0.113.9",
                "Forwarded": 'for=10.0.5.7, for="203.0.113.9:5000"'}
    assert client_address("10.0.0.5", agreeing, PROXIES) == ipaddress.ip_address("203.0.113.9")
    mapped = {"X-Real-IP": "::ffff:203.0.113.9", "X-Forwarded-For": "203.0.113.9"}
    assert client_address("10.0.0.5", mapped, PROXIES) is not None


@pytest.mark.parametrize("name, expected", [
    ("x-real-ip", "203.0.113.9"), ("x-forwarded-for", "10.0.5.7"), ("forwarded", "192.0.2.1")])
def test_the_named_forwarding_header_is_the_only_one_read(name, expected):
    headers = {"X-Real-IP": "203.0.113.9", "X-Forwarded-For": "10.0.5.7",
               "Forwarded": "for=192.0.2.1"}
    assert client_address("10.0.0.5", headers, PROXIES, name) == ipaddress.ip_address(expected)
    # absent: the trusted proxy itself is the sender
    assert client_address("10.0.0.5", {}, PROXIES, name) == ipaddress.ip_address("10.0.0.5")


@pytest.mark.parametrize("value, expected", [
    ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
    ('for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
    ('For="192.0.2.43:47011"', "192.0.2.43"),
    ("for=192.0.2.43, for=198.51.100.17", "198.51.100.17"),
    ("for=198.51.100.17, for=10.0.0.9", "198.51.100.17"),  # trusted hop skipped
    ("for=1.2.3.4;proto=https, for=192.0.2.7;by=10.0.0.5", "192.0.2.7"),
    ('for=junk"junk, for=192.0.2.7', None),  # malformed anywhere: refused
    ("for=unknown", None),
    ("for=_hidden, for=10.0.0.9", None),
    ("proto=https", None),
    ("for=192.0.2.7;for=192.0.2.8", None),
    ("for", None),
    ('for="192.0.2.7', None),
    ("", None),
])
def test_rfc_7239_forwarded(value, expected):
    found = client_address("10.0.0.5", {"Forwarded": value}, PROXIES)
    assert found == (ipaddress.ip_address(expected) if expected else None)


def test_parse_forwarded_elements():
    assert parse_forwarded('for="_gazonk"') == [{"for": "_gazonk"}]
    assert parse_forwarded('for=192.0.2.43, for="[2001:db8:cafe::17]";Proto=https') == [
        {"for": "192.0.2.43"}, {"for": "[2001:db8:cafe::17]", "proto": "https"}]
    assert parse_forwarded('for="a\\"b"') == [{"for": 'a"b'}]
    assert parse_forwarded("for=a b") is None


def test_unix_socket_peers_are_trusted_only_when_listed():
    proxies = PROXIES + ("unix",)
    headers = {"X-Forwarded-For": "192.0.2.7"}
    for peer in ("", None):
        assert client_address(peer, headers, PROXIES) is None
        assert _resolve(peer, headers, PROXIES).reason == UNIX_PEER
        assert client_address(peer, headers, proxies) == ipaddress.ip_address("192.0.2.7")
        # a proxy on a socket that names nobody has no address to check
        assert _resolve(peer, {}, proxies).reason == UNIX_PEER_UNNAMED


def test_trusted_proxy_without_headers_is_itself_the_client():
    assert client_address("10.0.0.5", {}, PROXIES) == ipaddress.ip_address("10.0.0.5")


def test_ipv6_proxy_and_client():
    headers = {"X-Forwarded-For": "[2001:db8::42]:51000, fd00::2"}
    assert client_address("fd00::1", headers, PROXIES) == ipaddress.ip_address("2001:db8::42")


def test_ipv4_mapped_peer_matches_ipv4_proxy_network():
    headers = {"X-Forwarded-For": "192.0.2.7"}
    assert client_address("::ffff:10.0.0.5", headers, PROXIES) == ipaddress.ip_address("192.0.2.7")


def test_unparseable_or_missing_peer_is_none():
    assert client_address(None, {}, PROXIES) is None
    assert client_address("", {"X-Forwarded-For": "127.0.0.1"}, PROXIES) is None


# --- address_allowed ----------------------------------------------------------

def test_default_allows_loopback_v4_and_v6_only():
    allowed = make_settings().allow_access_from
    assert address_allowed(ipaddress.ip_address("127.0.0.1"), allowed)
    assert address_allowed(ipaddress.ip_address("::1"), allowed)
    assert not address_allowed(ipaddress.ip_address("127.0.0.2"), allowed)
    assert not address_allowed(ipaddress.ip_address("192.0.2.7"), allowed)
    assert not address_allowed(None, allowed)


def test_ipv4_mapped_and_zoned_addresses_match():
    allowed = nets("127.0.0.1/32, fe80::/64")
    assert address_allowed(parse_address("::ffff:127.0.0.1"), allowed)
    assert address_allowed(parse_address("fe80::1%eth0"), allowed)
    assert not address_allowed(parse_address("::ffff:127.0.0.2"), allowed)


def test_ipv6_network_and_bare_host():
    allowed = make_settings(allow_access_from="2001:db8:1::/48, 192.0.2.7").allow_access_from
    assert address_allowed(parse_address("2001:db8:1:2::3"), allowed)
    assert not address_allowed(parse_address("2001:db8:2::3"), allowed)
    assert address_allowed(parse_address("192.0.2.7"), allowed)
    assert not address_allowed(parse_address("192.0.2.8"), allowed)


# --- check_secret -------------------------------------------------------------

TOKENS = ("new-token", "old-but-still-valid")
PAIRS = ("grid:s3cr:et", "es:pw")


def test_no_secret_configured_lets_everything_through():
    assert check_secret(None, (), ())
    assert check_secret("garbage", (), ())


@pytest.mark.parametrize("header", ["Bearer new-token", "Bearer old-but-still-valid",
                                    "bearer new-token", "BEARER new-token"])
def test_any_configured_token_is_accepted(header):
    assert check_secret(header, TOKENS, ())


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", "Bearer wrong", "Bearer retired-token", "Bearer new-token2",
    "Bearer  new-token", " Bearer new-token", "Bearer new-token ", "new-token",
    "Token new-token", "Bearer new-token, Bearer x", "Basic bmV3LXRva2Vu",
])
def test_wrong_missing_or_malformed_token_is_refused(header):
    assert not check_secret(header, TOKENS, ())


def test_basic_pairs_accepted_including_colon_in_password():
    assert check_secret(basic("grid:s3cr:et"), (), PAIRS)
    assert check_secret(basic("es:pw"), (), PAIRS)
    assert check_secret(basic("es:pw"), TOKENS, PAIRS)


@pytest.mark.parametrize("header", [
    basic("es:wrong"), basic("es"), basic("es:pw "), basic(""), "Basic", "Basic !!!",
    "Basic ZXM6cH", "Basic " + base64.b64encode(b"es:\xff\xfe").decode(), "Bearer es:pw",
    basic("es:pw").replace("Basic", "Basic "),
])
def test_wrong_or_malformed_basic_is_refused(header):
    assert not check_secret(header, (), PAIRS)


def test_scheme_must_be_configured():
    assert not check_secret(basic("es:pw"), TOKENS, ())
    assert not check_secret("Bearer es:pw", (), PAIRS)


# --- decide -------------------------------------------------------------------

def test_spoofed_forwarded_for_from_untrusted_peer_is_refused_403():
    decision = decide("203.0.113.9", {"X-Forwarded-For": "127.0.0.1"}, make_settings())
    assert decision == Decision(False, 403, decision.reason, "203.0.113.9")
    assert "allowed networks" in decision.reason


def test_same_header_via_trusted_proxy_is_honoured():
    settings = make_settings(trusted_proxies="10.0.0.0/24", allow_access_from="192.0.2.0/24")
    decision = decide("10.0.0.5", {"X-Forwarded-For": "192.0.2.7"}, settings)
    assert decision.allowed and decision.status is None and decision.client == "192.0.2.7"


def test_ipv6_loopback_peer_allowed_by_default():
    assert decide("::1", {}, make_settings()).allowed
    assert decide("127.0.0.1", {}, make_settings()).allowed


def test_network_is_checked_before_secret():
    settings = make_settings(auth_token="t")
    assert decide("192.0.2.7", {}, settings).status == 403
    assert decide("192.0.2.7", {"Authorization": "Bearer t"}, settings).status == 403


def test_missing_and_invalid_secret_give_401_with_challenge():
    settings = make_settings(auth_token="t1,t2", basic_auth="u:p")
    missing = decide("127.0.0.1", {}, settings)
    wrong = decide("127.0.0.1", {"Authorization": "Bearer t0"}, settings)
    assert (missing.status, wrong.status) == (401, 401)
    assert missing.reason != wrong.reason
    expected = 'Bearer realm="dserver-notification", Basic realm="dserver-notification"'
    assert missing.www_authenticate == expected
    assert decide("127.0.0.1", {"Authorization": "Bearer t2"}, settings).allowed
    assert decide("127.0.0.1", {"Authorization": basic("u:p")}, settings).allowed


def test_challenge_names_only_configured_schemes():
    decision = decide("127.0.0.1", {}, make_settings(basic_auth="u:p"))
    assert decision.www_authenticate == 'Basic realm="dserver-notification"'


def test_unresolvable_client_is_403_and_logged_safely():
    settings = make_settings(trusted_proxies="10.0.0.0/24")
    decision = decide("10.0.0.5", {"X-Forwarded-For": "nope"}, settings)
    assert (decision.allowed, decision.status, decision.client) == (False, 403, "10.0.0.5")
    raw = decide("evil\nFAKE LOG LINE" + "x" * 200, {}, settings)
    assert "\n" not in raw.client and len(raw.client) < 100


def test_reasons_never_contain_secrets():
    settings = make_settings(auth_token="topsecret")
    decision = decide("127.0.0.1", {"Authorization": "Bearer topsecreT"}, settings)
    assert "topsecre" not in decision.reason and "topsecre" not in decision.client


header_names = st.sampled_from(["X-Forwarded-For", "X-Real-IP", "Authorization",
                                 "x-forwarded-for", "Forwarded", "forwarded"])
header_values = st.one_of(
    st.text(),
    st.lists(st.sampled_from(["10.0.0.5", "::1", "[fd00::1]:80", "127.0.0.1:9", "", " ",
                              "fe80::1%eth0", "::ffff:127.0.0.1", "Bearer", "Basic", "%",
                              "garbage", "for=10.0.0.5", 'for="[fd00::1]:80";proto=http',
                              'for="', "for=unknown", ";", "by=x;for=192.0.2.1"]))
    .map(", ".join),
)


@hyp_settings(max_examples=300, deadline=None)
@given(remote_addr=st.one_of(st.none(), st.text(), st.sampled_from(["10.0.0.5", "fd00::1",
                                                                    "::1", "127.0.0.1"])),
       headers=st.dictionaries(header_names, header_values, max_size=4))
def test_decide_never_raises(remote_addr, headers):
    settings = make_settings(trusted_proxies="10.0.0.0/24, fd00::/64", auth_token="t",
                             basic_auth="u:p")
    decision = decide(remote_addr, headers, settings)
    assert decision.status in (None, 401, 403)
    assert decision.allowed == (decision.status is None)
    assert "\n" not in decision.client


@hyp_settings(max_examples=500, deadline=None)
@given(value=st.one_of(st.text(), st.lists(st.sampled_from(
    ["for", "=", '"', "\\", ";", ",", " ", "10.0.0.5", "[::1]", ":80", "by", "unknown"]))
    .map("".join)))
def test_parse_forwarded_never_raises(value):
    elements = parse_forwarded(value)
    assert elements is None or all(isinstance(e, dict) for e in elements)


@hyp_settings(max_examples=300, deadline=None)
@given(header=st.one_of(st.none(), st.text(),
                        st.text().map(lambda t: "Basic " + t),
                        st.binary().map(lambda b: "Basic " + base64.b64encode(b).decode())))
def test_check_secret_never_raises_and_rejects_noise(header):
    assert check_secret(header, TOKENS, PAIRS) is (header in (
        "Bearer new-token", "Bearer old-but-still-valid", basic("grid:s3cr:et"), basic("es:pw")))


# --- RejectionLog ---------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.WARNING]


def test_duplicates_are_suppressed_then_counted(caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock = FakeClock()
    log = RejectionLog(60, clock=clock)
    assert log.log("192.0.2.7", "bad")
    assert not log.log("192.0.2.7", "bad")
    assert not log.log("192.0.2.7", "bad")
    assert log.log("192.0.2.8", "bad")
    assert log.log("192.0.2.7", "other")
    clock.now += 60
    assert log.log("192.0.2.7", "bad")
    assert warnings(caplog) == [
        "refused notification from 192.0.2.7: bad",
        "refused notification from 192.0.2.8: bad",
        "refused notification from 192.0.2.7: other",
        "refused notification from 192.0.2.7: bad (2 similar refusals suppressed)",
    ]


def test_overall_limit_stops_floods_of_distinct_clients(caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock = FakeClock()
    log = RejectionLog(60, clock=clock, max_per_interval=3)
    emitted = [log.log(f"2001:db8::{i:x}", "bad") for i in range(10)]
    assert emitted == [True] * 3 + [False] * 7
    clock.now += 60
    assert log.log("2001:db8::ff", "bad")
    assert warnings(caplog)[-1].endswith("(7 other refusals suppressed by the overall limit)")


def test_tracked_keys_are_bounded():
    clock = FakeClock()
    log = RejectionLog(60, clock=clock, max_keys=5, max_per_interval=10_000)
    for i in range(100):
        log.log(f"192.0.2.{i}", "bad")
    assert len(log._last) == 5


def test_client_text_is_made_printable(caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    RejectionLog(60).log("a\nb", "r")
    assert warnings(caplog) == ["refused notification from a\\nb: r"]


# --- guard_request ----------------------------------------------------------------

def app_with_guard(settings, rejection_log):
    app = Flask(__name__)

    @app.route("/hook", methods=["POST", "HEAD"])
    def hook():
        return guard_request(settings, rejection_log) or ("ok", 200)

    return app


def test_guard_request_allows_and_refuses(caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    settings = make_settings(auth_token="secret-token")
    client = app_with_guard(settings, RejectionLog(60)).test_client()
    ok = client.post("/hook", headers={"Authorization": "Bearer secret-token"})
    assert (ok.status_code, ok.data) == (200, b"ok")

    missing = client.post("/hook")
    assert missing.status_code == 401
    assert missing.get_json() == {"code": 401, "status": "Unauthorized",
                                  "message": "no credentials"}
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="dserver-notification"'

    wrong = client.post("/hook", headers={"Authorization": "Bearer secret-tokeN"})
    assert wrong.status_code == 401
    assert all("secret-tok" not in message for message in warnings(caplog))
    assert any("127.0.0.1" in message for message in warnings(caplog))


def test_guard_request_refuses_spoofing_from_remote_peer():
    client = app_with_guard(make_settings(), None).test_client()
    response = client.post("/hook", headers={"X-Forwarded-For": "127.0.0.1"},
                           environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 403
    assert response.get_json()["code"] == 403
    assert "WWW-Authenticate" not in response.headers
    head = client.head("/hook", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert head.status_code == 403


def test_guard_request_honours_trusted_proxy_chain():
    settings = make_settings(trusted_proxies="10.0.0.0/24", allow_access_from="192.0.2.0/24")
    client = app_with_guard(settings, None).test_client()
    response = client.post("/hook", headers={"X-Forwarded-For": "127.0.0.1, 192.0.2.7, 10.0.0.9"},
                           environ_base={"REMOTE_ADDR": "10.0.0.5"})
    assert response.status_code == 200
    response = client.post("/hook", headers={"X-Forwarded-For": "127.0.0.1, 10.0.0.9"},
                           environ_base={"REMOTE_ADDR": "10.0.0.5"})
    assert response.status_code == 403


def test_browsers_are_refused_before_anything_else():
    settings = make_settings()
    for headers in ({"Origin": "http://127.0.0.1:8000"}, {"Sec-Fetch-Site": "cross-site"},
                    {"sec-fetch-site": "Same-Site"}):
        decision = decide("127.0.0.1", headers, settings)
        assert (decision.allowed, decision.status, decision.reason) == (False, 403, BROWSER)
    for headers in ({"Sec-Fetch-Site": "none"}, {"Sec-Fetch-Site": "same-origin"}, {}):
        assert decide("127.0.0.1", headers, settings).allowed


def test_disagreeing_headers_are_refused_and_logged_with_what_they_said(caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    settings = make_settings(trusted_proxies="127.0.0.1", allow_access_from="10.0.0.0/8")
    client = app_with_guard(settings, RejectionLog(60)).test_client()
    forged = {"X-Real-IP": "203.0.113.9", "X-Forwarded-For": "10.0.5.7"}
    answer = client.post("/hook", headers=forged)
    assert answer.status_code == 403
    assert answer.get_json()["message"] == HEADERS_DISAGREE
    assert "X-Forwarded-For names 10.0.5.7, X-Real-IP names 203.0.113.9" in caplog.text
    named = make_settings(trusted_proxies="127.0.0.1", allow_access_from="10.0.0.0/8",
                          forwarded_header="x-real-ip")
    client = app_with_guard(named, None).test_client()
    assert client.post("/hook", headers=forged).status_code == 403  # 203.0.113.9: outside
    assert client.post("/hook", headers={"X-Real-IP": "10.0.5.7",
                                         "X-Forwarded-For": "1.2.3.4"}).status_code == 200
