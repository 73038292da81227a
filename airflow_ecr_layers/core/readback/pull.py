"""Pull an artifact back out of ECR into files: one per titled layer, chunked files put back together.

The manifest says what to write: every layer titled ``org.opencontainers.image.title``
becomes the file ``DEST/<title>``; layers that are chunks of one file (see
:mod:`.identity`) become that one file again, in offset order. Untitled layers are not
files (as ORAS sees them) and are left out, with a log line.

Before anything is read or written, every title is checked (the rules a push applies too,
:mod:`~airflow_ecr_layers.core.oci.layers`): no absolute path, no ``..``, no two files with
one name (nor a file where another needs a folder), and a chunked file's chunks must tile it
exactly; then the sink checks the destination (:meth:`FileSink.check`: in a local folder, no
symlink on any file's way and no names that differ only by case on a file system that does not
tell them apart). Each file is streamed through a :class:`FileWriter` while
its layers are read and hashed; a file becomes visible (``commit``) only once every
layer's digest is verified, so a corrupt download leaves nothing behind (``abort``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_ecr_layers.core.ecr.calls import ImageRecord
from airflow_ecr_layers.core.ecr.references import ImageReference
from airflow_ecr_layers.core.engine.reader import PartReader
from airflow_ecr_layers.core.engine.transfer import EcrTransfer
from airflow_ecr_layers.core.errors import DigestMismatchError, InvalidInputError
from airflow_ecr_layers.core.limits import MiB, validate_digest
from airflow_ecr_layers.core.oci.layers import check_file_names, safe_title
from airflow_ecr_layers.core.oci.manifest import INDEX_TYPES, MANIFEST_TYPES, TITLE_ANNOTATION, sha256_digest
from airflow_ecr_layers.core.push.artifact import check_max_concurrency
from airflow_ecr_layers.core.readback.download import LayerDownload
from airflow_ecr_layers.core.readback.extract import extract_image, is_tar_image
from airflow_ecr_layers.core.sources.identity import CHUNK_FILE_SIZE, CHUNK_OF, CHUNK_OFFSET

log = logging.getLogger("airflow_ecr_layers")

READ_SIZE = 16 * MiB
"""Bytes per ranged GET of a layer (two such buffers per file being pulled)."""


class FileWriter(Protocol):
    """One file being written; invisible until :meth:`commit`."""

    def write(self, data: memoryview) -> None: ...

    def commit(self) -> str:
        """Make the file visible under its final name; returns that name (a URL or a path)."""

    def abort(self) -> None:
        """Throw away what was written: no file appears."""


class FileSink(Protocol):
    """Where pulled files go (a folder, an object storage prefix)."""

    def check(self, titles: Sequence[str]) -> None:
        """Refuse, before anything is read or written, files this destination cannot hold safely
        (a local folder: a symlink on a file's way, names that differ only by case where its
        file system does not tell them apart)."""

    def open(self, title: str, size: int) -> FileWriter:
        """A writer for the file ``title`` (a relative path, already checked) of ``size`` bytes."""


@dataclass(frozen=True)
class Piece:
    """A layer holding bytes ``offset..offset+size`` of a file."""

    digest: str
    size: int
    offset: int = 0


@dataclass(frozen=True)
class PlannedFile:
    title: str
    size: int
    pieces: list[Piece]

    @property
    def chunked(self) -> bool:
        return len(self.pieces) > 1 or (bool(self.pieces) and self.pieces[0].offset != 0)


@dataclass(frozen=True)
class PulledFile:
    path: str
    title: str
    size: int
    digest: str
    """sha256 of the file's bytes (for a one-layer file, its layer's digest)."""
    layers: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "title": self.title, "size": self.size, "digest": self.digest, "layers": self.layers}


@dataclass(frozen=True)
class PullResult:
    registry_id: str
    repository_name: str
    image_digest: str
    files: list[PulledFile]

    def as_dict(self) -> dict[str, Any]:
        return {
            "registry_id": self.registry_id,
            "repository_name": self.repository_name,
            "image_digest": self.image_digest,
            "files": [f.as_dict() for f in self.files],
            "bytes": sum(f.size for f in self.files),
        }


def plan_files(manifest: bytes, include: str | None = None) -> list[PlannedFile]:
    """The files an image manifest's titled layers make, checked; ``include`` keeps only the
    titles that match that glob (``fnmatch``: ``*`` also matches ``/``)."""
    body = _json_object(manifest)
    if body.get("mediaType") in INDEX_TYPES or "manifests" in body:
        raise InvalidInputError(
            "That is an image index: pull takes one artifact or image manifest (name a platform's manifest by digest)"
        )
    layers = body.get("layers")
    if not isinstance(layers, list) or not layers:
        raise InvalidInputError("The manifest has no layers to pull")
    whole: dict[str, Piece] = {}
    chunks: dict[str, list[tuple[Piece, int]]] = {}
    untitled = 0
    for layer in layers:
        if not isinstance(layer, Mapping):
            raise InvalidInputError(f"The manifest has a layer that is not a descriptor: {layer!r}")
        found = layer.get("annotations")
        annotations: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        digest = validate_digest(layer.get("digest"), "layer digest")
        size = layer.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInputError(f"Layer {digest} has an invalid size {size!r}")
        if CHUNK_OF in annotations:
            title = safe_title(annotations[CHUNK_OF])
            offset, file_size = (
                _int(annotations.get(CHUNK_OFFSET), digest),
                _int(annotations.get(CHUNK_FILE_SIZE), digest),
            )
            chunks.setdefault(title, []).append((Piece(digest, size, offset), file_size))
        elif TITLE_ANNOTATION in annotations:
            title = safe_title(annotations[TITLE_ANNOTATION])
            if title in whole:
                raise InvalidInputError(f"Two layers are titled {title!r}: a pull would write one over the other")
            whole[title] = Piece(digest, size)
        else:
            untitled += 1
    if untitled:
        log.info("%d layers have no title: they are not files, and are left out", untitled)
    files = [PlannedFile(title, piece.size, [piece]) for title, piece in whole.items()]
    files += [_reassembled(title, found) for title, found in chunks.items()]
    check_file_names([f.title for f in files])
    if include:
        files = [f for f in files if fnmatch.fnmatchcase(f.title, include)]
        if not files:
            raise InvalidInputError(f"No file of the artifact matches include={include!r}")
    return sorted(files, key=lambda f: f.title)


def _reassembled(title: str, found: list[tuple[Piece, int]]) -> PlannedFile:
    sizes = {file_size for _, file_size in found}
    if len(sizes) != 1:
        raise InvalidInputError(f"The chunks of {title!r} disagree on the file's size: {sorted(sizes)}")
    file_size = sizes.pop()
    pieces = sorted((piece for piece, _ in found), key=lambda p: p.offset)
    position = 0
    for piece in pieces:
        if piece.offset != position:
            raise InvalidInputError(
                f"The chunks of {title!r} do not tile it: a chunk starts at byte {piece.offset}, expected {position}"
            )
        position += piece.size
    if position != file_size:
        raise InvalidInputError(f"The chunks of {title!r} make {position} bytes; the file has {file_size}")
    return PlannedFile(title, file_size, pieces)


def _int(value: object, digest: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise InvalidInputError(f"Chunk layer {digest} has a malformed offset or file size: {value!r}") from None
    if number < 0:
        raise InvalidInputError(f"Chunk layer {digest} has a negative offset or file size: {value!r}")
    return number


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"The manifest is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidInputError("The manifest is not a JSON object")
    return body


def fetch_manifest(engine: EcrTransfer, reference: ImageReference) -> ImageRecord:
    """The image ``reference`` names, its bytes checked against its digest."""
    found = engine.calls.batch_get_image(
        reference.repository_name, [reference.image_id()], reference.registry_id, accepted_media_types=MANIFEST_TYPES
    )
    if not found:
        raise InvalidInputError(f"No image {reference} in {reference.repository_name!r}")
    image = found[0]
    actual = sha256_digest(image.manifest)
    expected = reference.digest or image.image_digest
    if expected and actual != expected:
        raise DigestMismatchError(f"ECR returned a manifest for {reference} that hashes to {actual}, not {expected}")
    return ImageRecord(actual, image.manifest, image.media_type, image.tag)


def pull_artifact(
    engine: EcrTransfer,
    reference: ImageReference,
    sink: FileSink,
    *,
    include: str | None = None,
    max_concurrency: int = 2,
    path: str | None = None,
) -> PullResult:
    """Write every file of the artifact ``reference`` names through ``sink``, verified.

    An image of tar layers (one a build made, any OCI or Docker image) is extracted instead
    (:mod:`.extract`): the files under ``path`` (by default the folder its build recorded, else
    ``/``), every entry of every layer checked before anything is written."""
    max_concurrency = check_max_concurrency(max_concurrency)
    registry_id = engine.calls.repository_registry_id(reference.repository_name, reference.registry_id)
    image = fetch_manifest(engine, reference)
    body = _json_object(image.manifest)
    if is_tar_image(body):
        extracted = extract_image(
            engine,
            reference.repository_name,
            registry_id,
            image,
            sink,
            path=path,
            include=include,
            max_concurrency=max_concurrency,
        )
        written = [PulledFile(f.path, f.title, f.size, f.digest, [f.layer]) for f in extracted]
        log.info("Extracted %d files from %s (%s)", len(written), reference, image.image_digest)
        return PullResult(registry_id, reference.repository_name, image.image_digest, written)
    if path:
        raise InvalidInputError("path is for images of tar layers; an artifact's files are pulled by their titles")
    files = plan_files(image.manifest, include)
    sink.check([f.title for f in files])
    log.info(
        "Pulling %s (%s): %d files, %.1f MiB",
        reference,
        image.image_digest,
        len(files),
        sum(f.size for f in files) / MiB,
    )

    def pull(planned: PlannedFile) -> PulledFile:
        return _pull_file(engine, reference.repository_name, registry_id, planned, sink)

    if max_concurrency == 1 or len(files) <= 1:
        pulled = [pull(f) for f in files]
    else:
        with ThreadPoolExecutor(max_workers=min(max_concurrency, len(files)), thread_name_prefix="ecr-pull") as pool:
            pulled = list(pool.map(pull, files))
    return PullResult(registry_id, reference.repository_name, image.image_digest, pulled)


def _pull_file(
    engine: EcrTransfer, repository_name: str, registry_id: str, planned: PlannedFile, sink: FileSink
) -> PulledFile:
    writer = sink.open(planned.title, planned.size)
    whole = hashlib.sha256() if planned.chunked else None
    try:
        for piece in planned.pieces:
            layer = LayerDownload(engine.calls, repository_name, piece.digest, piece.size, registry_id=registry_id)
            with PartReader(layer, READ_SIZE, depth=engine.read_depth) as reader:
                for part in iter(reader.next_part, None):
                    view = memoryview(part.data)
                    writer.write(view)
                    if whole is not None:
                        whole.update(view)
                digest = reader.digest()
            if digest != piece.digest:
                raise DigestMismatchError(
                    f"{planned.title}: layer {piece.digest} downloaded as {digest}; nothing was written"
                )
    except BaseException:
        writer.abort()
        raise
    path = writer.commit()
    file_digest = "sha256:" + whole.hexdigest() if whole is not None else planned.pieces[0].digest
    log.info("Pulled %s (%d bytes, %s)", path, planned.size, file_digest)
    return PulledFile(path, planned.title, planned.size, file_digest, [p.digest for p in planned.pieces])
