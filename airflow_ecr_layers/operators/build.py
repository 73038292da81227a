"""Build an image from object storage files, data-only or on a base image: reproducible tar layers, no docker daemon."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_ecr_layers.core.build.base import BaseImage
from airflow_ecr_layers.core.build.grouping import BIG_FILE_SIZE
from airflow_ecr_layers.core.build.gzip_layer import check_compress
from airflow_ecr_layers.core.build.image import build_image, files_of, plan_build, platforms_of, target_platform
from airflow_ecr_layers.core.ecr.references import parse_reference
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.readback.base_image import resolve_base
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
    from a local copy. Without ``base`` the image holds the files only (what a Kubernetes
    image volume mounts); on a base (its layers first, copied into the repository where
    missing, its config kept) it runs as the base does (what a KServe modelcar needs).

    :param source: an ``ObjectStoragePath`` URL; a prefix ending in ``/``; a glob; or a list of
        these (as :class:`~airflow_ecr_layers.operators.PushArtifactOperator` takes them). Empty
        files are welcome.
    :param path: the absolute folder in the image the files land under (default ``/``).
    :param platform: the image's ``os/architecture[/variant]`` (default ``linux/amd64``); on a
        base: the platforms of its index to build on (one, a list, or ``a,b``; default all), or
        the single base image's own platform (default: whatever it is).
    :param base: a base image in ECR: ``REPOSITORY:TAG``, ``REPOSITORY@sha256:...``, or
        ``REGISTRY_ID.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG`` (another account or region,
        a pull-through cache). An index gives an index.
    :param base_aws_conn_id: the connection to read the base with; ``aws_conn_id`` if unset.
    :param annotations: the manifest's annotations (``org.opencontainers.image.*``...).
    :param labels: the image config's ``Labels``.
    :param executable: globs of file names (``bin/*``, ``*.sh``) written with mode 0755.
    :param source_date_epoch: the entries' mtime and the config's ``created`` (seconds); by
        default the ``SOURCE_DATE_EPOCH`` environment variable, else mtime 0 and no ``created``.
    :param big_file_size: files of this many bytes or more get a layer of their own (16 MiB).
    :param reuse: reuse the tar layers the last build recorded for unchanged files (its build
        record, kept beside the image): they are neither read nor sent.
    :param reuse_from: the tag or digest whose build record to read (default: the first tag).
    :param verify_reuse: read and hash the files of each layer a record would reuse, and reuse
        it only when they hash to the recorded digest (still sends nothing).
    :param compress: ``"gzip"`` for deterministic gzip layers (``tar+gzip``; the files are read
        twice, once to measure each layer and once to upload it); None (default) for tar layers.
    :return: the PutImage result, ``config_digest``, ``platform``, ``path``, ``layers`` (per
        layer ``digest``, ``size``, ``files``, ``skipped``, ``bytes_read``, ``bytes_sent``, ``reused``),
        ``totals`` (``files``, ``layers``, ``skipped``, ``reused``, ``bytes``, ``bytes_read``,
        ``bytes_sent``), ``record_digest`` (the build record beside the image); ``base``,
        ``base_digest`` and ``images`` (per platform) on a base.

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
        "base",
        "base_aws_conn_id",
        "reuse_from",
        "compress",
    )

    def __init__(
        self,
        *,
        source: str | Sequence[str],
        path: str = "/",
        platform: str | Sequence[str] | None = None,
        annotations: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        executable: Sequence[str] | str = (),
        source_date_epoch: int | str | None = None,
        big_file_size: int = BIG_FILE_SIZE,
        base: str | None = None,
        base_aws_conn_id: str | None = None,
        reuse: bool = True,
        reuse_from: str | None = None,
        verify_reuse: bool = False,
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
        self.base = base
        self.base_aws_conn_id = base_aws_conn_id
        self.reuse = reuse
        self.reuse_from = reuse_from
        self.verify_reuse = verify_reuse
        self.compress = compress

    def execute(self, context: Context) -> dict[str, Any]:
        settings = self.push_settings(context)
        sources = open_sources(self.source, self.source_conn_id, aws_conn_id=self.aws_conn_id, allow_empty=True)
        files = files_of(sources, self.executable or ())
        path, platforms = self.path or "/", platforms_of(self.platform)
        # refuse what cannot be built before create_repository writes anything
        plan = plan_build(files, path=path, big_file_size=self.big_file_size, part_size=settings["part_size"])
        base = self.resolve_base(platforms)
        target_platform(platforms, base)
        if base is not None:
            base.check_layer_limit(len(plan.layers))
        check_compress(self.compress or None)
        self.prepare_repository(self.repository_name)
        result = build_image(
            self.engine,
            self.repository_name,
            files,
            path=path,
            platform=platforms,
            base=base,
            annotations=self.annotations,
            labels=self.labels,
            source_date_epoch=self.source_date_epoch,
            big_file_size=self.big_file_size,
            reuse=bool(self.reuse),
            reuse_from=self.reuse_from or None,
            verify_reuse=bool(self.verify_reuse),
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

    def resolve_base(self, platforms: Sequence[Any]) -> BaseImage | None:
        """The base read through ``base_aws_conn_id`` (in the reference's region), or None."""
        if not self.base:
            return None
        if not isinstance(self.base, str):
            raise InvalidInputError(f"base must be an image reference, got {self.base!r}")
        reference = parse_reference(self.base)
        same = not self.base_aws_conn_id and reference.region in (None, self.engine.calls.region)
        engine = self.engine if same else self.engine_on(self.base_aws_conn_id, reference.region)
        return resolve_base(engine, reference, platforms)
