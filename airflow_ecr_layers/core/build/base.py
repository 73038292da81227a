"""A build's base image: its layers first, its config kept, ours appended.

:func:`~airflow_ecr_layers.core.readback.base_image.resolve_base` reads the base out of ECR
into a :class:`BaseImage` (the reading lives in the readback room, above this one).
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import MAX_LAYERS, MiB
from airflow_ecr_layers.core.oci.image_plan import BlobRef, ImagePlan
from airflow_ecr_layers.core.oci.manifest import (
    DOCKER_LAYER_GZIP,
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
from airflow_ecr_layers.core.sources.blobs import BytesSource

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


def matches(wanted: PlatformLike, found: Mapping[str, Any]) -> bool:
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


def platform_label(platform: PlatformLike) -> str:
    return "/".join(p for p in (platform.os, platform.architecture, platform.variant) if p)


def choose_platforms(
    entries: list[dict[str, Any]], platforms: Sequence[PlatformLike], reference: object
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
        found = [e for e in runnable if matches(wanted, e["platform"])]
        if not found:
            raise InvalidInputError(
                f"The base image {reference} has no platform {platform_label(wanted)} (it has {available}). "
                "Nothing was written."
            )
        if len(found) > 1:
            raise InvalidInputError(
                f"The base image {reference} has several {platform_label(wanted)} variants "
                f"({', '.join(platform_text(e['platform']) for e in found)}): name the variant. "
                "Nothing was written."
            )
        if found[0] not in chosen:
            chosen.append(found[0])
    return chosen
