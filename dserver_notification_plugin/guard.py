"""Who may notify: resolved client address, allowed networks, shared secret.

The notification routes change what every dserver user sees and carry no
user login, so this module decides, for each request, whether it comes from
a trusted sender. It is pure logic: everything but :func:`guard_request`
works on plain values and is tested without a server.

Who the client is, behind trusted proxies, is :mod:`.forwarding`'s
question. Browsers are refused outright: storage systems never send
``Origin`` or ``Sec-Fetch-Site``.
"""
import base64
import binascii
import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple, Union

from .forwarding import (
    _header, _resolve, address_allowed, ignored_local_forwarding, is_unix_peer,
)
from .logbudget import RejectionLog, printable  # noqa: F401 (RejectionLog: public)

logger = logging.getLogger(__name__)

REALM = "dserver-notification"

# Reasons are fixed texts: they end up in logs and responses, so they must
# never carry anything a client sent.
BROWSER = "browser request (Origin or Sec-Fetch-Site header) refused"
NOT_ALLOWED = "client address is not in the allowed networks"
SECRET_MISSING = "no credentials"
SECRET_INVALID = "invalid credentials"

_AUTHORIZATION = re.compile(r"^([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*) ([^\s]+)$")


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
    detail: Optional[str] = None  # for the log only: what the headers said


def from_browser(headers: Mapping[str, str]) -> bool:
    """Does a browser send this request on behalf of some web page?

    Browsers add ``Origin`` to cross-origin requests (and to same-origin
    POSTs), and ``Sec-Fetch-Site`` to every request; storage systems send
    neither. A page must not be able to post notifications through a
    browser that runs on an allowed host (dservercore's CORS reflects any
    origin, and a text/plain POST needs no preflight).
    """
    if _header(headers, "Origin") is not None:
        return True
    site = _header(headers, "Sec-Fetch-Site")
    return site is not None and site.strip().lower() in ("cross-site", "same-site")


def decide(remote_addr: Optional[str], headers: Mapping[str, str], settings) -> Decision:
    """Browsers first, then the network (403), then the shared secret (401)."""
    found = _resolve(remote_addr, headers, settings.trusted_proxies,
                     getattr(settings, "forwarded_header", ""))
    address = found.address
    client = str(address) if address is not None else \
        ("unix socket" if is_unix_peer(remote_addr) else printable(remote_addr))
    if from_browser(headers):
        return Decision(False, 403, BROWSER, client)
    if address is None:
        return Decision(False, 403, found.reason, client, detail=found.detail)
    if not address_allowed(address, settings.allow_access_from):
        return Decision(False, 403, NOT_ALLOWED, client)
    authorization = _header(headers, "Authorization")
    if not check_secret(authorization, settings.auth_tokens, settings.basic_auth):
        reason = SECRET_MISSING if authorization is None else SECRET_INVALID
        return Decision(False, 401, reason, client, www_authenticate(settings))
    return Decision(True, None, "allowed", client)


# --- Flask ------------------------------------------------------------------

UNTRUSTED_LOCAL_PROXY = (
    "forwarding headers arrive from a loopback peer that DSERVER_NOTIFY_TRUSTED_PROXIES "
    "does not name: if a reverse proxy runs on this host, every client it forwards "
    "passes as this host; list the proxy in DSERVER_NOTIFY_TRUSTED_PROXIES")


def guard_request(settings, rejection_log: Optional[RejectionLog], warn_once=None):
    """Run the guard on the current Flask request.

    None when the request may proceed; otherwise the refusal to return, in
    the plugin's error envelope, with ``WWW-Authenticate`` on 401.
    ``warn_once(text)`` is told about a configuration the request reveals.
    """
    from flask import g, request

    from .responses import error_response

    if warn_once is not None and ignored_local_forwarding(
            request.remote_addr, request.headers, settings.trusted_proxies):
        warn_once(UNTRUSTED_LOCAL_PROXY)
    decision = decide(request.remote_addr, request.headers, settings)
    g.notification_client = decision.client  # for later refusals of the same request
    if decision.allowed:
        return None
    if rejection_log is not None:
        rejection_log.log(decision.client, decision.reason, decision.detail)
    headers = {"WWW-Authenticate": decision.www_authenticate} \
        if decision.www_authenticate else None
    return error_response(decision.status, decision.reason, headers)
