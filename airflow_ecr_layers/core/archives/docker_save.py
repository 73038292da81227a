"""The docker-save reader: ``manifest.json`` + the config + layer tars, as ``docker save`` or skopeo write them.

A docker-save tarball has no image manifest, so :func:`load_docker_save` writes one: an
OCI manifest over the layers as they are (an uncompressed layer keeps digest == diff
id; compressed layers are sniffed by their magic bytes), or, with ``gzip_layers``, a
Docker v2 schema 2 manifest over layers gzipped on the fly. A layer's digest comes
from its member path (``blobs/sha256/<hex>``, ``<hex>.tar``), the config's diff ids,
or a streamed hash, in that order; a layer gzipped on the fly is measured by
compressing it once.
"""

from __future__ import annotations

import re

from airflow_ecr_layers.core.archives.gzip_streams import GZIP_MAGIC, GzipSource
from airflow_ecr_layers.core.archives.reading import WHOLE_INDEX, ArchiveReader, parse_json
from airflow_ecr_layers.core.archives.tar_index import HostileArchiveError
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import MiB, validate_digest
from airflow_ecr_layers.core.oci.image_plan import BlobRef, ImagePlan
from airflow_ecr_layers.core.oci.manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    encode_manifest,
    sha256_digest,
)
from airflow_ecr_layers.core.sources.blobs import BlobSource, hash_and_count

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_HEX = re.compile(r"[a-f0-9]{64}")
_MAGIC = {GZIP_MAGIC: "+gzip", ZSTD_MAGIC: "+zstd"}
_HASH_BLOCK = 8 * MiB
"""Read size when a layer's digest has to be computed (one ranged read each on object storage)."""


def load_docker_save(reader: ArchiveReader, image_ref: str | None = None, *, gzip_layers: bool = False) -> ImagePlan:
    """An OCI manifest over the layers as they are (uncompressed tars keep digest == diff id),
    or with ``gzip_layers`` a Docker v2 schema 2 manifest over gzip-compressed layers."""
    entries = parse_json(reader.read_small("manifest.json"), f"{reader.name}: manifest.json")
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
    config = parse_json(config_bytes, f"{reader.name}: {config_path}")
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
            raise InvalidInputError(
                f"{reader.name}: layer {path!r} is {compression[1:]}-compressed; "
                "Docker v2 schema 2 layers must be gzip (push without gzip_layers)"
            )
        if digest is None and compression == "" and position < len(diff_ids):
            digest = validate_digest(diff_ids[position], "diff id")
        if digest is None:
            digest = hash_and_count(source, _HASH_BLOCK)[1]
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
    """The layer media type's suffix, from the first bytes: ``+gzip``, ``+zstd`` or ``""``."""
    with source.open_at(0, 4) as handle:
        head = handle.read(4)
    for magic, suffix in _MAGIC.items():
        if head.startswith(magic):
            return suffix
    return ""
