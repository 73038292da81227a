"""A fault-injecting HTTP proxy on loopback, between botocore and the embedded moto server.

Point an ECR client's ``endpoint_url`` at :attr:`FaultProxy.endpoint_url`; every
request is forwarded to the upstream server unless a :class:`FaultRule` matches it::

    with FaultProxy(aws.endpoint_url, [FaultRule("UploadLayerPart", 2, "drop_response")]) as proxy:
        ecr = boto3.client("ecr", endpoint_url=proxy.endpoint_url, ...)
        ...
        assert proxy.fired  # the rule was triggered

A rule names an ECR operation (the part of the ``X-Amz-Target`` header after the
dot, e.g. ``UploadLayerPart``), the occurrence of that operation through the proxy
it fires on (1-based, retries count) and a fault kind (:data:`FAULT_KINDS`).
Requests that are not ECR's (S3 and the like) are always passed through.

ECR requests are forwarded one at a time: moto does not make an UploadLayerPart
atomic (two concurrent parts of one upload could both pass its offset check),
while the real service does. A request delayed past the client's timeout and its
retry therefore reach moto one after the other, as they would reach ECR.

This module must not import Airflow.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal, get_args
from urllib.parse import urlsplit

__all__ = ["ECR_TARGET_PREFIX", "FAULT_KINDS", "FaultKind", "FaultProxy", "FaultRule", "FiredFault"]

FaultKind = Literal[
    "reset_before_body",
    "drop_response",
    "http_500",
    "http_503",
    "throttling",
    "limit_exceeded",
    "upload_not_found",
    "expired_token",
    "delay",
    "process_killed",
]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
"""Every fault the proxy can inject, in the order the matrix prints them."""

ECR_TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
"""``X-Amz-Target`` of an ECR call: this prefix, then the operation name."""

_ERROR_ANSWERS: dict[str, tuple[int, str, str]] = {
    "http_500": (500, "ServerException", "We encountered an internal error. Please try again."),
    "http_503": (503, "ServiceUnavailableException", "Service Unavailable"),
    "throttling": (400, "ThrottlingException", "Rate exceeded"),
    "limit_exceeded": (
        400,
        "LimitExceededException",
        "The operation did not succeed because it would have exceeded a service limit for your account.",
    ),
    "upload_not_found": (
        400,
        "UploadNotFoundException",
        "The upload could not be found, or the specified upload ID is not valid for this repository.",
    ),
    "expired_token": (400, "ExpiredTokenException", "The security token included in the request is expired"),
}
"""Fault kinds answered by the proxy itself: HTTP status, awsjson1.1 ``__type``, message."""

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)
"""Headers not copied between the two connections (Content-Length is set afresh)."""


@dataclass(frozen=True)
class FaultRule:
    """Inject ``kind`` on the ``occurrence``-th call of ``operation`` through the proxy.

    ``times`` consecutive calls from that one are hit (``None``: every later call);
    the default fires once. A ``delay`` holds the request ``delay_seconds`` (choose more
    than the client's read timeout), then forwards it (``forward_after_delay``) or drops
    it. ``process_killed`` holds the request ``delay_seconds`` and drops it: the harness
    kills the client process while it is held (the proxy cannot). A hold ends early when
    the proxy stops; ``delay_seconds=None`` holds until then, so that what a test does
    while the request is held cannot race the end of the hold.
    """

    operation: str
    occurrence: int
    kind: FaultKind
    times: int | None = 1
    delay_seconds: float | None = 3.0
    """How long a ``delay`` or ``process_killed`` holds the request; None: until the proxy stops."""
    forward_after_delay: bool = True
    probability: float = 1.0
    """Of the calls the rule hits, the share it fires on (drawn from a generator seeded with ``seed``).
    Such a rule never fires on the client's last attempt at a call (botocore's ``amz-sdk-request``
    header, ``attempt=N; max=M``): it stands for a service that refuses a share of the requests,
    and which requests that share lands on depends on the order they arrive in, so a call whose
    every attempt it refused would fail a run by chance. Its retries always absorb it."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"Unknown fault kind {self.kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if self.occurrence < 1:
            raise ValueError(f"occurrence is 1-based, got {self.occurrence}")
        if self.times is not None and self.times < 1:
            raise ValueError(f"times must be at least 1 (or None for always), got {self.times}")
        if not 0.0 < self.probability <= 1.0:
            raise ValueError(f"probability must be in (0, 1], got {self.probability}")

    def matches(self, operation: str, occurrence: int) -> bool:
        """Whether the ``occurrence``-th call of ``operation`` is one this rule hits (``*``: every operation)."""
        if self.operation not in ("*", operation) or occurrence < self.occurrence:
            return False
        return self.times is None or occurrence < self.occurrence + self.times


@dataclass(frozen=True)
class FiredFault:
    """A rule that was applied, to which call, and when (``time.monotonic()``)."""

    rule: FaultRule
    occurrence: int
    at: float


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    proxy: FaultProxy


class _Handler(BaseHTTPRequestHandler):
    """One client connection; serves requests on it until either side closes."""

    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    timeout = 120  # an idle keep-alive connection is dropped after this
    server: _ProxyServer

    # -- connection bookkeeping ---------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK can hold the body back by tens of milliseconds.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.proxy._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.proxy._track(self.connection, add=False)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        """Silent: the proxy sits in test and benchmark processes."""

    # -- verbs -----------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    # -- the request -------------------------------------------------------------------
    def _handle(self) -> None:
        proxy = self.server.proxy
        with proxy._in_flight_request():
            operation = self._ecr_operation()
            rule = proxy._match(operation, self._last_attempt()) if operation is not None else None
            if rule is None:
                self._forward_and_answer(self._read_body(), serialize=operation is not None)
            else:
                self._inject(rule)

    def _ecr_operation(self) -> str | None:
        """The ECR operation of this request, or None for any other service."""
        target = self.headers.get("X-Amz-Target", "")
        if not target.startswith(ECR_TARGET_PREFIX):
            return None
        return target[len(ECR_TARGET_PREFIX) :]

    def _last_attempt(self) -> bool:
        """Whether botocore says this request is its last attempt at the call (``amz-sdk-request``)."""
        fields: dict[str, str] = {}
        for part in self.headers.get("amz-sdk-request", "").split(";"):
            key, _, value = part.strip().partition("=")
            fields[key] = value
        try:
            return int(fields["attempt"]) >= int(fields["max"])
        except (KeyError, ValueError):
            return False

    def _content_length(self) -> int:
        return int(self.headers.get("Content-Length") or 0)

    def _read_body(self) -> bytes:
        """The whole request body (Content-Length or chunked), so the connection stays usable."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self._content_length()
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after the chunk

    # -- faults ------------------------------------------------------------------------
    def _inject(self, rule: FaultRule) -> None:
        if rule.kind == "reset_before_body":
            self.rfile.read(self._content_length() // 2)
            self._abort(reset=True)
        elif rule.kind == "drop_response":
            self._forward(self._read_body(), serialize=True)
            self._abort(reset=False)
        elif rule.kind in ("delay", "process_killed"):  # a killed client: held, never answered
            body = self._read_body()
            self.server.proxy._stopping.wait(rule.delay_seconds)  # a hold ends early when the proxy stops
            if rule.forward_after_delay and rule.kind == "delay":
                self._forward_and_answer(body, serialize=True)
            else:
                self._abort(reset=False)
        else:
            self._read_body()
            status, code, message = _ERROR_ANSWERS[rule.kind]
            self._answer_error(status, code, message)

    def _abort(self, *, reset: bool) -> None:
        """Close the client connection without an answer: RST when ``reset``, else FIN."""
        self.close_connection = True
        if reset:  # closing with a zero linger (and unread body bytes) sends RST
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _answer_error(self, status: int, code: str, message: str) -> None:
        """An error the way ECR's awsjson1.1 protocol sends it."""
        body = json.dumps({"__type": code, "message": message}).encode("utf-8")
        headers = [
            ("x-amzn-RequestId", str(uuid.uuid4())),
            ("x-amzn-ErrorType", code),
            ("Content-Type", "application/x-amz-json-1.1"),
            ("Date", self.date_time_string()),
        ]
        self._answer(status, http.client.responses.get(status, ""), headers, body)

    # -- forwarding --------------------------------------------------------------------
    def _forward(self, body: bytes, *, serialize: bool) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Send the request upstream on a fresh connection; the whole response."""
        proxy = self.server.proxy
        lock = proxy._ecr_lock if serialize else None
        if lock is not None:
            lock.acquire()
        try:
            connection = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=120)
            try:
                connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in _HOP_BY_HOP:
                        connection.putheader(name, value)
                if body or self.command in ("POST", "PUT"):
                    connection.putheader("Content-Length", str(len(body)))
                connection.endheaders(body or None)
                response = connection.getresponse()
                data = response.read()
                return response.status, response.reason, response.getheaders(), data
            finally:
                connection.close()
        finally:
            if lock is not None:
                lock.release()

    def _forward_and_answer(self, body: bytes, *, serialize: bool) -> None:
        status, reason, headers, data = self._forward(body, serialize=serialize)
        kept = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
        if self.command == "HEAD":  # no body, but the length the upstream announced
            kept += [(k, v) for k, v in headers if k.lower() == "content-length"]
        self._answer(status, reason, kept, data)

    def _answer(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        """Write a response; a client that already gave up (a delay fault) is ignored."""
        try:
            self.send_response_only(status, reason)
            for name, value in headers:
                self.send_header(name, value)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)
        except OSError:
            self.close_connection = True


class FaultProxy:
    """A threaded HTTP proxy on ``127.0.0.1`` (a free port) that injects scripted faults."""

    def __init__(self, upstream_url: str, rules: list[FaultRule] | tuple[FaultRule, ...] = ()) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"Expected an upstream like http://127.0.0.1:PORT, got {upstream_url!r}")
        self.upstream_host: str = parts.hostname
        self.upstream_port: int = parts.port
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._ecr_lock = threading.Lock()
        self._stopping = threading.Event()
        self._rules: list[FaultRule] = list(rules)
        self._calls: Counter[str] = Counter()
        self._random: dict[int, random.Random] = {}
        self._fired: list[FiredFault] = []
        self._in_flight = 0
        self._connections: set[socket.socket] = set()
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ------------------------------------------------------------------
    def start(self) -> FaultProxy:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _ProxyServer(("127.0.0.1", 0), _Handler)
        server.proxy = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self, drain_timeout: float = 10.0) -> None:
        """End the holds, wait for requests in flight (a held one forwarded or dropped as its
        rule says), then close every connection."""
        if self._server is None:
            return
        self._stopping.set()
        self.drain(drain_timeout)
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FaultProxy is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- the script and what happened ------------------------------------------------
    def set_rules(self, rules: list[FaultRule] | tuple[FaultRule, ...]) -> None:
        """Replace the script and forget the call counts and the faults fired so far."""
        with self._lock:
            self._rules = list(rules)
            self._calls.clear()
            self._fired.clear()
            self._random.clear()

    @property
    def fired(self) -> list[FiredFault]:
        with self._lock:
            return list(self._fired)

    def unfired(self) -> list[FaultRule]:
        """The rules that never fired: a harness whose fault did not happen tested nothing."""
        with self._lock:
            hit = {fault.rule for fault in self._fired}
            return [rule for rule in self._rules if rule not in hit]

    def calls(self, operation: str) -> int:
        """How many calls of an ECR operation reached the proxy (faulted ones included)."""
        with self._lock:
            return self._calls[operation]

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until no request is being handled; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    # -- used by the handler ---------------------------------------------------------
    def _match(self, operation: str, last_attempt: bool = False) -> FaultRule | None:
        """Count a call of ``operation``; the first rule it triggers, recorded as fired. A probabilistic
        rule is passed over on the client's ``last_attempt`` (see :attr:`FaultRule.probability`)."""
        with self._lock:
            self._calls[operation] += 1
            occurrence = self._calls[operation]
            for index, rule in enumerate(self._rules):
                if rule.probability < 1.0 and last_attempt:
                    continue
                if rule.matches(operation, occurrence) and self._draw(index, rule):
                    self._fired.append(FiredFault(rule, occurrence, time.monotonic()))
                    return rule
        return None

    def _draw(self, index: int, rule: FaultRule) -> bool:
        """Whether a probabilistic rule fires this time (always, for the others)."""
        if rule.probability >= 1.0:
            return True
        generator = self._random.setdefault(index, random.Random(rule.seed))
        return generator.random() < rule.probability

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _in_flight_request(self) -> _InFlight:
        return _InFlight(self)


class _InFlight:
    """Counts a request as in flight for :meth:`FaultProxy.drain`."""

    def __init__(self, proxy: FaultProxy) -> None:
        self._proxy = proxy

    def __enter__(self) -> None:
        with self._proxy._idle:
            self._proxy._in_flight += 1

    def __exit__(self, *exc: object) -> None:
        with self._proxy._idle:
            self._proxy._in_flight -= 1
            self._proxy._idle.notify_all()
