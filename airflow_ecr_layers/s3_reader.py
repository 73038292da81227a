"""Ranged S3 reads straight into the caller's buffer: on the reader's own thread, or through s3fs.

:class:`S3DirectReader` is how S3 sources are read. Each ``readinto(buffer)`` is one
SigV4-signed ranged ``GetObject`` made by a synchronous botocore client on the thread
that asked (the part reader's), and its body is read with ``readinto`` from the
connection's socket straight into the buffer: no event loop, no intermediate chunks,
no second copy. Reading S3 through s3fs's event loop cost about 1.5 CPU-s per GiB on
these machines (every 128 KiB socket read a turn of the loop in Python, on one thread
shared by every layer); this path costs what the kernel's copy and the HTTP parsing do.

The client is made once per filesystem by :class:`DirectS3`, from the filesystem's own
settings (endpoint URL, botocore config with its proxies and timeouts, client
arguments, anonymous access) and a session that holds the same credentials as the
filesystem: the Airflow connection's (the amazon provider's hook builds it,
:mod:`airflow_ecr_layers.object_storage`), or boto3's default chain with
``AWS_ENDPOINT_URL`` (the CLI, :class:`airflow_ecr_layers.storage.PlainStorage`). Every
``GetObject`` carries what s3fs would add to it: ``RequestPayer`` of a requester-pays
filesystem and its ``s3_additional_kwargs`` (SSE-C keys, expected bucket owner).

:class:`S3RangeReader` asks for the same ranged ``GetObject`` through the s3fs filesystem
itself (its client, its event loop, its retries): for a filesystem set up beyond what
:class:`DirectS3` covers (a custom signer, aiobotocore-only options), or one no session
is known for.

Both keep a source from changing under an upload: every GET carries ``If-Match`` with
the ETag the object had when its size was read (or, without one, the first GET's), so an
object overwritten mid-read, or between a part and its resume, fails with a clear
:class:`~airflow_ecr_layers.core.errors.SourceChangedError` instead of producing a layer
that is half one object and half another. A body that breaks off is asked for again
from the first byte not received, at most :data:`BODY_RETRIES` times, then
:class:`~airflow_ecr_layers.core.errors.TransferError`. Messages never carry a signed
URL: requests are signed in their headers, and anything that looks like a presigned
query string is cut from the messages these readers write (:func:`redact`).
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import urllib3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.response import StreamingBody
from fsspec.asyn import sync

from airflow_ecr_layers.core.errors import SourceChangedError, TransferError
from airflow_ecr_layers.core.sources.ranged import RangedReader

log = logging.getLogger("airflow_ecr_layers")

BODY_ERRORS: tuple[type[BaseException], ...] = (
    IncompleteReadError,
    ResponseStreamingError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientConnectionError,
    asyncio.TimeoutError,
    ConnectionError,
)
"""A body that broke off mid-stream (s3fs's path): asked for again from the first byte not received."""
DIRECT_BODY_ERRORS: tuple[type[BaseException], ...] = (
    IncompleteReadError,
    ResponseStreamingError,
    ReadTimeoutError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    http.client.IncompleteRead,
    ssl.SSLError,
    ConnectionError,
    TimeoutError,
)
"""The same on the direct path: the socket, ``http.client`` and botocore's names for a broken body."""
BODY_RETRIES = 5
"""Broken bodies tolerated per read (the requests themselves are retried by botocore or s3fs)."""
POOL_CONNECTIONS = 32
"""Connections a direct client keeps (botocore's default is 10): one per reader thread, and
small layers are read many at a time."""
SLOW_READ_CHUNK = 1024 * 1024
"""Bytes taken at a time from a body that is not a plain HTTP response (a checksum-validating one)."""

_SIGNED_QUERY = re.compile(
    r"((?:X-Amz-(?:Signature|Credential|Security-Token)|Signature|AWSAccessKeyId|x-amz-security-token)=)[^&\s'\"]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the values of presigned-URL query fields (signature, credential, token) cut."""
    return _SIGNED_QUERY.sub(r"\1<redacted>", text)


class DirectS3:
    """The synchronous S3 client that reads one s3fs filesystem's objects, made on first use.

    :param fs: the s3fs filesystem whose objects are read: its endpoint URL, botocore
        config (proxies, timeouts, addressing style...), client arguments, explicit keys,
        anonymous access, requester-pays and ``s3_additional_kwargs`` are the client's too.
    :param session: makes a boto3 session with the filesystem's credentials and region
        (used unless the filesystem holds explicit keys or is anonymous).

    One client serves every reader thread (botocore clients are thread-safe). :meth:`client`
    answers None where the filesystem is set up beyond what a plain botocore client can
    repeat (:meth:`uncovered`): its objects are then read through s3fs, as before.
    """

    def __init__(self, fs: Any, session: Callable[[], Any]) -> None:
        self.fs = fs
        self._session = session
        self._lock = threading.Lock()
        self._made = False
        self._client: Any = None
        self.get_args: dict[str, Any] = {}
        """What every GetObject carries besides the range and If-Match (RequestPayer, SSE-C...)."""

    def uncovered(self) -> str | None:
        """Why the filesystem's reads cannot go through a plain botocore client, or None."""
        from botocore import UNSIGNED
        from botocore.config import Config

        fs = self.fs
        config = dict(getattr(fs, "config_kwargs", None) or {})
        unknown = sorted(set(config) - set(Config.OPTION_DEFAULTS))
        if unknown:
            return f"its config_kwargs hold options botocore's Config does not know ({', '.join(unknown)})"
        if config.get("signature_version") is UNSIGNED and not fs.anon:
            return "its requests are signed by a signer of its own (signature_version UNSIGNED, not anonymous)"
        extra = sorted(set(getattr(fs, "kwargs", None) or {}) - {"profile"})
        if extra:
            return f"its session is made with options of its own ({', '.join(extra)})"
        return None

    def client(self) -> Any | None:
        """The client (made on the first call), or None: read through s3fs instead."""
        with self._lock:
            if not self._made:
                reason = self.uncovered()
                if reason is None:
                    self._client = self._make()
                    self.get_args = self.request_args("GetObject")
                else:
                    log.info("%s: reading S3 through s3fs, not directly: %s", type(self.fs).__name__, reason)
                self._made = True
            return self._client

    def _make(self) -> Any:
        from botocore import UNSIGNED
        from botocore.config import Config

        fs = self.fs
        config = dict(fs.config_kwargs)
        config.setdefault("connect_timeout", fs.connect_timeout)  # s3fs's own timeouts, as its client has them
        config.setdefault("read_timeout", fs.read_timeout)
        config.setdefault("retries", {"mode": "standard", "max_attempts": 1 + int(fs.retries)})
        config.setdefault("max_pool_connections", POOL_CONNECTIONS)
        if "response_checksum_validation" in Config.OPTION_DEFAULTS:  # botocore 1.36 on
            # a range has no checksum to validate; asking for one would wrap the body in a validating reader
            config.setdefault("response_checksum_validation", "when_required")
        explicit = {
            "aws_access_key_id": fs.key,
            "aws_secret_access_key": fs.secret,
            "aws_session_token": fs.token,
            "endpoint_url": fs.endpoint_url,
        }
        arguments: dict[str, Any] = {name: value for name, value in explicit.items() if value is not None}
        arguments.setdefault("use_ssl", fs.use_ssl)
        arguments.update(fs.client_kwargs)
        if fs.anon:
            config["signature_version"] = UNSIGNED
            for name in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
                arguments.pop(name, None)
        return self._session().client("s3", config=Config(**config), **arguments)

    def request_args(self, operation: str) -> dict[str, Any]:
        """The filesystem's ``s3_additional_kwargs`` and requester-pays, as far as ``operation``
        (``GetObject``, ``HeadObject``) takes them, as s3fs filters them for its own calls."""
        if self._client is None:
            return {}
        wanted = {**self.fs.s3_additional_kwargs, **self.fs.req_kw}
        members = self._client.meta.service_model.operation_model(operation).input_shape.members
        return {name: value for name, value in wanted.items() if name in members and value is not None}


class S3DirectReader(RangedReader):
    """A read-only, seekable handle on one S3 object of known size, read on the caller's thread.

    Each ``readinto(buffer)`` is one ``GetObject`` for ``bytes=pos-(pos+len-1)`` (clamped to
    the object) on ``direct``'s client, its body read with ``readinto`` straight into
    ``buffer``. ``read(n)`` comes from :class:`io.RawIOBase` on top of it.
    """

    def __init__(
        self,
        direct: DirectS3,
        path: str,
        size: int,
        offset: int = 0,
        *,
        etag: str | None = None,
    ) -> None:
        super().__init__(size, offset)
        client = direct.client()
        if client is None:
            raise ValueError(f"{path}: no direct client for this filesystem; read it with S3RangeReader")
        bucket, key, version_id = direct.fs.split_path(path)
        self._client = client
        self._args = {"Bucket": bucket, "Key": key, **direct.get_args}
        if version_id:
            self._args["VersionId"] = version_id
        self._etag = etag
        self.name = f"s3://{bucket}/{key}"

    def fetch(self, view: memoryview, first: int) -> None:
        """Fill ``view`` with the object's bytes from ``first`` on; a broken body is asked
        for again from where it broke, at most :data:`BODY_RETRIES` times."""
        got = failures = 0
        while got < len(view):
            try:
                got += self._get_range(view[got:], first + got)
            except _BrokenBody as broken:
                got += broken.received
                failures += 1
                if failures > BODY_RETRIES:
                    raise _gave_up(self.name, first, len(view), failures, got, broken) from broken.__cause__
                log.warning(
                    "%s: the body broke off at byte %d (%s); asking for the rest",
                    self.name,
                    first + got,
                    redact(str(broken.__cause__)),
                )
                time.sleep(min(0.1 * 2**failures, 5.0))

    def _get_range(self, view: memoryview, first: int) -> int:
        """One ranged GET written into ``view``: returns ``len(view)``, or raises
        :class:`_BrokenBody` with the count of bytes written before the body broke."""
        conditions = {"IfMatch": self._etag} if self._etag else {}
        last = first + len(view) - 1
        try:
            response = self._client.get_object(Range=f"bytes={first}-{last}", **self._args, **conditions)
        except ClientError as exc:
            if self._etag and _precondition_failed(exc):
                raise _changed(self.name, self._etag) from exc
            from s3fs.errors import translate_boto_error  # the OSError s3fs's path raises for it

            raise translate_boto_error(exc) from exc
        except BotoCoreError as exc:  # no answer after botocore's retries (connection, timeout, proxy)
            raise TransferError(f"{self.name}: GetObject of bytes {first}-{last} failed: {redact(str(exc))}") from exc
        self._etag = self._etag or response.get("ETag")
        return _read_body(response["Body"], view)


def _read_body(body: Any, view: memoryview) -> int:
    """Read exactly ``len(view)`` bytes of ``body`` into ``view``; :class:`_BrokenBody` if it ends
    or breaks first. A plain HTTP response is read with ``http.client``'s ``readinto`` (the socket
    fills ``view``); once read to its end its connection goes back to the pool."""
    raw = _plain_http_response(body)
    readinto = raw.readinto if raw is not None else _copying_readinto(body)
    got = 0
    try:
        while got < len(view):
            count = readinto(view[got:])
            if not count:
                raise IncompleteReadError(actual_bytes=got, expected_bytes=len(view))
            got += count
    except DIRECT_BODY_ERRORS as exc:
        raise _BrokenBody(got) from exc
    finally:
        if raw is not None and got == len(view) and raw.isclosed():
            body._raw_stream.release_conn()  # all read: the connection can carry the next GET
        else:
            body.close()  # unread bytes (or a broken stream) on it: never reused
    return got


def _plain_http_response(body: Any) -> http.client.HTTPResponse | None:
    """The ``http.client`` response under botocore's body, where reading it directly skips only a copy.

    urllib3's own ``readinto`` reads into a fresh ``bytes`` and copies it (a part's worth of
    memory faulted in and copied again per GET). botocore asks urllib3 for the raw bytes
    (``decode_content=False``), so the ``http.client`` response below holds the same bytes.
    """
    if type(body) is not StreamingBody:
        return None
    stream = getattr(body, "_raw_stream", None)
    if not isinstance(stream, urllib3.HTTPResponse):
        return None
    found = getattr(stream, "_fp", None)
    return found if isinstance(found, http.client.HTTPResponse) else None


def _copying_readinto(body: Any) -> Callable[[memoryview], int]:
    def readinto(view: memoryview) -> int:
        chunk = body.read(min(len(view), SLOW_READ_CHUNK))
        view[: len(chunk)] = chunk
        return len(chunk)

    return readinto


class S3RangeReader(RangedReader):
    """The same handle through s3fs's own client and event loop (see the module docstring).

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
                    raise _gave_up(self.name, first, len(view), failures, got, broken) from broken.__cause__
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
                raise _changed(self.name, self._etag) from exc
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


def _changed(name: str, etag: str) -> SourceChangedError:
    return SourceChangedError(
        f"{name} changed while it was being read (its ETag is no longer {etag}); nothing was completed from it"
    )


def _gave_up(name: str, first: int, length: int, failures: int, got: int, broken: _BrokenBody) -> TransferError:
    return TransferError(
        f"{name}: reading bytes {first}-{first + length - 1} broke off {failures} times "
        f"(last at byte {first + got}): {redact(str(broken.__cause__))}"
    )


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
