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
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

PREFIX = "DSERVER_NOTIFY_"
LOOPBACK = "127.0.0.1/32,::1/128"
#: In DSERVER_NOTIFY_TRUSTED_PROXIES: peers connected through a Unix socket.
UNIX = "unix"
FORWARDED_HEADERS = ("x-forwarded-for", "x-real-ip", "forwarded")


class ConfigError(ValueError):
    """An invalid setting; the message names the variable."""


# --- parsers: (variable name, text) -> value ------------------------------------

def parse_network(name, part):
    """One network; a bare address is one host. Host bits must be zero:
    ``10.0.5.7/8`` is refused rather than silently read as ``10.0.0.0/8``."""
    try:
        return ipaddress.ip_network(part)
    except ValueError as exc:
        try:
            wide = ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ConfigError(f"{name}: {part!r} is not an IP network or address") from exc
        host = part.split("/", 1)[0]
        raise ConfigError(
            f"{name}: {part!r} has host bits set; write {wide} for the network or "
            f"{host} for the one host") from exc


def parse_networks(name, text):
    return tuple(parse_network(name, part) for part in parse_list(name, text))


def parse_proxies(name, text):
    """Networks of trusted proxies, and ``unix`` for peers on a Unix socket."""
    return tuple(UNIX if part.lower() == UNIX else parse_network(name, part)
                 for part in parse_list(name, text))


def parse_list(name, text):
    return tuple(p.strip() for p in text.split(",") if p.strip())


def parse_secrets(name, text):
    """A list of secrets. Text that is there but holds no value (``" , "``)
    is a mistake, not a wish to run without a secret: refuse it. The
    message never repeats the value."""
    return parse_filled_list(name, text, "run without a secret")


def parse_topics(name, text):
    """SNS topic ARNs; like secrets, set but empty is a mistake: unset, the
    list would admit every topic."""
    return parse_filled_list(name, text, "accept every topic")


def parse_filled_list(name, text, unset_means):
    values = parse_list(name, text)
    if text.strip() and not values:
        raise ConfigError(f"{name} is set but holds no value; give at least one, "
                          f"or unset it to {unset_means}")
    return values


def parse_choice(*choices):
    """A parser for one of ``choices`` (case-insensitive), or empty."""
    def parse(name, text):
        value = text.strip().lower()
        if value and value not in choices:
            raise ConfigError(f"{name}: {text!r} is not one of {', '.join(choices)}")
        return value
    return parse


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


#: A share of removals is never smaller than this many datasets.
MIN_REMOVALS = 10


def parse_removals(name, text):
    """``N%`` (a share of a base URI's datasets, at least MIN_REMOVALS) or
    ``N`` (a number of datasets): ``(value, is_share)``."""
    value = text.strip()
    share = value.endswith("%")
    try:
        number_ = float(value[:-1]) if share else int(value)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is neither a share like 10% nor a "
                          "number of datasets")
    if number_ < 0 or (share and number_ > 100):
        raise ConfigError(f"{name}: {text!r} must be between 0 and 100% or a "
                          "non-negative number")
    return (number_ / 100.0 if share else number_, share)


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
    pairs = parse_secrets(name, text)
    for pair in pairs:
        user, colon, password = pair.partition(":")
        if not colon:
            raise ConfigError(f"{name}: each entry must be user:password")
        if not user or not password:
            raise ConfigError(f"{name}: an entry has an empty user or password")
    return pairs


def parse_queue_urls(name, text):
    """SQS queue URLs: ``https://sqs.<region>.amazonaws.com/<account>/<queue>``
    on AWS, any http(s) URL with a queue path elsewhere."""
    urls = parse_list(name, text)
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname \
                or not parts.path.strip("/"):
            raise ConfigError(f"{name}: {url!r} is not an SQS queue URL "
                              "(https://sqs.<region>.amazonaws.com/<account>/<queue>)")
    if len(set(urls)) != len(urls):
        raise ConfigError(f"{name}: a queue URL is listed twice")
    return urls


_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)"
                       r"(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def parse_origins(name, text):
    """Where SNS may be reached: ``(scheme, host, port)`` per entry.

    A bare host name means https on port 443; ``scheme://host:port``
    (http or https) allows exactly that origin, for tests and mirrors.
    """
    origins = []
    for part in parse_list(name, text):
        if "://" in part:
            try:
                parts = urlsplit(part)
                port = parts.port
            except ValueError:
                raise ConfigError(f"{name}: {part!r} is not scheme://host[:port]")
            scheme, host = parts.scheme.lower(), (parts.hostname or "")
            if scheme not in ("http", "https") or not host or parts.username \
                    or parts.password or parts.path not in ("", "/") or parts.query \
                    or parts.fragment:
                raise ConfigError(f"{name}: {part!r} is not http(s)://host[:port]")
            origins.append((scheme, host, port or (443 if scheme == "https" else 80)))
        else:
            host = part.lower()
            if not _HOSTNAME.fullmatch(host):
                raise ConfigError(f"{name}: {part!r} is not a host name")
            origins.append(("https", host, 443))
    return tuple(origins)


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
        "TRUSTED_PROXIES", "", parse_proxies,
        "Comma-separated networks of reverse proxies whose forwarding headers are "
        "believed; `unix` trusts a proxy that connects through a Unix socket.")
    forwarded_header: str = setting(
        "FORWARDED_HEADER", "", parse_choice(*FORWARDED_HEADERS),
        "The one forwarding header the trusted proxies set: x-forwarded-for, x-real-ip "
        "or forwarded (RFC 7239). Empty: read all three and refuse (403) a request "
        "whose headers name different clients.")
    auth_tokens: Tuple[str, ...] = setting(
        "AUTH_TOKEN", "", parse_secrets,
        "Comma-separated bearer tokens; any one is accepted (rotation).", secret=True)
    basic_auth: Tuple[str, ...] = setting(
        "BASIC_AUTH", "", parse_basic_auth,
        "Comma-separated user:password pairs for HTTP Basic authentication.", secret=True)
    sns_topics: Tuple[str, ...] = setting(
        "SNS_TOPICS", "", parse_topics,
        "Comma-separated SNS topic ARNs whose subscriptions are confirmed; when set, "
        "notifications from any other topic are refused (403).")
    sns_hosts: Tuple = setting(
        "SNS_HOSTS", "", parse_origins,
        "Hosts that SNS subscription URLs and signing certificates may name (https, "
        "port 443); an entry `scheme://host:port` allows exactly that origin. Empty: "
        "sns.<region>.amazonaws.com and sns.<region>.amazonaws.com.cn, for the region "
        "of the topic.")
    sns_verify: bool = setting(
        "SNS_VERIFY", "on", parse_switch,
        "Verify the signature of every SNS message (SignatureVersion 1 and 2); off "
        "only for servers that do not sign, such as moto.")
    require_sns: bool = setting(
        "REQUIRE_SNS", "off", parse_switch,
        "on: the HTTP routes accept signed SNS messages only and refuse (403) "
        "everything else (S3 records, Elasticsearch and StorageGRID bodies), for "
        "deployments that receive from SNS alone; needs SNS_VERIFY on and SNS_TOPICS.")
    sns_timeout_seconds: float = setting(
        "SNS_TIMEOUT_SECONDS", "5", number(float, 0.1),
        "Deadline for one request to SNS (subscription confirmation, signing "
        "certificate), from connecting to the last byte.")
    max_body_bytes: int = setting(
        "MAX_BODY_BYTES", "1048576", number(int, 1), "Largest accepted request body, in bytes.")
    max_records: int = setting(
        "MAX_RECORDS", "1000", number(int, 1),
        "Most records in one request; a request with more is refused (413) and "
        "stores nothing.")
    max_pending: int = setting(
        "MAX_PENDING", "100000", number(int, 1),
        "Most datasets waiting in the inbox; beyond it, events for datasets not yet "
        "waiting are refused (503 with Retry-After), events for waiting ones still "
        "fold in.")
    done_retention_seconds: float = setting(
        "DONE_RETENTION_SECONDS", "604800", number(float, 0),
        "The worker deletes inbox entries done for longer than this (default 7 days); "
        "dead entries stay until retried or purged.")
    debounce_seconds: float = setting(
        "DEBOUNCE_SECONDS", "2", number(float, 0),
        "Quiet time after the last event of a dataset before it is synced.")
    edit_delay_seconds: float = setting(
        "EDIT_DELAY_SECONDS", "0.05", number(float, 0),
        "Wait instead of the debounce for a README, tag or annotation event (`dtool readme "
        "write`, `tag set`, `tag delete`, `annotation set`) on a dataset whose last sync "
        "indexed it (or, with no inbox entry, that the reconciler's ledger holds indexed) "
        "and that nothing else is pending for; further such events while it waits or is "
        "synced wait this long again; any other event (a copy over it) gets the debounce.")
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
        "Last resort: a claimed entry whose owner never joined the heartbeating "
        "processes (an older plugin version) is reclaimed after this.")
    heartbeat_seconds: float = setting(
        "HEARTBEAT_SECONDS", "2", number(float, 0.1),
        "Every process that claims entries or holds the reconciler's lease beats this "
        "often; one silent for three beats is taken for dead and its claims and lease "
        "go to the others at once (the claim timeout is then only a last resort).")
    poll_seconds: float = setting(
        "POLL_SECONDS", "0.5", number(float, 0.01),
        "How often the worker looks for due entries when other processes cannot "
        "wake it (SQLite).")
    idle_seconds: float = setting(
        "IDLE_SECONDS", "10", number(float, 0.1),
        "Longest the worker sleeps when nothing is due and PostgreSQL LISTEN/NOTIFY "
        "can wake it.")
    sync_threads: int = setting(
        "SYNC_THREADS", "4", number(int, 1),
        "Syncs one worker runs at once, each in its own thread with its own S3 clients "
        "(a sync mostly waits on S3 and the databases); `flask notification resync` and "
        "`drain` run theirs the same way. One dataset is never synced by two at once: its "
        "inbox entry is claimed by one.")
    worker: bool = setting(
        "WORKER", "on", parse_switch,
        "on: run the sync worker inside each dserver process; off: run "
        "`flask notification worker` separately.")
    sqs_queue_urls: Tuple[str, ...] = setting(
        "SQS_QUEUE_URLS", "", parse_queue_urls,
        "Comma-separated Amazon SQS queue URLs to pull S3 events from (S3, SNS or "
        "EventBridge to SQS), in each dserver process or with `flask notification "
        "consume`, as DSERVER_NOTIFY_WORKER says; boto3 finds credentials, region and "
        "AWS_ENDPOINT_URL_SQS as usual.")
    reject_log_interval_seconds: float = setting(
        "REJECT_LOG_INTERVAL_SECONDS", "60", number(float, 0),
        "At most one warning per client and reason in this interval.")
    reconcile_interval_seconds: float = setting(
        "RECONCILE_INTERVAL_SECONDS", "3600", number(float, 0),
        "Time between the starts of two reconcile passes over every mapped bucket; "
        "0 turns the background reconciler off.")
    reconcile_max_rps: int = setting(
        "RECONCILE_MAX_RPS", "20", number(int, 1),
        "S3 requests per second the reconciler may spend.")
    reconcile_lease_seconds: float = setting(
        "RECONCILE_LEASE_SECONDS", "60", number(float, 1),
        "The reconciler's lease lasts this long unless renewed; another host takes "
        "over this long after the holder died.")
    reconcile_max_removals: Tuple = setting(
        "RECONCILE_MAX_REMOVALS", "10%", parse_removals,
        "Most datasets of one base URI a reconcile pass removes on its own: a share "
        f"(at least {MIN_REMOVALS} datasets) or a number. A pass that finds more gone "
        "removes none and reports it; `flask notification confirm-removals` removes "
        "them. Notified removals are not limited.")


def open_configuration_warnings(settings: Settings) -> List[str]:
    """Settings that start but leave a door open: one sentence each.

    Logged at start-up and shown by ``/webhook/status``.
    """
    warnings = []
    secret = settings.auth_tokens or settings.basic_auth
    wide = [str(net) for net in settings.allow_access_from if not net.is_loopback]
    if wide and not secret and not settings.require_sns:
        warnings.append(
            f"{PREFIX}ALLOW_ACCESS_FROM admits {', '.join(wide)} and no secret is set "
            f"({PREFIX}AUTH_TOKEN or {PREFIX}BASIC_AUTH) nor {PREFIX}REQUIRE_SNS: "
            "anyone who can send from there can queue syncs")
    everyone = [str(net) for net in settings.trusted_proxies
                if net != UNIX and net.prefixlen == 0]
    if everyone:
        warnings.append(
            f"{PREFIX}TRUSTED_PROXIES trusts {', '.join(everyone)}: every client can "
            "choose its own address with a forwarding header")
    if not settings.sns_verify:
        warnings.append(
            f"{PREFIX}SNS_VERIFY is off: SNS messages are accepted without checking "
            "their signature")
    plain = [f"{scheme}://{host}:{port}" for scheme, host, port in settings.sns_hosts
             if scheme != "https"]
    if plain:
        warnings.append(
            f"{PREFIX}SNS_HOSTS allows plain http ({', '.join(plain)}): subscription "
            "confirmations and signing certificates travel unprotected")
    return warnings


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
    settings = Settings(**{
        field: meta["parse"](env_name(meta), raw_value(meta, config, environ))
        for field, meta in declared_settings()})
    if settings.require_sns and not (settings.sns_verify and settings.sns_topics):
        # Unchecked signatures prove nothing, and AWS signs the messages of
        # any account's topics: "signed only" needs both to mean anything.
        raise ConfigError(f"{PREFIX}REQUIRE_SNS needs {PREFIX}SNS_VERIFY on and "
                          f"{PREFIX}SNS_TOPICS set: AWS signs every account's topics")
    return settings


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
