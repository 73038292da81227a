"""A loopback HTTP proxy that cuts, corrupts or answers ranged GETs: for readers that must resume
or refuse (S3 ranged reads, ECR layer downloads)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urlsplit

KiB = 1024


@dataclass(frozen=True)
class Seen:
    """One request the proxy forwarded."""

    method: str
    target: str
    headers: dict[str, str]
    cut: bool

    @property
    def range_start(self) -> int | None:
        value = self.headers.get("range")
        if value is None:
            return None
        first, _, _ = value.removeprefix("bytes=").partition("-")
        return int(first)


def _read_head(sock: socket.socket, pending: bytearray) -> bytes:
    """Bytes up to and including the blank line ending an HTTP head; the rest stays in ``pending``."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(64 * KiB)
        if not chunk:
            raise ConnectionError("connection closed inside an HTTP head")
        pending += chunk
    end = pending.index(b"\r\n\r\n") + 4
    head = bytes(pending[:end])
    del pending[:end]
    return head


def _read_exactly(sock: socket.socket, pending: bytearray, count: int) -> bytes:
    while len(pending) < count:
        chunk = sock.recv(64 * KiB)
        if not chunk:
            raise ConnectionError(f"connection closed {count - len(pending)} bytes short")
        pending += chunk
    data = bytes(pending[:count])
    del pending[:count]
    return data


def _read_to_eof(sock: socket.socket, pending: bytearray) -> bytes:
    while chunk := sock.recv(64 * KiB):
        pending += chunk
    data = bytes(pending)
    pending.clear()
    return data


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _build_head(first_line: str, headers: list[tuple[str, str]]) -> bytes:
    """The head with any Connection/Keep-Alive dropped and ``Connection: close`` added."""
    kept = [(n, v) for n, v in headers if n.lower() not in ("connection", "keep-alive")]
    kept.append(("Connection", "close"))
    return (first_line + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in kept) + "\r\n").encode("latin-1")


@dataclass
class CuttingProxy:
    """Forwards HTTP/1.1 on 127.0.0.1 to ``upstream``, one request per connection.

    The first ``cuts`` GETs carrying a ``Range`` header that come back ``206`` are
    cut: the client gets the response head and ``keep`` bytes of the body, then the
    connection is closed. Those bytes and the close are sent ``linger`` seconds
    apart, so the client is reading the body (not still parsing the head) when the
    close arrives: aiohttp drops bytes it has buffered but not yet handed out once
    the connection has failed, and the reader can only resume from bytes it got.

    With ``answer`` (a status and a body), ranged GETs are not forwarded at all: each
    gets that response, as S3 would send an error (only the first ``answers`` of them, when
    set; the later ones are forwarded). With ``corrupt``, the first that many ranged GETs
    answered ``206`` get their body with one byte changed.
    """

    upstream: str
    keep: int
    cuts: int = 1
    linger: float = 0.3
    answer: tuple[int, bytes] | None = None
    corrupt: int = 0
    answers: int | None = None
    seen: list[Seen] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        target = urlsplit(self.upstream)
        self._upstream_addr = (target.hostname or "127.0.0.1", target.port or 80)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._thread = threading.Thread(target=self._serve, name="cutting-proxy", daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def ranged_gets(self) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == "GET" and "range" in s.headers]

    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        client.settimeout(10)
        try:
            with client:
                self._forward(client)
        except BaseException as exc:  # reported by the tests that use the proxy
            with self._lock:
                self.errors.append(exc)

    def _forward(self, client: socket.socket) -> None:
        pending = bytearray()
        request_line, request_headers = _parse_head(_read_head(client, pending))
        method, target, _ = request_line.split(" ", 2)
        lowered = {n.lower(): v for n, v in request_headers}
        body = _read_exactly(client, pending, int(lowered.get("content-length", "0")))
        with self._lock:
            answering = self.answer is not None and method == "GET" and "range" in lowered and self.answers != 0
            if answering and self.answers is not None:
                self.answers -= 1
        if self.answer is not None and answering:
            with self._lock:
                self.seen.append(Seen(method, target, lowered, cut=False))
            status, answer = self.answer
            headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(answer)))]
            client.sendall(_build_head(f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", headers) + answer)
            return

        with socket.create_connection(self._upstream_addr, timeout=10) as upstream:
            upstream.sendall(_build_head(request_line, request_headers) + body)
            upstream_pending = bytearray()
            status_line, response_headers = _parse_head(_read_head(upstream, upstream_pending))
            status = int(status_line.split(" ", 2)[1])
            length = {n.lower(): v for n, v in response_headers}.get("content-length")
            if method == "HEAD" or status in (204, 304):
                response_body = b""
            elif length is not None:
                response_body = _read_exactly(upstream, upstream_pending, int(length))
            else:
                response_body = _read_to_eof(upstream, upstream_pending)

        with self._lock:
            cut = method == "GET" and "range" in lowered and status == 206 and self.cuts > 0
            if cut:
                self.cuts -= 1
            spoil = method == "GET" and "range" in lowered and status == 206 and self.corrupt > 0 and not cut
            if spoil:
                self.corrupt -= 1
                response_body = bytes([response_body[0] ^ 0xFF]) + response_body[1:]
            self.seen.append(Seen(method, target, lowered, cut))

        head = _build_head(status_line, response_headers)
        if not cut:
            client.sendall(head + response_body)
            return
        assert len(response_body) > self.keep, "a cut must leave part of the body unsent"
        client.sendall(head + response_body[: self.keep])
        time.sleep(self.linger)
        client.shutdown(socket.SHUT_WR)
