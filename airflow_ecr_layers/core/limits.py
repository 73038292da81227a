"""ECR's limits and the validation of names, ids, tags and digests against them."""

from __future__ import annotations

import re
from collections.abc import Iterable

from airflow_ecr_layers.core.errors import InvalidInputError

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB
"""Every part but the last must be at least this long."""
MAX_PART_SIZE = 20_971_520
"""The API's hard maximum for one ``layerPartBlob``."""
MAX_PARTS = 4200
MAX_LAYER_SIZE = 52_000 * MiB
MAX_MANIFEST_SIZE = 4_194_304
MAX_TAGS = 1000
MAX_DIGESTS_PER_CHECK = 100
MAX_LAYERS = 500
"""Layers of one image manifest: ECR refuses more at PutImage ("Limit on number of layers per image
exceeded"; about 500, undocumented, reported by several projects), after every blob was uploaded.
Every push checks it before anything is written."""
DEFAULT_MAX_CONCURRENCY = 2
"""Layers uploaded at once: one per core on the 2-core workers we measure on."""

_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_REGISTRY_ID = re.compile(r"[0-9]{12}")
_SHA256 = re.compile(r"sha256:[a-f0-9]{64}")


def validate_repository_name(name: object) -> str:
    if not isinstance(name, str) or not 2 <= len(name) <= 256 or not _REPOSITORY.fullmatch(name):
        raise InvalidInputError(
            f"Invalid ECR repository name {name!r}: expected 2-256 lowercase characters "
            "of letters, digits and . _ - separators, optionally with / path components"
        )
    return name


def validate_registry_id(registry_id: object) -> str | None:
    if registry_id is None or registry_id == "":
        return None
    if not isinstance(registry_id, str) or not _REGISTRY_ID.fullmatch(registry_id):
        raise InvalidInputError(f"Invalid ECR registry id {registry_id!r}: expected a 12-digit AWS account id")
    return registry_id


def validate_tags(tags: str | Iterable[str] | None) -> list[str]:
    """Check tags against the OCI tag grammar, duplicates and ECR's tag limit."""
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    result = list(tags)
    for tag in result:
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise InvalidInputError(
                f"Invalid image tag {tag!r}: a tag is 1-128 characters of [A-Za-z0-9_.-] "
                "and must not start with '.' or '-'"
            )
    seen: set[str] = set()
    duplicates = sorted({t for t in result if t in seen or seen.add(t)})  # type: ignore[func-returns-value]
    if duplicates:
        raise InvalidInputError(f"Duplicate image tags: {', '.join(map(repr, duplicates))}")
    if len(result) > MAX_TAGS:
        raise InvalidInputError(f"{len(result)} tags given; ECR allows at most {MAX_TAGS} per image")
    return result


def validate_digest(digest: object, what: str = "digest") -> str:
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise InvalidInputError(f"Invalid {what} {digest!r}: expected 'sha256:' and 64 lowercase hex digits")
    return digest
