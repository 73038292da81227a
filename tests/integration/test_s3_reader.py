"""S3RangeReader against the embedded S3 over real HTTP: ranged reads into the caller's
buffer, seek/tell, a broken body resumed from the first byte not received, bounded
retries, If-Match on an object overwritten mid-read, and the part reader on top."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_ecr_layers import s3_reader
from airflow_ecr_layers.core.errors import SourceError
from airflow_ecr_layers.core.reader import PartReader
from airflow_ecr_layers.object_storage import ObjectStorageSource, open_source
from airflow_ecr_layers.s3_reader import S3RangeReader
from airflow_ecr_layers.testing.server import EmbeddedAws
from helpers import pattern_bytes, sha256

KiB = 1024
SIZE = 200 * KiB + 7  # not a multiple of anything the reader or aiohttp cares about


def _open_reader(source: ObjectStorageSource, offset: int = 0) -> S3RangeReader:
    handle = source.open_at(offset, 64 * KiB)
    assert isinstance(handle, S3RangeReader)
    return handle


def _readinto(handle: S3RangeReader, length: int) -> bytes:
    buffer = bytearray(length)
    count = handle.readinto(buffer)
    return bytes(buffer[:count])


# --- a loopback proxy that cuts ranged GET bodies -----------------------------------


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
    gets that response, as S3 would send an error.
    """

    upstream: str
    keep: int
    cuts: int = 1
    linger: float = 0.3
    answer: tuple[int, bytes] | None = None
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
        if self.answer is not None and method == "GET" and "range" in lowered:
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
            self.seen.append(Seen(method, target, lowered, cut))

        head = _build_head(status_line, response_headers)
        if not cut:
            client.sendall(head + response_body)
            return
        assert len(response_body) > self.keep, "a cut must leave part of the body unsent"
        client.sendall(head + response_body[: self.keep])
        time.sleep(self.linger)
        client.shutdown(socket.SHUT_WR)


@pytest.fixture
def via_proxy(aws: EmbeddedAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[CuttingProxy, str]]]:
    """``make(keep, cuts, answer)``: a started :class:`CuttingProxy` to moto and the id of a
    fresh Airflow connection whose ``endpoint_url`` is the proxy."""
    proxies: list[CuttingProxy] = []

    def make(keep: int, cuts: int = 1, answer: tuple[int, bytes] | None = None) -> tuple[CuttingProxy, str]:
        proxy = CuttingProxy(aws.endpoint_url, keep=keep, cuts=cuts, answer=answer).__enter__()
        proxies.append(proxy)
        # a new id each time: Airflow caches one filesystem per protocol and connection id
        conn_id = f"s3_proxy_{uuid.uuid4().hex[:12]}"
        conn = {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": proxy.endpoint_url, "region_name": aws.region},
        }
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return proxy, conn_id

    yield make
    for proxy in proxies:
        proxy.__exit__()


# --- 1. reads, clamping, EOF, seek/tell ---------------------------------------------


def test_readinto_fills_exact_ranges_and_clamps_at_the_end(put_object: Any) -> None:
    data = pattern_bytes(SIZE, seed=1)
    source = open_source(put_object("ranges.bin", data), "aws_default")
    assert source.size == SIZE

    handle = _open_reader(source)
    assert handle.readable() and handle.seekable() and handle.tell() == 0
    assert handle.name == "s3://artifacts/ranges.bin"
    for offset, length in [(0, 1000), (1000, 4096), (SIZE // 2, 70_001), (SIZE - 10, 10), (SIZE - 1, 1)]:
        handle.seek(offset)
        assert _readinto(handle, length) == data[offset : offset + length], (offset, length)
        assert handle.tell() == offset + length

    # a buffer larger than what is left: only the object's remaining bytes, then 0 at EOF
    handle.seek(SIZE - 100)
    buffer = bytearray(b"\xaa" * 1000)
    assert handle.readinto(buffer) == 100
    assert bytes(buffer[:100]) == data[-100:]
    assert bytes(buffer[100:]) == b"\xaa" * 900  # nothing written past what was read
    assert handle.tell() == SIZE
    assert handle.readinto(bytearray(10)) == 0
    assert handle.tell() == SIZE
    handle.seek(SIZE + 50)  # past the end is allowed, and reads nothing
    assert handle.readinto(bytearray(10)) == 0

    # readinto into a memoryview slice writes only that slice
    target = bytearray(64)
    handle.seek(123)
    assert handle.readinto(memoryview(target)[8:40]) == 32
    assert bytes(target) == bytes(8) + data[123:155] + bytes(24)


def test_open_at_starts_at_its_offset(put_object: Any) -> None:
    data = pattern_bytes(SIZE, seed=2)
    source = open_source(put_object("offset.bin", data), "aws_default")
    handle = _open_reader(source, offset=77_777)
    assert handle.tell() == 77_777
    assert _readinto(handle, 5000) == data[77_777:82_777]


def test_read_and_seek_tell_with_every_whence(put_object: Any) -> None:
    data = pattern_bytes(SIZE, seed=3)
    source = open_source(put_object("seek.bin", data), "aws_default")
    with _open_reader(source) as handle:
        assert handle.read(10) == data[:10]
        assert handle.read(0) == b""
        assert handle.seek(5000) == 5000 and handle.tell() == 5000
        assert handle.read(300) == data[5000:5300]
        assert handle.seek(-100, io.SEEK_CUR) == 5200
        assert handle.read(50) == data[5200:5250]
        assert handle.seek(1000, io.SEEK_CUR) == 6250
        assert handle.read(1) == data[6250:6251]
        assert handle.seek(-20_000, io.SEEK_END) == SIZE - 20_000
        assert handle.read() == data[-20_000:]  # read() to the end, in several GETs
        assert handle.tell() == SIZE
        assert handle.read() == b""
        assert handle.read(5) == b""
        assert handle.seek(0, io.SEEK_END) == SIZE
        assert handle.seek(-1, io.SEEK_END) == SIZE - 1
        assert handle.read(10) == data[-1:]

        handle.seek(40)
        with pytest.raises(ValueError):
            handle.seek(-1)
        with pytest.raises(ValueError):
            handle.seek(-41, io.SEEK_CUR)
        with pytest.raises(ValueError):
            handle.seek(-SIZE - 1, io.SEEK_END)
        assert handle.tell() == 40  # a refused seek leaves the position alone
        assert handle.read(3) == data[40:43]
    assert handle.closed


# --- 2. a broken body resumed -------------------------------------------------------


def test_a_body_broken_mid_stream_is_resumed_from_the_first_byte_not_received(
    s3: Any, bucket: str, put_object: Any, via_proxy: Callable[..., tuple[CuttingProxy, str]]
) -> None:
    data = pattern_bytes(SIZE, seed=4)
    url = put_object("cut.bin", data)
    etag = s3.head_object(Bucket=bucket, Key="cut.bin")["ETag"]
    proxy, conn_id = via_proxy(keep=12_345)
    source = open_source(url, conn_id)
    handle = _open_reader(source)

    first, length = 1000, 150_000
    handle.seek(first)
    buffer = bytearray(length)
    assert handle.readinto(buffer) == length  # one readinto, despite the broken body
    assert bytes(buffer) == data[first : first + length]
    assert handle.tell() == first + length

    gets = proxy.ranged_gets()
    assert not proxy.errors, proxy.errors
    assert [g.cut for g in gets] == [True, False]
    assert gets[0].headers["range"] == f"bytes={first}-{first + length - 1}"
    assert gets[1].headers["range"] == f"bytes={first + 12_345}-{first + length - 1}"
    assert gets[1].range_start == first + 12_345
    # every GET insists on the object whose size the source read, the resumed one too
    assert gets[0].headers["if-match"] == etag
    assert gets[1].headers["if-match"] == etag

    # the handle goes on working afterwards (no more cuts left in the proxy)
    assert _readinto(handle, 1000) == data[first + length : first + length + 1000]
    assert proxy.ranged_gets()[-1].headers["if-match"] == etag


# --- 3. bounded retries -------------------------------------------------------------


def test_a_body_that_always_breaks_gives_up_after_the_retries(
    put_object: Any, via_proxy: Callable[..., tuple[CuttingProxy, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_reader, "BODY_RETRIES", 2)  # backoff 0.2 s + 0.4 s
    data = pattern_bytes(SIZE, seed=5)
    url = put_object("always-cut.bin", data)
    proxy, conn_id = via_proxy(keep=1000, cuts=1_000)
    handle = _open_reader(open_source(url, conn_id))

    with pytest.raises(SourceError) as caught:
        handle.readinto(bytearray(100_000))
    message = str(caught.value)
    assert url in message
    assert "broke off 3 times" in message

    gets = proxy.ranged_gets()
    assert not proxy.errors, proxy.errors
    assert len(gets) == 3  # the first attempt and BODY_RETRIES more, each one cut
    assert all(g.cut for g in gets)
    # each attempt asked for what was still missing, and nothing before it
    starts = [g.range_start for g in gets]
    assert starts[0] == 0
    assert all(a is not None and b is not None and b >= a for a, b in zip(starts, starts[1:], strict=False))
    assert all(g.headers["range"].endswith("-99999") for g in gets)
    assert handle.tell() == 0  # a failed read does not move the handle


# --- 4. the object changes mid-read -------------------------------------------------


def test_an_object_overwritten_between_reads_is_refused(s3: Any, bucket: str, put_object: Any) -> None:
    data = pattern_bytes(SIZE, seed=6)
    url = put_object("changing.bin", data)
    etag = s3.head_object(Bucket=bucket, Key="changing.bin")["ETag"]
    source = open_source(url, "aws_default")
    handle = _open_reader(source)
    assert _readinto(handle, 50_000) == data[:50_000]

    replacement = pattern_bytes(SIZE, seed=7)  # same size, other bytes
    assert replacement != data
    put_object("changing.bin", replacement)
    # the embedded S3 does evaluate If-Match on GetObject (else this test proves nothing)
    assert s3.head_object(Bucket=bucket, Key="changing.bin")["ETag"] != etag
    with pytest.raises(s3.exceptions.ClientError) as refused:
        s3.get_object(Bucket=bucket, Key="changing.bin", Range="bytes=0-9", IfMatch=etag)
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"

    with pytest.raises(SourceError, match="changed while it was being read") as caught:
        handle.readinto(bytearray(50_000))
    assert url in str(caught.value)
    assert handle.tell() == 50_000

    # another handle on the same source (what a resume opens) is refused as well ...
    with pytest.raises(SourceError, match="changed while it was being read"):
        _readinto(_open_reader(source, 50_000), 1000)
    # ... while a source opened afresh reads the new object whole
    fresh = _open_reader(open_source(url, "aws_default"))
    assert _readinto(fresh, SIZE) == replacement


def test_an_object_overwritten_before_a_resume_is_refused(put_object: Any) -> None:
    """A resume (``PartReader.seek``) opens a new handle: it must not pin the new object."""
    part = 64 * KiB
    old, new = pattern_bytes(4 * part, seed=1), pattern_bytes(4 * part, seed=2)
    url = put_object("resumed.bin", old)
    with PartReader(open_source(url, "aws_default"), part) as reader:
        first = reader.next_part()
        assert first is not None and bytes(first.data) == old[:part]
        put_object("resumed.bin", new)
        reader.seek(0)  # what upload_parts does when ECR asks for the bytes again
        with pytest.raises(SourceError, match="changed while it was being read"):
            while reader.next_part() is not None:
                pass


def test_an_object_overwritten_after_its_size_was_read_is_refused(put_object: Any) -> None:
    """The first GET of the first handle already carries the ETag the size came with."""
    url = put_object("grown.bin", pattern_bytes(SIZE, seed=3))
    source = open_source(url, "aws_default")  # reads the size (and the ETag)
    put_object("grown.bin", pattern_bytes(2 * SIZE, seed=4))
    with pytest.raises(SourceError, match="changed while it was being read"):
        _readinto(_open_reader(source), SIZE)


def test_an_unchanged_object_reads_on_with_if_match(put_object: Any) -> None:
    """The control for the test above: the If-Match on later GETs does match an untouched object."""
    data = pattern_bytes(SIZE, seed=8)
    handle = _open_reader(open_source(put_object("steady.bin", data), "aws_default"))
    chunks = [_readinto(handle, 30_000) for _ in range(-(-SIZE // 30_000))]
    assert b"".join(chunks) == data


def _s3_error(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>"
    ).encode()


@pytest.mark.parametrize(
    "status, body",
    [
        (412, _s3_error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold")),
        (412, b""),  # no error document: botocore makes the code "412", the message "Precondition Failed"
    ],
    ids=["code", "bare-412"],
)
def test_a_failed_if_match_is_told_by_its_code_or_status(
    status: int, body: bytes, put_object: Any, via_proxy: Callable[..., tuple[CuttingProxy, str]]
) -> None:
    url = put_object("refused.bin", pattern_bytes(SIZE, seed=10))
    proxy, conn_id = via_proxy(keep=0, answer=(status, body))
    handle = _open_reader(open_source(url, conn_id))
    with pytest.raises(SourceError, match="changed while it was being read"):
        handle.readinto(bytearray(1000))
    assert [g.headers.get("if-match") is not None for g in proxy.ranged_gets()] == [True]
    assert not proxy.errors, proxy.errors


def test_another_error_that_mentions_precondition_failed_is_not_a_change(
    put_object: Any, via_proxy: Callable[..., tuple[CuttingProxy, str]]
) -> None:
    """Only S3's code (or status 412) says the If-Match failed, not the words of a message."""
    url = put_object("denied.bin", pattern_bytes(SIZE, seed=11))
    message = "Access denied by bucket policy statement PreconditionFailedGuard"
    proxy, conn_id = via_proxy(keep=0, answer=(403, _s3_error("AccessDenied", message)))
    handle = _open_reader(open_source(url, conn_id))
    with pytest.raises(OSError) as caught:
        handle.readinto(bytearray(1000))
    assert not isinstance(caught.value, SourceError), caught.value
    assert isinstance(caught.value, PermissionError)  # s3fs's translation of AccessDenied, passed on
    assert caught.value.__cause__.response["Error"]["Code"] == "AccessDenied"
    assert len(proxy.ranged_gets()) == 1 and not proxy.errors


# --- 5. the part reader on top --------------------------------------------------------


def test_part_reader_over_s3_gives_the_object_and_its_digest(put_object: Any) -> None:
    part_size = 256 * KiB
    tail = 12_345
    data = pattern_bytes(3 * part_size + tail, seed=9)
    source = open_source(put_object("parts.bin", data), "aws_default")

    parts: list[tuple[int, bytes]] = []
    with PartReader(source, part_size) as reader:
        while (part := reader.next_part()) is not None:
            parts.append((part.first_byte, bytes(part.data)))  # the reader reuses its buffers
        assert reader.digest() == sha256(data)
        assert reader.digest() == "sha256:" + hashlib.sha256(data).hexdigest()

    assert [(first, len(chunk)) for first, chunk in parts] == [
        (0, part_size),
        (part_size, part_size),
        (2 * part_size, part_size),
        (3 * part_size, tail),
    ]
    assert b"".join(chunk for _, chunk in parts) == data
