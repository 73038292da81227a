"""One-step push of object storage files as an OCI artifact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_ecr_layers.core.oci.layers import layers_of, validate_chunk_size
from airflow_ecr_layers.core.oci.manifest import DEFAULT_LAYER_MEDIA_TYPE
from airflow_ecr_layers.core.push.artifact import push_artifact
from airflow_ecr_layers.object_storage import open_sources
from airflow_ecr_layers.operators.base import StoragePushOperator
from airflow_ecr_layers.operators.xcom import optional_int

Context = Any


class PushArtifactOperator(StoragePushOperator):
    """Push files from object storage to ECR as one OCI artifact, in one task, paying only for what changed.

    Every source becomes a layer titled with its path (relative to its prefix or glob),
    uploaded in parallel up to ``max_concurrency``; the manifest is put once all layers
    are in, once per tag. A source ECR already holds is not uploaded, and, when its digest
    is known without reading it, not read either: see "Publishing on a schedule" in the
    README.

    :param source: an ``ObjectStoragePath`` URL; a prefix ending in ``/`` (every object under
        it); a glob (``*``, ``**``); or a list of these.
    :param artifact_type: the manifest's ``artifactType`` (OCI 1.1).
    :param layer_media_type: the media type of every layer.
    :param annotations: manifest annotations.
    :param expected_digest: the source's sha256 if known: skip the upload when ECR has it,
        and refuse to complete one whose bytes hash differently (single source only).
    :param subject: the digest of an image in the same repository: the artifact becomes
        its referrer (an SBOM, a signature, a report) through the manifest's ``subject``.
    :param chunk_size: split each file larger than this into consecutive layers of this size
        (5 MiB or more; off by default), uploaded in parallel.
    :param reuse: reuse the layers the previous push recorded for unchanged sources.
    :param reuse_from: the tag or digest whose layers to reuse (default: the first tag).
    :param verify_reuse: hash each source a record would reuse, and reuse it only when its bytes
        hash to the recorded digest (reads unchanged sources, still sends nothing): for
        repositories whose writers are not trusted with the sources' metadata.
    :param hash_first: read each source once to hash it, and upload it only when ECR lacks it
        (two reads of a changed source; the default reads once, hashing while uploading).
    :param record_source: record the sources' URL, size and mtime in clear on the layers (by
        default only a digest of the identity: bucket names and paths stay private). The ETag,
        version id, inode and ctime that key the digest are never written in clear.
    :return: the PutImage result, ``layers`` (one dict per layer: ``digest``, ``size``,
        ``media_type``, ``annotations``, ``skipped``, ``reused``, ``bytes_read``, ``bytes_sent``)
        and ``totals`` (``layers``, ``reused``, ``skipped``, ``bytes_read``, ``bytes_sent``).

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
        "chunk_size",
        "reuse_from",
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
        chunk_size: int | None = None,
        reuse: bool = True,
        reuse_from: str | None = None,
        hash_first: bool = False,
        verify_reuse: bool = False,
        record_source: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(source=source, **kwargs)
        self.subject = subject
        self.artifact_type = artifact_type
        self.layer_media_type = layer_media_type
        self.annotations = annotations
        self.expected_digest = expected_digest
        self.chunk_size = chunk_size
        self.reuse = reuse
        self.reuse_from = reuse_from
        self.hash_first = hash_first
        self.verify_reuse = verify_reuse
        self.record_source = record_source

    def execute(self, context: Context) -> dict[str, Any]:
        settings = self.push_settings(context)
        chunk_size = validate_chunk_size(optional_int(self.chunk_size, "chunk_size"))
        sources = open_sources(self.source, self.source_conn_id, aws_conn_id=self.aws_conn_id)
        layers = layers_of(
            sources, self.layer_media_type, chunk_size=chunk_size, expected_digest=self.expected_digest or None
        )
        self.prepare_repository(self.repository_name)
        result = push_artifact(
            self.engine,
            self.repository_name,
            layers,
            artifact_type=self.artifact_type,
            annotations=self.annotations,
            subject=self.subject or None,
            reuse=bool(self.reuse),
            reuse_from=self.reuse_from or None,
            hash_first=bool(self.hash_first),
            verify_reuse=bool(self.verify_reuse),
            record_source=bool(self.record_source),
            **settings,
        )
        self.log.info(
            "Pushed %s:%s as %s (%d layers)",
            self.repository_name,
            ",".join(result.tags) or "<untagged>",
            result.image_digest,
            len(layers),
        )
        return self.publish(context, result, [source.name for source in sources])
