"""The S3 readers against the embedded S3 over real HTTP: ranged reads into the caller's
buffer, seek/tell, a broken body resumed from the first byte not received, bounded
retries, If-Match on an object overwritten mid-read, and the part reader on top.

Every test runs twice: on the direct path (:class:`S3DirectReader`, a synchronous botocore
client on the reading thread, what S3 sources are read with) and on s3fs's
(:class:`S3RangeReader`, where a filesystem is set up beyond what the direct client covers)."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_ecr_layers import s3_reader
from airflow_ecr_layers.core.engine.reader import PartReader
from airflow_ecr_layers.core.errors import SourceChangedError, TransferError
from airflow_ecr_layers.object_storage import ObjectStorageSource, open_source
from airflow_ecr_layers.s3_reader import DirectS3, S3DirectReader, S3RangeReader
from airflow_ecr_layers.testing.server import EmbeddedAws
from helpers import pattern_bytes, sha256
from proxies import CuttingProxy

KiB = 1024
SIZE = 200 * KiB + 7  # not a multiple of anything the reader or aiohttp cares about


Reader = S3DirectReader | S3RangeReader
_expected: list[type] = [S3DirectReader]


@pytest.fixture(autouse=True, params=["direct", "s3fs"])
def reader_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test on both paths: ``s3fs`` makes every filesystem one the direct client does not cover."""
    if request.param == "s3fs":
        monkeypatch.setattr(DirectS3, "client", lambda self: None)
    monkeypatch.setattr(
        sys.modules[__name__], "_expected", [S3DirectReader if request.param == "direct" else S3RangeReader]
    )
    return str(request.param)


def _open_reader(source: ObjectStorageSource, offset: int = 0) -> Reader:
    handle = source.open_at(offset, 64 * KiB)
    assert type(handle) is _expected[0]
    return handle  # type: ignore[return-value]


def _readinto(handle: Reader, length: int) -> bytes:
    buffer = bytearray(length)
    count = handle.readinto(buffer)
    return bytes(buffer[:count])


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

    with pytest.raises(TransferError) as caught:
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

    with pytest.raises(SourceChangedError, match="changed while it was being read") as caught:
        handle.readinto(bytearray(50_000))
    assert url in str(caught.value)
    assert handle.tell() == 50_000

    # another handle on the same source (what a resume opens) is refused as well ...
    with pytest.raises(SourceChangedError, match="changed while it was being read"):
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
        with pytest.raises(SourceChangedError, match="changed while it was being read"):
            while reader.next_part() is not None:
                pass


def test_an_object_overwritten_after_its_size_was_read_is_refused(put_object: Any) -> None:
    """The first GET of the first handle already carries the ETag the size came with."""
    url = put_object("grown.bin", pattern_bytes(SIZE, seed=3))
    source = open_source(url, "aws_default")  # reads the size (and the ETag)
    put_object("grown.bin", pattern_bytes(2 * SIZE, seed=4))
    with pytest.raises(SourceChangedError, match="changed while it was being read"):
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
    with pytest.raises(SourceChangedError, match="changed while it was being read"):
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
    assert not isinstance(caught.value, (SourceChangedError, TransferError)), caught.value
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
