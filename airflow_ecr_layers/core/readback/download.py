"""Reading a layer out of ECR: its download URL, read with ranged GETs, resumed where a body breaks.

:class:`LayerDownload` is a :class:`~airflow_ecr_layers.core.sources.blobs.BlobSource` over one
layer of a repository, so everything that reads sources reads layers too: the part
reader hashes them while a copy streams them into UploadLayerPart, and a pull writes
them to object storage. Each ``readinto`` of a handle is one ``GET`` with a ``Range``
for exactly that buffer, written into it as it arrives: memory stays bounded by the
reader's buffers whatever the layer's size.

The download URL (GetDownloadUrlForLayer) is asked for once per layer and shared by its
handles. It is presigned, so it expires: a ``403`` asks ECR for a fresh one and tries
again, at most :data:`URL_REFRESHES` times. A body that breaks off mid-stream is asked
for again from the first byte not received; a connection that fails (refused, reset,
timed out) and a 5xx answer (S3's ``InternalError``, ``SlowDown``) are tried again the
same way. Those tries follow the ECR calls'
:class:`~airflow_ecr_layers.core.ecr.retry.RetryPolicy`: its ``max_attempts`` per read
(one buffer), its backoff between them, its ``max_total_seconds`` of waiting; then
:class:`~airflow_ecr_layers.core.errors.TransferError`.

The URL's query string is a credential (a presigned URL's signature and token): it never
reaches a log line or an error message. Only the layer's name and the URL without its
query (:func:`redacted`) do; the text of an HTTP client's exception, which can quote the
URL, goes through :func:`redact_text` and is never chained to the errors raised here.

Nothing here verifies the bytes: whoever reads them hashes them (the part reader, the
pull's writer) and compares with the layer's digest before anything is completed.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.request
from typing import BinaryIO

import urllib3

from airflow_ecr_layers.core.ecr.calls import EcrCalls
from airflow_ecr_layers.core.ecr.retry import RetryBudget
from airflow_ecr_layers.core.errors import TransferError
from airflow_ecr_layers.core.limits import MiB
from airflow_ecr_layers.core.sources.ranged import RangedReader

log = logging.getLogger("airflow_ecr_layers")

URL_REFRESHES = 3
"""Fresh download URLs asked for per read after a 403 (an expired presigned URL)."""
CHUNK = MiB
"""Bytes taken from a response body at a time."""
TIMEOUT = urllib3.Timeout(connect=10.0, read=60.0)
"""How long a GET waits to connect, and then for each read of its body."""
_RETRIES = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=3)
"""urllib3 follows redirects but retries nothing itself: every retry is the policy's (and its
own retries would log the URL in their warnings)."""
_BROKEN = (
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)
_pools: dict[str, urllib3.PoolManager] = {}
_pools_lock = threading.Lock()


def http_pool() -> urllib3.PoolManager:
    """One connection pool per process, through the environment's HTTPS proxy if it sets one
    (``https_proxy``/``HTTPS_PROXY``, as for any other HTTPS client)."""
    proxy = urllib.request.getproxies().get("https", "")
    with _pools_lock:
        if proxy not in _pools:
            _pools[proxy] = (
                urllib3.ProxyManager(proxy, num_pools=8, maxsize=16) if proxy else urllib3.PoolManager(maxsize=16)
            )
        return _pools[proxy]


def redacted(url: str) -> str:
    """A URL without its query string (a presigned URL's signature and token live there)."""
    return url.split("?", 1)[0]


_QUERY = re.compile(r"\?[^\s'\"<>]*=[^\s'\"<>]*")
_AMZ = re.compile(r"X-Amz-[A-Za-z-]+=[^\s&'\"<>]*|Signature=[^\s&'\"<>]*", re.IGNORECASE)


def redact_text(text: str) -> str:
    """``text`` with every URL query string (``?a=b...``) cut, and any ``X-Amz-*=``/``Signature=``
    parameter left elsewhere: an HTTP client's error messages quote the URL they failed on."""
    return _AMZ.sub("<redacted>", _QUERY.sub("?<redacted>", text))


def describe(exc: BaseException) -> str:
    """What went wrong, from an HTTP client's exception, without the URL's query."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and isinstance(reason, BaseException):
        exc = reason  # "Max retries exceeded with url: <the URL> (Caused by <what happened>)"
    return redact_text(f"{type(exc).__name__}: {exc}")


class LayerDownload:
    """One layer of an ECR repository as a readable source of known size and digest."""

    def __init__(
        self,
        calls: EcrCalls,
        repository_name: str,
        digest: str,
        size: int,
        *,
        registry_id: str | None = None,
        http: urllib3.PoolManager | None = None,
    ) -> None:
        self.calls = calls
        self.repository_name = repository_name
        self.digest = digest
        self._size = size
        self.registry_id = registry_id
        self._http = http
        self._url: str | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"{self.repository_name}@{self.digest}"

    @property
    def size(self) -> int:
        return self._size

    def url(self, *, fresh: bool = False) -> str:
        """The layer's download URL, asked for once (again when ``fresh``, after it expired)."""
        with self._lock:
            if self._url is None or fresh:
                self._url = self.calls.get_download_url_for_layer(
                    self.repository_name, self.digest, self.registry_id
                ).url
            return self._url

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        return _RangeReader(self, offset, self._http or http_pool())  # type: ignore[return-value]


class BrokenDownload(Exception):
    """A GET that did not deliver its range (a failed connection, a broken body, a 5xx answer);
    ``received`` bytes of it were written. Its text carries no URL query."""

    def __init__(self, message: str, received: int = 0) -> None:
        super().__init__(message)
        self.received = received


class _Expired(Exception):
    """The URL was refused (403): presigned URLs expire."""


class _RangeReader(RangedReader):
    """Ranged GETs of a layer, each written straight into the caller's buffer."""

    def __init__(self, layer: LayerDownload, offset: int, http: urllib3.PoolManager) -> None:
        super().__init__(layer.size, offset)
        self._layer = layer
        self._http = http

    def fetch(self, view: memoryview, first: int) -> None:
        self._fill(view, first)

    def _fill(self, view: memoryview, first: int) -> None:
        """Fill ``view`` from byte ``first``: each failure resumes from the first byte not received,
        within the retry policy (attempts per read, backoff, time); a 403 asks for a fresh URL."""
        last = first + len(view) - 1
        budget = RetryBudget(self._layer.calls.retry_policy, gives_up=TransferError)
        got = refreshed = attempt = 0
        while got < len(view):
            attempt += 1
            try:
                got += self._get(view[got:], first + got)
            except _Expired:
                refreshed += 1
                if refreshed > URL_REFRESHES:
                    raise TransferError(
                        f"{self._layer.name}: the download URL was refused {refreshed} times (403), "
                        "even just after ECR gave it"
                    ) from None
                log.info("%s: the download URL expired or was refused; asking ECR for a fresh one", self._layer.name)
                self._layer.url(fresh=True)
            except BrokenDownload as exc:
                got += exc.received
                budget.backoff(
                    f"{self._layer.name}: reading bytes {first}-{last} (at byte {first + got})", attempt, exc
                )

    def _get(self, view: memoryview, first: int) -> int:
        """One ranged GET into ``view``: ``len(view)``, or :class:`BrokenDownload` with the count written.

        Errors are raised outside the handlers of the HTTP client's exceptions, so none of those
        (whose text quotes the URL) is chained to them."""
        url = self._layer.url()
        last = first + len(view) - 1
        failure: str | None = None
        try:
            response = self._http.request(
                "GET",
                url,
                headers={"Range": f"bytes={first}-{last}"},
                preload_content=False,
                decode_content=False,
                retries=_RETRIES,
                timeout=TIMEOUT,
            )
        except _BROKEN as exc:
            failure = f"no answer ({describe(exc)})"
        if failure is not None:
            raise BrokenDownload(failure)
        got = 0
        try:
            if response.status == 403:
                raise _Expired
            if response.status >= 500:  # S3's InternalError, SlowDown: transient, as ECR's own 5xx
                failure = f"HTTP {response.status} for bytes {first}-{last}"
            elif response.status != 206 and not (
                response.status == 200 and first == 0 and len(view) == self._layer.size
            ):
                raise TransferError(
                    f"{self._layer.name}: the download answered HTTP {response.status} for bytes {first}-{last} "
                    f"(at {redacted(url)})"
                )
            else:
                try:
                    while got < len(view):
                        chunk = response.read(min(CHUNK, len(view) - got), decode_content=False)
                        if not chunk:
                            raise urllib3.exceptions.IncompleteRead(got, len(view) - got)
                        view[got : got + len(chunk)] = chunk
                        got += len(chunk)
                except _BROKEN as exc:
                    failure = f"the body broke off after {got} bytes ({describe(exc)})"
        finally:
            if got != len(view):
                response.close()  # a connection with unread bytes on it is not reused
            response.release_conn()
        if failure is not None:
            raise BrokenDownload(failure, got)
        return got
