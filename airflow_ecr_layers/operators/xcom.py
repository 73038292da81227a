"""Checks on the dicts one task hands the next through XCom, and on templated arguments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_ecr_layers.core.ecr.calls import UploadSession
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.oci.manifest import Descriptor


def require(result: object, what: str, **fields: type | tuple[type, ...]) -> Mapping[str, Any]:
    """Check that ``result`` is a mapping with ``fields`` of the given types."""
    if not isinstance(result, Mapping):
        raise InvalidInputError(f"{what} must be the upstream task's result dict, got {type(result).__name__}")
    problems = []
    for key, kind in fields.items():
        if key not in result:
            problems.append(f"missing {key!r}")
        elif not isinstance(result[key], kind) or isinstance(result[key], bool):
            problems.append(f"{key!r} is {type(result[key]).__name__}, expected {_names(kind)}")
    if problems:
        raise InvalidInputError(f"Malformed {what}: {'; '.join(problems)} (got keys {sorted(result)})")
    return result


def _names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def optional_int(value: object, name: str) -> int | None:
    """An integer argument that may arrive templated as a string; None or "" means unset."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidInputError(f"{name} must be an integer, got {value!r}")
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be an integer, got {value!r}") from None


def descriptor_of(layer: object) -> Descriptor:
    """A manifest descriptor from an upstream blob result (``digest``/``layer_digest``, ``size``,
    ``media_type``, optional ``annotations``)."""
    if not isinstance(layer, Mapping):
        raise InvalidInputError(f"Expected a layer result dict, got {type(layer).__name__}: {layer!r}")
    digest = layer.get("layer_digest", layer.get("digest"))
    missing = [
        key
        for key, value in (
            ("layer_digest", digest),
            ("size", layer.get("size")),
            ("media_type", layer.get("media_type")),
        )
        if value is None
    ]
    if missing:
        raise InvalidInputError(f"Layer result is missing {', '.join(missing)}: {dict(layer)!r}")
    return Descriptor(layer["media_type"], digest, layer["size"], dict(layer.get("annotations") or {}))


def upload_session(upload: object, what: str) -> UploadSession:
    """The upload session an upstream InitiateLayerUpload or UploadLayerParts result names."""
    checked = require(upload, what, registry_id=str, repository_name=str, upload_id=str, part_size=int)
    return UploadSession(checked["registry_id"], checked["repository_name"], checked["upload_id"], checked["part_size"])
