"""Settings, read when an app is created and validated in one place.

Every setting is looked up in ``app.config`` first and then in the
environment, at app creation; nothing is frozen at import time, so two
apps in one process can be configured differently. An invalid value stops
start-up with a :class:`ConfigError` that names the variable.
"""
import ipaddress
import json
import os
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

PREFIX = "DSERVER_NOTIFY_"
LOOPBACK = "127.0.0.1/32,::1/128"

# name (without prefix) -> (default as the user would write it, secret?, meaning)
SETTINGS = {
    "BUCKET_TO_BASE_URI": ("{}", False,
                           "JSON object mapping bucket names to dserver base URIs."),
    "ALLOW_ACCESS_FROM": (LOOPBACK, False,
                          "Comma-separated networks (IPv4/IPv6, a bare address is one host) "
                          "allowed to send notifications."),
    "TRUSTED_PROXIES": ("", False,
                        "Comma-separated networks of reverse proxies whose forwarding "
                        "headers are believed."),
    "AUTH_TOKEN": ("", True,
                   "Comma-separated bearer tokens; any one is accepted (rotation)."),
    "BASIC_AUTH": ("", True,
                   "Comma-separated user:password pairs for HTTP Basic authentication."),
    "SNS_TOPICS": ("", False,
                   "Comma-separated SNS topic ARNs whose subscriptions are confirmed."),
    "MAX_BODY_BYTES": ("1048576", False, "Largest accepted request body, in bytes."),
    "DEBOUNCE_SECONDS": ("2", False,
                         "Quiet time after the last event of a dataset before it is synced."),
    "MAX_DELAY_SECONDS": ("30", False,
                          "Longest a dataset waits while events keep arriving."),
    "MAX_ATTEMPTS": ("8", False, "Attempts before an inbox entry is kept as dead."),
    "RETRY_BASE_SECONDS": ("1", False, "First retry delay; doubles per attempt, with jitter."),
    "RETRY_MAX_SECONDS": ("300", False, "Longest delay between two attempts."),
    "CLAIM_TIMEOUT_SECONDS": ("300", False,
                              "A claimed entry whose process vanished is reclaimed after this."),
    "POLL_SECONDS": ("0.5", False, "How often the worker looks for due entries."),
    "WORKER": ("on", False,
               "on: run the sync worker inside each dserver process; off: run "
               "`flask notification worker` separately."),
    "REJECT_LOG_INTERVAL_SECONDS": ("60", False,
                                    "At most one warning per client and reason in this interval."),
}


class ConfigError(ValueError):
    """An invalid setting; the message names the variable."""


def _networks(name, text):
    nets = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"{name}: {part!r} is not an IP network or address")
    return tuple(nets)


def _list(text):
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _number(name, text, cast, minimum):
    try:
        value = cast(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a number")
    if value < minimum:
        raise ConfigError(f"{name}: {text!r} must be at least {minimum}")
    return value


def _bucket_map(name, text):
    try:
        mapping = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{name}: not valid JSON ({exc})")
    if not isinstance(mapping, dict):
        raise ConfigError(f"{name}: must be a JSON object mapping bucket to base URI")
    for bucket, base_uri in mapping.items():
        if not isinstance(base_uri, str) or "://" not in base_uri:
            raise ConfigError(f"{name}: base URI {base_uri!r} of bucket {bucket!r} is not a URI")
        if base_uri.endswith("/"):
            raise ConfigError(
                f"{name}: base URI {base_uri!r} of bucket {bucket!r} must not end with '/'")
    return dict(mapping)


def _basic_auth(name, text):
    pairs = _list(text)
    for pair in pairs:
        if ":" not in pair:
            raise ConfigError(f"{name}: each entry must be user:password")
    return pairs


def _switch(name, text):
    value = text.strip().lower()
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise ConfigError(f"{name}: {text!r} is neither on nor off")


@dataclass(frozen=True)
class Settings:
    bucket_to_base_uri: Dict[str, str]
    allow_access_from: Tuple
    trusted_proxies: Tuple
    auth_tokens: Tuple[str, ...]
    basic_auth: Tuple[str, ...]
    sns_topics: Tuple[str, ...]
    max_body_bytes: int
    debounce_seconds: float
    max_delay_seconds: float
    max_attempts: int
    retry_base_seconds: float
    retry_max_seconds: float
    claim_timeout_seconds: float
    poll_seconds: float
    worker: bool
    reject_log_interval_seconds: float


def raw_value(short_name, config: Optional[Mapping] = None, environ: Optional[Mapping] = None):
    """The text of one setting: app.config wins over the environment."""
    name = PREFIX + short_name
    config = config if config is not None else {}
    environ = environ if environ is not None else os.environ
    value = config.get(name)
    if value is None:
        value = environ.get(name)
    if value is None:
        value = SETTINGS[short_name][0]
    if isinstance(value, (dict, list)) and short_name == "BUCKET_TO_BASE_URI":
        value = json.dumps(value)
    return str(value)


def load_settings(config: Optional[Mapping] = None, environ: Optional[Mapping] = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the bad one."""
    def raw(short):
        return raw_value(short, config, environ)

    def n(short):
        return PREFIX + short

    return Settings(
        bucket_to_base_uri=_bucket_map(n("BUCKET_TO_BASE_URI"), raw("BUCKET_TO_BASE_URI")),
        allow_access_from=_networks(n("ALLOW_ACCESS_FROM"), raw("ALLOW_ACCESS_FROM")),
        trusted_proxies=_networks(n("TRUSTED_PROXIES"), raw("TRUSTED_PROXIES")),
        auth_tokens=_list(raw("AUTH_TOKEN")),
        basic_auth=_basic_auth(n("BASIC_AUTH"), raw("BASIC_AUTH")),
        sns_topics=_list(raw("SNS_TOPICS")),
        max_body_bytes=_number(n("MAX_BODY_BYTES"), raw("MAX_BODY_BYTES"), int, 1),
        debounce_seconds=_number(n("DEBOUNCE_SECONDS"), raw("DEBOUNCE_SECONDS"), float, 0),
        max_delay_seconds=_number(n("MAX_DELAY_SECONDS"), raw("MAX_DELAY_SECONDS"), float, 0),
        max_attempts=_number(n("MAX_ATTEMPTS"), raw("MAX_ATTEMPTS"), int, 1),
        retry_base_seconds=_number(n("RETRY_BASE_SECONDS"), raw("RETRY_BASE_SECONDS"), float, 0),
        retry_max_seconds=_number(n("RETRY_MAX_SECONDS"), raw("RETRY_MAX_SECONDS"), float, 0),
        claim_timeout_seconds=_number(
            n("CLAIM_TIMEOUT_SECONDS"), raw("CLAIM_TIMEOUT_SECONDS"), float, 1),
        poll_seconds=_number(n("POLL_SECONDS"), raw("POLL_SECONDS"), float, 0.01),
        worker=_switch(n("WORKER"), raw("WORKER")),
        reject_log_interval_seconds=_number(
            n("REJECT_LOG_INTERVAL_SECONDS"), raw("REJECT_LOG_INTERVAL_SECONDS"), float, 0),
    )


class ConfigSnapshot:
    """What dservercore merges into ``app.config`` and shows in /config/info.

    Built when dservercore asks for it (at app creation), from the
    environment of that moment.
    """

    def __init__(self, environ=None):
        environ = environ if environ is not None else os.environ
        for short in SETTINGS:
            setattr(self, PREFIX + short, raw_value(short, {}, environ))


def secret_names():
    return [PREFIX + short for short, (_, secret, _) in SETTINGS.items() if secret]

