"""Push a docker-save tarball or an OCI image layout from object storage into ECR."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_ecr_layers.core.archives.load import load_image
from airflow_ecr_layers.core.limits import validate_repository_name
from airflow_ecr_layers.core.push.image import push_image
from airflow_ecr_layers.object_storage import open_image_archive
from airflow_ecr_layers.operators.base import StoragePushOperator

Context = Any


class PushImageArchiveOperator(StoragePushOperator):
    """Push an image archive (docker-save or OCI layout; tar, tar.gz or directory) into ECR.

    Blobs are streamed straight out of the archive with ranged reads, never unpacked.
    Blobs ECR already has are skipped (checked 100 digests a call); the rest are
    uploaded in parallel, each verified against its digest while it streams. OCI
    layouts keep their manifests' exact bytes, so digests in ECR equal the layout's.
    A docker-save tarball gets an OCI manifest over its layers as they are. Child
    manifests of an index go first, untagged; the tags go on the top-level manifest.

    :param source: an ``ObjectStoragePath`` URL of a tar, a tar.gz, or a layout directory.
    :param image_ref: for an archive with several images: the ref name (OCI
        ``org.opencontainers.image.ref.name``) or docker ``RepoTags`` entry; ``"*"``
        pushes an OCI layout's whole ``index.json`` as an image index.
    :param gzip_layers: docker-save only: gzip uncompressed layers on the fly and push a
        Docker v2 schema 2 image (smaller in ECR, costs CPU: each layer is compressed twice,
        once to learn its digest and size, once while it uploads). Default: an OCI manifest
        over the layers as they are, digests equal to the diff ids.
    :return: ``image_digest``, ``tags``, ``manifest_media_type``, ``format``, ``manifests``,
        and per blob ``digest``, ``size``, ``media_type``, ``skipped``.

    Also takes ``repository_name``, ``tags``, ``source_conn_id``, ``part_size`` and
    ``max_concurrency`` (see :class:`StoragePushOperator`).
    """

    template_fields: Sequence[str] = (*StoragePushOperator.template_fields, "image_ref")

    def __init__(self, *, source: str, image_ref: str | None = None, gzip_layers: bool = False, **kwargs: Any) -> None:
        super().__init__(source=source, **kwargs)
        self.image_ref = image_ref
        self.gzip_layers = gzip_layers

    def execute(self, context: Context) -> dict[str, Any]:
        repository = validate_repository_name(self.repository_name)
        settings = self.push_settings(context)
        plan = load_image(
            open_image_archive(self.source, self.source_conn_id, aws_conn_id=self.aws_conn_id),
            self.image_ref or None,
            gzip_layers=bool(self.gzip_layers),
        )
        self.prepare_repository(repository)
        result = push_image(self.engine, repository, plan, **settings)
        self.log.info(
            "Pushed %s (%s) to %s as %s: %d blobs, %d skipped, %d manifests",
            self.source,
            plan.format,
            repository,
            result.image_digest,
            len(result.blobs),
            result.skipped,
            len(result.manifests),
        )
        return self.publish(context, result, [str(self.source)])
