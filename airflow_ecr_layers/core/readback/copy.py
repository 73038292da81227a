"""Copy an image (or an index and its children, and their referrers) from one repository to another.

Across repositories, accounts and regions: the source and the destination each have their
own engine, so their own credentials. The source's manifests are read with BatchGetImage
and put into the destination byte for byte, so every digest is the same on both sides;
children go before the index that names them (a child listed twice, or shared by two
nested indexes, is put once), and the tags go on the top-level manifest last: after its
referrers too, when they are copied, so nothing tagged in the destination points at an image
whose referrers are still missing there. Each blob the destination lacks (one batched
BatchCheckLayerAvailability) streams from the source's download URL straight into
UploadLayerPart (:mod:`.download`): no local copy, the memory of a push, and the sha256 of
what streams checked against the digest before the layer is completed. With
``include_referrers``, the artifacts whose ``subject`` is the image (signatures, SBOMs)
follow it, and so do cosign's ``sha256-<hex>.sig`` tags of the copied digests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_ecr_layers.core.ecr.calls import ImageRecord
from airflow_ecr_layers.core.ecr.references import ImageReference
from airflow_ecr_layers.core.engine.results import ImagePushResult
from airflow_ecr_layers.core.engine.transfer import EcrTransfer
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import (
    DEFAULT_MAX_CONCURRENCY,
    MiB,
    validate_digest,
    validate_repository_name,
    validate_tags,
)
from airflow_ecr_layers.core.oci.cosign import signature_tag
from airflow_ecr_layers.core.oci.image_plan import BlobRef, ImagePlan
from airflow_ecr_layers.core.oci.manifest import INDEX_TYPES, MANIFEST_TYPES, OCI_MANIFEST, Manifest
from airflow_ecr_layers.core.push.image import push_image
from airflow_ecr_layers.core.readback.download import LayerDownload
from airflow_ecr_layers.core.readback.pull import fetch_manifest

log = logging.getLogger("airflow_ecr_layers")

MAX_REFERRER_DEPTH = 3
"""Referrers of referrers (a signature of an SBOM of the image) are followed this deep."""


@dataclass(frozen=True)
class CopyResult(ImagePushResult):
    """The image as the destination now holds it, where it came from, and its copied referrers."""

    source: str = ""
    referrers: list[ImagePushResult] = field(default_factory=list)
    signatures: list[ImagePushResult] = field(default_factory=list)
    """cosign's ``sha256-<hex>.sig`` manifests of the copied digests (with ``include_referrers``)."""

    @property
    def bytes_copied(self) -> int:
        copied = [self, *self.referrers, *self.signatures]
        return sum(blob.size for result in copied for blob in result.blobs if not blob.skipped)

    def as_dict(self) -> dict[str, Any]:
        return {
            **super().as_dict(),
            "source": self.source,
            "referrers": [
                {"image_digest": r.image_digest, "manifest_media_type": r.manifest_media_type} for r in self.referrers
            ],
            "signature_tags": [t for r in self.signatures for t in r.tags],
            "bytes_copied": self.bytes_copied,
        }


class SourceImage:
    """An image to read out of ECR (a copy's source, a build's base): its engine, repository and registry id."""

    def __init__(self, engine: EcrTransfer, reference: ImageReference) -> None:
        self.engine = engine
        self.reference = reference
        # A registry named in the reference is taken as it is: another account's repository policy
        # usually grants the pull actions (BatchGetImage, GetDownloadUrlForLayer), not DescribeRepositories.
        self.registry_id = reference.registry_id or engine.calls.repository_registry_id(reference.repository_name)

    def image(self, digest: str | None = None) -> ImageRecord:
        at = self.reference if digest is None else ImageReference(self.reference.repository_name, digest=digest)
        return fetch_manifest(self.engine, at.with_defaults(self.registry_id, None))

    def plan(self, top: ImageRecord) -> ImagePlan:
        """Every manifest under ``top`` (children first, each once) and every blob they name, as
        download sources. A child an index lists twice, or that two nested indexes share, is
        read and planned once, where it first appears."""
        plan = ImagePlan("ecr")
        self._walk(top, plan, above=(), done=set())
        return plan

    def _walk(self, image: ImageRecord, plan: ImagePlan, above: tuple[str, ...], done: set[str]) -> None:
        if image.image_digest in above:
            raise InvalidInputError(f"Manifest {image.image_digest} names itself through its children")
        body = json.loads(image.manifest)
        media_type = image.media_type or body.get("mediaType") or OCI_MANIFEST
        if media_type in INDEX_TYPES:
            for child in body.get("manifests") or []:
                digest = validate_digest(child.get("digest"), "child manifest digest")
                if digest in (*above, image.image_digest):
                    raise InvalidInputError(f"Manifest {digest} names itself through its children")
                if digest not in done:
                    self._walk(self.image(digest), plan, (*above, image.image_digest), done)
        else:
            for blob in [body.get("config"), *(body.get("layers") or [])]:
                if blob and blob.get("urls"):
                    log.info("Layer %s is non-distributable (it names URLs): left for clients to fetch", blob["digest"])
                    continue
                if blob:
                    plan.add_blob(self.blob(blob))
        plan.add_manifest(Manifest(image.manifest, media_type))
        done.add(image.image_digest)

    def blob(self, descriptor: dict[str, Any]) -> BlobRef:
        """The blob a descriptor names, read from its download URL in this repository."""
        digest, size = validate_digest(descriptor.get("digest"), "blob digest"), int(descriptor["size"])
        source = LayerDownload(
            self.engine.calls, self.reference.repository_name, digest, size, registry_id=self.registry_id
        )
        return BlobRef(digest, size, str(descriptor.get("mediaType")), source)


def copy_image(
    source_engine: EcrTransfer,
    source: ImageReference,
    engine: EcrTransfer,
    repository_name: str,
    *,
    registry_id: str | None = None,
    tags: Sequence[str] | None = None,
    include_referrers: bool = False,
    part_size: int | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
) -> CopyResult:
    """Copy the image ``source`` names (through ``source_engine``) into ``repository_name``
    (through ``engine``), tagged ``tags``; without tags, the source's tag if it has one."""
    validate_repository_name(repository_name)
    tags = validate_tags(tags) if tags else ([source.tag] if source.tag else [])
    origin = SourceImage(source_engine, source)
    top = origin.image()
    log.info("Copying %s (%s) to %s", source, top.image_digest, repository_name)
    plan = origin.plan(top)
    tag_last = include_referrers and bool(tags)  # tags go on once the referrers are there
    result = push_image(
        engine,
        repository_name,
        plan,
        tags=() if tag_last else tags,
        registry_id=registry_id,
        part_size=part_size,
        max_concurrency=max_concurrency,
    )
    referrers = (
        _copy_referrers(
            origin, top.image_digest, engine, repository_name, result.registry_id, part_size, max_concurrency, depth=1
        )
        if include_referrers
        else []
    )
    signatures = (
        _copy_signature_tags(origin, plan, engine, repository_name, result.registry_id, part_size, max_concurrency)
        if include_referrers
        else []
    )
    if tag_last:
        engine.put_manifest(repository_name, plan.top, tags, result.registry_id)
    copied = CopyResult(
        **{**vars(result), "tags": list(tags)}, source=str(source), referrers=referrers, signatures=signatures
    )
    log.info(
        "Copied %s to %s:%s as %s: %d blobs, %d already there, %.1f MiB sent, %d referrers",
        source,
        repository_name,
        ",".join(tags) or "<untagged>",
        result.image_digest,
        len(result.blobs),
        result.skipped,
        copied.bytes_copied / MiB,
        len(referrers),
    )
    return copied


def _copy_signature_tags(
    origin: SourceImage,
    plan: ImagePlan,
    engine: EcrTransfer,
    repository_name: str,
    registry_id: str,
    part_size: int | None,
    max_concurrency: int,
) -> list[ImagePushResult]:
    """cosign's signature manifest (tag ``sha256-<hex>.sig``) of each manifest copied, copied with
    its tag, so the image stays verifiable where it lands."""
    copied: list[ImagePushResult] = []
    for manifest in plan.manifests:
        tag = signature_tag(manifest.digest)
        found = origin.engine.calls.batch_get_image(
            origin.reference.repository_name, [{"imageTag": tag}], origin.registry_id, MANIFEST_TYPES
        )
        if not found:
            continue
        signatures = origin.image(found[0].image_digest)
        copied.append(
            push_image(
                engine,
                repository_name,
                origin.plan(signatures),
                tags=[tag],
                registry_id=registry_id,
                part_size=part_size,
                max_concurrency=max_concurrency,
            )
        )
        log.info("Copied cosign signatures %s of %s", tag, manifest.digest)
    return copied


def _copy_referrers(
    origin: SourceImage,
    subject: str,
    engine: EcrTransfer,
    repository_name: str,
    registry_id: str,
    part_size: int | None,
    max_concurrency: int,
    depth: int,
) -> list[ImagePushResult]:
    """Every referrer of ``subject`` (and theirs, :data:`MAX_REFERRER_DEPTH` deep), untagged."""
    copied: list[ImagePushResult] = []
    for referrer in origin.engine.calls.list_image_referrers(
        origin.reference.repository_name, subject, origin.registry_id
    ):
        image = origin.image(referrer.digest)
        result = push_image(
            engine,
            repository_name,
            origin.plan(image),
            registry_id=registry_id,
            part_size=part_size,
            max_concurrency=max_concurrency,
        )
        log.info("Copied referrer %s (%s) of %s", referrer.digest, referrer.artifact_type, subject)
        copied.append(result)
        if depth < MAX_REFERRER_DEPTH:
            copied += _copy_referrers(
                origin, referrer.digest, engine, repository_name, registry_id, part_size, max_concurrency, depth + 1
            )
    return copied
