"""Who may notify: resolved client address, allowed networks, shared secret.

The notification routes change what every dserver user sees and carry no
user login, so this module decides, for each request, whether it comes from
a trusted sender. It is pure logic: everything but :func:`guard_request`
works on plain values and is tested without a server.

Trust in forwarding headers follows Werkzeug's ``ProxyFix`` idea: a header
is only believed as far as the operator configured. Whatever an untrusted
peer writes into ``X-Forwarded-For`` is ignored, because anyone can write it.
"""
import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional, Tuple, Union

logger = logging.getLogger(__name__)

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

REALM = "dserver-notification"

# Reasons are fixed texts: they end up in logs and responses, so they must
# never carry anything a client sent.
PEER_UNPARSEABLE = "peer address is not an IP address"
FORWARDED_UNPARSEABLE = "forwarding header from trusted proxy is unparseable"
NOT_ALLOWED = "client address is not in the allowed networks"
SECRET_MISSING = "no credentials"
SECRET_INVALID = "invalid credentials"

_V4_WITH_PORT = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$")
_V6_BRACKETED = re.compile(r"^\[([^\[\]]+)\](?::\d{1,5})?$")
_AUTHORIZATION = re.compile(r"^([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*) ([^\s]+)$")


# --- client address ---------------------------------------------------------

def parse_address(text: Optional[str]) -> Optional[Address]:
    """One address as proxies write it, or None when it is not one.

    Accepted: a bare IPv4 or IPv6 address, ``v4:port``, ``[v6]`` and
    ``[v6]:port`` (the forms some proxies append). An unbracketed IPv6
    address with a port is ambiguous and therefore refused. A zone id
    (``fe80::1%eth0``) is dropped: networks are configured without one.
    """
    if not isinstance(text, str):
        return None
    text = text.strip()
    match = _V4_WITH_PORT.match(text) or _V6_BRACKETED.match(text)
    if match:
        text = match.group(1)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        address = ipaddress.IPv6Address(int(address))
    return address


def _in_any(address: Address, networks: Iterable[Network]) -> bool:
    """Membership that also matches IPv4-mapped IPv6 against IPv4 networks."""
    candidates = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        candidates.append(address.ipv4_mapped)
    return any(candidate in network
               for candidate in candidates
               for network in networks
               if candidate.version == network.version)


def _header(headers: Mapping[str, str], name: str) -> Optional[str]:
    """A header's value, case-insensitively; repeated headers joined by commas.

    Servers join repeated ``X-Forwarded-For`` lines with commas; doing the
    same here keeps the rightmost (proxy-written) hop at the end.
    """
    getlist = getattr(headers, "getlist", None)
    if getlist is not None:  # werkzeug Headers / EnvironHeaders
        values = [v for v in getlist(name) if isinstance(v, str)]
    else:
        values = [v for k, v in headers.items()
                  if isinstance(k, str) and k.lower() == name.lower() and isinstance(v, str)]
    return ",".join(values) if values else None


def _resolve(remote_addr, headers, trusted_proxies) -> Tuple[Optional[Address], Optional[str]]:
    """(client address, None) or (None, reason it could not be resolved)."""
    peer = parse_address(remote_addr)
    if peer is None:
        return None, PEER_UNPARSEABLE
    if not _in_any(peer, trusted_proxies):
        return peer, None  # headers from an untrusted peer mean nothing
    forwarded_for = _header(headers, "X-Forwarded-For")
    if forwarded_for is not None:
        return _walk_forwarded_for(forwarded_for, trusted_proxies)
    real_ip = _header(headers, "X-Real-IP")
    if real_ip is not None:
        client = parse_address(real_ip)
        return (client, None) if client else (None, FORWARDED_UNPARSEABLE)
    return peer, None  # the trusted proxy itself is the sender


def _walk_forwarded_for(value: str, trusted_proxies) -> Tuple[Optional[Address], Optional[str]]:
    """The first untrusted hop from the right, or the leftmost if all are trusted.

    Hops left of the first untrusted one were written by that untrusted
    client and carry no meaning, so they are not even parsed: junk there
    cannot lock out a real client, and cannot let a fake one in either.
    """
    client = None
    for hop in reversed(value.split(",")):
        client = parse_address(hop)
        if client is None:
            return None, FORWARDED_UNPARSEABLE
        if not _in_any(client, trusted_proxies):
            return client, None
    return client, None


def client_address(remote_addr: Optional[str], headers: Mapping[str, str],
                   trusted_proxies: Tuple[Network, ...]) -> Optional[Address]:
    """The sender of a request; None when it cannot be determined (= refuse).

    The TCP peer, unless that peer is a trusted proxy: only then are
    ``X-Forwarded-For`` (walked from the right past trusted hops) or, failing
    that, ``X-Real-IP`` read.
    """
    return _resolve(remote_addr, headers, trusted_proxies)[0]


def address_allowed(address: Optional[Address], networks: Iterable[Network]) -> bool:
    """Is this resolved address inside one of the allowed networks?"""
    return address is not None and _in_any(address, networks)


# --- shared secret ----------------------------------------------------------

def _digest(value: Union[str, bytes]) -> bytes:
    """Hash first, so that comparisons take equal time whatever the lengths."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogatepass")
    return hashlib.sha256(value).digest()


def _matches_any(offered: Union[str, bytes], configured: Tuple[str, ...]) -> bool:
    """Compare against every configured value, never stopping at a match,
    so timing tells neither which value matched nor how many there are."""
    offered_digest = _digest(offered)
    matched = False
    for value in configured:
        matched |= hmac.compare_digest(offered_digest, _digest(value))
    return matched


def _basic_credentials(encoded: str) -> Optional[str]:
    """``user:password`` from a Basic credential, or None if malformed."""
    try:
        raw = base64.b64decode(encoded.encode("ascii"), validate=True)
        text = raw.decode("utf-8")
    except (ValueError, binascii.Error, UnicodeError):
        return None
    return text if ":" in text else None


def check_secret(authorization_header: Optional[str], tokens: Tuple[str, ...],
                 basic_pairs: Tuple[str, ...]) -> bool:
    """Does the Authorization header carry a configured secret?

    ``Bearer <token>`` (MinIO's webhook ``auth_token``) or ``Basic`` with a
    configured ``user:password`` (Elasticsearch target, StorageGRID). With no
    secret configured every request passes. Malformed headers are False.
    """
    if not tokens and not basic_pairs:
        return True
    if not isinstance(authorization_header, str):
        return False
    match = _AUTHORIZATION.match(authorization_header)
    if not match:
        return False
    scheme, credentials = match.group(1).lower(), match.group(2)
    if scheme == "bearer" and tokens:
        return _matches_any(credentials, tokens)
    if scheme == "basic" and basic_pairs:
        pair = _basic_credentials(credentials)
        return pair is not None and _matches_any(pair, basic_pairs)
    return False


def www_authenticate(settings) -> Optional[str]:
    """The challenge for a 401, naming only the schemes that are configured."""
    challenges = []
    if settings.auth_tokens:
        challenges.append(f'Bearer realm="{REALM}"')
    if settings.basic_auth:
        challenges.append(f'Basic realm="{REALM}"')
    return ", ".join(challenges) or None


# --- the decision -----------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """Outcome of the guard for one request."""
    allowed: bool
    status: Optional[int]  # 403 outside the networks, 401 without a valid secret
    reason: str
    client: str  # resolved address, or the raw peer, safe to log
    www_authenticate: Optional[str] = None


def printable(text, limit: int = 64) -> str:
    """A client-supplied value made safe for one log line: no control
    characters (no forged log lines), bounded length."""
    text = "" if text is None else str(text)
    shown = text[:limit].encode("unicode_escape").decode("ascii")
    return shown + ("..." if len(text) > limit else "")


def decide(remote_addr: Optional[str], headers: Mapping[str, str], settings) -> Decision:
    """Network first (403), then the shared secret (401)."""
    address, problem = _resolve(remote_addr, headers, settings.trusted_proxies)
    client = str(address) if address is not None else printable(remote_addr)
    if address is None:
        return Decision(False, 403, problem, client)
    if not address_allowed(address, settings.allow_access_from):
        return Decision(False, 403, NOT_ALLOWED, client)
    authorization = _header(headers, "Authorization")
    if not check_secret(authorization, settings.auth_tokens, settings.basic_auth):
        reason = SECRET_MISSING if authorization is None else SECRET_INVALID
        return Decision(False, 401, reason, client, www_authenticate(settings))
    return Decision(True, None, "allowed", client)


# --- logging refusals -------------------------------------------------------

class RejectionLog:
    """Warn about refused requests without letting a flood fill the disk.

    At most one warning per (client, reason) per interval, and at most
    ``max_per_interval`` warnings in all per interval (an attacker with an
    IPv6 /64 has endless distinct addresses). Suppressed refusals are
    counted and reported with the next warning. Memory is bounded by
    ``max_keys``; the least recently seen keys are forgotten first.
    """

    def __init__(self, interval_seconds: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 1024, max_per_interval: int = 100,
                 log: logging.Logger = logger):
        self.interval = interval_seconds
        self.clock = clock
        self.max_keys = max_keys
        self.max_per_interval = max_per_interval
        self.logger = log
        self._lock = threading.Lock()
        self._last = OrderedDict()  # (client, reason) -> [last warned at, suppressed]
        self._window_start = None
        self._window_count = 0
        self._overflow = 0  # suppressed by the global budget, not yet reported

    def log(self, client: str, reason: str) -> bool:
        """Record one refusal; True if a warning was written for it."""
        client, reason = printable(client), printable(reason, 200)
        with self._lock:
            counts = self._admit((client, reason), self.clock())
        if counts is None:
            return False
        similar, others = counts
        message, args = "refused notification from %s: %s", [client, reason]
        if similar:
            message += " (%d similar refusals suppressed)"
            args.append(similar)
        if others:
            message += " (%d other refusals suppressed by the overall limit)"
            args.append(others)
        self.logger.warning(message, *args)
        return True

    def _admit(self, key, now) -> Optional[Tuple[int, int]]:
        """None to stay silent, else the refusals not yet reported:
        (same client and reason, any other)."""
        entry = self._last.get(key)
        if entry is not None:
            self._last.move_to_end(key)
            if now - entry[0] < self.interval:
                entry[1] += 1
                return None
        if not self._within_budget(now):
            if entry is not None:
                entry[1] += 1
            else:
                self._overflow += 1
            return None
        counts = (entry[1] if entry else 0), self._overflow
        self._overflow = 0
        self._last[key] = [now, 0]
        self._last.move_to_end(key)
        while len(self._last) > self.max_keys:
            _, (_, unreported) = self._last.popitem(last=False)
            self._overflow += unreported  # forgotten key: still counted
        return counts

    def _within_budget(self, now) -> bool:
        if self._window_start is None or now - self._window_start >= self.interval:
            self._window_start, self._window_count = now, 0
        if self._window_count >= self.max_per_interval:
            return False
        self._window_count += 1
        return True


# --- Flask ------------------------------------------------------------------

def guard_request(settings, rejection_log: Optional[RejectionLog]):
    """Run the guard on the current Flask request.

    None when the request may proceed; otherwise the refusal to return, in
    the plugin's error envelope, with ``WWW-Authenticate`` on 401.
    """
    from flask import request

    from .responses import error_response

    decision = decide(request.remote_addr, request.headers, settings)
    if decision.allowed:
        return None
    if rejection_log is not None:
        rejection_log.log(decision.client, decision.reason)
    headers = {"WWW-Authenticate": decision.www_authenticate} \
        if decision.www_authenticate else None
    return error_response(decision.status, decision.reason, headers)
