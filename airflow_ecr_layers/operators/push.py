"""One-step push of object storage files as an OCI artifact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_ecr_layers.core.artifact import LayerSpec, push_artifact
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.manifest import DEFAULT_LAYER_MEDIA_TYPE
from airflow_ecr_layers.object_storage import open_source
from airflow_ecr_layers.operators.base import StoragePushOperator

Context = Any


class PushArtifactOperator(StoragePushOperator):
    """Push one or more files from object storage to ECR as one OCI artifact, in one task.

    Every source becomes a layer (titled with its file name), uploaded in parallel up
    to ``max_concurrency``; the manifest is put once all layers are in, once per tag.

    :param source: an ``ObjectStoragePath`` URL, or a list of them.
    :param artifact_type: the manifest's ``artifactType`` (OCI 1.1).
    :param layer_media_type: the media type of every layer.
    :param annotations: manifest annotations.
    :param expected_digest: the source's sha256 if known: skip the upload when ECR has it,
        and refuse to complete one whose bytes hash differently (single source only).
    :param subject: the digest of an image in the same repository: the artifact becomes
        its referrer (an SBOM, a signature, a report) through the manifest's ``subject``.
    :return: the PutImage result plus ``layers``: one dict per blob.

    Also takes ``repository_name``, ``tags``, ``source_conn_id``, ``part_size`` and
    ``max_concurrency`` (see :class:`StoragePushOperator`).
    """

    template_fields: Sequence[str] = (
        *StoragePushOperator.template_fields,
        "artifact_type",
        "layer_media_type",
        "annotations",
        "expected_digest",
        "subject",
    )

    def __init__(
        self,
        *,
        source: str | Sequence[str],
        artifact_type: str | None = None,
        layer_media_type: str = DEFAULT_LAYER_MEDIA_TYPE,
        annotations: Mapping[str, str] | None = None,
        expected_digest: str | None = None,
        subject: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(source=source, **kwargs)
        self.subject = subject
        self.artifact_type = artifact_type
        self.layer_media_type = layer_media_type
        self.annotations = annotations
        self.expected_digest = expected_digest

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
            self.engine,
            self.repository_name,
            layers,
            artifact_type=self.artifact_type,
            annotations=self.annotations,
            subject=self.subject or None,
            **self.push_settings(),
        )
        self.log.info(
            "Pushed %s:%s as %s (%d layers)",
            self.repository_name,
            ",".join(result.tags) or "<untagged>",
            result.image_digest,
            len(layers),
        )
        return self.publish(context, result, [source.name for source in sources])
