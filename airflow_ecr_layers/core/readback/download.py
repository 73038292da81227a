"""Reading a layer out of ECR: its download URL, read with ranged GETs, resumed where a body breaks.

:class:`LayerDownload` is a :class:`~airflow_ecr_layers.core.sources.blobs.BlobSource` over one
layer of a repository, so everything that reads sources reads layers too: the part
reader hashes them while a copy streams them into UploadLayerPart, and a pull writes
them to object storage. Each ``readinto`` of a handle is one ``GET`` with a ``Range``
for exactly that buffer, written into it as it arrives: memory stays bounded by the
reader's buffers whatever the layer's size.

The download URL (GetDownloadUrlForLayer) is asked for once per layer and shared by its
handles. It is presigned, so it expires: a ``403`` asks ECR for a fresh one and tries
again. A body that breaks off mid-stream is asked for again from the first byte not
received, at most :data:`BODY_RETRIES` times. The URL never reaches a log line or an
error message (its query string is a credential): only the layer's name does.

Nothing here verifies the bytes: whoever reads them hashes them (the part reader, the
pull's writer) and compares with the layer's digest before anything is completed.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from typing import BinaryIO

import urllib3

from airflow_ecr_layers.core.ecr.calls import EcrCalls
from airflow_ecr_layers.core.errors import TransferError
from airflow_ecr_layers.core.limits import MiB
from airflow_ecr_layers.core.sources.ranged import RangedReader

log = logging.getLogger("airflow_ecr_layers")

BODY_RETRIES = 5
"""Broken bodies tolerated per read, each resumed from the first byte not received."""
URL_REFRESHES = 3
"""Fresh download URLs asked for per read after a 403 (an expired presigned URL)."""
CHUNK = MiB
"""Bytes taken from a response body at a time."""
_TIMEOUT = urllib3.Timeout(connect=10.0, read=60.0)
_BROKEN = (
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    urllib3.exceptions.IncompleteRead,
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


class _RangeReader(RangedReader):
    """Ranged GETs of a layer, each written straight into the caller's buffer."""

    def __init__(self, layer: LayerDownload, offset: int, http: urllib3.PoolManager) -> None:
        super().__init__(layer.size, offset)
        self._layer = layer
        self._http = http

    def fetch(self, view: memoryview, first: int) -> None:
        self._fill(view, first)

    def _fill(self, view: memoryview, first: int) -> None:
        got = broken = refreshed = 0
        while got < len(view):
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
            except _BrokenBody as exc:
                got += exc.received
                broken += 1
                if broken > BODY_RETRIES:
                    raise TransferError(
                        f"{self._layer.name}: reading bytes {first}-{first + len(view) - 1} broke off {broken} "
                        f"times (last at byte {first + got}): {exc.__cause__}"
                    ) from exc.__cause__
                log.warning(
                    "%s: the body broke off at byte %d (%s); resuming from there",
                    self._layer.name,
                    first + got,
                    exc.__cause__,
                )
                time.sleep(min(0.1 * 2**broken, 5.0))

    def _get(self, view: memoryview, first: int) -> int:
        """One ranged GET into ``view``: ``len(view)``, or :class:`_BrokenBody` with the count written."""
        url = self._layer.url()
        last = first + len(view) - 1
        try:
            response = self._http.request(
                "GET",
                url,
                headers={"Range": f"bytes={first}-{last}"},
                preload_content=False,
                decode_content=False,
                retries=urllib3.Retry(total=3, read=0, redirect=3, backoff_factor=0.2),
                timeout=_TIMEOUT,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise _BrokenBody(0) from exc
        got = 0
        try:
            if response.status == 403:
                raise _Expired
            if response.status != 206 and not (response.status == 200 and first == 0 and len(view) == self._layer.size):
                raise TransferError(
                    f"{self._layer.name}: the download answered HTTP {response.status} for bytes {first}-{last} "
                    f"(at {redacted(url)})"
                )
            while got < len(view):
                chunk = response.read(min(CHUNK, len(view) - got), decode_content=False)
                if not chunk:
                    raise urllib3.exceptions.IncompleteRead(got, len(view) - got)
                view[got : got + len(chunk)] = chunk
                got += len(chunk)
        except _BROKEN as exc:
            raise _BrokenBody(got) from exc
        finally:
            if got != len(view):
                response.close()  # a connection with unread bytes on it is not reused
            response.release_conn()
        return got


class _Expired(Exception):
    """The URL was refused (403): presigned URLs expire."""


class _BrokenBody(Exception):
    """A GET's body ended early; ``received`` bytes of it were written."""

    def __init__(self, received: int) -> None:
        super().__init__(received)
        self.received = received
