"""cosign's "simple signing" payload: the exact bytes that are signed.

The format (containers/image's ``containers-signature(5)``, as cosign writes it)::

    {"critical":{"identity":{"docker-reference":REPOSITORY},
                 "image":{"docker-manifest-digest":DIGEST},
                 "type":"cosign container image signature"},
     "optional":ANNOTATIONS or null}

serialised as Go's ``encoding/json`` does (cosign is written in Go): no spaces, struct fields
in declaration order, map keys sorted, and ``<``, ``>``, ``&``, U+2028 and U+2029 escaped as
``\\u003c``-style sequences. A verifier must not re-serialise: the signature covers these bytes,
so they are parsed, never rebuilt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import validate_digest

COSIGN_SIGNATURE_TYPE = "cosign container image signature"
MAX_PAYLOAD_SIZE = 1024 * 1024
"""A payload larger than this is not read (a signature's payload is a few hundred bytes)."""

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_json(value: Any) -> bytes:
    """``value`` as Go's ``json.Marshal`` writes it (maps with sorted keys, HTML-safe escapes)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    return text.encode("utf-8")


def simple_signing_payload(docker_reference: str, digest: str, optional: Mapping[str, str] | None = None) -> bytes:
    """The payload bytes that sign the image ``digest`` of the repository ``docker_reference``."""
    validate_digest(digest, "image digest")
    if optional is not None:
        bad = [k for k, v in optional.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise InvalidInputError(f"Signature annotations must be strings, not {bad!r}")
    critical = (
        b'{"identity":{"docker-reference":'
        + go_json(docker_reference)
        + b'},"image":{"docker-manifest-digest":'
        + go_json(digest)
        + b'},"type":'
        + go_json(COSIGN_SIGNATURE_TYPE)
        + b"}"
    )
    return b'{"critical":' + critical + b',"optional":' + go_json(dict(optional) if optional else None) + b"}"


@dataclass(frozen=True)
class SimpleSigning:
    """What a payload claims, as parsed (never re-serialised)."""

    docker_reference: str
    digest: str
    type: str
    optional: dict[str, Any] = field(default_factory=dict)


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_payload(data: bytes) -> SimpleSigning:
    """The claims of a payload; :class:`InvalidInputError` saying what is missing when it is not one."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"the payload is not JSON ({exc})") from exc
    critical = body.get("critical") if isinstance(body, dict) else None
    if not isinstance(critical, dict):
        raise InvalidInputError("the payload has no 'critical' object")
    identity = _object(critical.get("identity"))
    image = _object(critical.get("image"))
    # containers-signature(5) spells it docker-manifest-digest; early cosign wrote Docker-manifest-digest.
    digest = image.get("docker-manifest-digest", image.get("Docker-manifest-digest"))
    optional = body.get("optional")
    return SimpleSigning(
        docker_reference=str(identity.get("docker-reference") or ""),
        digest=str(digest or ""),
        type=str(critical.get("type") or ""),
        optional=dict(optional) if isinstance(optional, dict) else {},
    )
