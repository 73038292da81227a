"""One-step push of object storage files as an OCI artifact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_ecr_layers.core.artifact import DEFAULT_MAX_CONCURRENCY, LayerSpec, push_artifact
from airflow_ecr_layers.core.results import optional_int
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.manifest import DEFAULT_LAYER_MEDIA_TYPE
from airflow_ecr_layers.object_storage import open_source
from airflow_ecr_layers.operators.base import EcrLayersBaseOperator, PublishesImage

Context = Any


class PushArtifactOperator(PublishesImage):
    """Push one or more files from object storage to ECR as one OCI artifact, in one task.

    Every source becomes a layer (titled with its file name), uploaded in parallel up
    to ``max_concurrency``; the manifest is put once all layers are in, once per tag.

    :param source: an ``ObjectStoragePath`` URL, or a list of them.
    :param repository_name: the ECR repository.
    :param tags: tags for the manifest.
    :param artifact_type: the manifest's ``artifactType`` (OCI 1.1).
    :param layer_media_type: the media type of every layer.
    :param annotations: manifest annotations.
    :param expected_digest: the source's sha256 if known: skip the upload when ECR has it,
        and refuse to complete one whose bytes hash differently (single source only).
    :param source_conn_id: the connection used to read the sources; ``aws_conn_id`` for s3:// if unset.
    :param part_size: bytes per part; ECR's ``partSize`` if unset.
    :param max_concurrency: layers uploaded at once.
    :return: the PutImage result plus ``layers``: one dict per blob.
    """

    template_fields: Sequence[str] = (
        *EcrLayersBaseOperator.template_fields,
        "source",
        "repository_name",
        "tags",
        "artifact_type",
        "layer_media_type",
        "annotations",
        "expected_digest",
        "source_conn_id",
        "part_size",
    )

    def __init__(
        self,
        *,
        source: str | Sequence[str],
        repository_name: str,
        tags: Sequence[str] | str | None = None,
        artifact_type: str | None = None,
        layer_media_type: str = DEFAULT_LAYER_MEDIA_TYPE,
        annotations: Mapping[str, str] | None = None,
        expected_digest: str | None = None,
        source_conn_id: str | None = None,
        part_size: int | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.repository_name = repository_name
        self.tags = tags
        self.artifact_type = artifact_type
        self.layer_media_type = layer_media_type
        self.annotations = annotations
        self.expected_digest = expected_digest
        self.source_conn_id = source_conn_id
        self.part_size = part_size
        self.max_concurrency = max_concurrency

    def execute(self, context: Context) -> dict[str, Any]:
        urls = [self.source] if isinstance(self.source, str) else list(self.source)
        if self.expected_digest and len(urls) != 1:
            raise InvalidInputError("expected_digest applies to a single source; give one source or none")
        sources = [open_source(url, self.source_conn_id, aws_conn_id=self.aws_conn_id) for url in urls]
        layers = [
            LayerSpec(src, self.layer_media_type, title=src.title, expected_digest=self.expected_digest or None)
            for src in sources
        ]
        result = push_artifact(
            self.hook,
            self.repository_name,
            layers,
            tags=[self.tags] if isinstance(self.tags, str) else list(self.tags or []),
            artifact_type=self.artifact_type,
            annotations=self.annotations,
            registry_id=self.registry_id,
            part_size=optional_int(self.part_size, "part_size"),
            max_concurrency=optional_int(self.max_concurrency, "max_concurrency") or DEFAULT_MAX_CONCURRENCY,
        )
        self.log.info(
            "Pushed %s:%s as %s (%d layers)",
            self.repository_name, ",".join(result["tags"]) or "<untagged>", result["image_digest"], len(layers),
        )
        return self.publish(context, result, [source.name for source in sources])
