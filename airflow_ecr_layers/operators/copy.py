"""Copy an image between repositories, accounts and regions: blobs streamed, manifests byte for byte."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_ecr_layers.core.ecr.references import reference_from
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import validate_registry_id, validate_tags
from airflow_ecr_layers.core.push.artifact import check_max_concurrency
from airflow_ecr_layers.core.readback.copy import copy_image
from airflow_ecr_layers.operators.base import PublishesImage
from airflow_ecr_layers.operators.xcom import optional_int

Context = Any


class CopyImageOperator(PublishesImage):
    """Copy an image (an index with its children, and with ``include_referrers`` its signatures
    and SBOMs) from a source repository to this operator's repository.

    The source is read through ``source_aws_conn_id`` (another account's role, say) and
    written through ``aws_conn_id``. Blobs the destination already has are skipped; the rest
    stream from the source's download URL straight into UploadLayerPart, verified against
    their digests. Manifests are put byte for byte, children first, so the digests match
    on both sides; ``tags`` go on the top-level manifest (by default, the source's tag).

    :param source: ``REPOSITORY[:TAG|@DIGEST]`` or the full
        ``REGISTRY_ID.dkr.ecr.REGION.amazonaws.com/REPOSITORY[:TAG|@DIGEST]``; or give
        ``source_repository_name`` with ``source_image_tag`` or ``source_image_digest``, and
        ``source_registry_id``, ``source_region_name``.
    :param source_aws_conn_id: the connection to read the source with; ``aws_conn_id`` if unset.
    :param repository_name: the destination repository (in ``registry_id``/``region_name`` of
        ``aws_conn_id``); or give ``destination``, a reference whose tag becomes a tag.
    :param tags: the destination's tags.
    :param include_referrers: also copy the artifacts whose ``subject`` is the image, and cosign's
        ``sha256-<hex>.sig`` signature tags of the copied digests (``signature_tags`` in the result).
    :return: ``registry_id``, ``repository_name``, ``image_digest``, ``tags``,
        ``manifest_media_type``, ``manifests``, ``blobs`` (each with ``skipped``), ``source``,
        ``referrers`` and ``bytes_copied``.
    """

    template_fields: Sequence[str] = (
        *PublishesImage.template_fields,
        "source",
        "source_repository_name",
        "source_image_tag",
        "source_image_digest",
        "source_registry_id",
        "source_region_name",
        "source_aws_conn_id",
        "repository_name",
        "destination",
        "tags",
    )

    def __init__(
        self,
        *,
        source: str | None = None,
        source_repository_name: str | None = None,
        source_image_tag: str | None = None,
        source_image_digest: str | None = None,
        source_registry_id: str | None = None,
        source_region_name: str | None = None,
        source_aws_conn_id: str | None = None,
        repository_name: str | None = None,
        destination: str | None = None,
        tags: Sequence[str] | str | None = None,
        include_referrers: bool = False,
        part_size: int | None = None,
        max_concurrency: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.source_repository_name = source_repository_name
        self.source_image_tag = source_image_tag
        self.source_image_digest = source_image_digest
        self.source_registry_id = source_registry_id
        self.source_region_name = source_region_name
        self.source_aws_conn_id = source_aws_conn_id
        self.repository_name = repository_name
        self.destination = destination
        self.tags = tags
        self.include_referrers = include_referrers
        self.part_size = part_size
        self.max_concurrency = max_concurrency

    def execute(self, context: Context) -> dict[str, Any]:
        source = reference_from(
            self.source or None,
            repository_name=self.source_repository_name,
            image_tag=self.source_image_tag,
            image_digest=self.source_image_digest,
            registry_id=validate_registry_id(self.source_registry_id),
            region_name=self.source_region_name or None,
            what="source image",
        )
        target = reference_from(
            self.destination or None,
            repository_name=self.repository_name,
            registry_id=self.checked_registry_id(),
            region_name=self.region_name,
            what="destination",
            require_image=False,
        )
        if target.digest:
            raise InvalidInputError("The destination takes tags, not a digest: the digest is the source's")
        if target.region and not self.region_name:
            self.region_name = target.region  # the hook is built on first use, below
        tags = validate_tags([self.tags] if isinstance(self.tags, str) else list(self.tags or []))
        if target.tag:
            tags = [target.tag, *(t for t in tags if t != target.tag)]
        result = copy_image(
            self.engine_on(self.source_aws_conn_id, source.region),  # the connection's own region unless named
            source,
            self.engine,
            target.repository_name,
            registry_id=target.registry_id,
            tags=tags,
            include_referrers=bool(self.include_referrers),
            part_size=optional_int(self.part_size, "part_size"),
            max_concurrency=check_max_concurrency(optional_int(self.max_concurrency, "max_concurrency")),
        )
        return self.publish(context, result, [str(source)])
