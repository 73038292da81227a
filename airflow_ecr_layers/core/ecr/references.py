"""Image references, the way ECR and every registry client write them.

``REGISTRY_ID.dkr.ecr.REGION.amazonaws.com/REPOSITORY[:TAG|@DIGEST]`` names an image in a
given account and region; the short ``REPOSITORY[:TAG|@DIGEST]`` one in the connection's own
registry and region. A reference may carry both a tag and a digest
(``repo:tag@sha256:...``): the digest decides which image, the tag is kept for display.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import (
    validate_digest,
    validate_registry_id,
    validate_repository_name,
    validate_tags,
)

_HOST = re.compile(
    r"(?P<registry>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9])\.amazonaws\.com(?:\.cn)?"
)
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]")


@dataclass(frozen=True)
class ImageReference:
    """An image: its repository, a tag and/or a digest, and where (registry id, region) if named."""

    repository_name: str
    tag: str | None = None
    digest: str | None = None
    registry_id: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        validate_repository_name(self.repository_name)
        object.__setattr__(self, "registry_id", validate_registry_id(self.registry_id))
        if self.tag is not None:
            validate_tags([self.tag])
        if self.digest is not None:
            validate_digest(self.digest, "image digest")
        if self.region is not None and not _REGION.fullmatch(self.region):
            raise InvalidInputError(f"Invalid AWS region {self.region!r} in an image reference")

    @property
    def has_image(self) -> bool:
        """Whether a tag or a digest says which image (a bare repository does not)."""
        return self.tag is not None or self.digest is not None

    def image_id(self) -> dict[str, str]:
        """``imageId`` for BatchGetImage: by digest when there is one, else by tag."""
        if self.digest:
            return {"imageDigest": self.digest}
        if self.tag:
            return {"imageTag": self.tag}
        raise InvalidInputError(f"{self} names no image: add :TAG or @sha256:DIGEST")

    def with_defaults(self, registry_id: str | None, region: str | None) -> ImageReference:
        """This reference, with ``registry_id`` and ``region`` where it names none."""
        return ImageReference(
            self.repository_name, self.tag, self.digest, self.registry_id or registry_id, self.region or region
        )

    def __str__(self) -> str:
        host = f"{self.registry_id}.dkr.ecr.{self.region}.amazonaws.com/" if self.registry_id and self.region else ""
        return (
            host
            + self.repository_name
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )


def parse_reference(text: object, *, require_image: bool = True) -> ImageReference:
    """``[REGISTRY_ID.dkr.ecr.REGION.amazonaws.com/]REPOSITORY[:TAG][@DIGEST]``, checked.

    ``require_image=False`` accepts a bare repository (a destination that takes its tags
    elsewhere).
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"Expected an image reference (REPOSITORY[:TAG|@DIGEST]), got {text!r}")
    rest = text.strip()
    registry_id = region = None
    host, slash, path = rest.partition("/")
    found = _HOST.fullmatch(host) if slash else None
    if found:
        registry_id, region, rest = found["registry"], found["region"], path
    elif slash and ("." in host or ":" in host):
        raise InvalidInputError(
            f"{text!r} names the registry {host!r}, which is not an ECR registry "
            "(REGISTRY_ID.dkr.ecr.REGION.amazonaws.com)"
        )
    digest = None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
    tag = None
    repository, colon, maybe_tag = rest.rpartition(":")
    if colon and "/" not in maybe_tag:
        rest, tag = repository, maybe_tag
    try:
        reference = ImageReference(rest, tag, digest, registry_id, region)
    except InvalidInputError as exc:
        raise InvalidInputError(f"Invalid image reference {text!r}: {exc}") from exc
    if require_image and not reference.has_image:
        raise InvalidInputError(f"Invalid image reference {text!r}: add :TAG or @sha256:DIGEST to name the image")
    return reference


def reference_from(
    reference: str | None = None,
    *,
    repository_name: str | None = None,
    image_tag: str | None = None,
    image_digest: str | None = None,
    registry_id: str | None = None,
    region_name: str | None = None,
    what: str = "image",
    require_image: bool = True,
) -> ImageReference:
    """An image from a reference string or from its parts (the operators take either, not both)."""
    parts: dict[str, Any] = {
        "repository_name": repository_name,
        "image_tag": image_tag,
        "image_digest": image_digest,
    }
    if reference:
        given = [name for name, value in parts.items() if value]
        if given:
            raise InvalidInputError(f"Give the {what} as a reference or as {', '.join(given)}, not both")
        return parse_reference(reference, require_image=require_image).with_defaults(
            registry_id or None, region_name or None
        )
    if not repository_name:
        raise InvalidInputError(f"Name the {what}: a reference, or repository_name with image_tag or image_digest")
    found = ImageReference(
        repository_name, image_tag or None, image_digest or None, registry_id or None, region_name or None
    )
    if require_image and not found.has_image:
        raise InvalidInputError(f"Name the {what}'s image: image_tag or image_digest")
    return found
