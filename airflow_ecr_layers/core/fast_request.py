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

Threads: the stash is keyed by the per-call ``context`` dict and the placeholder is
random per call, so threads sharing one client never see each other's blobs.

Everything else is botocore's own: client, endpoint, retries, signer, parsing.
Blobs that are not ``bytes``/``bytearray`` are left to botocore untouched.
"""

from __future__ import annotations

import binascii
import secrets
from dataclasses import dataclass
from typing import Any

__all__ = ["FastUploadError", "install", "splice_blob", "uninstall"]

OPERATION = "UploadLayerPart"
BLOB_PARAM = "layerPartBlob"
_PARAM_EVENT = f"before-parameter-build.ecr.{OPERATION}"
_REQUEST_EVENT = f"request-created.ecr.{OPERATION}"
_PARAM_HANDLER_ID = "airflow_ecr_layers.fast_request.swap_blob"
_REQUEST_HANDLER_ID = "airflow_ecr_layers.fast_request.splice_blob"
_CONTEXT_KEY = "airflow_ecr_layers.fast_request"

_PLACEHOLDER_BYTES = 18
"""Random bytes per placeholder: 24 base64 characters without padding, 144 bits of uniqueness."""
_ENCODE_CHUNK = 768 * 1024
"""Input bytes encoded at a time (a multiple of 3): cache-sized, and no second full-size copy."""


class FastUploadError(RuntimeError):
    """The serialised body did not hold the placeholder exactly once (a botocore change?)."""


@dataclass(frozen=True)
class _Stash:
    """One call's real blob and the quoted placeholder that stands for it in the body."""

    token: bytes
    blob: bytes | bytearray


def _encoded_length(size: int) -> int:
    return 4 * -(-size // 3)


def splice_blob(body: bytes, token: bytes, blob: bytes | bytearray) -> bytearray:
    """``body`` with its single occurrence of ``token`` (``"<placeholder base64>"``,
    quotes included) replaced by the quoted base64 of ``blob``.

    The base64 is written straight into the final buffer a chunk at a time, so the
    part is encoded once and its base64 exists only once in memory.
    """
    start = body.find(token)
    if start < 0 or body.find(token, start + 1) >= 0:
        raise FastUploadError(
            f"UploadLayerPart body holds its placeholder {body.count(token)} times instead of once; "
            "turn the fast upload off (fast_upload=False) and report this"
        )
    head = body[: start + 1]  # up to and including the opening quote
    tail = body[start + len(token) - 1 :]  # from the closing quote on
    out = bytearray(len(head) + _encoded_length(len(blob)) + len(tail))
    out[: len(head)] = head
    view = memoryview(blob)
    position = len(head)
    for offset in range(0, len(blob), _ENCODE_CHUNK):
        encoded = binascii.b2a_base64(view[offset : offset + _ENCODE_CHUNK], newline=False)
        out[position : position + len(encoded)] = encoded
        position += len(encoded)
    out[position:] = tail
    return out


def _swap_blob(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
    """``before-parameter-build``: stash the blob in the call's context, serialise a placeholder."""
    blob = params.get(BLOB_PARAM)
    if not isinstance(blob, (bytes, bytearray)):
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


def _check_ecr(client: Any) -> Any:
    if client.meta.service_model.service_name != "ecr":
        raise ValueError(f"fast UploadLayerPart needs an ECR client, not {client.meta.service_model.service_name!r}")
    return client.meta.events


def install(client: Any) -> None:
    """Make ``client`` (a botocore/boto3 ECR client) send UploadLayerPart the fast way.

    Idempotent: installing twice registers each handler once.
    """
    events = _check_ecr(client)
    events.register_first(_REQUEST_EVENT, _splice_blob, unique_id=_REQUEST_HANDLER_ID)
    events.register(_PARAM_EVENT, _swap_blob, unique_id=_PARAM_HANDLER_ID)


def uninstall(client: Any) -> None:
    """Back to botocore's stock serialisation; a no-op when not installed."""
    events = _check_ecr(client)
    events.unregister(_PARAM_EVENT, unique_id=_PARAM_HANDLER_ID)
    events.unregister(_REQUEST_EVENT, unique_id=_REQUEST_HANDLER_ID)

