"""A build's base image: read out of ECR, its layers copied, its config kept, ours appended.

:func:`resolve_base` reads the base (one image, or an index of several platforms) through
:class:`~airflow_ecr_layers.core.readback.copy.SourceImage`, as a copy reads its source: the
manifests by BatchGetImage, each checked against its digest, and each platform's config
(a small JSON blob, read from its download URL and checked against its digest). It only
reads: a base that does not exist, a platform it lacks, a config that does not match its
manifest are refused before the build writes anything.

:meth:`BaseImage.compose` then makes the image on it: for each platform, the base's config
with our layers' ``diff_ids`` appended to ``rootfs.diff_ids``, one ``history`` entry per
layer of ours, our labels over its labels, the rest kept (``Env``, ``Entrypoint``, ``Cmd``,
``WorkingDir``, ``User``, ``os``, ``architecture``...); an OCI manifest naming the base's
layers first and ours after; over several platforms, an OCI index. Our layers are the same
blobs on every platform. The base's layers go into the plan as download sources, so
:func:`~airflow_ecr_layers.core.push.image.push_image` asks BatchCheckLayerAvailability which
of them the target lacks and streams only those, as a copy does.

What comes out is always OCI: a Docker schema 2 base (a ``manifest.v2`` image or a
``manifest.list.v2``) gives an OCI manifest (and index) whose base layers carry the OCI
media types of the same bytes (``...rootfs.diff.tar.gzip`` is ``...layer.v1.tar+gzip``),
and an OCI config (the Docker config's JSON is the OCI config's, with extra keys kept).
One media type family per image, and the OCI one is where annotations
(``org.opencontainers.image.base.*``) exist.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_ecr_layers.core.ecr.references import ImageReference
from airflow_ecr_layers.core.engine.transfer import EcrTransfer
from airflow_ecr_layers.core.errors import DigestMismatchError, InvalidInputError, RepositoryNotFoundError
from airflow_ecr_layers.core.limits import MAX_LAYERS, MiB, validate_digest
from airflow_ecr_layers.core.oci.image_plan import BlobRef, ImagePlan
from airflow_ecr_layers.core.oci.manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    build_image_manifest,
    encode_manifest,
    sha256_digest,
)
from airflow_ecr_layers.core.readback.copy import SourceImage
from airflow_ecr_layers.core.sources.blobs import BytesSource

log = logging.getLogger("airflow_ecr_layers")

BASE_DIGEST = "org.opencontainers.image.base.digest"
BASE_NAME = "org.opencontainers.image.base.name"
MAX_CONFIG_SIZE = 8 * MiB
"""A base's config bigger than this is refused (configs are a few KiB; it is read into memory)."""
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
LAYER_TYPES = {
    OCI_LAYER_TAR: OCI_LAYER_TAR,
    OCI_LAYER_GZIP: OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD: OCI_LAYER_ZSTD,
    DOCKER_LAYER_TAR: OCI_LAYER_TAR,
    DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
}
"""The base layers' media types a build takes, and the OCI type each is written with (same bytes)."""
_ATTESTATION = "attestation-manifest"


class PlatformLike(Protocol):
    @property
    def os(self) -> str: ...

    @property
    def architecture(self) -> str: ...

    @property
    def variant(self) -> str | None: ...


def platform_text(platform: Mapping[str, Any]) -> str:
    """``os/architecture[/variant]`` of an index entry's ``platform`` or a config."""
    return "/".join(str(platform[k]) for k in ("os", "architecture", "variant") if platform.get(k))


def _matches(wanted: PlatformLike, found: Mapping[str, Any]) -> bool:
    if (found.get("os"), found.get("architecture")) != (wanted.os, wanted.architecture):
        return False
    return wanted.variant is None or found.get("variant") == wanted.variant


@dataclass(frozen=True)
class BasePlatform:
    """One platform of the base: its manifest, its layers (OCI-typed), their sources, its config."""

    platform: dict[str, Any]
    """As the base's index names it (``os``, ``architecture``, ``variant``, ``os.version``...), or
    from the config for a single-image base."""
    digest: str
    layers: list[Descriptor]
    blobs: list[BlobRef]
    config: dict[str, Any]


@dataclass(frozen=True)
class Composed:
    """An image on the base, ready for ``push_image``: per platform its config and manifest."""

    plan: ImagePlan
    configs: list[str]
    manifests: list[Manifest]
    platforms: list[str]


@dataclass(frozen=True)
class BaseImage:
    """The base as the build uses it: what it is called, its digest, and its platforms."""

    name: str
    """The base's full reference (``REGISTRY.dkr.ecr.REGION.amazonaws.com/REPO:TAG``), for ``base.name``."""
    digest: str
    media_type: str
    images: list[BasePlatform]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def layers(self) -> int:
        """The most layers one platform of the base has."""
        return max(len(image.layers) for image in self.images)

    def check_layer_limit(self, ours: int) -> None:
        """Refuse a build whose image would have more layers than ECR takes, the base's counted."""
        if self.layers + ours > MAX_LAYERS:
            raise InvalidInputError(
                f"The base image {self.name} has {self.layers} layers and the build {ours}: "
                f"{self.layers + ours} in all, over ECR's limit of {MAX_LAYERS} layers per image, so "
                "nothing was written (raise big_file_size, or use a base with fewer layers)"
            )

    def compose(
        self,
        layers: Sequence[BlobRef],
        diff_ids: Sequence[str],
        history: Sequence[Mapping[str, Any]],
        *,
        created: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> Composed:
        """Our ``layers`` (with their ``diff_ids`` and ``history`` entries) on every platform of the base."""
        plan = ImagePlan("build")
        configs, manifests = [], []
        ours = [Descriptor(blob.media_type, blob.digest, blob.size) for blob in layers]
        for image in self.images:
            config = merged_config(image.config, diff_ids, history, created=created, labels=labels)
            config_ref = BlobRef(sha256_digest(config), len(config), OCI_CONFIG, BytesSource(config, "<image config>"))
            manifest = build_image_manifest(
                [*image.layers, *ours],
                config=Descriptor(OCI_CONFIG, config_ref.digest, config_ref.size),
                annotations={**(annotations or {}), BASE_DIGEST: image.digest, BASE_NAME: self.name},
            )
            plan.add_blob(config_ref)
            for blob in image.blobs:
                plan.add_blob(blob)
            plan.add_manifest(manifest)
            configs.append(config_ref.digest)
            manifests.append(manifest)
        for blob in layers:
            plan.add_blob(blob)
        if self.is_index:
            entries = [
                {"mediaType": OCI_MANIFEST, "digest": m.digest, "size": m.size, "platform": image.platform}
                for m, image in zip(manifests, self.images, strict=True)
            ]
            body = {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": entries,
                "annotations": {**(annotations or {}), BASE_DIGEST: self.digest, BASE_NAME: self.name},
            }
            plan.add_manifest(encode_manifest(body, OCI_INDEX))
        return Composed(plan, configs, manifests, [platform_text(image.platform) for image in self.images])


def merged_config(
    base: Mapping[str, Any],
    diff_ids: Sequence[str],
    history: Sequence[Mapping[str, Any]],
    *,
    created: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> bytes:
    """The base's config with our layers: ``diff_ids`` and ``history`` appended, ``labels`` over
    the base's, ``created`` replaced when given (else the base's kept); compact JSON, the base's
    key order kept, so the same base and files give the same bytes."""
    body = dict(base)
    if created is not None:
        body["created"] = created
    if labels:
        inner = dict(body.get("config") or {})
        inner["Labels"] = {**(inner.get("Labels") or {}), **labels}
        body["config"] = inner
    body["rootfs"] = {"type": "layers", "diff_ids": [*base["rootfs"]["diff_ids"], *diff_ids]}
    body["history"] = [*(base.get("history") or []), *history]
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def resolve_base(
    engine: EcrTransfer,
    reference: ImageReference,
    platforms: Sequence[PlatformLike] = (),
) -> BaseImage:
    """Read the base ``reference`` names: its manifest (and, for an index, each platform's), and
    each platform's config. ``platforms`` picks platforms of an index (all but attestations
    when empty) and must match a single image's. Reads only; every refusal names the base."""
    try:
        origin = SourceImage(engine, reference)
        top = origin.image()
    except RepositoryNotFoundError as exc:
        raise InvalidInputError(
            f"The base image {reference}: its repository {reference.repository_name!r} does not exist "
            "(or this connection cannot read it); a pull-through cache repository exists once an image "
            f"was pulled through it. Nothing was written. ({exc})"
        ) from exc
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
        chosen = _choose(entries, platforms, reference)
        images = [_platform(origin, str(e["digest"]), dict(e["platform"]), reference) for e in chosen]
    elif media_type in (OCI_MANIFEST, DOCKER_MANIFEST):
        image = _platform(origin, top.image_digest, {}, reference, record=(top.manifest, media_type))
        found = {k: image.config[k] for k in ("os", "architecture", "variant") if image.config.get(k)}
        if len(platforms) > 1 or (platforms and not _matches(platforms[0], found)):
            raise InvalidInputError(
                f"The base image {reference} is one image for {platform_text(found) or 'no platform'}, not "
                f"{', '.join(map(_text, platforms))}; name a multi-platform base to build several. Nothing was written."
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


def _text(platform: PlatformLike) -> str:
    return "/".join(p for p in (platform.os, platform.architecture, platform.variant) if p)


def _entry(entry: object, reference: ImageReference) -> dict[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("platform"), dict):
        raise InvalidInputError(f"The base index {reference} lists a manifest without a platform: {entry!r}")
    validate_digest(entry.get("digest"), "child manifest digest")
    return entry


def _choose(
    entries: list[dict[str, Any]], platforms: Sequence[PlatformLike], reference: ImageReference
) -> list[dict[str, Any]]:
    """The index entries a build goes on: each named platform's (exactly one each), or every
    runnable one (not the ``unknown/unknown`` attestation manifests build tools add)."""
    runnable = [
        e
        for e in entries
        if e["platform"].get("os") != "unknown"
        and (e.get("annotations") or {}).get("vnd.docker.reference.type") != _ATTESTATION
    ]
    if not platforms:
        if not runnable:
            raise InvalidInputError(f"The base index {reference} lists no runnable platform. Nothing was written.")
        return runnable
    available = ", ".join(platform_text(e["platform"]) for e in runnable) or "none"
    chosen = []
    for wanted in platforms:
        found = [e for e in runnable if _matches(wanted, e["platform"])]
        if not found:
            raise InvalidInputError(
                f"The base image {reference} has no platform {_text(wanted)} (it has {available}). Nothing was written."
            )
        if len(found) > 1:
            raise InvalidInputError(
                f"The base image {reference} has several {_text(wanted)} variants "
                f"({', '.join(platform_text(e['platform']) for e in found)}): name the variant. Nothing was written."
            )
        if found[0] not in chosen:
            chosen.append(found[0])
    return chosen


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
