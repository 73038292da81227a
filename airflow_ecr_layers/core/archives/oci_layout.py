"""The OCI image layout reader: ``oci-layout`` + ``index.json`` + ``blobs/``, as a tar or a directory.

The image is pushed byte for byte: every manifest and index keeps its exact bytes,
so the digests in ECR equal the digests in the layout. :func:`load_oci_layout` picks
the image (by ``image_ref``, or :data:`WHOLE_INDEX` for ``index.json`` itself), walks
its manifests children first, and checks every descriptor on the way (digest, size,
media type, the manifest body against its descriptor) before anything is written.
"""

from __future__ import annotations

from typing import Any

from airflow_ecr_layers.core.archives.reading import WHOLE_INDEX, ArchiveReader, blob_path, parse_json
from airflow_ecr_layers.core.archives.tar_index import HostileArchiveError
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import validate_digest
from airflow_ecr_layers.core.oci.image_plan import BlobRef, ImagePlan
from airflow_ecr_layers.core.oci.manifest import (
    IMAGE_MANIFEST_TYPES,
    INDEX_TYPES,
    OCI_INDEX,
    Manifest,
    validate_media_type,
)

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


def load_oci_layout(reader: ArchiveReader, image_ref: str | None = None) -> ImagePlan:
    layout = parse_json(reader.read_small("oci-layout"), f"{reader.name}: oci-layout")
    if not isinstance(layout, dict) or "imageLayoutVersion" not in layout:
        raise HostileArchiveError(f"{reader.name}: oci-layout has no imageLayoutVersion")
    index_bytes = reader.read_small("index.json")
    index = parse_json(index_bytes, f"{reader.name}: index.json")
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list) or not entries:
        raise HostileArchiveError(f"{reader.name}: index.json lists no manifests")
    plan = ImagePlan("oci-layout")
    if image_ref == WHOLE_INDEX:
        for entry in entries:
            _walk(reader, plan, entry)
        plan.add_manifest(encode_index_as_is(index_bytes, index))
    else:
        top = _walk(reader, plan, _select(entries, image_ref, f"{reader.name}: index.json"))
        plan.manifests.remove(top)
        plan.manifests.append(top)
    return plan


def _select(entries: list[dict[str, Any]], image_ref: str | None, where: str) -> dict[str, Any]:
    """The one index.json entry ``image_ref`` names (by ref name or containerd name).

    With no ``image_ref``, the only entry. Entries that share the name but not the
    digest are refused, never settled by taking the first: they are listed instead.
    """

    def names(entry: dict[str, Any]) -> set[str]:
        annotations = entry.get("annotations") or {}
        return {v for k, v in annotations.items() if k in (REF_NAME, CONTAINERD_NAME)}

    def all_names() -> list[str]:
        return sorted(n for e in entries for n in names(e))

    if image_ref is None:
        if len(entries) == 1:
            return entries[0]
        raise InvalidInputError(
            f"{where} holds {len(entries)} images; choose one with image_ref (one of {all_names()}) "
            f"or image_ref={WHOLE_INDEX!r} for the whole index"
        )
    chosen: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if image_ref in names(entry):
            chosen.setdefault(str(entry.get("digest")), entry)  # one manifest listed twice is no ambiguity
    if not chosen:
        raise InvalidInputError(f"{where} has no image named {image_ref!r}; it has {all_names()}")
    if len(chosen) > 1:
        matches = ", ".join(digest + _platform(entry) for digest, entry in chosen.items())
        raise InvalidInputError(
            f"image_ref {image_ref!r} is ambiguous: {where} gives that name to {len(chosen)} different images: "
            f"{matches}; choose one by a name only it has (the names are {sorted(set(all_names()))}) "
            f"or image_ref={WHOLE_INDEX!r} for the whole index"
        )
    return next(iter(chosen.values()))


def _platform(descriptor: dict[str, Any]) -> str:
    """`` (os/architecture[/variant])`` when the descriptor says its platform, else ``""``."""
    platform = descriptor.get("platform")
    if not isinstance(platform, dict):
        return ""
    parts = [platform.get(key) for key in ("os", "architecture", "variant")]
    named = [part for part in parts if isinstance(part, str) and part]
    return f" ({'/'.join(named)})" if named else ""


def encode_index_as_is(data: bytes, index: dict[str, Any]) -> Manifest:
    media_type = index.get("mediaType", OCI_INDEX)
    if media_type not in INDEX_TYPES:
        raise HostileArchiveError(f"index.json has media type {media_type!r}, not an image index")
    return Manifest(data, media_type)


def _walk(reader: ArchiveReader, plan: ImagePlan, descriptor: Any) -> Manifest:
    """Check a manifest descriptor and everything under it; add them to the plan, children first."""
    digest, size, media_type = _descriptor(descriptor, reader.name)
    if media_type not in IMAGE_MANIFEST_TYPES | INDEX_TYPES:
        raise HostileArchiveError(f"{reader.name}: manifest {digest} has unknown media type {media_type!r}")
    data = reader.read_small(blob_path(digest), digest)
    if len(data) != size:
        raise HostileArchiveError(f"{reader.name}: manifest {digest} is {len(data)} bytes, declared {size}")
    body = parse_json(data, f"{reader.name}: manifest {digest}")
    if not isinstance(body, dict):
        raise HostileArchiveError(f"{reader.name}: manifest {digest} is not a JSON object")
    declared = body.get("mediaType", media_type)
    if declared != media_type:
        raise HostileArchiveError(f"{reader.name}: manifest {digest} says {declared!r}, its descriptor {media_type!r}")
    if media_type in INDEX_TYPES:
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
        return validate_digest(digest, "descriptor digest"), size, validate_media_type(media_type)
    except InvalidInputError as exc:
        raise HostileArchiveError(f"{where}: {exc}") from exc


def _blob(reader: ArchiveReader, descriptor: Any) -> BlobRef:
    digest, size, media_type = _descriptor(descriptor, reader.name)
    source = reader.blob_source(blob_path(digest))
    if source.size != size:
        raise HostileArchiveError(f"{reader.name}: blob {digest} is {source.size} bytes, its descriptor says {size}")
    return BlobRef(digest, size, media_type, source)
