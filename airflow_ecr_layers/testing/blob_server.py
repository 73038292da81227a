"""Downloads of stored layers over HTTP on loopback: what the embedded ECR's download URLs point at.

Real ECR answers GetDownloadUrlForLayer with a presigned S3 URL. The embedded ECR
(:mod:`.strict_ecr`) answers with a URL of this server instead::

    http://127.0.0.1:PORT/blobs/sha256:<hex>?expires=<unix seconds>&sig=<hmac>

It serves ``GET`` and ``HEAD`` from the :mod:`.blob_store` the way S3 serves a
presigned GET: ``200`` with the whole blob, ``206`` for one ``Range: bytes=a-b``,
``bytes=a-`` or ``bytes=-n`` (``416`` when the range starts past the end; a malformed or
multi-range header is ignored: the whole blob), ``Accept-Ranges: bytes``,
``ETag: "<digest>"``; ``403`` when the URL has expired or its signature is wrong,
``404`` for a blob the store does not hold. Error bodies are S3's XML ``<Error>``.
Bodies are streamed from the file in :data:`CHUNK` pieces: a blob is never read whole
into memory.

One server per process is shared (:func:`acquire` / :func:`release`): moto's state
is process-wide, so every embedded ECR of the process mints URLs of the same server.
URLs live :func:`url_lifetime` seconds (:data:`DEFAULT_URL_LIFETIME` unless a test
sets another with :func:`set_url_lifetime`). :data:`BLOB_READS` counts what was served.

This module must not import Airflow (nor moto).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

from airflow_ecr_layers.testing.blob_store import BlobStore, blob_store, is_digest

__all__ = [
    "BLOB_READS",
    "CHUNK",
    "DEFAULT_URL_LIFETIME",
    "BlobReads",
    "BlobServer",
    "acquire",
    "presign",
    "release",
    "running",
    "set_url_lifetime",
    "url_lifetime",
]

HOST = "127.0.0.1"
CHUNK = 1024 * 1024
"""Bytes read from the file and written to the socket at a time."""
DEFAULT_URL_LIFETIME = 15 * 60.0
"""Seconds a download URL stays valid unless :func:`set_url_lifetime` says otherwise."""
BLOB_PATH = "/blobs/"


# --- What was served -------------------------------------------------------------


class BlobReads:
    """Thread-safe counts of the GETs the blob server answered with bytes, per digest.

    ``bytes_of`` counts the body bytes actually written to clients (a client that
    hangs up early is charged only what it got); HEAD and errors count nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes: Counter[str] = Counter()
        self._requests: Counter[str] = Counter()

    def add(self, digest: str, sent: int) -> None:
        with self._lock:
            self._bytes[digest] += sent
            self._requests[digest] += 1

    def bytes_of(self, digest: str) -> int:
        with self._lock:
            return self._bytes[digest]

    def requests_of(self, digest: str) -> int:
        """GETs of one blob that were answered 200 or 206."""
        with self._lock:
            return self._requests[digest]

    def total_bytes(self) -> int:
        with self._lock:
            return sum(self._bytes.values())

    def total_requests(self) -> int:
        with self._lock:
            return sum(self._requests.values())

    def snapshot(self) -> dict[str, int]:
        """Bytes served per digest (only digests that were read)."""
        with self._lock:
            return dict(self._bytes)

    def reset(self) -> None:
        with self._lock:
            self._bytes.clear()
            self._requests.clear()


BLOB_READS = BlobReads()


# --- Signatures and lifetime --------------------------------------------------------

_SECRET = secrets.token_bytes(32)
"""This process's signing key: URLs are only good against this process's server."""
_lifetime = DEFAULT_URL_LIFETIME
_lifetime_lock = threading.Lock()


def set_url_lifetime(seconds: float) -> None:
    """How long URLs minted from now on stay valid (process-wide). Zero or less mints
    URLs that have already expired: the way a test sees a 403 without sleeping."""
    global _lifetime
    with _lifetime_lock:
        _lifetime = float(seconds)


def url_lifetime() -> float:
    with _lifetime_lock:
        return _lifetime


def _signature(digest: str, expires: int) -> str:
    return hmac.new(_SECRET, f"GET\n{digest}\n{expires}".encode(), hashlib.sha256).hexdigest()


# --- Requests ------------------------------------------------------------------------


class _Unsatisfiable(Exception):
    pass


_SINGLE_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(first, last)`` byte of a ``Range`` header over ``size`` bytes, or None
    to serve the whole blob (no header, or one that is malformed or asks for several
    ranges, which S3 does not serve either). Raises :class:`_Unsatisfiable` for a range past the end."""
    if header is None:
        return None
    found = _SINGLE_RANGE.fullmatch(header.strip())
    if found is None or found.group(1) == found.group(2) == "":
        return None
    first_text, last_text = found.groups()
    if first_text == "":  # bytes=-n: the last n bytes
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise _Unsatisfiable
        return max(0, size - suffix), size - 1
    first = int(first_text)
    last = size - 1 if last_text == "" else int(last_text)
    if last_text != "" and last < first:
        return None  # syntactically invalid: ignored
    if first >= size:
        raise _Unsatisfiable
    return first, min(last, size - 1)


@dataclass(frozen=True)
class _Refusal:
    status: int
    code: str
    message: str


def _s3_error(refusal: _Refusal) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(refusal.code)}</Code><Message>{escape(refusal.message)}</Message></Error>"
    ).encode()


class _BlobHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection is closed after this long
    server: _BlobHttpServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _authorise(self) -> tuple[str, _Refusal | None]:
        """The digest a request names, and why it is refused (None when it may be served)."""
        parts = urlsplit(self.path)
        if not parts.path.startswith(BLOB_PATH):
            return "", _Refusal(404, "NoSuchKey", "The specified key does not exist.")
        digest = unquote(parts.path[len(BLOB_PATH) :])
        query = parse_qs(parts.query)
        expires_values, signatures = query.get("expires", []), query.get("sig", [])
        if len(expires_values) != 1 or len(signatures) != 1 or not expires_values[0].isdigit():
            return digest, _Refusal(
                403, "AccessDenied", "Query-string authentication requires the expires and sig parameters"
            )
        expires = int(expires_values[0])
        if not hmac.compare_digest(_signature(digest, expires), signatures[0]):
            return digest, _Refusal(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if time.time() >= expires:
            return digest, _Refusal(403, "AccessDenied", "Request has expired")
        if not self.server.store.has(digest):
            return digest, _Refusal(404, "NoSuchKey", "The specified key does not exist.")
        return digest, None

    def _refuse(self, refusal: _Refusal, body: bool, extra: dict[str, str] | None = None) -> None:
        payload = _s3_error(refusal) if body else b""
        self.send_response(refusal.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def _serve(self, body: bool) -> None:
        digest, refusal = self._authorise()
        if refusal is not None:
            self._refuse(refusal, body)
            return
        try:
            file = open(self.server.store.path_for(digest), "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:  # removed since the check
            self._refuse(_Refusal(404, "NoSuchKey", "The specified key does not exist."), body)
            return
        with file:
            size = file.seek(0, 2)
            try:
                wanted = byte_range(self.headers.get("Range"), size)
            except _Unsatisfiable:
                self._refuse(
                    _Refusal(416, "InvalidRange", "The requested range is not satisfiable"),
                    body,
                    {"Content-Range": f"bytes */{size}"},
                )
                return
            first, last = wanted if wanted is not None else (0, size - 1)
            self.send_response(200 if wanted is None else 206)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(last - first + 1))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{digest}"')
            if wanted is not None:
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            self.end_headers()
            if body:
                self._stream(file, digest, first, last - first + 1)

    def _stream(self, file: BinaryIO, digest: str, first: int, length: int) -> None:
        """Copy ``length`` bytes from ``first`` to the client, :data:`CHUNK` at a time."""
        file.seek(first)
        sent = 0
        try:
            while sent < length:
                chunk = file.read(min(CHUNK, length - sent))
                if not chunk:  # the file is shorter than it was: cannot happen to a stored blob
                    self.close_connection = True
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            BLOB_READS.add(digest, sent)


class _BlobHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: BlobStore) -> None:
        self.store = store
        super().__init__(address, _BlobHandler)


class BlobServer:
    """A blob server on ``127.0.0.1`` (``port=0``: a free one) in a daemon thread."""

    def __init__(self, store: BlobStore | None = None, port: int = 0) -> None:
        self.store = store if store is not None else blob_store()
        self._requested_port = port
        self._http: _BlobHttpServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> BlobServer:
        if self._http is None:
            self._http = _BlobHttpServer((HOST, self._requested_port), self.store)
            self._thread = threading.Thread(target=self._http.serve_forever, name="blob-server", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._http = None
            self._thread = None

    @property
    def port(self) -> int:
        if self._http is None:
            raise RuntimeError("the blob server is not started")
        return int(self._http.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def url_for(self, digest: str, lifetime: float | None = None) -> str:
        """A signed URL of ``digest`` that stays valid ``lifetime`` seconds (by default
        :func:`url_lifetime`). It is minted whether or not the store holds the blob."""
        if not is_digest(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        seconds = url_lifetime() if lifetime is None else lifetime
        expires = max(0, math.floor(time.time() + seconds))
        return f"{self.base_url}{BLOB_PATH}{digest}?expires={expires}&sig={_signature(digest, expires)}"


# --- The process's shared server --------------------------------------------------------

_shared: BlobServer | None = None
_users = 0
_shared_lock = threading.Lock()


def acquire() -> BlobServer:
    """Start the process's blob server (over :func:`.blob_store`) if it is not running,
    and count one more user of it. Pair every call with :func:`release`."""
    global _shared, _users
    with _shared_lock:
        if _shared is None:
            _shared = BlobServer().start()
        _users += 1
        return _shared


def release() -> None:
    """Count one user less; the last one stops the server."""
    global _shared, _users
    with _shared_lock:
        if _users == 0:
            return
        _users -= 1
        if _users == 0 and _shared is not None:
            _shared.stop()
            _shared = None


def running() -> BlobServer | None:
    """The process's blob server, if one is running."""
    with _shared_lock:
        return _shared


def presign(digest: str, lifetime: float | None = None) -> str:
    """A signed download URL of ``digest`` on the running server; RuntimeError if none runs."""
    server = running()
    if server is None:
        raise RuntimeError(
            "no blob server is running in this process: start an EmbeddedAws, or call blob_server.acquire()"
        )
    return server.url_for(digest, lifetime)
