"""Read image archives without unpacking them: docker-save tarballs and OCI image layouts.

Whatever the format, the result is an :class:`ImagePlan`: the blobs to push (each a
BlobSource sliced out of the archive, with its digest, size and media type), the
manifests to put children first, and the top-level manifest that gets the tags.
Everything a push needs is checked here, before anything is written: paths, links,
missing blobs, declared sizes, media types, and the digests of the metadata read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.gzip_streams import GzipSource
from airflow_ecr_layers.core.limits import MiB, validate_digest
from airflow_ecr_layers.core.manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    Manifest,
    encode_manifest,
    sha256_digest,
    validate_media_type,
)
from airflow_ecr_layers.core.sources import BlobSource, hash_and_count
from airflow_ecr_layers.core.tar_index import HostileArchiveError, read_verified

IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
WHOLE_INDEX = "*"
_HEX = re.compile(r"[a-f0-9]{64}")
_MAGIC = {b"\x1f\x8b": "+gzip", b"\x28\xb5\x2f\xfd": "+zstd"}


class ArchiveReader(Protocol):
    """Paths inside an archive or a layout directory."""

    @property
    def name(self) -> str: ...

    def __contains__(self, path: str) -> bool: ...

    def blob_source(self, path: str) -> BlobSource: ...

    def read_small(self, path: str, digest: str | None = None) -> bytes: ...


@dataclass(frozen=True)
class BlobRef:
    digest: str
    size: int
    media_type: str
    source: BlobSource


@dataclass
class ImagePlan:
    format: str
    manifests: list[Manifest] = field(default_factory=list)
    """Every manifest to put, children before the indexes naming them; the top-level one last."""
    blobs: dict[str, BlobRef] = field(default_factory=dict)

    @property
    def top(self) -> Manifest:
        """The manifest the tags go on."""
        return self.manifests[-1]

    def add_blob(self, blob: BlobRef) -> None:
        self.blobs.setdefault(blob.digest, blob)

    def add_manifest(self, manifest: Manifest) -> None:
        if all(m.digest != manifest.digest for m in self.manifests):
            self.manifests.append(manifest)


class DirectoryLayout:
    """An OCI layout directory, reached through ``resolve(relative path) -> source or None``."""

    def __init__(self, name: str, resolve: Callable[[str], BlobSource | None]) -> None:
        self.name = name
        self._resolve = resolve

    def __contains__(self, path: str) -> bool:
        return self._resolve(path) is not None

    def blob_source(self, path: str) -> BlobSource:
        found = self._resolve(path)
        if found is None:
            raise HostileArchiveError(f"{self.name}: {path!r} is named but missing from the layout")
        return found

    def read_small(self, path: str, digest: str | None = None) -> bytes:
        return read_verified(self.blob_source(path), digest)


def blob_path(digest: str) -> str:
    algorithm, _, hex_digest = validate_digest(digest, "blob digest").partition(":")
    return f"blobs/{algorithm}/{hex_digest}"


def _json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HostileArchiveError(f"{where} is not valid JSON: {exc}") from exc


def load_image(reader: ArchiveReader, image_ref: str | None = None, *, gzip_layers: bool = False) -> ImagePlan:
    """Detect the format (OCI layout first, then docker-save) and plan the push.

    ``gzip_layers`` (docker-save only) compresses uncompressed layers on the fly into a
    Docker v2 schema 2 image instead of the default OCI manifest over the layers as they are.
    """
    if "oci-layout" in reader and "index.json" in reader:
        if gzip_layers:
            raise InvalidInputError(
                f"{reader.name} is an OCI image layout, pushed byte for byte; gzip_layers applies to "
                "docker-save tarballs only"
            )
        return load_oci_layout(reader, image_ref)
    if "manifest.json" in reader:
        return load_docker_save(reader, image_ref, gzip_layers=gzip_layers)
    raise InvalidInputError(
        f"{reader.name} is neither an OCI image layout (oci-layout + index.json) nor a docker-save "
        "tarball (manifest.json)"
    )


# --- OCI image layout -------------------------------------------------------------------

def _select(entries: list[dict[str, Any]], image_ref: str | None, where: str) -> list[dict[str, Any]]:
    def names(entry: dict[str, Any]) -> set[str]:
        annotations = entry.get("annotations") or {}
        return {v for k, v in annotations.items() if k in (REF_NAME, CONTAINERD_NAME)}

    if image_ref is None:
        if len(entries) == 1:
            return entries
        refs = sorted(n for e in entries for n in names(e))
        raise InvalidInputError(
            f"{where} holds {len(entries)} images; choose one with image_ref (one of {refs}) "
            f"or image_ref={WHOLE_INDEX!r} for the whole index"
        )
    chosen = [e for e in entries if image_ref in names(e)]
    if not chosen:
        refs = sorted(n for e in entries for n in names(e))
        raise InvalidInputError(f"{where} has no image named {image_ref!r}; it has {refs}")
    return chosen


def load_oci_layout(reader: ArchiveReader, image_ref: str | None = None) -> ImagePlan:
    layout = _json(reader.read_small("oci-layout"), f"{reader.name}: oci-layout")
    if not isinstance(layout, dict) or "imageLayoutVersion" not in layout:
        raise HostileArchiveError(f"{reader.name}: oci-layout has no imageLayoutVersion")
    index_bytes = reader.read_small("index.json")
    index = _json(index_bytes, f"{reader.name}: index.json")
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list) or not entries:
        raise HostileArchiveError(f"{reader.name}: index.json lists no manifests")
    plan = ImagePlan("oci-layout")
    if image_ref == WHOLE_INDEX:
        for entry in entries:
            _walk(reader, plan, entry)
        plan.add_manifest(encode_index_as_is(index_bytes, index))
    else:
        top = _walk(reader, plan, _select(entries, image_ref, f"{reader.name}: index.json")[0])
        plan.manifests.remove(top)
        plan.manifests.append(top)
    return plan


def encode_index_as_is(data: bytes, index: dict[str, Any]) -> Manifest:
    media_type = index.get("mediaType", OCI_INDEX)
    if media_type not in INDEXES:
        raise HostileArchiveError(f"index.json has media type {media_type!r}, not an image index")
    return Manifest(data, media_type)


def _walk(reader: ArchiveReader, plan: ImagePlan, descriptor: Any) -> Manifest:
    """Check a manifest descriptor and everything under it; add them to the plan, children first."""
    digest, size, media_type = _descriptor(descriptor, reader.name)
    if media_type not in IMAGE_MANIFESTS | INDEXES:
        raise HostileArchiveError(f"{reader.name}: manifest {digest} has unknown media type {media_type!r}")
    data = reader.read_small(blob_path(digest), digest)
    if len(data) != size:
        raise HostileArchiveError(f"{reader.name}: manifest {digest} is {len(data)} bytes, declared {size}")
    body = _json(data, f"{reader.name}: manifest {digest}")
    if not isinstance(body, dict):
        raise HostileArchiveError(f"{reader.name}: manifest {digest} is not a JSON object")
    declared = body.get("mediaType", media_type)
    if declared != media_type:
        raise HostileArchiveError(f"{reader.name}: manifest {digest} says {declared!r}, its descriptor {media_type!r}")
    if media_type in INDEXES:
        children = body.get("manifests")
        if not isinstance(children, list):
            raise HostileArchiveError(f"{reader.name}: index {digest} has no manifests list")
        for child in children:
            _walk(reader, plan, child)
    else:
        for blob in [body.get("config"), *(body.get("layers") or [])]:
            plan.add_blob(_blob(reader, blob))
    manifest = Manifest(data, media_type)
    plan.add_manifest(manifest)
    return manifest


def _descriptor(descriptor: Any, where: str) -> tuple[str, int, str]:
    if not isinstance(descriptor, dict):
        raise HostileArchiveError(f"{where}: a descriptor is not a JSON object: {descriptor!r}")
    digest, size, media_type = descriptor.get("digest"), descriptor.get("size"), descriptor.get("mediaType")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise HostileArchiveError(f"{where}: descriptor {digest} has an invalid size {size!r}")
    try:
        validate_digest(digest, "descriptor digest")
        validate_media_type(media_type)
    except InvalidInputError as exc:
        raise HostileArchiveError(f"{where}: {exc}") from exc
    return digest, size, media_type


def _blob(reader: ArchiveReader, descriptor: Any) -> BlobRef:
    digest, size, media_type = _descriptor(descriptor, reader.name)
    source = reader.blob_source(blob_path(digest))
    if source.size != size:
        raise HostileArchiveError(f"{reader.name}: blob {digest} is {source.size} bytes, its descriptor says {size}")
    return BlobRef(digest, size, media_type, source)


# --- docker save ------------------------------------------------------------------------

def load_docker_save(reader: ArchiveReader, image_ref: str | None = None, *, gzip_layers: bool = False) -> ImagePlan:
    """An OCI manifest over the layers as they are (uncompressed tars keep digest == diff id),
    or with ``gzip_layers`` a Docker v2 schema 2 manifest over gzip-compressed layers."""
    entries = _json(reader.read_small("manifest.json"), f"{reader.name}: manifest.json")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise HostileArchiveError(f"{reader.name}: manifest.json lists no images")
    tags = sorted(t for e in entries for t in (e.get("RepoTags") or []))
    if image_ref in (None, WHOLE_INDEX) and len(entries) > 1:
        # A docker-save tarball has no image index: "*" cannot mean all of them.
        raise InvalidInputError(f"{reader.name} holds {len(entries)} images; choose one with image_ref (one of {tags})")
    if image_ref not in (None, WHOLE_INDEX):
        entries = [e for e in entries if image_ref in (e.get("RepoTags") or [])][:1]
        if not entries:
            raise InvalidInputError(f"{reader.name} has no image tagged {image_ref!r}; it has {tags}")
    entry = entries[0]
    config_path, layer_paths = entry.get("Config"), entry.get("Layers")
    if not isinstance(config_path, str) or not isinstance(layer_paths, list) or not layer_paths:
        raise HostileArchiveError(f"{reader.name}: manifest.json entry has no Config or Layers")
    config_bytes = reader.read_small(config_path, _digest_from_path(config_path))
    config = _json(config_bytes, f"{reader.name}: {config_path}")
    diff_ids = ((config.get("rootfs") or {}).get("diff_ids") or []) if isinstance(config, dict) else []
    plan = ImagePlan("docker-save")
    config_digest = sha256_digest(config_bytes)
    layers = []
    for position, path in enumerate(layer_paths):
        source: BlobSource = reader.blob_source(path)
        compression = _compression(source)
        digest = _digest_from_path(path)
        if gzip_layers and compression == "":
            source = GzipSource(source)
            size, digest = source.measure()
        elif gzip_layers and compression != "+gzip":
            raise InvalidInputError(f"{reader.name}: layer {path!r} is {compression[1:]}-compressed; "
                                    "Docker v2 schema 2 layers must be gzip (push without gzip_layers)")
        if digest is None and compression == "" and position < len(diff_ids):
            digest = validate_digest(diff_ids[position], "diff id")
        if digest is None:
            digest = hash_and_count(source, 8 * MiB)[1]
        media_type = DOCKER_LAYER_GZIP if gzip_layers else OCI_LAYER_TAR + compression
        plan.add_blob(BlobRef(digest, source.size, media_type, source))
        layers.append({"mediaType": media_type, "digest": digest, "size": source.size})
    config_type, manifest_type = (DOCKER_CONFIG, DOCKER_MANIFEST) if gzip_layers else (OCI_CONFIG, OCI_MANIFEST)
    plan.add_blob(BlobRef(config_digest, len(config_bytes), config_type, reader.blob_source(config_path)))
    body = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config_digest, "size": len(config_bytes)},
        "layers": layers,
    }
    plan.add_manifest(encode_manifest(body, manifest_type))
    return plan


def _digest_from_path(path: str) -> str | None:
    """``blobs/sha256/<hex>`` (new docker saves) or ``<hex>.tar`` / ``<hex>.json`` (skopeo)."""
    parts = path.split("/")
    if len(parts) >= 2 and parts[-2] == "sha256" and _HEX.fullmatch(parts[-1]):
        return "sha256:" + parts[-1]
    stem = parts[-1].rsplit(".", 1)[0]
    return "sha256:" + stem if _HEX.fullmatch(stem) and parts[-1] != stem else None


def _compression(source: BlobSource) -> str:
    with source.open_at(0, 4) as handle:
        head = handle.read(4)
    for magic, suffix in _MAGIC.items():
        if head.startswith(magic):
            return suffix
    return ""
