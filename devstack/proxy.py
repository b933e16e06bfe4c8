"""An S3 proxy that can hold one chosen request: races made deterministic.

A sync reads a dataset with a dozen requests; what happens to the bucket
between two of them decides whether the index ends up equal to S3. Sleeping
and hoping does not make such a race repeatable. :class:`S3Proxy` sits in
front of a real S3 server (moto), forwards every request as it came and
sends back the answer as it went, and :meth:`S3Proxy.hold` stops one
chosen request (the Nth whose method and URL match) until the test has
changed the bucket behind it and calls :meth:`Hold.release`:

- ``after=False``: held before it is forwarded, so S3 answers with what the
  bucket holds after the change;
- ``after=True``: forwarded at once, its answer held, so the reader gets
  what the bucket held before the change, but only after it.

Point dserver's dtool-s3 endpoint of a bucket at :attr:`S3Proxy.endpoint`
(``devstack.datasets.dtool_s3_env``) and change the bucket with a client of
the real server, which the proxy does not see. moto does not check request
signatures, so forwarding a request signed for the proxy's address works.
"""
import http.client
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devstack.ports import HOST

#: How long a held request waits for its release before it goes on anyway,
#: so that a test that fails before releasing does not hang its reader.
HOLD_LIMIT_SECONDS = 60.0
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection"}


class Hold:
    """One request to stop: the ``nth`` whose method and URL match."""

    def __init__(self, method, pattern, nth=1, after=False):
        self.method = method.upper()
        self.pattern = re.compile(pattern)
        self.nth = nth
        self.after = after
        self.matched = 0
        self.request = None  # (method, decoded URL) of the held request
        self._arrived = threading.Event()
        self._released = threading.Event()

    def matches(self, method, url):
        """Whether this request is the one to stop (counts the matches)."""
        if method != self.method or not self.pattern.search(url):
            return False
        self.matched += 1
        if self.matched != self.nth:
            return False
        self.request = (method, url)
        return True

    def stop_here(self):
        """In the proxy's thread: say the request is held, wait for the test."""
        self._arrived.set()
        self._released.wait(HOLD_LIMIT_SECONDS)

    def wait(self, timeout=30.0):
        """In the test: block until the request is held (AssertionError if never)."""
        if not self._arrived.wait(timeout):
            raise AssertionError(
                f"no {self.nth}. {self.method} matching {self.pattern.pattern} arrived "
                f"within {timeout} s ({self.matched} matched)")
        return self

    def release(self):
        self._released.set()

    @property
    def held(self):
        return self._arrived.is_set()


class S3Proxy:
    """A forwarding proxy on a free loopback port in front of ``upstream``."""

    def __init__(self, upstream_endpoint):
        parsed = urllib.parse.urlsplit(upstream_endpoint)
        self.upstream = (parsed.hostname, parsed.port or 80)
        self.requests = []  # (method, decoded URL) of every request forwarded
        self._holds = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    @property
    def endpoint(self):
        return f"http://{HOST}:{self._server.server_address[1]}"

    def start(self):
        self._server = ThreadingHTTPServer((HOST, 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="s3-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        with self._lock:
            for hold in self._holds:
                hold.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def hold(self, method, pattern, nth=1, after=False) -> Hold:
        """Stop the ``nth`` request whose method is ``method`` and whose
        decoded URL (path and query) matches the regular expression ``pattern``."""
        hold = Hold(method, pattern, nth, after)
        with self._lock:
            self._holds.append(hold)
        return hold

    def release_all(self):
        with self._lock:
            holds, self._holds = self._holds, []
        for hold in holds:
            hold.release()

    def _hold_for(self, method, url):
        with self._lock:
            self.requests.append((method, url))
            for hold in self._holds:
                if hold.matches(method, url):
                    return hold
        return None

    def forward(self, method, path, headers, body):
        """Send one request upstream; ``(status, reason, headers, body)``."""
        connection = http.client.HTTPConnection(*self.upstream, timeout=HOLD_LIMIT_SECONDS)
        try:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.reason, answer.getheaders(), answer.read()
        finally:
            connection.close()


def _handler_for(proxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _relay(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            hold = proxy._hold_for(self.command, urllib.parse.unquote(self.path))
            if hold is not None and not hold.after:
                hold.stop_here()
            status, reason, answer_headers, answer = proxy.forward(
                self.command, self.path, headers, body)
            if hold is not None and hold.after:
                hold.stop_here()
            self.send_response_only(status, reason)
            # A HEAD answer keeps S3's Content-Length: the object's size.
            dropped = _HOP_BY_HOP if self.command == "HEAD" else _HOP_BY_HOP | {"content-length"}
            for name, value in answer_headers:
                if name.lower() not in dropped:
                    self.send_header(name, value)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _relay

        def log_message(self, *args):  # quiet: moto's own log counts requests
            pass

    return Handler
