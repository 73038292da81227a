"""A faster ``UploadLayerPart`` request for a botocore ECR client.

botocore's JSON serializer turns ``layerPartBlob`` into a base64 ``str``, runs
``json.dumps`` over the whole request (scanning every character of the base64
text for escapes), then encodes the result back to ``bytes``: four passes over
~4/3 of the part, in pure interpreter time, that cost more than the base64 itself.

:func:`install` registers two event handlers on one client:

1. ``before-parameter-build.ecr.UploadLayerPart`` stashes the real blob in the
   call's own ``context`` dict and hands the serializer a short random placeholder
   instead. The serializer then produces its usual body around the placeholder.
2. ``request-created.ecr.UploadLayerPart`` (registered first) replaces the quoted
   placeholder's base64 in that body by the blob's base64. Base64 uses only
   ``[A-Za-z0-9+/=]``, which JSON never escapes, so the body is byte for byte the
   one botocore would have built.

Why the splice is signed: botocore registers its SigV4 signer on the less
specific event ``request-created.ecr``. Its emitter (``botocore.hooks._PrefixTrie.
prefix_search``) calls handlers from the most specific event name to the least
specific one, so every ``request-created.ecr.UploadLayerPart`` handler runs before
the signer whatever the registration order; ``register_first`` also puts this
one ahead of other handlers on the same name. The signer then hashes the spliced
body, and ``Content-Length`` is computed from it when botocore prepares the request.

Retries: botocore re-creates the request from the same serialised request dict
(which still holds the placeholder) and emits ``request-created`` again, so every
attempt gets a fresh splice from the stash, which lives as long as the call.

Threads: the stash lives in the per-call ``context`` dict and the placeholder is
random per call, so threads sharing one client never see each other's blobs.

Speed and memory: the base64 is written straight into the final body, by
libbase64's ``base64_encode`` (SIMD, ~6 GB/s here; the C library inside
:mod:`pybase64`, called through :mod:`ctypes`, which releases the GIL, so another
layer's upload or the part reader runs meanwhile); failing that, by
:mod:`pybase64` itself a cache-sized chunk at a time, by OpenSSL's
``EVP_EncodeBlock`` (the libcrypto that :mod:`hashlib` uses, ~1.3 GB/s), or by
:mod:`binascii` (~0.5 GB/s). The body is a ``bytearray`` that each thread reuses from one
request to the next, so a part costs no fresh 28 MB allocation (zero-filled,
page-faulted, under the GIL). A consequence: a request body must not be kept past
its call (botocore does not; a test hook that captures bodies must copy them),
and a thread that has sent a part keeps one body-sized buffer until it exits or
calls :func:`release_buffer`.

libbase64's ``base64_encode`` is a private entry point of pybase64's extension (hence
the ``<2`` bound on pybase64): at import, :func:`choose_encoder` has each writer in
that order of preference encode a small sample at an offset into a buffer, compares
the result with :mod:`binascii`'s, and passes over (with a warning) any writer that
disagrees, writes outside its room or raises.

Everything else is botocore's own: client, endpoint, retries, signer, parsing.
Blobs that are not ``bytes``, ``bytearray`` or ``memoryview`` are left to botocore untouched.
"""

from __future__ import annotations

import binascii
import ctypes
import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

__all__ = [
    "EncodeInto",
    "FastUploadError",
    "choose_encoder",
    "encoders",
    "install",
    "release_buffer",
    "splice_blob",
    "uninstall",
]

log = logging.getLogger("airflow_ecr_layers")

OPERATION = "UploadLayerPart"
BLOB_PARAM = "layerPartBlob"
_PARAM_EVENT = f"before-parameter-build.ecr.{OPERATION}"
_REQUEST_EVENT = f"request-created.ecr.{OPERATION}"
_PARAM_HANDLER_ID = "airflow_ecr_layers.fast_request.swap_blob"
_REQUEST_HANDLER_ID = "airflow_ecr_layers.fast_request.splice_blob"
_CONTEXT_KEY = "airflow_ecr_layers.fast_request"

_PLACEHOLDER_BYTES = 18
"""Random bytes per placeholder: 24 base64 characters without padding, 144 bits of uniqueness."""
_BINASCII_CHUNK = 768 * 1024
"""Input bytes binascii encodes at a time (a multiple of 3): cache-sized, no second full-size copy."""
_SIMD_CHUNK = 3 << 15
"""Input bytes pybase64 encodes at a time (96 KiB, a multiple of 3): its 128 KiB of output stays
in cache until copied into the body (measured fastest of 24 KiB to 384 KiB)."""
_OPENSSL_CHUNK = 3 << 22
"""Input bytes per EVP_EncodeBlock call (12 MiB, a multiple of 3): its length is a C int."""

Blob = bytes | bytearray | memoryview
"""What the fast path takes as ``layerPartBlob``: anything else goes to botocore as it is."""
EncodeInto = Callable[[bytearray, int, Blob], int]
"""``encode_into(out, position, blob)``: write ``blob``'s base64 at ``out[position:]``, return
the end position. May also write one NUL byte after the end (``out`` has room for it)."""


class FastUploadError(RuntimeError):
    """The serialised body did not hold the placeholder exactly once (a botocore change?)."""


@dataclass(frozen=True)
class _Stash:
    """One call's real blob and the quoted placeholder that stands for it in the body."""

    token: bytes
    blob: Blob


def encoded_length(size: int) -> int:
    """Length of the padded base64 of ``size`` bytes."""
    return 4 * -(-size // 3)


# -- base64 straight into the body -------------------------------------------------------
def _chunked_encoder(encode: Callable[[memoryview], bytes], chunk: int) -> EncodeInto:
    """An :data:`EncodeInto` that calls ``encode`` on ``chunk``-byte slices (a multiple of 3)."""

    def encode_into(out: bytearray, position: int, blob: Blob) -> int:
        view = memoryview(blob).cast("B")
        for offset in range(0, len(view), chunk):
            encoded = encode(view[offset : offset + chunk])
            end = position + len(encoded)
            out[position:end] = encoded
            position = end
        return position

    return encode_into


def _pybase64_encoder() -> EncodeInto | None:
    try:
        import pybase64
    except ImportError:
        return None
    return _chunked_encoder(pybase64.b64encode, _SIMD_CHUNK)


CEncode = Callable[[int, int, int], int]
"""``encode(out_address, source_address, size)``: C base64 of ``size`` bytes; returns the length written."""


def _c_encoder(encode: CEncode, *, terminator: int) -> EncodeInto:
    """An :data:`EncodeInto` over a C function that writes at an address (through :mod:`ctypes`,
    which releases the GIL for the call). ``terminator``: bytes it writes after the text."""

    def encode_into(out: bytearray, position: int, blob: Blob) -> int:
        size = memoryview(blob).nbytes
        if not size:
            return position
        if len(out) < position + encoded_length(size) + terminator:
            raise ValueError("no room in the body for the base64")
        target = (ctypes.c_char * len(out)).from_buffer(out)
        if isinstance(blob, memoryview) and blob.readonly:  # ctypes maps only writable buffers
            blob = bytes(blob)
        source = ctypes.c_char_p(blob) if isinstance(blob, bytes) else (ctypes.c_char * size).from_buffer(blob)
        try:
            source_address = ctypes.cast(source, ctypes.c_void_p).value or 0
            return position + encode(ctypes.addressof(target) + position, source_address, size)
        finally:
            del target, source  # release the buffer exports: the bytearrays may be resized later

    return encode_into


def _libbase64_encoder() -> EncodeInto | None:
    """``base64_encode`` of the libbase64 that pybase64 is built on, called on the whole part
    straight into the body (no chunk copies); None where pybase64 does not export it."""
    try:
        from pybase64 import _pybase64

        base64_encode = ctypes.CDLL(_pybase64.__file__).base64_encode
    except (ImportError, OSError, AttributeError):
        return None
    # void base64_encode(const char *src, size_t srclen, char *out, size_t *outlen, int flags)
    base64_encode.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_int,
    ]
    base64_encode.restype = None

    def encode(out_address: int, source_address: int, size: int) -> int:
        written = ctypes.c_size_t(0)
        base64_encode(source_address, size, out_address, ctypes.byref(written), 0)  # flags 0: pick SIMD by CPU
        return written.value

    return _c_encoder(encode, terminator=0)


def _openssl_encoder() -> EncodeInto | None:
    """``EVP_EncodeBlock`` of the libcrypto hashlib is linked with, or None where there is none."""
    try:
        import _hashlib

        encode_block = ctypes.CDLL(_hashlib.__file__).EVP_EncodeBlock
    except (ImportError, OSError, AttributeError):
        return None
    encode_block.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    encode_block.restype = ctypes.c_int

    def encode(out_address: int, source_address: int, size: int) -> int:
        written = 0
        for offset in range(0, size, _OPENSSL_CHUNK):  # its length is a C int
            written += encode_block(out_address + written, source_address + offset, min(_OPENSSL_CHUNK, size - offset))
        return written

    return _c_encoder(encode, terminator=1)  # it writes a NUL after the text


def _binascii_encoder() -> EncodeInto:
    return _chunked_encoder(partial(binascii.b2a_base64, newline=False), _BINASCII_CHUNK)


def encoders() -> dict[str, EncodeInto]:
    """The base64 writers available here, fastest first (all but ``binascii`` may be missing)."""
    found = {
        "libbase64": _libbase64_encoder(),
        "pybase64": _pybase64_encoder(),
        "openssl": _openssl_encoder(),
        "binascii": _binascii_encoder(),
    }
    return {name: encoder for name, encoder in found.items() if encoder is not None}


# -- checking a writer against binascii ----------------------------------------------------
_CHECK_SAMPLE = bytes(range(256))[::-1] + bytes(range(0, 256, 5))
"""308 bytes of every value: sliced to 308, 304 and 300 bytes (two, one and no bytes left over)."""
_CHECK_FILL = 0xA5
"""What the check buffer holds around the text: neither a base64 character nor NUL."""
_CHECK_ROOM = 8
"""Bytes of room after the text: a writer may put one NUL there, and must leave the rest."""


def _check_cases() -> tuple[tuple[Blob, int], ...]:
    """``(blob, position)``: each type of blob, each remainder modulo 3, odd and even positions."""
    return (
        (_CHECK_SAMPLE, 1),
        (bytearray(_CHECK_SAMPLE[:304]), 2),
        (memoryview(_CHECK_SAMPLE)[:300], 5),
    )


def _agrees_with_binascii(encode_into: EncodeInto) -> bool:
    """Whether ``encode_into`` writes binascii's base64 of each case where asked, returns the
    right end and leaves the buffer alone outside the text but for one optional NUL after it."""
    for blob, position in _check_cases():
        expected = binascii.b2a_base64(blob, newline=False)
        fill = bytes([_CHECK_FILL])
        out = bytearray(fill * (position + len(expected) + _CHECK_ROOM))
        end = encode_into(out, position, blob)
        if not (
            end == position + len(expected)
            and out[position:end] == expected
            and out[:position] == fill * position
            and out[end] in (0, _CHECK_FILL)
            and out[end + 1 :] == fill * (_CHECK_ROOM - 1)
        ):
            return False
    return True


def choose_encoder(candidates: Mapping[str, EncodeInto]) -> tuple[str, EncodeInto]:
    """The first of ``candidates`` (named, in order of preference) that agrees with binascii
    on a small sample, and its name. Each one passed over, because it disagreed or raised,
    is logged as a warning; when none agrees, binascii's own writer."""
    for name, encode_into in candidates.items():
        try:
            if _agrees_with_binascii(encode_into):
                return name, encode_into
            reason = "its base64 of a test sample differs from binascii's"
        except Exception as error:  # a C entry point that moved, changed its signature, ...
            reason = f"it raised {error!r} on a test sample"
        log.warning("fast UploadLayerPart: not using the %s base64 encoder: %s", name, reason)
    return "binascii", _binascii_encoder()


_ENCODER_NAME, _ENCODE_INTO = choose_encoder(encoders())


# -- the body buffer each thread reuses --------------------------------------------------
_local = threading.local()
_SLACK = 256
"""Bytes a body may grow by in place (an offset with more digits, a longer id)."""


def _body_buffer(size: int) -> bytearray:
    """A ``size``-byte buffer (whatever it holds) for this thread's next body.

    The thread's buffer is resized only within its allocation, so it never moves,
    and never shrinks: a much smaller body (a last part, a config blob) gets a
    buffer of its own. Resizing it never needs a temporary copy either.
    """
    buffer: bytearray | None = getattr(_local, "buffer", None)
    if buffer is not None:
        allocated = buffer.__alloc__()  # CPython resizes in place from half of it to all but one byte
        if 2 * size < allocated:
            return bytearray(size)
        if size < allocated:
            try:
                if size < len(buffer):
                    del buffer[size:]
                elif size > len(buffer):
                    buffer.extend(bytes(size - len(buffer)))
                return buffer
            except BufferError:  # still exported by a view someone keeps: it is theirs now
                pass
        _local.buffer = buffer = None  # let it go before allocating the bigger one
    buffer = bytearray(size + _SLACK)
    del buffer[size:]
    _local.buffer = buffer
    return buffer


def release_buffer() -> None:
    """Drop this thread's body buffer (the next request allocates a new one)."""
    _local.__dict__.pop("buffer", None)


def splice_blob(body: bytes, token: bytes, blob: Blob) -> bytearray:
    """``body`` with its single occurrence of ``token`` (``"<placeholder base64>"``,
    quotes included) replaced by the quoted base64 of ``blob``.

    The result is this thread's reusable body buffer: valid until the thread's next call.
    """
    start = body.find(token)
    if start < 0 or body.find(token, start + 1) >= 0:
        raise FastUploadError(
            f"UploadLayerPart body holds its placeholder {body.count(token)} times instead of once; "
            "turn the fast upload off (fast_upload=False) and report this"
        )
    head = memoryview(body)[: start + 1]  # up to and including the opening quote
    tail = memoryview(body)[start + len(token) - 1 :]  # from the closing quote on: never empty
    size = memoryview(blob).nbytes
    out = _body_buffer(len(head) + encoded_length(size) + len(tail))
    out[: len(head)] = head
    end = _ENCODE_INTO(out, len(head), blob)
    if end != len(out) - len(tail):
        raise FastUploadError(f"base64 of {size} bytes came out {end - len(head)} long")
    out[end:] = tail
    return out


# -- the botocore handlers ---------------------------------------------------------------
def _swap_blob(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
    """``before-parameter-build``: stash the blob in the call's context, serialise a placeholder."""
    blob = params.get(BLOB_PARAM)
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        return  # str, file objects, wrong types: botocore's own path and its own errors
    placeholder = secrets.token_bytes(_PLACEHOLDER_BYTES)
    context[_CONTEXT_KEY] = _Stash(b'"' + binascii.b2a_base64(placeholder, newline=False) + b'"', blob)
    params[BLOB_PARAM] = placeholder


def _splice_blob(request: Any, **kwargs: Any) -> None:
    """``request-created``, before signing: put the blob's base64 where the placeholder is.

    Runs on every attempt; the request dict it was created from keeps the placeholder.
    """
    stash: _Stash | None = request.context.get(_CONTEXT_KEY)
    if stash is not None:
        request.data = splice_blob(request.data, stash.token, stash.blob)


def _events(client: Any) -> Any:
    name = client.meta.service_model.service_name
    if name != "ecr":
        raise ValueError(f"fast UploadLayerPart needs an ECR client, not {name!r}")
    return client.meta.events


def install(client: Any) -> None:
    """Make ``client`` (a botocore/boto3 ECR client) send UploadLayerPart the fast way.

    Idempotent: installing twice registers each handler once.
    """
    events = _events(client)
    events.register_first(_REQUEST_EVENT, _splice_blob, unique_id=_REQUEST_HANDLER_ID)
    events.register(_PARAM_EVENT, _swap_blob, unique_id=_PARAM_HANDLER_ID)


def uninstall(client: Any) -> None:
    """Back to botocore's stock serialisation; a no-op when not installed."""
    events = _events(client)
    events.unregister(_PARAM_EVENT, unique_id=_PARAM_HANDLER_ID)
    events.unregister(_REQUEST_EVENT, unique_id=_REQUEST_HANDLER_ID)
