"""Reading a build's base image out of ECR: its manifests, each platform's config, nothing written.

:func:`resolve_base` reads the base (one image, or an index of several platforms) through
:class:`~airflow_ecr_layers.core.readback.copy.SourceImage`, as a copy reads its source: the
manifests by BatchGetImage, each checked against its digest, and each platform's config (a
small JSON blob, read from its download URL and checked against its digest). Its layers
become download sources, which the build's push copies where the target lacks them. A base
that does not exist, a platform it lacks, a config that does not match its manifest are
refused before the build writes anything, each error naming the base.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from airflow_ecr_layers.core.build.base import (
    LAYER_TYPES,
    MAX_CONFIG_SIZE,
    BaseImage,
    BasePlatform,
    PlatformLike,
    choose_platforms,
    matches,
    platform_label,
    platform_text,
)
from airflow_ecr_layers.core.ecr.references import ImageReference
from airflow_ecr_layers.core.engine.transfer import EcrTransfer
from airflow_ecr_layers.core.errors import DigestMismatchError, InvalidInputError, RepositoryNotFoundError
from airflow_ecr_layers.core.limits import validate_digest
from airflow_ecr_layers.core.oci.image_plan import BlobRef
from airflow_ecr_layers.core.oci.manifest import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    OCI_CONFIG,
    OCI_MANIFEST,
    Descriptor,
    sha256_digest,
)
from airflow_ecr_layers.core.readback.copy import SourceImage

log = logging.getLogger("airflow_ecr_layers")


def resolve_base(
    engine: EcrTransfer,
    reference: ImageReference,
    platforms: Sequence[PlatformLike] = (),
) -> BaseImage:
    """Read the base ``reference`` names: its manifest (and, for an index, each platform's), and
    each platform's config. ``platforms`` picks platforms of an index (all but attestations
    when empty) and must match a single image's. Reads only; every refusal names the base."""
    try:
        return _resolve(engine, reference, platforms)
    except RepositoryNotFoundError as exc:
        raise InvalidInputError(
            f"The base image {reference}: its repository {reference.repository_name!r} does not exist "
            "(or this connection cannot read it); a pull-through cache repository exists once an image "
            f"was pulled through it. Nothing was written. ({exc})"
        ) from exc


def _resolve(engine: EcrTransfer, reference: ImageReference, platforms: Sequence[PlatformLike]) -> BaseImage:
    origin = SourceImage(engine, reference)
    try:
        top = origin.image()
    except InvalidInputError as exc:
        raise InvalidInputError(f"The base image {reference} was not found: {exc}. Nothing was written.") from exc
    body = _json(top.manifest, f"the base image {reference}'s manifest")
    media_type = top.media_type or body.get("mediaType") or OCI_MANIFEST
    name = str(
        ImageReference(
            reference.repository_name,
            reference.tag,
            None if reference.tag else top.image_digest,
            origin.registry_id,
            reference.region or engine.calls.region or None,
        )
    )
    if media_type in INDEX_TYPES:
        entries = [_entry(e, reference) for e in body.get("manifests") or []]
        chosen = choose_platforms(entries, platforms, reference)
        images = [_platform(origin, str(e["digest"]), dict(e["platform"]), reference) for e in chosen]
    elif media_type in (OCI_MANIFEST, DOCKER_MANIFEST):
        image = _platform(origin, top.image_digest, {}, reference, record=(top.manifest, media_type))
        found = {k: image.config[k] for k in ("os", "architecture", "variant") if image.config.get(k)}
        if len(platforms) > 1 or (platforms and not matches(platforms[0], found)):
            raise InvalidInputError(
                f"The base image {reference} is one image for {platform_text(found) or 'no platform'}, not "
                f"{', '.join(map(platform_label, platforms))}; name a multi-platform base to build several. "
                "Nothing was written."
            )
        images = [BasePlatform({**found}, image.digest, image.layers, image.blobs, image.config)]
    else:
        raise InvalidInputError(
            f"The base image {reference} is a {media_type}, not an image or an image index. Nothing was written."
        )
    log.info(
        "Base image %s (%s): %s, %d layers",
        name,
        top.image_digest,
        ", ".join(platform_text(i.platform) for i in images),
        max(len(i.layers) for i in images),
    )
    return BaseImage(name, top.image_digest, media_type, images)


def _entry(entry: object, reference: ImageReference) -> dict[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("platform"), dict):
        raise InvalidInputError(f"The base index {reference} lists a manifest without a platform: {entry!r}")
    validate_digest(entry.get("digest"), "child manifest digest")
    return entry


def _platform(
    origin: SourceImage,
    digest: str,
    platform: dict[str, Any],
    reference: ImageReference,
    record: tuple[bytes, str] | None = None,
) -> BasePlatform:
    """One image of the base: its layers as OCI descriptors and download sources, its config read."""
    if record is None:
        found = origin.image(digest)
        record = (found.manifest, found.media_type or "")
    data, media_type = record
    body = _json(data, f"the base image {reference}'s manifest {digest}")
    media_type = media_type or body.get("mediaType") or OCI_MANIFEST
    if media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise InvalidInputError(f"The base image {reference} names {digest}, a {media_type}, not an image manifest")
    config_descriptor = body.get("config") or {}
    if config_descriptor.get("mediaType") not in (OCI_CONFIG, DOCKER_CONFIG):
        raise InvalidInputError(
            f"The base image {reference} ({digest}) has a {config_descriptor.get('mediaType')} config, "
            "not an image config: an artifact cannot be a base. Nothing was written."
        )
    layers, blobs = [], []
    for layer in body.get("layers") or []:
        layer_type = LAYER_TYPES.get(str(layer.get("mediaType")))
        if layer_type is None or layer.get("urls"):
            raise InvalidInputError(
                f"The base image {reference} ({digest}) has a layer {layer.get('digest')} of type "
                f"{layer.get('mediaType')}{' with URLs (non-distributable)' if layer.get('urls') else ''}, "
                "which a build cannot copy. Nothing was written."
            )
        blob = origin.blob(layer)
        layers.append(Descriptor(layer_type, blob.digest, blob.size, dict(layer.get("annotations") or {})))
        blobs.append(BlobRef(blob.digest, blob.size, layer_type, blob.source))
    config = _read_config(origin.blob(config_descriptor), reference)
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
        raise InvalidInputError(
            f"The base image {reference} ({digest}): its config lists "
            f"{len(diff_ids) if isinstance(diff_ids, list) else 'no'} diff_ids for {len(layers)} layers. "
            "Nothing was written."
        )
    return BasePlatform(platform, digest, layers, blobs, config)


def _read_config(blob: BlobRef, reference: ImageReference) -> dict[str, Any]:
    if blob.size > MAX_CONFIG_SIZE:
        raise InvalidInputError(f"The base image {reference}'s config is {blob.size} bytes, over {MAX_CONFIG_SIZE}")
    with blob.source.open_at(0, max(blob.size, 1)) as handle:
        data = handle.read(blob.size) if blob.size else b""
    actual = sha256_digest(data)
    if actual != blob.digest:
        raise DigestMismatchError(f"The base image {reference}'s config hashes to {actual}, not {blob.digest}")
    return _json(data, f"the base image {reference}'s config")


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidInputError(f"{what} is not a JSON object")
    return body
