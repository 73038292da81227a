"""The four steps of ECR's layer-upload lifecycle, one operator each.

Each returns a small JSON-safe dict that the next one takes directly
(``upload=initiate.output``), so the chain reads like the API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_ecr_layers.core.engine.planning import validate_part_size
from airflow_ecr_layers.core.limits import validate_repository_name
from airflow_ecr_layers.core.oci.manifest import DEFAULT_LAYER_MEDIA_TYPE, TITLE_ANNOTATION, validate_media_type
from airflow_ecr_layers.core.push.artifact import put_artifact_manifest
from airflow_ecr_layers.core.sources.identity import Target
from airflow_ecr_layers.object_storage import open_source
from airflow_ecr_layers.operators.base import CreatesRepository, EcrLayersBaseOperator, PublishesImage
from airflow_ecr_layers.operators.xcom import descriptor_of, optional_int, require, upload_session

Context = Any


class InitiateLayerUploadOperator(CreatesRepository):
    """Start a layer upload (InitiateLayerUpload).

    :param repository_name: the ECR repository.
    :param create_repository: create the repository first when it is missing, with
        ``repository_settings`` (see :class:`~airflow_ecr_layers.operators.base.CreatesRepository`);
        in a fan-out, every mapped upload does it, and all but the first find it there.
    :return: ``{registry_id, repository_name, upload_id, part_size}``
    """

    template_fields: Sequence[str] = (*CreatesRepository.template_fields, "repository_name")

    def __init__(self, *, repository_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.repository_name = repository_name

    def execute(self, context: Context) -> dict[str, Any]:
        repository = validate_repository_name(self.repository_name)
        self.prepare_repository(repository)
        session = self.engine.calls.initiate_layer_upload(repository, self.checked_registry_id())
        self.log.info("Started upload %s in %s (part size %d)", session.upload_id, repository, session.part_size)
        return session.as_dict()


class UploadLayerPartsOperator(EcrLayersBaseOperator):
    """Stream an object storage file into an upload, in parts, hashing sha256 on the way.

    :param source: an ``ObjectStoragePath`` URL (``s3://bucket/key``, ``file:///path``).
    :param upload: the result of :class:`InitiateLayerUploadOperator`.
    :param source_conn_id: the connection used to read ``source``; ``aws_conn_id`` for s3:// if unset.
    :param part_size: bytes per part (5 MiB to 20971520); ECR's ``partSize`` if unset.
    :param media_type: the layer's media type, carried to the manifest.
    :param expected_digest: refuse to hand on bytes that hash differently.
    :return: ``{registry_id, repository_name, upload_id, part_size, digest, size, parts,
        last_byte_received, media_type, annotations, source}``; ``upload_id`` may differ
        from the input when the upload expired and was started over.
    """

    template_fields: Sequence[str] = (
        *EcrLayersBaseOperator.template_fields,
        "source",
        "source_conn_id",
        "upload",
        "part_size",
        "media_type",
        "expected_digest",
    )

    def __init__(
        self,
        *,
        source: str,
        upload: Mapping[str, Any],
        source_conn_id: str | None = None,
        part_size: int | None = None,
        media_type: str = DEFAULT_LAYER_MEDIA_TYPE,
        expected_digest: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.upload = upload
        self.source_conn_id = source_conn_id
        self.part_size = part_size
        self.media_type = media_type
        self.expected_digest = expected_digest

    def execute(self, context: Context) -> dict[str, Any]:
        session = upload_session(self.upload, "upload (the InitiateLayerUpload result)")
        part_size = optional_int(self.part_size, "part_size")
        if part_size is not None:
            validate_part_size(part_size)
        media_type = validate_media_type(self.media_type, "media_type")
        source = open_source(self.source, self.source_conn_id, aws_conn_id=self.aws_conn_id)
        uploaded = self.engine.upload_parts(session, source, part_size=part_size, expected_digest=self.expected_digest)
        identity = source.identity()  # the snapshot taken when the source was opened, checked after the last byte
        target = Target(session.registry_id, self.engine.calls.region, session.repository_name)
        recorded = identity.annotations(target, 0, source.size) if identity else {}
        return {
            **uploaded.as_dict(),
            "media_type": media_type,
            "annotations": {TITLE_ANNOTATION: source.title, **recorded},
            "source": source.name,
        }


class CompleteLayerUploadOperator(EcrLayersBaseOperator):
    """Complete an upload (CompleteLayerUpload) and check ECR's digest against the streamed one.

    :param upload: the result of :class:`UploadLayerPartsOperator`.
    :return: ``{registry_id, repository_name, layer_digest, size, media_type, annotations,
        already_existed}``
    """

    template_fields: Sequence[str] = (*EcrLayersBaseOperator.template_fields, "upload")

    def __init__(self, *, upload: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.upload = upload

    def execute(self, context: Context) -> dict[str, Any]:
        what = "upload (the UploadLayerParts result)"
        session = upload_session(self.upload, what)
        parts = require(self.upload, what, digest=str, size=int)
        existed = self.engine.complete_upload(session, parts["digest"], parts["size"])
        self.log.info("Layer %s (%d bytes) is in %s", parts["digest"], parts["size"], session.repository_name)
        return {
            "registry_id": session.registry_id,
            "repository_name": session.repository_name,
            "layer_digest": parts["digest"],
            "size": parts["size"],
            "media_type": parts.get("media_type", DEFAULT_LAYER_MEDIA_TYPE),
            "annotations": dict(parts.get("annotations") or {}),
            "already_existed": existed,
            "source": parts.get("source"),
        }


class PutImageOperator(PublishesImage):
    """Write an OCI manifest over completed layers and tag it (one PutImage per tag).

    The manifest is serialised once; its exact bytes are sent and their sha256 is
    passed as ``imageDigest``. Without ``config`` the manifest is an OCI 1.1 artifact
    on the empty config (uploaded if missing) with ``artifact_type``.

    :param repository_name: the ECR repository.
    :param layers: completed layer results (a list, XComArgs, or a mapped task's output).
    :param config: optional completed result of a config blob (with ``media_type``).
    :param artifact_type: the manifest's ``artifactType``.
    :param annotations: manifest annotations.
    :param tags: the tags to put; an untagged image when empty.
    :return: ``{registry_id, repository_name, image_digest, tags, manifest_media_type, manifest_size}``
    """

    template_fields: Sequence[str] = (
        *PublishesImage.template_fields,  # sign_with, signature_annotations (docs/signing.md)
        "repository_name",
        "layers",
        "config",
        "artifact_type",
        "annotations",
        "tags",
    )

    def __init__(
        self,
        *,
        repository_name: str,
        layers: Sequence[Mapping[str, Any]] | Mapping[str, Any],
        config: Mapping[str, Any] | None = None,
        artifact_type: str | None = None,
        annotations: Mapping[str, str] | None = None,
        tags: Sequence[str] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.repository_name = repository_name
        self.layers = layers
        self.config = config
        self.artifact_type = artifact_type
        self.annotations = annotations
        self.tags = tags

    def execute(self, context: Context) -> dict[str, Any]:
        layers = [self.layers] if isinstance(self.layers, Mapping) else list(self.layers)
        result = put_artifact_manifest(
            self.engine,
            validate_repository_name(self.repository_name),
            [descriptor_of(layer) for layer in layers],
            tags=[self.tags] if isinstance(self.tags, str) else list(self.tags or []),
            config=descriptor_of(self.config) if self.config else None,
            artifact_type=self.artifact_type,
            annotations=self.annotations,
            registry_id=self.checked_registry_id(),
        )
        return self.publish(
            context, result, [layer.get("source", "") for layer in layers if isinstance(layer, Mapping)]
        )
