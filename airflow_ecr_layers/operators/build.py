"""Build a data-only image from object storage files: reproducible tar layers, no docker daemon."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_ecr_layers.core.build.grouping import BIG_FILE_SIZE
from airflow_ecr_layers.core.build.gzip_layer import check_compress
from airflow_ecr_layers.core.build.image import DEFAULT_PLATFORM, Platform, build_image, files_of, plan_build
from airflow_ecr_layers.object_storage import open_sources
from airflow_ecr_layers.operators.base import StoragePushOperator

Context = Any


class BuildImageOperator(StoragePushOperator):
    """Build an image from files in object storage and push it to ECR, streamed, reproducible.

    Every file lands at ``path`` + its name (its path relative to the prefix or glob that
    found it, else its file name). The files are grouped into uncompressed tar layers (a
    big file alone, small files in groups a change touches one of), each streamed from the
    sources into ECR while it is hashed; then the image config and the OCI manifest, and the
    tags last. The same files give the same image digest, whether they are read from S3 or
    from a local copy. No base image yet: the image holds the files only (what Kubernetes
    image volumes and KServe modelcars mount).

    :param source: an ``ObjectStoragePath`` URL; a prefix ending in ``/``; a glob; or a list of
        these (as :class:`~airflow_ecr_layers.operators.PushArtifactOperator` takes them). Empty
        files are welcome.
    :param path: the absolute folder in the image the files land under (default ``/``).
    :param platform: the image's ``os/architecture[/variant]`` (default ``linux/amd64``).
    :param annotations: the manifest's annotations (``org.opencontainers.image.*``...).
    :param labels: the image config's ``Labels``.
    :param executable: globs of file names (``bin/*``, ``*.sh``) written with mode 0755.
    :param source_date_epoch: the entries' mtime and the config's ``created`` (seconds); by
        default the ``SOURCE_DATE_EPOCH`` environment variable, else mtime 0 and no ``created``.
    :param big_file_size: files of this many bytes or more get a layer of their own (16 MiB).
    :param compress: ``"gzip"`` for deterministic gzip layers (``tar+gzip``; the files are read
        twice, once to measure each layer and once to upload it); None (default) for tar layers.
    :return: the PutImage result, ``config_digest``, ``platform``, ``path``, ``layers`` (per
        layer ``digest``, ``size``, ``files``, ``skipped``, ``bytes_read``, ``bytes_sent``) and
        ``totals`` (``files``, ``layers``, ``skipped``, ``bytes``, ``bytes_read``, ``bytes_sent``).

    Also takes ``repository_name``, ``tags``, ``source_conn_id``, ``part_size``,
    ``max_concurrency`` and ``create_repository`` (see :class:`StoragePushOperator`).
    """

    template_fields: Sequence[str] = (
        *StoragePushOperator.template_fields,
        "path",
        "platform",
        "annotations",
        "labels",
        "executable",
        "source_date_epoch",
        "compress",
    )

    def __init__(
        self,
        *,
        source: str | Sequence[str],
        path: str = "/",
        platform: str = DEFAULT_PLATFORM,
        annotations: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        executable: Sequence[str] | str = (),
        source_date_epoch: int | str | None = None,
        big_file_size: int = BIG_FILE_SIZE,
        compress: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(source=source, **kwargs)
        self.path = path
        self.platform = platform
        self.annotations = annotations
        self.labels = labels
        self.executable = executable
        self.source_date_epoch = source_date_epoch
        self.big_file_size = big_file_size
        self.compress = compress

    def execute(self, context: Context) -> dict[str, Any]:
        settings = self.push_settings(context)
        sources = open_sources(self.source, self.source_conn_id, aws_conn_id=self.aws_conn_id, allow_empty=True)
        files = files_of(sources, self.executable or ())
        path, platform = self.path or "/", self.platform or DEFAULT_PLATFORM
        # refuse what cannot be built before create_repository writes anything
        Platform.parse(platform)
        check_compress(self.compress or None)
        plan_build(files, path=path, big_file_size=self.big_file_size, part_size=settings["part_size"])
        self.prepare_repository(self.repository_name)
        result = build_image(
            self.engine,
            self.repository_name,
            files,
            path=path,
            platform=platform,
            annotations=self.annotations,
            labels=self.labels,
            source_date_epoch=self.source_date_epoch,
            big_file_size=self.big_file_size,
            compress=self.compress or None,
            **settings,
        )
        self.log.info(
            "Built %s:%s as %s (%d files in %d layers under %s)",
            self.repository_name,
            ",".join(result.tags) or "<untagged>",
            result.image_digest,
            result.totals["files"],
            len(result.layers),
            result.path,
        )
        return self.publish(context, result, [source.name for source in sources])
