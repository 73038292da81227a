"""Build records: what a build learnt of its tar layers, kept beside the image, never in it.

A re-build reuses a tar layer without reading its files when it knows the layer's digest,
size and ``diff_id`` from the files' identities alone. The image cannot hold that: its
digest must depend on the files' bytes only (the same files from S3 and from a local copy
give the same image). So each build writes a small **build record** next to the image:

* an OCI manifest with ``artifactType`` :data:`BUILD_RECORD_TYPE` and the empty config,
  whose ``subject`` is the built image (an OCI 1.1 referrer of it);
* its ``layers`` are the image's own tar layers (ECR checks they exist), each annotated with
  the layer's identity token (:data:`~airflow_ecr_layers.core.sources.identity.IDENTITY`:
  the sha256 of the files' identities summed up, keyed by registry, region and repository;
  no ETag, version id or inode is written in clear) and its ``diff_id`` (:data:`DIFF_ID`);
* tagged :func:`record_tag` (``sha256-<hex of the image digest>.build``, as cosign tags
  ``.sig``), so the next build finds it from the image's tag with two ``BatchGetImage``
  calls, the permission a push already needs to reuse layers (``ListImageReferrers``
  would find it too, but needs one more permission, and untagged manifests are what
  lifecycle rules on untagged images expire).

A record only ever saves work: every digest it names is checked in ECR before it is used,
``verify_reuse`` re-reads the files and uses it only when they hash to it, and a record
that is missing, unreadable or refused costs one warning and a full build.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from airflow_ecr_layers.core.ecr.calls import EcrCalls
from airflow_ecr_layers.core.engine.transfer import EcrTransfer
from airflow_ecr_layers.core.errors import EcrLayersError, EcrServiceError
from airflow_ecr_layers.core.limits import validate_digest
from airflow_ecr_layers.core.oci.manifest import MANIFEST_TYPES, OCI_MANIFEST, Descriptor
from airflow_ecr_layers.core.push.artifact import put_artifact_manifest
from airflow_ecr_layers.core.sources.identity import IDENTITY, NAMESPACE

log = logging.getLogger("airflow_ecr_layers")

BUILD_RECORD_TYPE = "application/vnd.airflow-ecr-layers.build-record.v1+json"
"""The ``artifactType`` of a build record."""
DIFF_ID = f"{NAMESPACE}.build.diff-id"
"""On a record's layer: the layer's ``diff_id`` (the digest of its uncompressed tar)."""
RECORD_TAG_SUFFIX = ".build"


@dataclass(frozen=True)
class RecordedTarLayer:
    """A tar layer a build record names: enough to put it in an image without reading it."""

    digest: str
    size: int
    media_type: str
    diff_id: str


@dataclass(frozen=True)
class RecordEntry:
    """One layer of a build, as its record keeps it."""

    layer: Descriptor
    """The layer as the image names it."""
    token: str | None
    """Its identity token (None: its files have no identity, nothing to record)."""
    diff_id: str


def record_tag(image_digest: str) -> str:
    """The tag of the build record of ``image_digest``: ``sha256-<hex>.build``."""
    algorithm, _, hex_digest = validate_digest(image_digest, "image digest").partition(":")
    return f"{algorithm}-{hex_digest}{RECORD_TAG_SUFFIX}"


def read_record(
    calls: EcrCalls, repository_name: str, registry_id: str, reference: str | None
) -> dict[str, RecordedTarLayer]:
    """The tar layers the build record of the image ``reference`` (a tag or a digest) names, by
    identity token. Nothing when there is no such image yet; nothing, after one warning, when
    its record is missing, unreadable or its reading refused."""
    if not reference:
        return {}
    image_id = {"imageDigest": reference} if reference.startswith("sha256:") else {"imageTag": reference}
    try:
        found = calls.batch_get_image(repository_name, [image_id], registry_id, accepted_media_types=MANIFEST_TYPES)
        if not found:
            log.info("No image %s in %s yet: every layer is built in full", reference, repository_name)
            return {}
        image_digest = found[0].image_digest
        records = calls.batch_get_image(
            repository_name, [{"imageTag": record_tag(image_digest)}], registry_id, accepted_media_types=[OCI_MANIFEST]
        )
    except EcrServiceError as exc:
        hint = " (grant ecr:BatchGetImage on the repository to reuse layers)" if "AccessDenied" in exc.code else ""
        _warn(repository_name, reference, f"it could not be read: {exc}{hint}")
        return {}
    if not records:
        _warn(repository_name, reference, f"{image_digest} has no build record ({record_tag(image_digest)})")
        return {}
    layers = parse_record(records[0].manifest, image_digest)
    if layers is None:
        _warn(repository_name, reference, f"the build record {record_tag(image_digest)} is not one this build reads")
        return {}
    log.info("%s:%s: its build record names %d reusable tar layers", repository_name, reference, len(layers))
    return layers


def _warn(repository_name: str, reference: str, why: str) -> None:
    log.warning(
        "Cannot reuse the layers of %s:%s, so every layer is read and sent in full: %s", repository_name, reference, why
    )


def parse_record(manifest: bytes, image_digest: str) -> dict[str, RecordedTarLayer] | None:
    """The layers of a build record of ``image_digest``, by token; None when ``manifest`` is not
    such a record (another artifact type, another subject, not JSON). A layer with a malformed
    descriptor is left out: a record is a hint, every digest checked in ECR before use."""
    try:
        body = json.loads(manifest)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, Mapping) or body.get("artifactType") != BUILD_RECORD_TYPE:
        return None
    subject = body.get("subject")
    if not isinstance(subject, Mapping) or subject.get("digest") != image_digest:
        return None
    layers = body.get("layers")
    found: dict[str, RecordedTarLayer] = {}
    for layer in layers if isinstance(layers, list) else []:
        annotations = layer.get("annotations") if isinstance(layer, Mapping) else None
        if not isinstance(annotations, Mapping):
            continue
        token, size, media_type = annotations.get(IDENTITY), layer.get("size"), layer.get("mediaType")
        if not isinstance(token, str) or not isinstance(media_type, str):
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            continue
        try:
            digest = validate_digest(layer.get("digest"))
            diff_id = validate_digest(annotations.get(DIFF_ID), "diff_id")
        except ValueError:
            continue
        found[token] = RecordedTarLayer(digest, size, media_type, diff_id)
    return found


def write_record(
    engine: EcrTransfer,
    repository_name: str,
    registry_id: str,
    image: Descriptor,
    entries: Sequence[RecordEntry],
) -> str | None:
    """Put the build record of ``image`` (already in the repository), tagged :func:`record_tag`;
    its digest, or None when no layer has an identity, or when ECR refused it (one warning: the
    image is built and tagged all the same, the next build reads everything)."""
    layers = [
        Descriptor(
            entry.layer.media_type,
            entry.layer.digest,
            entry.layer.size,
            {IDENTITY: entry.token, DIFF_ID: entry.diff_id},
        )
        for entry in entries
        if entry.token is not None
    ]
    if not layers:
        log.info("No file of %s has an identity: no build record to write", image.digest)
        return None
    tag = record_tag(image.digest)
    try:
        put = put_artifact_manifest(
            engine,
            repository_name,
            layers,
            tags=[tag],
            artifact_type=BUILD_RECORD_TYPE,
            subject=image,
            registry_id=registry_id,
        )
    except EcrLayersError as exc:
        log.warning(
            "The image is built, but its build record %s:%s could not be written, so the next build reads "
            "every layer in full: %s",
            repository_name,
            tag,
            exc,
        )
        return None
    log.info("Recorded %d tar layers of %s in %s:%s", len(layers), image.digest, repository_name, tag)
    return put.image_digest
