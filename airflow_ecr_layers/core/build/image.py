"""Build an image from files: tar layers streamed into ECR, then its config and manifest, tags last.

:func:`build_image` places each file at ``path`` + its name, groups the files into layers
(:mod:`.grouping`), streams each layer as a reproducible tar (:mod:`.tar_stream`) into the
repository, hashing it on the way as every push does, several layers at once; then it
writes the image config (OCI, with the layers' digests as ``rootfs.diff_ids``: the layers
are uncompressed, so a layer's digest is its diff id) and the OCI image manifest over them,
and only then puts the tags. Everything it can refuse (a path not absolute, ``..``, two
files at one path, too many layers, a bad platform or tag) it refuses before writing.

The image's bytes depend on the files only: names, bytes, the executable marks, ``path``,
the platform, labels and annotations, and ``SOURCE_DATE_EPOCH``. Where the bytes were read
from (S3, a local folder) is written nowhere in it, so the same files give the same
digest from anywhere. Without a base the image holds only the files (a data-only image,
which Kubernetes image volumes mount); on a ``base`` (:mod:`.base`: its layers first, its
config kept) it runs as the base does, as KServe modelcars need.

What a re-build needs to reuse a layer unread (its files' identities) is kept beside the
image, in a build record (:mod:`.records`, :mod:`.reuse`).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from airflow_ecr_layers.core.build.base import BaseImage, Composed
from airflow_ecr_layers.core.build.grouping import BIG_FILE_SIZE, group_files
from airflow_ecr_layers.core.build.gzip_layer import GzipLayer, check_compress, measure_layers
from airflow_ecr_layers.core.build.records import RecordEntry, read_record, write_record
from airflow_ecr_layers.core.build.reuse import push_tar_layers
from airflow_ecr_layers.core.build.tar_stream import LayerFile, TarLayer, check_mtime, image_folder, join_image_path
from airflow_ecr_layers.core.engine.planning import plan_parts, validate_part_size
from airflow_ecr_layers.core.engine.results import ManifestResult
from airflow_ecr_layers.core.engine.resume import ResumeStore
from airflow_ecr_layers.core.engine.transfer import EcrTransfer
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import (
    DEFAULT_MAX_CONCURRENCY,
    MiB,
    validate_registry_id,
    validate_repository_name,
    validate_tags,
)
from airflow_ecr_layers.core.oci.image_plan import BlobRef, ImagePlan
from airflow_ecr_layers.core.oci.layers import LayerSpec
from airflow_ecr_layers.core.oci.manifest import (
    OCI_CONFIG,
    OCI_LAYER_TAR,
    OCI_LAYER_TAR_GZIP,
    Descriptor,
    Manifest,
    build_image_manifest,
    sha256_digest,
)
from airflow_ecr_layers.core.push.artifact import check_max_concurrency
from airflow_ecr_layers.core.push.image import push_image
from airflow_ecr_layers.core.sources.blobs import BlobSource, BytesSource
from airflow_ecr_layers.core.sources.identity import BUILD_PATH

log = logging.getLogger("airflow_ecr_layers")

DEFAULT_PLATFORM = "linux/amd64"
CREATED_BY = "airflow-ecr-layers build"
"""Each layer's ``created_by`` in the config's history (no version: a new release of this
package must not change the digest of the same files)."""
_PLACEHOLDER = "sha256:" + "0" * 64
_PLATFORM_PART = re.compile(r"[a-z0-9_.-]+")


class TitledSource(BlobSource, Protocol):
    """A source that knows its name relative to what was asked for (a prefix's key below it)."""

    @property
    def title(self) -> str: ...


@dataclass(frozen=True)
class SourceFile:
    """A file to build into the image: its name under the image's ``path``, and its bytes."""

    name: str
    """A relative path (``weights/model.bin``)."""
    source: BlobSource
    executable: bool = False


def files_of(sources: Sequence[TitledSource], executable: Sequence[str] | str = ()) -> list[SourceFile]:
    """Sources as files named by their titles; those whose name matches a glob of ``executable``
    (``bin/*``, ``*.sh``; ``*`` crosses ``/``) are marked executable."""
    patterns = [executable] if isinstance(executable, str) else list(executable)
    return [SourceFile(s.title, s, executable=any(fnmatch.fnmatchcase(s.title, p) for p in patterns)) for s in sources]


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: object) -> Platform:
        """``linux/amd64``, ``linux/arm64/v8``: OS, architecture and an optional variant."""
        parts = text.split("/") if isinstance(text, str) else []
        if len(parts) not in (2, 3) or not all(_PLATFORM_PART.fullmatch(p) for p in parts):
            raise InvalidInputError(f"Invalid platform {text!r}: expected OS/ARCHITECTURE[/VARIANT], e.g. linux/amd64")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def platforms_of(platform: str | Sequence[str | Platform] | None) -> list[Platform]:
    """``linux/amd64``, ``linux/amd64,linux/arm64`` or a list of them, parsed (none: an empty list)."""
    found: list[Platform] = []
    for item in [platform] if isinstance(platform, str) else list(platform or []):
        if isinstance(item, Platform):
            found.append(item)
        else:
            found += [Platform.parse(part.strip()) for part in str(item).split(",") if part.strip()]
    return list(dict.fromkeys(found))


def target_platform(platforms: Sequence[Platform], base: BaseImage | None) -> Platform:
    """A data-only image's one platform (``linux/amd64`` unless named); on a base, the base's decide."""
    if base is None and len(platforms) > 1:
        raise InvalidInputError("Several platforms need a multi-platform base image to build on")
    return platforms[0] if platforms else Platform.parse(DEFAULT_PLATFORM)


def build_epoch(value: int | str | None = None) -> int | None:
    """The build's timestamp: ``value``, else the ``SOURCE_DATE_EPOCH`` environment variable,
    else None (entries get mtime 0 and the config no ``created``)."""
    if value is None or value == "":
        value = os.environ.get("SOURCE_DATE_EPOCH") or None
        if value is None:
            return None
    try:
        epoch = int(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, got {value!r}") from None
    return check_mtime(epoch)


def _strings(mapping: Mapping[str, str] | None, what: str) -> dict[str, str]:
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping) or not all(isinstance(k, str) and k for k in mapping):
        raise InvalidInputError(f"{what} must map non-empty keys to strings, got {mapping!r}")
    return {k: str(v) for k, v in mapping.items()}


def image_config(
    diff_ids: Sequence[str],
    platform: Platform,
    *,
    created: int | None = None,
    labels: Mapping[str, str] | None = None,
    history: Sequence[str] = (),
) -> bytes:
    """The OCI image config's exact bytes: compact JSON, keys in a fixed order.

    ``created`` (seconds since 1970) is written as RFC 3339 UTC, on the image and each history
    entry, or left out; ``history`` holds one comment per layer."""
    stamp = _stamp(created)
    body: dict[str, Any] = {**stamp, "architecture": platform.architecture}
    if platform.variant:
        body["variant"] = platform.variant
    body["os"] = platform.os
    body["config"] = {"Labels": dict(labels)} if labels else {}
    body["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    body["history"] = history_entries(created, history)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _stamp(created: int | None) -> dict[str, str]:
    return (
        {"created": datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")} if created is not None else {}
    )


def history_entries(created: int | None, comments: Sequence[str]) -> list[dict[str, str]]:
    """The config's ``history`` entries of our layers, one per comment."""
    return [{**_stamp(created), "created_by": CREATED_BY, "comment": comment} for comment in comments]


@dataclass(frozen=True)
class BuildPlan:
    """The layers of a build, each a tar over its files, checked and sized before anything is written."""

    layers: list[TarLayer]
    path: str
    mtime: int
    average_group: int

    @property
    def files(self) -> int:
        return sum(layer.files for layer in self.layers)


def plan_build(
    files: Sequence[SourceFile],
    *,
    path: str = "/",
    mtime: int = 0,
    big_file_size: int = BIG_FILE_SIZE,
    part_size: int | None = None,
) -> BuildPlan:
    """Place every file at ``path`` + its name and group them into tar layers; refuse a ``path``
    that is not absolute, a name that climbs out with ``..``, two files at one path (or a file
    where another file's folder is), too many layers, and a layer too big for ECR."""
    if not files:
        raise InvalidInputError("Nothing to build: no files given")
    placed = [LayerFile(join_image_path(path, f.name), f.source, f.executable) for f in files]
    grouping = group_files(placed, big_file_size=big_file_size)
    count = len(grouping.layers)
    layers = [
        TarLayer(
            group,
            mtime=mtime,
            name=f"tar layer {i + 1}/{count} ({len(group)} files from {group[0].path})",
        )
        for i, group in enumerate(grouping.layers)
    ]
    for layer in layers:
        plan_parts(layer.size, part_size)  # a layer over ECR's size or part count is refused here
    return BuildPlan(layers, image_folder(path), mtime, grouping.average)


@dataclass(frozen=True)
class BuiltLayer:
    """One tar layer of a built image."""

    digest: str
    size: int
    files: int
    skipped: bool
    """ECR had the layer already (reported when the upload completed)."""
    bytes_read: int
    bytes_sent: int
    reused: bool = False
    """Found in the last build's record and in ECR: its files were not read (unless ``verify_reuse``)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BuildResult(ManifestResult):
    """An image built from files: its config, its layers, the tags put on it."""

    config_digest: str
    platform: str
    path: str
    layers: list[BuiltLayer] = field(default_factory=list)
    base: str | None = None
    """The base image's full reference (none for a data-only image)."""
    base_digest: str | None = None
    images: list[dict[str, Any]] = field(default_factory=list)
    """Per platform of an image on a base: ``platform``, ``image_digest``, ``config_digest``, ``base_layers``."""
    record_digest: str | None = None
    """The build record written beside the image (:mod:`.records`), if any."""

    @property
    def totals(self) -> dict[str, int]:
        return {
            "files": sum(layer.files for layer in self.layers),
            "layers": len(self.layers),
            "skipped": sum(layer.skipped for layer in self.layers),
            "reused": sum(layer.reused for layer in self.layers),
            "bytes": sum(layer.size for layer in self.layers),
            "bytes_read": sum(layer.bytes_read for layer in self.layers),
            "bytes_sent": sum(layer.bytes_sent for layer in self.layers),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **super().as_dict(),
            "config_digest": self.config_digest,
            "platform": self.platform,
            "path": self.path,
            "layers": [layer.as_dict() for layer in self.layers],
            "totals": self.totals,
            "base": self.base,
            "base_digest": self.base_digest,
            "images": [dict(image) for image in self.images],
            "record_digest": self.record_digest,
        }


def build_image(
    engine: EcrTransfer,
    repository_name: str,
    files: Sequence[SourceFile],
    *,
    path: str = "/",
    tags: Sequence[str] = (),
    platform: str | Sequence[str | Platform] | None = None,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    source_date_epoch: int | str | None = None,
    big_file_size: int = BIG_FILE_SIZE,
    registry_id: str | None = None,
    part_size: int | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    resume: ResumeStore | None = None,
    base: BaseImage | None = None,
    reuse: bool = True,
    reuse_from: str | None = None,
    verify_reuse: bool = False,
    compress: str | None = None,
) -> BuildResult:
    """Build an image of ``files`` at ``path`` in the repository, data-only or on ``base``, and tag it.

    Each layer is streamed from the files' sources (no temporary file; memory bounded by
    the engine's part buffers) and hashed while it uploads, ``max_concurrency`` layers at
    once. A file that changes while it is read fails its layer before the upload completes,
    and nothing is tagged. The config and the manifest go last (``push_image``: the blobs
    ECR lacks, then the manifest once per tag).

    :param path: the absolute folder the files land under (``/models``).
    :param platform: the config's ``os/architecture[/variant]`` (default ``linux/amd64``); on a
        base, its platforms were chosen when it was read (``resolve_base``).
    :param annotations: the manifest's annotations (``org.opencontainers.image.*``...).
    :param labels: the config's ``Labels``.
    :param source_date_epoch: the entries' mtime and the config's ``created``, in
        seconds; by default ``SOURCE_DATE_EPOCH``, else mtime 0 and no ``created``.
    :param big_file_size: a file of this size or more is a layer of its own.
    :param base: the base image, as
        :func:`~airflow_ecr_layers.core.readback.base_image.resolve_base` read it out of ECR:
        its layers first (copied into the repository where missing), its config kept, ours
        appended; an index gives an index. None: a data-only image.
    :param reuse: reuse the tar layers the build record of the image ``reuse_from`` (a tag or
        a digest; by default the first tag) names, when their files' identities match and ECR
        holds them: such layers are neither read nor sent (:mod:`.reuse`). Every build writes
        its own record beside the image, whatever ``reuse`` says (:mod:`.records`).
    :param verify_reuse: read and hash the files of a layer the record names, and reuse it only
        when they hash to it.
    :param compress: ``"gzip"`` for deterministic gzip layers (:mod:`.gzip_layer`; the files are
        read twice: once to measure the compressed layer, once to upload it); None for tar layers.
    """
    validate_repository_name(repository_name)
    tags = validate_tags(tags)
    registry_id = validate_registry_id(registry_id)
    max_concurrency = check_max_concurrency(max_concurrency)
    if part_size is not None:
        validate_part_size(part_size)
    target = target_platform(platforms_of(platform), base)
    annotations = _strings(annotations, "annotations")
    labels = _strings(labels, "labels")
    epoch = build_epoch(source_date_epoch)
    compress = check_compress(compress)
    if reuse_from is not None and not reuse_from.startswith("sha256:"):
        validate_tags([reuse_from])
    plan = plan_build(files, path=path, mtime=epoch or 0, big_file_size=big_file_size, part_size=part_size)
    annotations.setdefault(BUILD_PATH, plan.path)  # where a pull takes the files from
    media_type = OCI_LAYER_TAR_GZIP if compress else OCI_LAYER_TAR
    if base is not None:
        base.check_layer_limit(len(plan.layers))
        placeholders = [_PLACEHOLDER] * len(plan.layers)
        # the manifests' sizes (a gzip layer's own size is not known yet: the tar's stands in)
        _composed(base, plan, plan.layers, placeholders, placeholders, epoch, labels, annotations, media_type)
    else:
        # The manifest's size is known before any upload, but for the config's size: digests have a fixed length.
        _manifest(
            [_PLACEHOLDER] * len(plan.layers),
            [layer.size for layer in plan.layers],
            _PLACEHOLDER,
            0,
            annotations,
            media_type,
        )
    registry_id = engine.calls.repository_registry_id(repository_name, registry_id)  # fails before any write
    log.info(
        "Building %d files into %d tar layers (%.1f MiB) under %s in %s",
        plan.files,
        len(plan.layers),
        sum(layer.size for layer in plan.layers) / MiB,
        plan.path,
        repository_name,
    )
    reference = (reuse_from or (tags[0] if tags else None)) if reuse else None
    blobs: list[BlobSource] = list(plan.layers)
    measured_diff_ids: list[str] = []
    if compress:
        zipped = [GzipLayer(layer) for layer in plan.layers]
        measured = measure_layers(zipped, max_concurrency)  # one pass over the files: sizes, digests, diff_ids
        # a gzip layer's digest is known: one ECR already holds is not sent
        specs = [
            LayerSpec(layer, media_type, expected_digest=m.digest, identity=layer.identity())
            for layer, m in zip(zipped, measured, strict=True)
        ]
        blobs, measured_diff_ids = list(zipped), [m.diff_id for m in measured]
    else:
        # the identities key the resume records and the build record, never the image
        specs = [LayerSpec(layer, media_type, identity=layer.identity()) for layer in plan.layers]
    tar_layers = push_tar_layers(
        engine,
        repository_name,
        specs,
        registry_id=registry_id,
        recorded=read_record(engine.calls, repository_name, registry_id, reference),
        verify_reuse=verify_reuse,
        part_size=part_size,
        max_concurrency=max_concurrency,
        resume=resume,
    )
    pushed = [layer.blob for layer in tar_layers]
    digests = [blob.digest for blob in pushed]
    # a reused layer's diff_id is in its record, a gzip layer's was measured, a tar layer's is its digest
    fresh_diff_ids = measured_diff_ids if compress else digests
    diff_ids = [layer.recorded_diff_id or fresh for layer, fresh in zip(tar_layers, fresh_diff_ids, strict=True)]
    images: list[dict[str, Any]] = []
    if base is not None:
        composed = _composed(base, plan, blobs, digests, diff_ids, epoch, labels, annotations, media_type)
        image, manifest = composed.plan, composed.plan.top
        config_digest = "" if base.is_index else composed.configs[0]
        built_for = ",".join(composed.platforms)
        images = [
            {"platform": p, "image_digest": m.digest, "config_digest": c, "base_layers": len(b.layers)}
            for p, m, c, b in zip(composed.platforms, composed.manifests, composed.configs, base.images, strict=True)
        ]
    else:
        config = image_config(
            diff_ids,
            target,
            created=epoch,
            labels=labels,
            history=[f"{layer.files} files" for layer in plan.layers],
        )
        config_ref = BlobRef(sha256_digest(config), len(config), OCI_CONFIG, BytesSource(config, "<image config>"))
        manifest = _manifest(
            digests, [blob.size for blob in blobs], config_ref.digest, config_ref.size, annotations, media_type
        )
        image = ImagePlan("build", [manifest])
        image.add_blob(config_ref)
        for blob in _layer_blobs(blobs, digests, media_type):
            image.add_blob(blob)
        config_digest, built_for = config_ref.digest, str(target)
    put = push_image(
        engine,
        repository_name,
        image,
        tags=tags,
        registry_id=registry_id,
        part_size=part_size,
        max_concurrency=max_concurrency,
    )
    record = write_record(
        engine,
        repository_name,
        put.registry_id or registry_id,
        Descriptor(put.manifest_media_type, put.image_digest, manifest.size),
        [
            RecordEntry(Descriptor(media_type, blob.digest, blob.size), layer.token, diff_id)
            for layer, blob, diff_id in zip(tar_layers, pushed, diff_ids, strict=True)
        ],
    )
    result = BuildResult(
        registry_id=put.registry_id,
        repository_name=repository_name,
        image_digest=put.image_digest,
        tags=list(put.tags),
        manifest_media_type=put.manifest_media_type,
        manifest_size=manifest.size,
        config_digest=config_digest,
        platform=built_for,
        path=plan.path,
        layers=[
            BuiltLayer(blob.digest, blob.size, layer.files, blob.skipped, blob.bytes_read, blob.bytes_sent, blob.reused)
            for layer, blob in zip(plan.layers, pushed, strict=True)
        ],
        base=base.name if base else None,
        base_digest=base.digest if base else None,
        images=images,
        record_digest=record,
    )
    totals = result.totals
    log.info(
        "Built %s@%s: %d files in %d layers (%d reused); read %.1f MiB, sent %.1f MiB",
        repository_name,
        result.image_digest,
        totals["files"],
        totals["layers"],
        totals["reused"],
        totals["bytes_read"] / MiB,
        totals["bytes_sent"] / MiB,
    )
    return result


def _manifest(
    digests: Sequence[str],
    sizes: Sequence[int],
    config_digest: str,
    config_size: int,
    annotations: Mapping[str, str],
    media_type: str = OCI_LAYER_TAR,
) -> Manifest:
    return build_image_manifest(
        [Descriptor(media_type, digest, size) for digest, size in zip(digests, sizes, strict=True)],
        config=Descriptor(OCI_CONFIG, config_digest, config_size),
        annotations=annotations or None,
    )


def _layer_blobs(blobs: Sequence[BlobSource], digests: Sequence[str], media_type: str) -> list[BlobRef]:
    return [BlobRef(digest, blob.size, media_type, blob) for blob, digest in zip(blobs, digests, strict=True)]


def _composed(
    base: BaseImage,
    plan: BuildPlan,
    layers: Sequence[BlobSource],
    digests: Sequence[str],
    diff_ids: Sequence[str],
    epoch: int | None,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    media_type: str,
) -> Composed:
    comments = [f"{layer.files} files" for layer in plan.layers]
    return base.compose(
        _layer_blobs(layers, digests, media_type),
        diff_ids,
        history_entries(epoch, comments),
        created=_stamp(epoch).get("created"),
        labels=labels,
        annotations=annotations,
    )
