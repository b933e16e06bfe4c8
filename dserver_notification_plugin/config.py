"""Settings, read when an app is created and validated in one place.

Every setting is declared once, as a field of :class:`Settings` carrying its
environment name, default, parser and meaning. It is looked up in
``app.config`` first and then in the environment, at app creation; nothing
is frozen at import time, so two apps in one process can be configured
differently. An invalid value stops start-up with a :class:`ConfigError`
that names the variable.

This module imports nothing from the package (docs/settings_table.py loads
it by path to render the settings table).
"""
import dataclasses
import ipaddress
import json
import os
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Tuple

PREFIX = "DSERVER_NOTIFY_"
LOOPBACK = "127.0.0.1/32,::1/128"


class ConfigError(ValueError):
    """An invalid setting; the message names the variable."""


# --- parsers: (variable name, text) -> value ------------------------------------

def parse_networks(name, text):
    nets = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"{name}: {part!r} is not an IP network or address")
    return tuple(nets)


def parse_list(name, text):
    return tuple(p.strip() for p in text.split(",") if p.strip())


def number(cast, minimum):
    """A parser for numbers of type ``cast`` no smaller than ``minimum``."""
    def parse(name, text):
        try:
            value = cast(text)
        except ValueError:
            raise ConfigError(f"{name}: {text!r} is not a number")
        if value < minimum:
            raise ConfigError(f"{name}: {text!r} must be at least {minimum}")
        return value
    return parse


def parse_bucket_map(name, text):
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


def parse_basic_auth(name, text):
    pairs = parse_list(name, text)
    for pair in pairs:
        if ":" not in pair:
            raise ConfigError(f"{name}: each entry must be user:password")
    return pairs


def parse_switch(name, text):
    value = text.strip().lower()
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise ConfigError(f"{name}: {text!r} is neither on nor off")


# --- the settings ---------------------------------------------------------------

def setting(short: str, default: str, parse: Callable, meaning: str, secret: bool = False):
    """Declare one setting: ``DSERVER_NOTIFY_<short>``, its default as a user
    would write it, the parser of its text and what it means.

    Secrets stay out of the repr, so a logged Settings never shows them.
    """
    return dataclasses.field(repr=not secret, metadata={
        "short": short, "default": default, "parse": parse, "meaning": meaning,
        "secret": secret})


@dataclass(frozen=True)
class Settings:
    bucket_to_base_uri: Dict[str, str] = setting(
        "BUCKET_TO_BASE_URI", "{}", parse_bucket_map,
        "JSON object mapping bucket names to dserver base URIs.")
    allow_access_from: Tuple = setting(
        "ALLOW_ACCESS_FROM", LOOPBACK, parse_networks,
        "Comma-separated networks (IPv4/IPv6, a bare address is one host) "
        "allowed to send notifications.")
    trusted_proxies: Tuple = setting(
        "TRUSTED_PROXIES", "", parse_networks,
        "Comma-separated networks of reverse proxies whose forwarding headers are believed.")
    auth_tokens: Tuple[str, ...] = setting(
        "AUTH_TOKEN", "", parse_list,
        "Comma-separated bearer tokens; any one is accepted (rotation).", secret=True)
    basic_auth: Tuple[str, ...] = setting(
        "BASIC_AUTH", "", parse_basic_auth,
        "Comma-separated user:password pairs for HTTP Basic authentication.", secret=True)
    sns_topics: Tuple[str, ...] = setting(
        "SNS_TOPICS", "", parse_list,
        "Comma-separated SNS topic ARNs whose subscriptions are confirmed.")
    max_body_bytes: int = setting(
        "MAX_BODY_BYTES", "1048576", number(int, 1), "Largest accepted request body, in bytes.")
    debounce_seconds: float = setting(
        "DEBOUNCE_SECONDS", "2", number(float, 0),
        "Quiet time after the last event of a dataset before it is synced.")
    max_delay_seconds: float = setting(
        "MAX_DELAY_SECONDS", "30", number(float, 0),
        "Longest a dataset waits while events keep arriving.")
    max_attempts: int = setting(
        "MAX_ATTEMPTS", "8", number(int, 1), "Attempts before an inbox entry is kept as dead.")
    retry_base_seconds: float = setting(
        "RETRY_BASE_SECONDS", "1", number(float, 0),
        "First retry delay; doubles per attempt, with jitter.")
    retry_max_seconds: float = setting(
        "RETRY_MAX_SECONDS", "300", number(float, 0), "Longest delay between two attempts.")
    claim_timeout_seconds: float = setting(
        "CLAIM_TIMEOUT_SECONDS", "300", number(float, 1),
        "A claimed entry whose process vanished is reclaimed after this.")
    poll_seconds: float = setting(
        "POLL_SECONDS", "0.5", number(float, 0.01),
        "How often the worker looks for due entries when other processes cannot "
        "wake it (SQLite).")
    idle_seconds: float = setting(
        "IDLE_SECONDS", "10", number(float, 0.1),
        "Longest the worker sleeps when nothing is due and PostgreSQL LISTEN/NOTIFY "
        "can wake it.")
    worker: bool = setting(
        "WORKER", "on", parse_switch,
        "on: run the sync worker inside each dserver process; off: run "
        "`flask notification worker` separately.")
    reject_log_interval_seconds: float = setting(
        "REJECT_LOG_INTERVAL_SECONDS", "60", number(float, 0),
        "At most one warning per client and reason in this interval.")


def declared_settings():
    """``(field name, metadata)`` of every setting, in declaration order."""
    return [(f.name, f.metadata) for f in dataclasses.fields(Settings)]


def env_name(meta) -> str:
    return PREFIX + meta["short"]


def raw_value(meta, config: Optional[Mapping] = None, environ: Optional[Mapping] = None):
    """The text of one setting: app.config wins over the environment."""
    name = env_name(meta)
    config = config if config is not None else {}
    environ = environ if environ is not None else os.environ
    value = config.get(name)
    if value is None:
        value = environ.get(name)
    if value is None:
        value = meta["default"]
    if isinstance(value, (dict, list)):  # a bucket map given as a Python object
        value = json.dumps(value)
    return str(value)


def load_settings(config: Optional[Mapping] = None, environ: Optional[Mapping] = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the bad one."""
    return Settings(**{
        field: meta["parse"](env_name(meta), raw_value(meta, config, environ))
        for field, meta in declared_settings()})


class ConfigSnapshot:
    """What dservercore merges into ``app.config`` and shows in /config/info.

    Built when dservercore asks for it (at app creation), from the
    environment of that moment.
    """

    def __init__(self, environ=None):
        environ = environ if environ is not None else os.environ
        for _, meta in declared_settings():
            setattr(self, env_name(meta), raw_value(meta, {}, environ))


def secret_names():
    return [env_name(meta) for _, meta in declared_settings() if meta["secret"]]
