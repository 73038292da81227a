"""Push artifacts: several blobs (in parallel) and one manifest over them, tagged last."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

from airflow_ecr_layers.core.engine.planning import plan_parts
from airflow_ecr_layers.core.engine.results import ArtifactPushResult, BlobResult, ManifestResult
from airflow_ecr_layers.core.engine.resume import ResumePoint, ResumeStore
from airflow_ecr_layers.core.engine.transfer import EcrTransfer
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import (
    DEFAULT_MAX_CONCURRENCY,
    MiB,
    validate_digest,
    validate_registry_id,
    validate_repository_name,
    validate_tags,
)
from airflow_ecr_layers.core.oci.layers import LayerSpec, check_layer_titles, check_layers
from airflow_ecr_layers.core.oci.manifest import (
    EMPTY_BLOB,
    EMPTY_DESCRIPTOR,
    MANIFEST_TYPES,
    OCI_MANIFEST,
    Descriptor,
    build_image_manifest,
    validate_media_type,
)
from airflow_ecr_layers.core.push.discovery import Finding, HeldSource, learn_digests, previous_layers
from airflow_ecr_layers.core.sources.blobs import BytesSource
from airflow_ecr_layers.core.sources.identity import IDENTITY, SOURCE_FIELDS, Target

log = logging.getLogger("airflow_ecr_layers")

_PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
ONE_PART_CONCURRENCY = 16
"""Layers of one part uploaded at once (besides ``max_concurrency`` larger ones): their cost is
three round trips (InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload), not bytes."""
ONE_PART_BYTES_IN_FLIGHT = 40 * MiB
"""Bytes of one-part layers being uploaded at once, at most: lowers their concurrency for large ones
(each holds its part and its base64 request body while it is sent)."""
ONE_PART_LAYERS_PER_SECOND = 90.0
"""One-part layers started per second, at most: each costs one InitiateLayerUpload and one
CompleteLayerUpload, which ECR allows 100 times a second per account and region (a margin is left
for the account's other clients; botocore retries a throttled call)."""


def subject_descriptor(
    engine: EcrTransfer, repository_name: str, image_digest: str, registry_id: str | None = None
) -> Descriptor:
    """The descriptor of an image already in the repository, for an artifact's ``subject``."""
    validate_digest(image_digest, "subject")
    found = engine.calls.batch_get_image(
        repository_name, [{"imageDigest": image_digest}], registry_id, accepted_media_types=MANIFEST_TYPES
    )
    if not found:
        raise InvalidInputError(f"subject {image_digest} is not an image in {repository_name!r}: push the image first")
    image = found[0]
    media_type = image.media_type or json.loads(image.manifest).get("mediaType") or OCI_MANIFEST
    return Descriptor(media_type, image_digest, len(image.manifest))


def ensure_empty_config(engine: EcrTransfer, repository_name: str, registry_id: str | None) -> None:
    """ECR checks that the config blob exists, so the 2-byte ``{}`` is uploaded once."""
    engine.push_blob(
        repository_name,
        BytesSource(EMPTY_BLOB, "<OCI empty config>"),
        media_type=EMPTY_DESCRIPTOR.media_type,
        registry_id=registry_id,
        expected_digest=EMPTY_DESCRIPTOR.digest,
    )


def put_artifact_manifest(
    engine: EcrTransfer,
    repository_name: str,
    layers: Sequence[Descriptor],
    *,
    tags: Sequence[str] = (),
    config: Descriptor | None = None,
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
    subject: Descriptor | None = None,
    registry_id: str | None = None,
) -> ManifestResult:
    """Build the OCI manifest over pushed blobs and put it once per tag."""
    tags = validate_tags(tags)
    if not layers:
        raise InvalidInputError("No layers given: a manifest needs at least one")
    check_layer_titles([layer.annotations for layer in layers])  # what a pull would refuse
    manifest = build_image_manifest(
        layers, config=config, artifact_type=artifact_type, annotations=annotations, subject=subject
    )
    if config is None:
        ensure_empty_config(engine, repository_name, registry_id)
    results = engine.put_manifest(repository_name, manifest, tags, registry_id)
    return ManifestResult(
        registry_id=results[0].registry_id or (registry_id or ""),
        repository_name=repository_name,
        image_digest=manifest.digest,
        tags=tags,
        manifest_media_type=manifest.media_type,
        manifest_size=manifest.size,
    )


def check_max_concurrency(value: object) -> int:
    """A layer concurrency of at least 1 (``None`` means :data:`DEFAULT_MAX_CONCURRENCY`)."""
    if value is None:
        return DEFAULT_MAX_CONCURRENCY
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"max_concurrency must be an integer of at least 1, got {value!r}")
    return value


def push_layers(
    engine: EcrTransfer,
    repository_name: str,
    layers: Sequence[LayerSpec],
    *,
    registry_id: str | None = None,
    part_size: int | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    check_first: bool = True,
    resume: ResumeStore | None = None,
    one_part_concurrency: int = ONE_PART_CONCURRENCY,
) -> list[BlobResult]:
    """Push blobs, up to ``max_concurrency`` at once, results in input order.

    Blobs of one part go up beside them, up to ``one_part_concurrency`` at once (fewer when
    they are large, :data:`ONE_PART_BYTES_IN_FLIGHT`, or when the ECR client keeps fewer
    connections: raise its ``max_pool_connections`` for more), started at most
    :data:`ONE_PART_LAYERS_PER_SECOND` times a second.
    ``check_first=False`` skips the per-blob availability check (the caller batched it).
    With ``resume`` (and a resolved ``registry_id``), each blob's upload is recorded there
    while it runs, and continued from there by a later attempt (:mod:`.resume`).
    """
    max_concurrency = check_max_concurrency(max_concurrency)
    one_part_concurrency = check_max_concurrency(one_part_concurrency)
    if engine.progress is not None:
        engine.progress.planned({layer.source.name: layer.source.size for layer in layers})

    def push(layer: LayerSpec) -> BlobResult:
        point = ResumePoint.of(
            resume,
            layer.identity,
            layer.expected_digest,
            Target(registry_id or "", engine.calls.region, repository_name),
            layer.offset,
            layer.source.size,
        )
        return engine.push_blob(
            repository_name,
            layer.source,
            media_type=layer.media_type,
            registry_id=registry_id,
            part_size=part_size,
            expected_digest=layer.expected_digest,
            annotations=layer.all_annotations(),
            check_first=check_first,
            resume=point,
        )

    one_part = [plan_parts(layer.source.size, part_size).parts == 1 for layer in layers]
    small = [layer for layer, single in zip(layers, one_part, strict=True) if single]
    if small:
        largest = max(layer.source.size for layer in small)
        one_part_concurrency = min(one_part_concurrency, max(1, ONE_PART_BYTES_IN_FLIGHT // largest))
    pace = _Pace(ONE_PART_LAYERS_PER_SECOND)

    def push_one_part(layer: LayerSpec) -> BlobResult:
        pace.wait()
        return push(layer)

    large_workers = min(max_concurrency, len(layers) - len(small))
    # more threads than the client keeps connections would open and drop one per call
    room = _pool_connections(engine.calls.client) - large_workers
    small_workers = min(max(min(one_part_concurrency, room), max_concurrency), len(small))
    if large_workers + small_workers <= 1:
        return [push(layer) for layer in layers]
    futures: list[Future[BlobResult]] = []
    with (
        ThreadPoolExecutor(max_workers=max(large_workers, 1), thread_name_prefix="ecr-layer") as large_pool,
        ThreadPoolExecutor(max_workers=max(small_workers, 1), thread_name_prefix="ecr-small-layer") as small_pool,
    ):
        for layer, single in zip(layers, one_part, strict=True):
            futures.append(small_pool.submit(push_one_part, layer) if single else large_pool.submit(push, layer))
        return [future.result() for future in futures]


def _pool_connections(client: object) -> int:
    """The connections a botocore client keeps for its threads (``max_pool_connections``, 10 by default)."""
    found = getattr(getattr(getattr(client, "meta", None), "config", None), "max_pool_connections", None)
    return found if isinstance(found, int) and found > 0 else 10


class _Pace:
    """At most ``per_second`` starts a second, over every thread that waits on it."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


def push_artifact(
    engine: EcrTransfer,
    repository_name: str,
    layers: Sequence[LayerSpec],
    *,
    tags: Sequence[str] = (),
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
    subject: str | Descriptor | None = None,
    registry_id: str | None = None,
    part_size: int | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    reuse: bool = True,
    reuse_from: str | None = None,
    hash_first: bool = False,
    verify_reuse: bool = False,
    record_source: bool = False,
    resume: ResumeStore | None = None,
) -> ArtifactPushResult:
    """Validate everything, push every layer, then the manifest: no tag before all blobs are in.

    ``subject`` (an image digest in the same repository, or its descriptor) makes the
    artifact a referrer of that image (an SBOM, a signature...).

    Layers whose digest can be learnt without reading them (:mod:`.discovery`) and that
    ECR holds are neither read nor uploaded: with ``reuse``, the layers recorded by the
    image ``reuse_from`` names (a tag or a digest; by default the first tag) are matched
    to the sources by identity; ``verify_reuse`` hashes each such source and reuses it
    only when its bytes hash to the record. ``hash_first`` reads each remaining source
    once to hash it before deciding to upload. Every layer read records its source's
    identity (a digest of it; ``record_source`` also writes the URL, size and mtime in
    clear); a layer skipped on the caller's ``expected_digest`` was never read and records
    none. ``resume`` keeps each upload's progress where a later attempt (after a killed
    worker) continues it.
    """
    validate_repository_name(repository_name)
    registry_id = validate_registry_id(registry_id)
    tags = validate_tags(tags)
    max_concurrency = check_max_concurrency(max_concurrency)
    if not layers:
        raise InvalidInputError("Nothing to push: no sources given")
    check_layers(layers)
    for layer in layers:
        validate_media_type(layer.media_type, "layer media type")
        plan_parts(layer.source.size, part_size)
    if artifact_type is not None:
        validate_media_type(artifact_type, "artifact type")
    if reuse_from is not None and not reuse_from.startswith("sha256:"):
        validate_tags([reuse_from])
    registry_id = engine.calls.repository_registry_id(repository_name, registry_id)  # fails before any write
    if isinstance(subject, str):
        subject = subject_descriptor(engine, repository_name, subject, registry_id)
    target = Target(registry_id, engine.calls.region, repository_name)
    layers = [_recording_identity(layer, target, record_source) for layer in layers]
    # The manifest's size is known before any upload: digests have a fixed length.
    build_image_manifest(
        [Descriptor(spec.media_type, _PLACEHOLDER_DIGEST, spec.source.size, spec.all_annotations()) for spec in layers],
        artifact_type=artifact_type,
        annotations=annotations,
        subject=subject,
    )
    reference = (reuse_from or (tags[0] if tags else None)) if reuse else None
    recorded = previous_layers(engine.calls, repository_name, registry_id, reference)
    findings = learn_digests(
        engine.calls,
        repository_name,
        registry_id,
        layers,
        recorded=recorded,
        hash_first=hash_first,
        verify_reuse=verify_reuse,
        one_part=plan_parts(1, part_size).part_size,
    )
    # A layer skipped on the caller's word (its expected_digest, which ECR holds) was never
    # read: nothing says the source holds those bytes, so its identity is not recorded.
    layers = [
        _without_identity(layer) if found.present and found.origin == "expected" else layer
        for layer, found in zip(layers, findings, strict=True)
    ]
    blobs = push_found(
        engine,
        repository_name,
        layers,
        findings,
        registry_id=registry_id,
        part_size=part_size,
        max_concurrency=max_concurrency,
        resume=resume,
    )
    put = put_artifact_manifest(
        engine,
        repository_name,
        [blob.descriptor() for blob in blobs],
        tags=tags,
        artifact_type=artifact_type,
        annotations=annotations,
        subject=subject,
        registry_id=registry_id,
    )
    result = ArtifactPushResult(**vars(put), layers=blobs)
    totals = result.totals
    log.info(
        "reused %d of %d layers; read %.1f MiB, sent %.1f MiB",
        totals["reused"],
        totals["layers"],
        totals["bytes_read"] / MiB,
        totals["bytes_sent"] / MiB,
    )
    return result


def push_found(
    engine: EcrTransfer,
    repository_name: str,
    layers: Sequence[LayerSpec],
    findings: Sequence[Finding],
    *,
    registry_id: str,
    part_size: int | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    resume: ResumeStore | None = None,
) -> list[BlobResult]:
    """Push the layers ECR lacks according to ``findings`` (:func:`.discovery.learn_digests`, one
    per layer), each expected to hash to the digest learnt for it, if any; the results in order,
    a layer ECR holds reported as skipped (nothing read but what learning its digest read)."""
    to_upload = [
        replace(
            layer,
            expected_digest=found.digest,
            source=layer.source if found.data is None else HeldSource(layer.source, found.data),
        )
        for layer, found in zip(layers, findings, strict=True)
        if not found.present
    ]
    uploaded = iter(
        push_layers(
            engine,
            repository_name,
            to_upload,
            registry_id=registry_id,
            part_size=part_size,
            max_concurrency=max_concurrency,
            check_first=False,
            resume=resume,
        )
    )
    return [
        _held(layer, found, registry_id, repository_name) if found.present else _after_upload(next(uploaded), found)
        for layer, found in zip(layers, findings, strict=True)
    ]


def _recording_identity(layer: LayerSpec, target: Target, in_clear: bool) -> LayerSpec:
    """``layer`` with its source's identity in its annotations (unchanged where it has none)."""
    if layer.identity is None:
        return layer
    recorded = layer.identity.annotations(target, layer.offset, layer.source.size, in_clear=in_clear)
    return replace(layer, annotations={**layer.annotations, **recorded})


def _without_identity(layer: LayerSpec) -> LayerSpec:
    """``layer`` with no record of its source's identity."""
    recorded = {IDENTITY, *SOURCE_FIELDS.values()}
    return replace(layer, annotations={k: v for k, v in layer.annotations.items() if k not in recorded})


def _held(layer: LayerSpec, found: Finding, registry_id: str, repository_name: str) -> BlobResult:
    """The result for a layer ECR already holds: nothing sent."""
    assert found.digest is not None
    return BlobResult(
        registry_id,
        repository_name,
        found.digest,
        layer.source.size,
        layer.media_type,
        skipped=True,
        annotations=layer.all_annotations(),
        reused=found.reused,
        bytes_read=found.bytes_read,
    )


def _after_upload(blob: BlobResult, found: Finding) -> BlobResult:
    """An uploaded layer's result, counting what was read to learn its digest too (bytes kept
    from that read and uploaded from memory were read once)."""
    return replace(blob, bytes_read=found.bytes_read + (0 if found.data is not None else blob.bytes_read))
