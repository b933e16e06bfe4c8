"""Settings that fail closed, and the ones that start but say they are open."""
import ipaddress

import pytest

from dserver_notification_plugin.config import (
    ConfigError, load_settings, open_configuration_warnings,
)


def settings(**values):
    config = {"DSERVER_NOTIFY_" + name.upper(): value for name, value in values.items()}
    return load_settings(config, environ={})


@pytest.mark.parametrize("name, value", [
    ("auth_token", " , "), ("auth_token", ","), ("basic_auth", " ,, "),
    ("sns_topics", " , "), ("sns_topics", ","),  # unset, every topic would pass
])
def test_a_secret_that_is_set_but_empty_stops_start_up(name, value):
    with pytest.raises(ConfigError) as error:
        settings(**{name: value})
    assert f"DSERVER_NOTIFY_{name.upper()}" in str(error.value)


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_secret_setting_means_none(value):
    assert settings(auth_token=value).auth_tokens == ()
    assert settings(sns_topics=value).sns_topics == ()


TOPIC = "arn:aws:sns:eu-central-1:123456789012:dserver-events"


@pytest.mark.parametrize("values", [
    {"sns_topics": TOPIC, "sns_verify": "off"},  # unchecked signatures prove nothing
    {},  # AWS signs the messages of every account's topics
])
def test_require_sns_needs_verification_and_listed_topics(values):
    assert settings().require_sns is False
    assert settings(require_sns="on", sns_topics=TOPIC).require_sns is True
    with pytest.raises(ConfigError) as error:
        settings(require_sns="on", **values)
    assert "DSERVER_NOTIFY_REQUIRE_SNS" in str(error.value)


def test_error_messages_never_repeat_secrets():
    for name, value in (("basic_auth", "s3cr3t-no-colon"), ("basic_auth", "user-s3cr3t:"),
                        ("basic_auth", ":pass-s3cr3t")):
        with pytest.raises(ConfigError) as error:
            settings(**{name: value})
        assert "s3cr3t" not in str(error.value)


def test_the_repr_of_settings_never_holds_secrets():
    loaded = settings(auth_token="tok-s3cr3t", basic_auth="minio:pw-s3cr3t")
    assert "s3cr3t" not in repr(loaded) and "s3cr3t" not in str(loaded)
    assert loaded.auth_tokens == ("tok-s3cr3t",)


def test_networks_with_host_bits_are_errors_and_exact_ones_are_kept():
    with pytest.raises(ConfigError, match="host bits set; write 10.0.0.0/8 for the network "
                                          "or 10.0.5.7 for the one host"):
        settings(allow_access_from="10.0.5.7/8")
    loaded = settings(allow_access_from="10.0.0.0/8, 10.0.5.7, 2001:db8::/32",
                      trusted_proxies="unix, 127.0.0.1")
    assert loaded.allow_access_from == (ipaddress.ip_network("10.0.0.0/8"),
                                        ipaddress.ip_network("10.0.5.7/32"),
                                        ipaddress.ip_network("2001:db8::/32"))
    assert loaded.trusted_proxies == ("unix", ipaddress.ip_network("127.0.0.1/32"))
    with pytest.raises(ConfigError):
        settings(allow_access_from="unix")  # only proxies can be on a socket


def test_sns_hosts():
    loaded = settings(sns_hosts="SNS.eu-west-1.amazonaws.com, http://127.0.0.1:5123,"
                                "https://[::1]:8443, http://localhost")
    assert loaded.sns_hosts == (("https", "sns.eu-west-1.amazonaws.com", 443),
                                ("http", "127.0.0.1", 5123), ("https", "::1", 8443),
                                ("http", "localhost", 80))
    for bad in ("http://user@host", "http://host/path", "http://host:99999", "-bad-.com",
                "http://", "host?x"):
        with pytest.raises(ConfigError):
            settings(sns_hosts=bad)


def test_forwarded_header_choice():
    assert settings(forwarded_header=" X-Real-IP ").forwarded_header == "x-real-ip"
    assert settings().forwarded_header == ""


@pytest.mark.parametrize("values, expected", [
    ({}, []),
    ({"allow_access_from": "10.0.0.0/8"}, ["no secret is set"]),
    ({"allow_access_from": "10.0.0.0/8", "auth_token": "t"}, []),
    ({"allow_access_from": "10.0.0.0/8", "require_sns": "on", "sns_topics": "arn:a:sns:r:1:t"},
     []),
    ({"allow_access_from": "127.0.0.0/8,::1"}, []),
    ({"trusted_proxies": "0.0.0.0/0", "auth_token": "t"}, ["every client can choose"]),
    ({"trusted_proxies": "::/0,unix", "auth_token": "t"}, ["every client can choose"]),
    ({"sns_verify": "off"}, ["SNS_VERIFY is off"]),
    ({"sns_hosts": "http://127.0.0.1:5123"}, ["plain http"]),
    ({"allow_access_from": "0.0.0.0/0", "trusted_proxies": "0.0.0.0/0"},
     ["no secret is set", "every client can choose"]),
])
def test_open_configurations_are_named(values, expected):
    warnings = open_configuration_warnings(settings(**values))
    assert len(warnings) == len(expected)
    for warning, text in zip(warnings, expected):
        assert text in warning
