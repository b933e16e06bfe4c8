"""A stand-in for Amazon SNS on loopback: it signs, serves certificates,
confirms subscriptions, and misbehaves on request.

moto plays SNS for deliveries, but signs with no real key; this server is
for what moto cannot show: real signatures, and an SNS host that redirects,
floods or trickles.

The tests of signature verification sign real SNS envelopes with their own
RSA key and a self-signed certificate, which this server serves over plain
HTTP on 127.0.0.1; the plugin is told to trust exactly that origin with
``DSERVER_NOTIFY_SNS_HOSTS=http://127.0.0.1:<port>``. No pytest here.
"""
import base64
import datetime
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

CERT_PATH = "/SimpleNotificationService-test.pem"
OTHER_CERT_PATH = "/SimpleNotificationService-other.pem"
TOPIC = "arn:aws:sns:eu-central-1:123456789012:dserver-events"


def make_certificate(days=30):
    """(private key, PEM certificate) of a fresh self-signed RSA certificate."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp",
                                 "Token", "TopicArn", "Type"),
}


def canonical(envelope):
    """AWS's string to sign, written out independently of the plugin's."""
    keys = SIGNED[envelope["Type"]]
    return "".join(f"{k}\n{envelope[k]}\n" for k in keys if k in envelope).encode()


def sign(envelope, key, cert_url, version="1"):
    """Sign ``envelope`` in place as SNS does; return it."""
    envelope.update(SignatureVersion=version, SigningCertURL=cert_url)
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    envelope["Signature"] = base64.b64encode(
        key.sign(canonical(envelope), padding.PKCS1v15(), digest)).decode()
    return envelope


def notification(message, topic=TOPIC, subject=None):
    envelope = {"Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": topic,
                "Message": message if isinstance(message, str) else json.dumps(message),
                "Timestamp": "2026-11-28T12:00:00.000Z"}
    if subject is not None:
        envelope["Subject"] = subject
    return envelope


class FakeSns:
    """Certificates at CERT_PATH (the signing one) and OTHER_CERT_PATH (a
    stranger's), ConfirmSubscription at ``/``; ``mode`` makes ``/`` answer
    ok, redirect, slow (a byte every 0.3 s), huge or error."""

    def __init__(self):
        self.key, self.pem = make_certificate()
        self.other_key, self.other_pem = make_certificate()
        self.mode = "ok"
        self.hits = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def origin(self):
        return f"http://127.0.0.1:{self.server.server_port}"

    @property
    def cert_url(self):
        return self.origin + CERT_PATH

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def subscribe_url(self, topic=TOPIC, **extra):
        query = {"Action": "ConfirmSubscription", "TopicArn": topic, "Token": "tok3n", **extra}
        return f"{self.origin}/?{urlencode(query)}"

    def confirmation(self, topic=TOPIC, url=None, version="1"):
        envelope = {"Type": "SubscriptionConfirmation", "MessageId": str(uuid.uuid4()),
                    "Token": "tok3n", "TopicArn": topic,
                    "Message": f"You have chosen to subscribe to the topic {topic}.",
                    "SubscribeURL": url or self.subscribe_url(topic),
                    "Timestamp": "2026-11-28T12:00:00.000Z"}
        return sign(envelope, self.key, self.cert_url, version)

    def signed(self, message, topic=TOPIC, version="1", subject=None):
        return sign(notification(message, topic, subject), self.key, self.cert_url, version)

    def _handler(self):
        sns = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                sns.hits.append(self.path)
                path = urlsplit(self.path).path
                if path in (CERT_PATH, OTHER_CERT_PATH):
                    self._send(200, sns.pem if path == CERT_PATH else sns.other_pem)
                elif path == "/" and parse_qs(urlsplit(self.path).query).get("Action"):
                    self._confirm()
                else:
                    self._send(404, b"not found")

            def _confirm(self):
                mode = sns.mode
                if mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://127.0.0.1:9/")
                    self.end_headers()
                elif mode == "error":
                    self._send(500, b"no")
                elif mode == "huge":
                    self.send_response(200)
                    self.end_headers()
                    try:
                        for _ in range(200):
                            self.wfile.write(b"x" * 65536)
                    except OSError:
                        pass
                elif mode == "slow":
                    self.send_response(200)
                    self.end_headers()
                    try:
                        for _ in range(200):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(0.3)
                    except OSError:
                        pass
                else:
                    self._send(200, b"<ConfirmSubscriptionResponse/>")

            def _send(self, status, body):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler
