"""Pull an artifact from ECR into object storage: one object per titled layer, verified."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_ecr_layers.core.ecr.references import reference_from
from airflow_ecr_layers.core.push.artifact import check_max_concurrency
from airflow_ecr_layers.core.readback.pull import pull_artifact
from airflow_ecr_layers.object_storage import open_sink
from airflow_ecr_layers.operators.base import EcrLayersBaseOperator
from airflow_ecr_layers.operators.xcom import optional_int

Context = Any


class PullArtifactOperator(EcrLayersBaseOperator):
    """Write each titled layer of an artifact to ``destination/<title>``, chunked files put back together.

    Every layer is read from ECR's download URL with ranged GETs (resumed where a body
    breaks), hashed while it streams, and a file appears only once its layers' digests
    check out: a corrupt download leaves nothing behind. Titles that are absolute, climb
    out with ``..`` or collide are refused before anything is written.

    :param reference: ``REPOSITORY[:TAG|@DIGEST]``, or the full
        ``REGISTRY_ID.dkr.ecr.REGION.amazonaws.com/REPOSITORY[:TAG|@DIGEST]``; or give
        ``repository_name`` with ``image_tag`` or ``image_digest`` (and ``registry_id``, ``region_name``).
    :param destination: an ``ObjectStoragePath`` folder or prefix (``s3://bucket/prefix/``, ``file:///dir/``).
    :param destination_conn_id: the connection to write with; ``aws_conn_id`` for s3:// if unset.
    :param include: keep only the files whose title matches this glob (``*.safetensors``).
    :param max_concurrency: files pulled at once (layers at once, for an image of tar layers).
    :param path: for an image of tar layers (one ``BuildImageOperator`` built, or any image): the
        folder of the image whose files are written, relative to it; by default the folder its
        build recorded, else ``/``. Every entry is checked before anything is written.
    :return: ``registry_id``, ``repository_name``, ``image_digest``, ``bytes`` and ``files``: per
        file ``path``, ``title``, ``size``, ``digest`` (sha256 of the file) and ``layers``.
    """

    template_fields: Sequence[str] = (
        *EcrLayersBaseOperator.template_fields,
        "reference",
        "repository_name",
        "image_tag",
        "image_digest",
        "destination",
        "destination_conn_id",
        "include",
        "path",
    )

    def __init__(
        self,
        *,
        destination: str,
        reference: str | None = None,
        repository_name: str | None = None,
        image_tag: str | None = None,
        image_digest: str | None = None,
        destination_conn_id: str | None = None,
        include: str | None = None,
        max_concurrency: int = 2,
        path: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reference = reference
        self.repository_name = repository_name
        self.image_tag = image_tag
        self.image_digest = image_digest
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        self.include = include
        self.max_concurrency = max_concurrency
        self.path = path

    def execute(self, context: Context) -> dict[str, Any]:
        image = reference_from(
            self.reference or None,
            repository_name=self.repository_name,
            image_tag=self.image_tag,
            image_digest=self.image_digest,
            registry_id=self.checked_registry_id(),
            region_name=self.region_name,
        )
        if image.region and not self.region_name:
            self.region_name = image.region  # the hook is built on first use, below
        sink = open_sink(self.destination, self.destination_conn_id, aws_conn_id=self.aws_conn_id)
        result = pull_artifact(
            self.engine,
            image,
            sink,
            include=self.include or None,
            max_concurrency=check_max_concurrency(optional_int(self.max_concurrency, "max_concurrency")),
            path=self.path or None,
        )
        self.log.info("Pulled %d files of %s to %s", len(result.files), image, self.destination)
        return result.as_dict()
