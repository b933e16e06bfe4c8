"""Trusting Amazon SNS: which URLs may be fetched, how, and message signatures.

An SNS envelope names two URLs that the plugin fetches: the
``SubscribeURL`` of a SubscriptionConfirmation, and the ``SigningCertURL``
of every message. Both come from the request, so both are checked against
a policy before anything is fetched (:func:`subscribe_target`,
:func:`certificate_target`): https on port 443 at an SNS host of the
topic's region (``DSERVER_NOTIFY_SNS_HOSTS``), and for the SubscribeURL a
query that says ``Action=ConfirmSubscription`` for the same topic. What is
fetched is rebuilt from the checked parts, never the text as sent, so no
difference between two URL parsers can smuggle another host in.

:class:`Fetcher` then makes one GET with no redirects, no retries, no
proxies, no decompression, a bounded body and a deadline for the whole
exchange (a watchdog closes the socket when it passes; socket timeouts
alone are per read, and a server sending a byte now and then would hold
the worker for ever).

:func:`string_to_sign` and :meth:`SnsTrust.verify` check signatures as AWS
documents them (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA).
Nothing here needs Flask: the SQS intake uses the same checks.
"""
import base64
import binascii
import datetime
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Tuple
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from .sns_certificates import (  # noqa: F401 (CertificateCache: public)
    MISSING_CERT_CACHE_SIZE, MISSING_CERT_SECONDS, CertificateCache, FetchLimit,
)

# Envelope fields that SNS always sends as strings and that the checks
# read; anything else (a list, an object, a number) is refused as it is.
STRING_FIELDS = ("SignatureVersion", "Signature", "SigningCertURL", "TopicArn", "Type")

Origin = Tuple[str, str, int]  # (scheme, host, port), as config.parse_origins gives

# Region names as AWS writes them (us-east-1, cn-north-1, us-gov-west-1).
_REGION = re.compile(r"^[a-z]{2}(-[a-z0-9]+){1,3}$")
_PRINTABLE_URL = re.compile(r"^[\x21-\x7e]+$")
_CERT_PATH = re.compile(r"^(/[A-Za-z0-9_.-]+)+\.pem$")

SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp",
                                 "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp",
                                "Token", "TopicArn", "Type"),
}
OPTIONAL_KEYS = {"Subject"}

MAX_ANSWER_BYTES = 64 * 1024
# Envelope fields that SNS always sends as strings and that the checks
# read; anything else (a list, an object, a number) is refused as is.
STRING_FIELDS = ("SignatureVersion", "Signature", "SigningCertURL", "TopicArn", "Type")


class SnsRefusal(Exception):
    """An SNS message or URL the plugin will not act on.

    ``status`` is what to answer (400 malformed, 403 refused, 502 SNS could
    not be reached); ``message`` is a fixed text, safe to send and log;
    ``detail`` says what the request held, for the log only.
    """

    def __init__(self, status, message, detail=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail

    @property
    def headers(self):
        """503 means "not now": say when to come back."""
        return {"Retry-After": "60"} if self.status == 503 else None


class FetchError(Exception):
    """A GET that did not give a complete 200 answer in time; ``status`` is
    the HTTP status when the server answered with another one."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


# --- URL policy ---------------------------------------------------------------

def arn_region(arn) -> Optional[str]:
    """The region of ``arn:<partition>:sns:<region>:<account>:<name>``, or None."""
    parts = arn.split(":") if isinstance(arn, str) else []
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sns":
        return None
    return parts[3] if _REGION.fullmatch(parts[3]) else None


def allowed_origins(configured, topic_arn) -> Tuple[Origin, ...]:
    """``DSERVER_NOTIFY_SNS_HOSTS`` when set, else the SNS hosts of the
    topic's region (AWS and AWS China)."""
    if configured:
        return tuple(configured)
    region = arn_region(topic_arn)
    if region is None:
        return ()
    return (("https", f"sns.{region}.amazonaws.com", 443),
            ("https", f"sns.{region}.amazonaws.com.cn", 443))


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect and what to ask for."""
    scheme: str
    host: str
    port: int
    path_and_query: str

    def __str__(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path_and_query}"


def _split(url, what, origins):
    """(parts, origin) of a URL at an allowed origin, or SnsRefusal."""
    if not isinstance(url, str) or not _PRINTABLE_URL.fullmatch(url) or "\\" in url:
        raise SnsRefusal(400, f"{what} is not a URL")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise SnsRefusal(400, f"{what} is not a URL")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        raise SnsRefusal(400, f"{what} is not an http(s) URL")
    if "@" in parts.netloc or parts.fragment:
        raise SnsRefusal(403, f"{what} is not at an allowed SNS host")
    origin = (scheme, host, port or (443 if scheme == "https" else 80))
    if origin not in origins:
        raise SnsRefusal(403, f"{what} is not at an allowed SNS host "
                              "(see DSERVER_NOTIFY_SNS_HOSTS)")
    return parts, origin


def subscribe_target(url, topic_arn, origins) -> Target:
    """The SubscribeURL, if it confirms a subscription to ``topic_arn`` at SNS."""
    parts, origin = _split(url, "SubscribeURL", origins)
    if parts.path not in ("", "/"):
        raise SnsRefusal(403, "SubscribeURL is not an SNS ConfirmSubscription URL")
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True,
                          errors="strict", max_num_fields=16)
    except (ValueError, UnicodeError):
        raise SnsRefusal(400, "SubscribeURL has a malformed query")
    names = [name for name, _ in pairs]
    values = dict(pairs)
    if len(set(names)) != len(names) or values.get("Action") != "ConfirmSubscription" \
            or values.get("TopicArn") != topic_arn or not values.get("Token"):
        raise SnsRefusal(403, "SubscribeURL is not an SNS ConfirmSubscription URL for "
                              "this topic")
    return Target(*origin, "/?" + urlencode(pairs, quote_via=quote, safe=""))


def certificate_target(url, origins) -> Target:
    """The SigningCertURL, if it names a PEM file at an allowed SNS host."""
    parts, origin = _split(url, "SigningCertURL", origins)
    if parts.query or not _CERT_PATH.fullmatch(parts.path) or "/../" in parts.path + "/" \
            or "/./" in parts.path:
        raise SnsRefusal(403, "SigningCertURL does not name a certificate")
    return Target(*origin, parts.path)


# --- fetching -------------------------------------------------------------------

class Fetcher:
    """One bounded GET per call; see the module docstring."""

    def __init__(self, timeout: float, max_bytes: int = MAX_ANSWER_BYTES,
                 ssl_context=None):
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.ssl_context = ssl_context

    def get(self, target: Target) -> bytes:
        """The body of a 200 answer; FetchError for anything else."""
        from urllib3.connection import HTTPConnection, HTTPSConnection
        if target.scheme == "https":
            # certificate and host name checked against the system's CAs
            conn = HTTPSConnection(target.host, target.port, timeout=self.timeout,
                                   ssl_context=self.ssl_context)
        else:
            conn = HTTPConnection(target.host, target.port, timeout=self.timeout)
        expired = threading.Event()
        connected = []  # http.client forgets its socket once a response will close it

        def watchdog():
            expired.set()
            for sock in connected:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(self.timeout, watchdog)
        timer.daemon = True
        timer.start()
        try:
            conn.connect()
            connected.append(conn.sock)
            if expired.is_set():
                raise FetchError("deadline")
            body = self._exchange(conn, target, expired)
            if expired.is_set():  # the socket was shut: what came is not all
                raise FetchError("deadline")
            return body
        except FetchError as exc:
            if expired.is_set() and exc.status is None:
                raise FetchError(f"no complete answer within {self.timeout:g} s")
            raise
        except Exception as exc:  # socket, TLS, HTTP parsing: all one failure
            if expired.is_set():
                raise FetchError(f"no complete answer within {self.timeout:g} s")
            raise FetchError(_describe(exc))
        finally:
            timer.cancel()
            conn.close()

    def _exchange(self, conn, target, expired):
        import urllib3
        # urllib3 2 reads the whole body in getresponse() unless told not to;
        # urllib3 1.26 (botocore's pin on Python < 3.10) returns http.client's
        # response, which never does.
        streaming = {} if urllib3.__version__.startswith("1.") else \
            {"preload_content": False, "decode_content": False}
        conn.request("GET", target.path_and_query,
                     headers={"Accept-Encoding": "identity", "Accept": "*/*",
                              "User-Agent": "dserver-notification-plugin"}, **streaming)
        response = conn.getresponse()
        if response.status != 200:
            raise FetchError(f"answered HTTP {response.status}"
                             + (" (redirects are not followed)"
                                if 300 <= response.status < 400 else ""),
                             status=response.status)
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            raise FetchError(f"answer larger than {self.max_bytes} bytes")
        body = bytearray()
        while not expired.is_set():
            chunk = response.read(8192)
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > self.max_bytes:
                raise FetchError(f"answer larger than {self.max_bytes} bytes")
        raise FetchError("deadline")


def _describe(exc):
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:200] + "..."


# --- signatures ----------------------------------------------------------------------

def string_to_sign(envelope: Mapping) -> bytes:
    """What SNS signed: ``Key\\nValue\\n`` for each signed key, in order."""
    kind = envelope.get("Type")
    keys = SIGNED_KEYS.get(kind)
    if keys is None:
        raise SnsRefusal(403, "SNS message type cannot be verified")
    text = []
    for key in keys:
        value = envelope.get(key)
        if value is None and key in OPTIONAL_KEYS:
            continue
        if not isinstance(value, str):
            raise SnsRefusal(403, "SNS message lacks a signed field", key)
        text.append(f"{key}\n{value}\n")
    return "".join(text).encode("utf-8", "surrogatepass")


def _hash_for(version):
    from cryptography.hazmat.primitives import hashes
    if not isinstance(version, str):  # a list or object is no version (and unhashable)
        return None
    return {"1": hashes.SHA1, "2": hashes.SHA256}.get(version)


def public_key_of(pem: bytes, now: float):
    """(RSA public key, not-after as a timestamp) of a PEM certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.exceptions import UnsupportedAlgorithm
    try:
        cert = x509.load_pem_x509_certificate(pem)
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise SnsRefusal(502, "SNS signing certificate is not a PEM certificate")
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnsRefusal(403, "SNS signing certificate has no RSA key")
    moment = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
        raise SnsRefusal(403, "SNS signing certificate is not valid now")
    return key, cert.not_valid_after_utc.timestamp()


# --- the checks, for routes and queues alike ---------------------------------------------

class SnsTrust:
    """Topic, signature and subscription checks under one extension's settings."""

    def __init__(self, settings, fetcher: Optional[Fetcher] = None,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self.fetcher = fetcher or Fetcher(settings.sns_timeout_seconds)
        self.clock = clock
        self.certificates = CertificateCache(clock=clock)
        # URLs that SNS said hold no certificate, and how often we may ask at all
        self.missing = CertificateCache(MISSING_CERT_CACHE_SIZE, MISSING_CERT_SECONDS, clock)
        self.fetch_limit = FetchLimit()

    def check(self, envelope: Mapping) -> None:
        """Refuse (SnsRefusal) an envelope from an unlisted topic or with a
        signature that does not verify; return quietly otherwise."""
        for name in STRING_FIELDS:
            if envelope.get(name) is not None and not isinstance(envelope[name], str):
                raise SnsRefusal(400, f"SNS envelope field {name} is not a string")
        topic = envelope.get("TopicArn")
        listed = self.settings.sns_topics
        if envelope.get("Type") == "SubscriptionConfirmation" or listed:
            if topic not in listed:
                raise SnsRefusal(403, "SNS topic is not listed in DSERVER_NOTIFY_SNS_TOPICS",
                                 f"TopicArn {topic!r}")
        if self.settings.sns_verify:
            self.verify(envelope)

    def verify(self, envelope: Mapping) -> None:
        """Check the envelope's signature with its signing certificate."""
        digest = _hash_for(envelope.get("SignatureVersion"))
        if digest is None:
            raise SnsRefusal(403, "SNS SignatureVersion is not 1 or 2")
        try:
            signature = base64.b64decode(envelope.get("Signature") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise SnsRefusal(403, "SNS Signature is not base64")
        data = string_to_sign(envelope)
        key = self._public_key(envelope.get("SigningCertURL"), envelope.get("TopicArn"))
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric import padding
        try:
            key.verify(signature, data, padding.PKCS1v15(), digest())
        except (InvalidSignature, ValueError):  # ValueError: a signature of the wrong size
            raise SnsRefusal(403, "SNS message signature does not verify")

    def _public_key(self, url, topic_arn):
        origins = allowed_origins(self.settings.sns_hosts, topic_arn)
        target = certificate_target(url, origins)
        key = self.certificates.get(str(target))
        if key is not None:
            return key
        missing = self.missing.get(str(target))
        if missing is not None:
            raise SnsRefusal(403, "SNS has no such signing certificate",
                             f"{target}: {missing} (remembered)")
        pem = self._fetch_certificate(target)
        key, not_after = public_key_of(pem, self.clock())
        self.certificates.put(str(target), key, not_after)
        return key

    def _fetch_certificate(self, target):
        """The PEM at ``target``, within the fetch limit; a 4xx answer is
        remembered, so asking again costs no request."""
        if not self.fetch_limit.take():
            raise SnsRefusal(503, "too many SNS signing certificates to fetch this "
                                  "minute; retry later", str(target))
        try:
            return self.fetcher.get(target)
        except FetchError as exc:
            if exc.status is not None and 400 <= exc.status < 500:
                self.missing.put(str(target), str(exc))
                raise SnsRefusal(403, "SNS has no such signing certificate",
                                 f"{target}: {exc}")
            raise SnsRefusal(502, "could not fetch the SNS signing certificate",
                             f"{target}: {exc}")

    def confirm(self, confirmation) -> Target:
        """Confirm a subscription by fetching its (checked) SubscribeURL."""
        origins = allowed_origins(self.settings.sns_hosts, confirmation.topic_arn)
        target = subscribe_target(confirmation.subscribe_url, confirmation.topic_arn, origins)
        try:
            self.fetcher.get(target)
        except FetchError as exc:
            raise SnsRefusal(502, "could not confirm the subscription at SNS",
                             f"{target.scheme}://{target.host}:{target.port}: {exc}")
        return target
