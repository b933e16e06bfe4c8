"""Issue 2: the extension installs, loads, and is configured at app creation."""
import json
from importlib.metadata import entry_points, version

import dservercore
import pytest
import requests

from devstack.dserver import (LiveDserver, app_config, dserver_env, prepare_index_for_server,
                               token_for)
from dserver_notification_plugin import NotificationExtension
from dserver_notification_plugin.config import ConfigError
from dserver_notification_plugin.dtool_private import IncompatibleDtool

pytestmark = pytest.mark.integration


def test_entry_point_loads_the_extension():
    found = [ep for ep in entry_points(group="dservercore.extension")
             if ep.name == "NotificationExtension"]
    assert len(found) == 1
    cls = found[0].load()
    assert cls is NotificationExtension
    assert issubclass(cls, dservercore.ExtensionABC)


def test_app_lists_the_plugin_and_its_routes(app):
    assert any(isinstance(ex, NotificationExtension) for ex in app.custom_extensions)
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert "/webhook/notify" in rules
    assert any(rule.startswith("/elastic-search") for rule in rules)


def test_app_config_wins_over_environment(make_app, bucket, monkeypatch):
    monkeypatch.setenv("DSERVER_NOTIFY_DEBOUNCE_SECONDS", "5")
    monkeypatch.setenv("DSERVER_NOTIFY_MAX_ATTEMPTS", "3")
    app = make_app([bucket], notify={"DSERVER_NOTIFY_DEBOUNCE_SECONDS": "7"})
    settings = app.extensions["dserver_notification"].settings
    assert settings.debounce_seconds == 7.0   # from app.config
    assert settings.max_attempts == 3         # from the environment


def test_two_apps_in_one_process_differ(make_app, bucket, make_bucket):
    other = make_bucket(bucket.name + "-b")
    first = make_app([bucket])
    second = make_app([other])
    assert first.extensions["dserver_notification"].settings.bucket_to_base_uri == \
        {bucket.name: bucket.base_uri}
    assert second.extensions["dserver_notification"].settings.bucket_to_base_uri == \
        {other.name: other.base_uri}


@pytest.mark.parametrize("name, value, complaint", [
    ("DSERVER_NOTIFY_BUCKET_TO_BASE_URI", "{not json", "not valid JSON"),
    ("DSERVER_NOTIFY_BUCKET_TO_BASE_URI", '["s3://a"]', "JSON object"),
    ("DSERVER_NOTIFY_BUCKET_TO_BASE_URI", '{"a": "s3://a/"}', "must not end with '/'"),
    ("DSERVER_NOTIFY_ALLOW_ACCESS_FROM", "10.0.0.0/33", "not an IP network"),
    ("DSERVER_NOTIFY_TRUSTED_PROXIES", "proxy.example.org", "not an IP network"),
    ("DSERVER_NOTIFY_BASIC_AUTH", "no-colon", "user:password"),
    ("DSERVER_NOTIFY_MAX_BODY_BYTES", "lots", "not a number"),
    ("DSERVER_NOTIFY_DEBOUNCE_SECONDS", "-1", "at least"),
    ("DSERVER_NOTIFY_WORKER", "sometimes", "neither on nor off"),
    ("DSERVER_NOTIFY_SQS_QUEUE_URLS", "dserver-events", "not an SQS queue URL"),
    ("DSERVER_NOTIFY_SQS_QUEUE_URLS", "https://sqs.eu-central-1.amazonaws.com/",
     "not an SQS queue URL"),
    ("DSERVER_NOTIFY_SQS_QUEUE_URLS", "http://h/1/q,http://h/1/q", "listed twice"),
    # settings that used to fail open without a word (issue 14)
    ("DSERVER_NOTIFY_AUTH_TOKEN", " , ", "set but holds no value"),
    ("DSERVER_NOTIFY_BASIC_AUTH", ",", "set but holds no value"),
    ("DSERVER_NOTIFY_BASIC_AUTH", "user:", "empty user or password"),
    ("DSERVER_NOTIFY_ALLOW_ACCESS_FROM", "10.0.5.7/8", "host bits set; write 10.0.0.0/8"),
    ("DSERVER_NOTIFY_TRUSTED_PROXIES", "fd00::1/64", "host bits set"),
    ("DSERVER_NOTIFY_FORWARDED_HEADER", "x-client-ip", "not one of"),
    ("DSERVER_NOTIFY_SNS_HOSTS", "ftp://sns.example:21", "http(s)://host"),
    ("DSERVER_NOTIFY_SNS_HOSTS", "sns.example/path", "not a host name"),
    ("DSERVER_NOTIFY_SNS_VERIFY", "maybe", "neither on nor off"),
    ("DSERVER_NOTIFY_MAX_RECORDS", "0", "at least"),
])
def test_invalid_setting_stops_start_up_naming_the_variable(tmp_path, mongo, name, value,
                                                            complaint):
    env = dserver_env(tmp_path, mongo.uri, {"b": "s3://b"}, {name: value})
    with pytest.raises(ConfigError) as error:
        dservercore.create_app(app_config(env))
    assert name in str(error.value)
    assert complaint in str(error.value)


@pytest.mark.parametrize("module, attribute", [
    ("dtool_s3.storagebroker.S3StorageBroker", "_get_resource_and_client"),
    ("dtoolcore", "_get_storage_broker"),
])
def test_a_dtool_without_a_needed_private_part_stops_start_up(tmp_path, mongo, monkeypatch,
                                                              module, attribute):
    # Stands for an installed dtoolcore / dtool-s3 version that lacks it.
    monkeypatch.delattr(f"{module}.{attribute}")
    env = dserver_env(tmp_path, mongo.uri, {"b": "s3://b"}, {})
    with pytest.raises(IncompatibleDtool) as error:
        dservercore.create_app(app_config(env))
    message = str(error.value)
    assert f"{module}.{attribute}" in message
    assert f"dtoolcore {version('dtoolcore')}" in message
    assert f"dtool-s3 {version('dtool-s3')}" in message


def test_hooks_are_cheap_and_never_raise():
    extension = NotificationExtension()  # not even initialised
    assert extension.register_dataset({"uri": "s3://x/y"}) is None
    assert extension.delete_dataset("s3://x/y") is None


def test_config_info_of_a_production_server_shows_settings_obfuscated(tmp_path, mongo):
    env = dserver_env(tmp_path, mongo.uri, {"b": "s3://b"}, {
        "DSERVER_NOTIFY_AUTH_TOKEN": "very-secret-token",
        "DSERVER_NOTIFY_DEBOUNCE_SECONDS": "3"})
    prepare_index_for_server(env, ["s3://b"])
    with LiveDserver(env, tmp_path, workers=1) as server:
        token = token_for("admin", env["JWT_PRIVATE_KEY_FILE"])
        answer = requests.get(server.url + "/config/info",
                              headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        config = answer.json()["config"]
    assert json.loads(config["dserver_notify_bucket_to_base_uri"]) == {"b": "s3://b"}
    assert config["dserver_notify_debounce_seconds"] == "3"
    assert config["dserver_notify_auth_token"] == "***"
    assert "very-secret-token" not in answer.text
