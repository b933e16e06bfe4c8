"""Who sent a request: the TCP peer, or the client a trusted proxy names.

Trust in forwarding headers follows Werkzeug's ``ProxyFix`` idea: a header
is only believed as far as the operator configured. Whatever an untrusted
peer writes into ``X-Forwarded-For`` is ignored, because anyone can write it.
From a trusted proxy, ``X-Forwarded-For``, ``Forwarded`` (RFC 7239) and
``X-Real-IP`` must name one client, unless the operator names the one
header the proxy sets: a proxy that sets one and passes the client's copy
of another through must not let the client choose. Pure logic, used by
:mod:`.guard`.
"""
import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Tuple, Union

from .config import UNIX
from .logbudget import printable

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

# Reasons are fixed texts: they end up in logs and responses, so they must
# never carry anything a client sent.
PEER_UNPARSEABLE = "peer address is not an IP address"
FORWARDED_UNPARSEABLE = "forwarding header from trusted proxy is unparseable"
UNIX_PEER = ("peer is a Unix socket, which DSERVER_NOTIFY_TRUSTED_PROXIES does not "
             "trust (add unix for a proxy on this host)")
UNIX_PEER_UNNAMED = "trusted proxy on a Unix socket names no client address"
HEADERS_DISAGREE = ("forwarding headers from trusted proxy name different clients; set "
                    "DSERVER_NOTIFY_FORWARDED_HEADER to the one header the proxy sets")

_V4_WITH_PORT = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$")
_V6_BRACKETED = re.compile(r"^\[([^\[\]]+)\](?::\d{1,5})?$")


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


# The forwarding headers, by the name DSERVER_NOTIFY_FORWARDED_HEADER uses.
HEADER_NAMES = {"x-forwarded-for": "X-Forwarded-For", "x-real-ip": "X-Real-IP",
                "forwarded": "Forwarded"}


@dataclass(frozen=True)
class Resolution:
    """The client of a request, or why there is none (``reason``, a fixed
    text) and, for the log only, what the headers said (``detail``)."""
    address: Optional[Address]
    reason: Optional[str] = None
    detail: Optional[str] = None


def is_unix_peer(remote_addr) -> bool:
    """Servers bound to a Unix socket report an empty peer (gunicorn: "")."""
    return remote_addr is None or remote_addr == "" or \
        (isinstance(remote_addr, str) and remote_addr.startswith(("unix:", "/")))


def _networks(trusted_proxies):
    return tuple(n for n in trusted_proxies if n != UNIX)


def _resolve(remote_addr, headers, trusted_proxies, forwarded_header="") -> Resolution:
    """The client: the peer, or what a trusted peer's forwarding header says.

    With ``forwarded_header`` empty, every forwarding header present is read,
    and headers that name different clients refuse the request: a proxy that
    sets ``X-Real-IP`` but passes the client's own ``X-Forwarded-For``
    through would otherwise let the client choose its address.
    """
    if is_unix_peer(remote_addr):
        if UNIX not in trusted_proxies:
            return Resolution(None, UNIX_PEER)
        peer = None
    else:
        peer = parse_address(remote_addr)
        if peer is None:
            return Resolution(None, PEER_UNPARSEABLE)
        if not _in_any(peer, _networks(trusted_proxies)):
            return Resolution(peer)  # headers from an untrusted peer mean nothing
    names = [forwarded_header] if forwarded_header else list(HEADER_NAMES)
    said = {}
    for name in names:
        value = _header(headers, HEADER_NAMES[name])
        if value is None:
            continue
        client, problem = _READERS[name](value, _networks(trusted_proxies))
        if client is None:
            return Resolution(None, problem, f"{HEADER_NAMES[name]} {printable(value)}")
        said[HEADER_NAMES[name]] = client
    if not said:
        # The trusted proxy itself is the sender; through a Unix socket it
        # has no address to check.
        return Resolution(peer) if peer is not None else Resolution(None, UNIX_PEER_UNNAMED)
    clients = {_canonical(address) for address in said.values()}
    if len(clients) > 1:
        detail = ", ".join(f"{name} names {address}" for name, address in said.items())
        return Resolution(None, HEADERS_DISAGREE, detail)
    return Resolution(next(iter(said.values())))


def ignored_local_forwarding(remote_addr, headers, trusted_proxies) -> bool:
    """True when a loopback peer that is no trusted proxy sends forwarding
    headers: most likely a proxy on this host that
    DSERVER_NOTIFY_TRUSTED_PROXIES forgot, so every request seems to come
    from this host, which the default allow-list admits."""
    peer = None if is_unix_peer(remote_addr) else parse_address(remote_addr)
    if peer is None or not _canonical(peer).is_loopback \
            or _in_any(peer, _networks(trusted_proxies)):
        return False
    return any(_header(headers, name) is not None for name in HEADER_NAMES.values())


def _canonical(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _walk(hops, trusted_proxies) -> Tuple[Optional[Address], Optional[str]]:
    """The first untrusted hop from the right, or the leftmost if all are trusted.

    Hops left of the first untrusted one were written by that untrusted
    client and carry no meaning, so they are not even parsed: junk there
    cannot lock out a real client, and cannot let a fake one in either.
    ``hops`` yields address texts, or None for a hop that names no address.
    """
    client = None
    for hop in hops:
        client = parse_address(hop) if hop is not None else None
        if client is None:
            return None, FORWARDED_UNPARSEABLE
        if not _in_any(client, trusted_proxies):
            return client, None
    return client, None


def _walk_forwarded_for(value: str, trusted_proxies):
    return _walk(reversed(value.split(",")), trusted_proxies)


def _read_real_ip(value: str, trusted_proxies):
    client = parse_address(value)
    return (client, None) if client else (None, FORWARDED_UNPARSEABLE)


def _walk_forwarded(value: str, trusted_proxies):
    """RFC 7239 ``Forwarded``: the ``for=`` of each element, from the right.

    An element without ``for``, with ``for=unknown`` or an obfuscated
    identifier names no address and, when reached, refuses the request.
    """
    elements = parse_forwarded(value)
    if elements is None:
        return None, FORWARDED_UNPARSEABLE
    return _walk((element.get("for") for element in reversed(elements)), trusted_proxies)


_READERS = {"x-forwarded-for": _walk_forwarded_for, "x-real-ip": _read_real_ip,
            "forwarded": _walk_forwarded}

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789"
                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Unquoted values as proxies really write them: also ``1.2.3.4:80`` and ``[v6]``.
_VALUE_CHARS = _TOKEN_CHARS | frozenset(":[]")


def parse_forwarded(value: str):
    """The elements of a ``Forwarded`` header as dicts (names lower-cased),
    or None when it does not follow RFC 7239's grammar."""
    elements, pairs, i, n = [], {}, 0, len(value)
    while True:
        while i < n and value[i] in " \t":
            i += 1
        if i < n and value[i] not in ",;":  # a pair: token "=" value
            start = i
            while i < n and value[i] in _TOKEN_CHARS:
                i += 1
            name = value[start:i].lower()
            if not name or i >= n or value[i] != "=":
                return None
            i += 1
            if i < n and value[i] == '"':
                i, text = _quoted(value, i)
                if text is None:
                    return None
            else:
                start = i
                while i < n and value[i] in _VALUE_CHARS:
                    i += 1
                text = value[start:i]
                if not text:
                    return None
            if name in pairs:
                return None
            pairs[name] = text
            while i < n and value[i] in " \t":
                i += 1
        if i >= n or value[i] == ",":
            elements.append(pairs)
            pairs = {}
            if i >= n:
                return elements
        elif value[i] != ";":
            return None
        i += 1


def _quoted(value, i):
    """(index after, text) of the quoted-string starting at ``value[i]``."""
    out, i = [], i + 1
    while i < len(value):
        char = value[i]
        if char == '"':
            return i + 1, "".join(out)
        if char == "\\":
            i += 1
            if i >= len(value):
                break
            char = value[i]
        out.append(char)
        i += 1
    return i, None


def client_address(remote_addr: Optional[str], headers: Mapping[str, str],
                   trusted_proxies: Tuple[Network, ...],
                   forwarded_header: str = "") -> Optional[Address]:
    """The sender of a request; None when it cannot be determined (= refuse).

    The TCP peer, unless that peer is a trusted proxy: only then are the
    forwarding headers read (``X-Forwarded-For`` and ``Forwarded`` walked
    from the right past trusted hops, ``X-Real-IP``); see :func:`_resolve`.
    """
    return _resolve(remote_addr, headers, trusted_proxies, forwarded_header).address


def address_allowed(address: Optional[Address], networks: Iterable[Network]) -> bool:
    """Is this resolved address inside one of the allowed networks?"""
    return address is not None and _in_any(address, networks)
