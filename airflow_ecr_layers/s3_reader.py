"""Ranged S3 reads straight into the caller's buffer, through s3fs's own client.

s3fs's file object answers ``read(n)`` with ``await body.read()``: aiohttp keeps the
response as a list of chunks and joins them into a fresh ``n``-byte object, which
the part reader would then copy into its own buffer. For 20 MiB parts that is two
20 MiB copies and 5,000 page faults per part, on the one event-loop thread s3fs
shares between every layer being read. :class:`S3RangeReader` asks for the same
single ranged ``GetObject`` per read, through the same s3fs filesystem (its
credentials, endpoint, requester-pays and extra arguments, its retries on the
request), and moves the body chunk by chunk into the buffer it was given.

It also keeps a source from changing under an upload: every GET carries
``If-Match`` with the ETag the object had when its size was read (or, without one,
the first GET's), so an object overwritten mid-read, or between a part and its
resume, fails with a clear :class:`~airflow_ecr_layers.core.errors.SourceChangedError`
instead of producing a layer that is half one object and half another.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from botocore.exceptions import ClientError, IncompleteReadError, ResponseStreamingError
from fsspec.asyn import sync

from airflow_ecr_layers.core.errors import SourceChangedError, TransferError
from airflow_ecr_layers.core.sources.ranged import RangedReader

BODY_ERRORS: tuple[type[BaseException], ...] = (
    IncompleteReadError,
    ResponseStreamingError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientConnectionError,
    asyncio.TimeoutError,
    ConnectionError,
)
"""A body that broke off mid-stream: asked for again from the first byte not received."""
BODY_RETRIES = 5
"""Broken bodies tolerated per read (s3fs retries the requests themselves)."""


class S3RangeReader(RangedReader):
    """A read-only, seekable handle on one S3 object of known size.

    Each ``readinto(buffer)`` is one ``GetObject`` for ``bytes=pos-(pos+len-1)``
    (clamped to the object), written into ``buffer`` as it arrives. ``read(n)``
    comes from :class:`io.RawIOBase` on top of it.
    """

    def __init__(self, fs: Any, path: str, size: int, offset: int = 0, *, etag: str | None = None) -> None:
        super().__init__(size, offset)
        bucket, key, version_id = fs.split_path(path)
        self._fs = fs
        self._bucket = bucket
        self._key = key
        self._version = {"VersionId": version_id} if version_id else {}
        self._etag = etag
        self.name = f"s3://{bucket}/{key}"

    def fetch(self, view: memoryview, first: int) -> None:
        got = sync(self._fs.loop, self._fetch_into, view, first)
        if got != len(view):  # pragma: no cover - _fetch_into fills the view or raises
            raise TransferError(f"{self.name}: read {got} of {len(view)} bytes at {first}")

    async def _fetch_into(self, view: memoryview, first: int) -> int:
        """Fill ``view`` with the object's bytes from ``first`` on; a broken body is asked
        for again from where it broke, at most :data:`BODY_RETRIES` times."""
        got = failures = 0
        while got < len(view):
            try:
                got += await self._get_range(view[got:], first + got)
            except _BrokenBody as broken:
                got += broken.received
                failures += 1
                if failures > BODY_RETRIES:
                    raise TransferError(
                        f"{self.name}: reading bytes {first}-{first + len(view) - 1} broke off {failures} times "
                        f"(last at byte {first + got}): {broken.__cause__}"
                    ) from broken.__cause__
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
        return got

    async def _get_range(self, view: memoryview, first: int) -> int:
        """One ranged GET written into ``view``: returns ``len(view)``, or raises
        :class:`_BrokenBody` with the count of bytes written before the body broke."""
        conditions = {"IfMatch": self._etag} if self._etag else {}
        try:
            response = await self._fs._call_s3(
                "get_object",
                Bucket=self._bucket,
                Key=self._key,
                Range=f"bytes={first}-{first + len(view) - 1}",
                **self._version,
                **conditions,
            )
        except (OSError, ClientError) as exc:
            if self._etag and _precondition_failed(exc):
                raise SourceChangedError(
                    f"{self.name} changed while it was being read (its ETag is no longer {self._etag}); "
                    "nothing was completed from it"
                ) from exc
            raise
        self._etag = self._etag or response.get("ETag")
        body = response["Body"]
        got = 0
        try:
            while got < len(view):
                count = await body.readinto(view[got:])
                if not count:
                    raise IncompleteReadError(actual_bytes=got, expected_bytes=len(view))
                got += count
        except BODY_ERRORS as exc:
            raise _BrokenBody(got) from exc
        finally:
            body.close()
        return got


def _precondition_failed(exc: BaseException) -> bool:
    """Whether ``exc`` is S3 refusing a request's condition (here: If-Match): error code
    ``PreconditionFailed`` or HTTP status 412, read from botocore's ``ClientError``.

    s3fs's ``_call_s3`` raises its translation of a ``ClientError`` (an :class:`OSError`,
    by error code) with the ``ClientError`` itself as ``__cause__``; the message, S3's
    own words, decides nothing.
    """
    for error in (exc, exc.__cause__):
        if isinstance(error, ClientError):
            response = error.response or {}
            code = response.get("Error", {}).get("Code")
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return code == "PreconditionFailed" or status == 412
    return False


class _BrokenBody(Exception):
    """A GET's body ended early; ``received`` bytes of it were written."""

    def __init__(self, received: int) -> None:
        super().__init__(received)
        self.received = received
