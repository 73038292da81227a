"""Push an :class:`ImagePlan`: skip blobs ECR has, upload the rest, manifests children first, tags last."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from airflow_ecr_layers.core.engine.planning import validate_part_size
from airflow_ecr_layers.core.engine.results import ImagePushResult, PushedBlob
from airflow_ecr_layers.core.engine.resume import ResumeStore
from airflow_ecr_layers.core.engine.transfer import EcrTransfer
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import (
    DEFAULT_MAX_CONCURRENCY,
    MAX_LAYERS,
    validate_registry_id,
    validate_repository_name,
    validate_tags,
)
from airflow_ecr_layers.core.oci.image_plan import ImagePlan
from airflow_ecr_layers.core.oci.layers import LayerSpec
from airflow_ecr_layers.core.push.artifact import check_max_concurrency, push_layers

log = logging.getLogger("airflow_ecr_layers")


def push_image(
    engine: EcrTransfer,
    repository_name: str,
    plan: ImagePlan,
    *,
    tags: Sequence[str] = (),
    registry_id: str | None = None,
    part_size: int | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    resume: ResumeStore | None = None,
) -> ImagePushResult:
    validate_repository_name(repository_name)
    tags = validate_tags(tags)
    max_concurrency = check_max_concurrency(max_concurrency)
    if part_size is not None:
        validate_part_size(part_size)
    for manifest in plan.manifests:
        if manifest.layer_count() > MAX_LAYERS:
            raise InvalidInputError(
                f"{plan.format}: manifest {manifest.digest} has {manifest.layer_count()} layers; ECR refuses "
                f"more than {MAX_LAYERS} per image, so nothing was written"
            )
    registry_id = engine.calls.repository_registry_id(repository_name, validate_registry_id(registry_id))
    blobs = list(plan.blobs.values())
    present = engine.calls.batch_check_layer_availability(repository_name, [b.digest for b in blobs], registry_id)
    missing = [b for b in blobs if not (present.get(b.digest) and present[b.digest].available)]
    log.info(
        "%s: %d blobs, %d already in %s, %d to upload; %d manifests",
        plan.format,
        len(blobs),
        len(blobs) - len(missing),
        repository_name,
        len(missing),
        len(plan.manifests),
    )
    push_layers(
        engine,
        repository_name,
        [LayerSpec(b.source, b.media_type, expected_digest=b.digest) for b in missing],
        registry_id=registry_id,
        part_size=part_size,
        max_concurrency=max_concurrency,
        check_first=False,
        resume=resume,
    )
    for child in plan.manifests[:-1]:
        engine.put_manifest(repository_name, child, [], registry_id)
    engine.put_manifest(repository_name, plan.top, tags, registry_id)
    uploaded = {b.digest for b in missing}
    return ImagePushResult(
        registry_id=registry_id,
        repository_name=repository_name,
        image_digest=plan.top.digest,
        tags=tags,
        manifest_media_type=plan.top.media_type,
        format=plan.format,
        manifests=list(plan.manifests),
        blobs=[PushedBlob(b.digest, b.size, b.media_type, b.digest not in uploaded) for b in blobs],
    )
