"""Pull an image's tar layers back into files: every entry checked first, then written, streamed.

An image (an OCI or Docker image manifest whose layers are tar archives:
``application/vnd.oci.image.layer.v1.tar``, ``...tar+gzip``, Docker's
``application/vnd.docker.image.rootfs.diff.tar.gzip``) is extracted in two passes over its layers,
each layer read from ECR as a pull reads any layer (:class:`~.download.LayerDownload`: ranged GETs,
resumed, a fresh URL after a 403, no URL in a log), decompressed on the fly when gzip, and parsed
entry by entry (:mod:`tarfile` in stream mode): no temporary copy of a layer, memory bounded by the
read buffers whatever the layers weigh.

1. **Check.** Every layer is read whole: its digest (and, for gzip, its uncompressed digest
   against the config's ``rootfs.diff_ids``) is verified, and every entry's header is checked. Of
   the files under ``path`` (the folder a build put them in, by default the one the build recorded
   in the manifest, else ``/``), refused with an error naming the layer and the entry: an absolute
   name, a name with ``..``, a symlink or hardlink (one that leaves the destination is named so),
   a device node, a FIFO or anything else that is not a file or a folder, two entries of one layer
   at one path, and a link on the way to ``path``. Then the layers are applied in order, as a
   container runtime would: a later layer's file replaces an earlier one's; OCI whiteouts
   (``.wh.<name>`` hides ``<name>`` of the layers below, ``.wh..wh..opq`` empties its folder of
   them) remove what they name. Names everywhere else in the image (a base image's files) are
   checked for ``..`` and absolute paths only: they are not written.
2. **Write.** Only now, and only once every layer checked out, is anything written: each layer
   that holds a file of the result is read again, and each such file streamed through the sink
   (:class:`~.pull.FileSink`: a multipart upload on S3, a hidden file renamed into place in a
   folder), ``max_concurrency`` layers at once. The layer's digest is verified again at its end:
   a mismatch there (ECR serving other bytes for one digest on a second read) fails the pull,
   with the files of that layer already written left in place.

The price of "nothing written before everything is checked": the layers that hold files are
downloaded twice. Folders are not written (object storage has none); empty folders do not come
back. Modes and times are not kept: a pull gives back the bytes, at their paths.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import logging
import posixpath
import tarfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_ecr_layers.core.archives.tar_index import HostileArchiveError, normalize, read_verified
from airflow_ecr_layers.core.ecr.calls import ImageRecord
from airflow_ecr_layers.core.engine.reader import Part, PartReader
from airflow_ecr_layers.core.engine.transfer import EcrTransfer
from airflow_ecr_layers.core.errors import DigestMismatchError, InvalidInputError
from airflow_ecr_layers.core.limits import MiB, validate_digest
from airflow_ecr_layers.core.oci.layers import check_file_names, safe_title
from airflow_ecr_layers.core.oci.manifest import DOCKER_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_TAR_GZIP
from airflow_ecr_layers.core.readback.download import LayerDownload
from airflow_ecr_layers.core.sources.identity import BUILD_PATH

if TYPE_CHECKING:
    from airflow_ecr_layers.core.readback.pull import FileSink

log = logging.getLogger("airflow_ecr_layers")

TAR_LAYERS = {OCI_LAYER_TAR: False, OCI_LAYER_TAR_GZIP: True, DOCKER_LAYER_GZIP: True}
"""The layer media types extracted, and whether each is gzip-compressed."""
READ_SIZE = 16 * MiB
"""Bytes per ranged GET of a layer."""
COPY_SIZE = MiB
"""Bytes of a file moved from the tar stream to its writer at a time."""
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_GZIP_WBITS = 31


def is_tar_image(manifest: Mapping[str, Any]) -> bool:
    """Whether a manifest's layers are tar archives (an image to extract, not an artifact of files)."""
    layers = manifest.get("layers")
    return isinstance(layers, list) and any(
        isinstance(layer, Mapping) and layer.get("mediaType") in TAR_LAYERS for layer in layers
    )


@dataclass(frozen=True)
class TarLayerRef:
    index: int
    digest: str
    size: int
    gzip: bool
    diff_id: str


@dataclass(frozen=True)
class Entry:
    """One entry of a layer, as its header says."""

    name: str
    """Its normalised relative path in the image (``models/a.bin``)."""
    kind: str
    """``file``, ``dir``, ``symlink``, ``hardlink``, ``device``, ``fifo`` or ``other``."""
    size: int
    linkname: str = ""


@dataclass(frozen=True)
class Placed:
    """A file of the result: the layer it comes from, its name there, its size."""

    layer: int
    name: str
    size: int


@dataclass
class Extraction:
    """What an image extracts to: each file by its path under ``root``."""

    root: str
    """The image folder extracted (relative, ``""`` for the whole image)."""
    files: dict[str, Placed] = field(default_factory=dict)

    def title_of(self, name: str) -> str | None:
        """``name``'s path under the root, ``""`` for the root itself, None outside it."""
        if not self.root:
            return name
        if name == self.root:
            return ""
        if name.startswith(self.root + "/"):
            return name[len(self.root) + 1 :]
        return None


def image_root(path: object) -> str:
    """``path`` (an absolute folder of the image) as a relative name, ``""`` for ``/``."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidInputError(f"path {path!r} must be an absolute folder of the image (/models, /)")
    try:
        return normalize(path.lstrip("/"), "path") if path.strip("/") else ""
    except HostileArchiveError as exc:
        raise InvalidInputError(str(exc)) from None


def tar_layers(manifest: Mapping[str, Any], config: Mapping[str, Any]) -> list[TarLayerRef]:
    """The manifest's layers with their diff_ids from the config; refuses a layer that is not a tar."""
    layers = manifest.get("layers")
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, Mapping) else None
    if not isinstance(layers, list) or not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
        raise InvalidInputError("The image config's rootfs.diff_ids do not match the manifest's layers")
    found = []
    for index, (layer, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
        media_type = layer.get("mediaType") if isinstance(layer, Mapping) else None
        if media_type not in TAR_LAYERS:
            raise InvalidInputError(
                f"Layer {index + 1} is {media_type!r}: a pull extracts only tar layers "
                f"({', '.join(sorted(TAR_LAYERS))})"
            )
        size = layer.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInputError(f"Layer {index + 1} has an invalid size {size!r}")
        found.append(
            TarLayerRef(
                index,
                validate_digest(layer.get("digest"), "layer digest"),
                size,
                TAR_LAYERS[media_type],
                validate_digest(diff_id, "diff_id"),
            )
        )
    return found


# --- reading a layer as a stream -------------------------------------------------------


class PartStream(io.RawIOBase):
    """The bytes of a :class:`PartReader`, in order, as a readable stream."""

    def __init__(self, reader: PartReader) -> None:
        super().__init__()
        self._reader = reader
        self._part: Part | None = None
        self._at = 0
        self._ended = False

    def readable(self) -> bool:
        return True

    def chunk(self, most: int) -> memoryview:
        """Up to ``most`` next bytes (valid until the next call); empty at the end."""
        while self._part is None or self._at == len(self._part.data):
            if self._ended:
                return memoryview(b"")
            self._part, self._at = self._reader.next_part(), 0
            if self._part is None:
                self._ended = True
                return memoryview(b"")
        view = memoryview(self._part.data)[self._at : self._at + most]
        self._at += len(view)
        return view

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        got = self.chunk(len(view))
        view[: len(got)] = got
        return len(got)


class GunzipStream(io.RawIOBase):
    """The decompressed bytes of a gzip stream (one member or more), hashed as they pass."""

    def __init__(self, raw: PartStream, name: str) -> None:
        super().__init__()
        self._raw = raw
        self._name = name
        self._inflate = zlib.decompressobj(_GZIP_WBITS)
        self._out = b""
        self._at = 0
        self.hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        while True:
            if self._inflate.eof:  # first: at a member's end zlib may keep the rest in unconsumed_tail too
                data: bytes | memoryview = self._inflate.unused_data or self._raw.chunk(READ_SIZE)
                if not data:
                    return False
                self._inflate = zlib.decompressobj(_GZIP_WBITS)  # another gzip member follows
            elif self._inflate.unconsumed_tail:
                data = self._inflate.unconsumed_tail
            else:
                data = self._raw.chunk(READ_SIZE)
                if not data:
                    raise InvalidInputError(f"{self._name}: the gzip stream ends before its end")
            try:
                out = self._inflate.decompress(data, COPY_SIZE)
            except zlib.error as exc:
                raise InvalidInputError(f"{self._name} is not valid gzip: {exc}") from None
            if out:
                self.hash.update(out)
                self._out, self._at = out, 0
                return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._at == len(self._out) and not self._fill():
            return 0
        count = min(len(view), len(self._out) - self._at)
        view[:count] = self._out[self._at : self._at + count]
        self._at += count
        return count


@contextmanager
def _open_layer(
    engine: EcrTransfer, repository: str, registry_id: str, layer: TarLayerRef
) -> Iterator[tarfile.TarFile]:
    """The layer's tar, read as a stream; on leaving without an error, every byte was read and
    the digest (and diff_id) verified."""
    source = LayerDownload(engine.calls, repository, layer.digest, layer.size, registry_id=registry_id)
    name = f"layer {layer.index + 1} ({layer.digest})"
    with PartReader(source, READ_SIZE, depth=engine.read_depth) as reader:
        raw = PartStream(reader)
        stream: io.RawIOBase = GunzipStream(raw, name) if layer.gzip else raw
        try:
            with tarfile.open(fileobj=io.BufferedReader(stream, COPY_SIZE), mode="r|") as tar:
                yield tar
        except tarfile.TarError as exc:
            raise InvalidInputError(f"{name} is not a readable tar archive: {exc}") from None
        while stream.readinto(bytearray(COPY_SIZE)):  # the end blocks and padding tarfile left unread
            pass
        digest = reader.digest()
    if digest != layer.digest:
        raise DigestMismatchError(f"{name} downloaded as {digest}; nothing was written")
    diff_id = "sha256:" + stream.hash.hexdigest() if isinstance(stream, GunzipStream) else digest
    if diff_id != layer.diff_id:
        raise DigestMismatchError(f"{name} holds a tar of {diff_id}, not the config's diff_id {layer.diff_id}")


# --- checking entries ------------------------------------------------------------------


def entry_of(info: tarfile.TarInfo, layer: str) -> Entry:
    """A header as an :class:`Entry`; an absolute name or one with ``..`` is refused."""
    try:
        name = normalize(info.name, layer)
    except HostileArchiveError as exc:
        raise InvalidInputError(f"Refusing to pull: {exc}") from None
    if info.isreg():
        kind = "file"
    elif info.isdir():
        kind = "dir"
    elif info.issym():
        kind = "symlink"
    elif info.islnk():
        kind = "hardlink"
    elif info.ischr() or info.isblk():
        kind = "device"
    elif info.isfifo():
        kind = "fifo"
    else:
        kind = "other"
    return Entry(name, kind, info.size if kind == "file" else 0, info.linkname)


def _leaves(entry: Entry, root: str) -> bool:
    """Whether a link's target is outside the folder extracted (``root``)."""
    if entry.kind == "symlink":
        if entry.linkname.startswith("/"):
            return True  # written as it is, it would point into the machine's own folders
        target = posixpath.normpath(posixpath.join(posixpath.dirname(entry.name), entry.linkname))
    else:  # a hardlink names a path of the archive
        target = posixpath.normpath(entry.linkname.lstrip("/") or ".")
    if target == ".." or target.startswith("../"):
        return True
    return bool(root) and target != root and not target.startswith(root + "/")


def check_entries(entries: Sequence[Entry], extraction: Extraction, layer: str) -> None:
    """Refuse what a pull will not write, among a layer's entries under the extracted folder."""
    seen: set[str] = set()
    for entry in entries:
        title = extraction.title_of(entry.name)
        if title is None:
            if extraction.root.startswith(entry.name + "/") and entry.kind in ("symlink", "hardlink"):
                raise InvalidInputError(
                    f"Refusing to pull: {layer} makes {entry.name!r} a {entry.kind} (to {entry.linkname!r}), on the "
                    f"way to /{extraction.root}; a pull never follows a link"
                )
            continue
        what = f"{layer}: {entry.name!r}"
        if entry.kind in ("symlink", "hardlink"):
            where = "leaves the destination" if _leaves(entry, extraction.root) else "is a link"
            raise InvalidInputError(
                f"Refusing to pull: {what} is a {entry.kind} to {entry.linkname!r}, which {where}; "
                "a pull writes regular files only, and never a link"
            )
        if entry.kind in ("device", "fifo", "other"):
            raise InvalidInputError(
                f"Refusing to pull: {what} is a {'device node' if entry.kind == 'device' else entry.kind}; "
                "a pull writes regular files only"
            )
        if title == "" and entry.kind != "dir":
            raise InvalidInputError(f"Refusing to pull: {what} is a file, where the folder to extract is")
        base = posixpath.basename(entry.name)
        if base.startswith(WHITEOUT + WHITEOUT) and base != OPAQUE:
            raise InvalidInputError(f"Refusing to pull: {what} is a reserved whiteout name (.wh..wh.*)")
        if entry.kind == "file" and not base.startswith(WHITEOUT):
            if entry.name in seen:
                raise InvalidInputError(
                    f"Refusing to pull: {what} is in the layer twice; one would be written over the other"
                )
            seen.add(entry.name)
            safe_title(title)


def apply_layer(extraction: Extraction, index: int, entries: Sequence[Entry], dirs: set[str]) -> None:
    """Put a checked layer's entries over the layers below, as a runtime would: its whiteouts first
    remove what they name of the layers below, then its files replace theirs. ``dirs``: the
    folders of the layers below (kept up to date)."""
    root = extraction.root
    below = extraction.files
    for entry in entries:
        folder, base = posixpath.split(entry.name)
        if not base.startswith(WHITEOUT):
            continue
        opaque = base == OPAQUE
        hidden = folder if opaque else posixpath.join(folder, base[len(WHITEOUT) :])
        above = not hidden or hidden == root or root.startswith(hidden + "/")
        _remove_tree(below, hidden, keep_self=opaque, folder=above or hidden in dirs)
    for entry in entries:
        title = extraction.title_of(entry.name)
        if not title or posixpath.basename(entry.name).startswith(WHITEOUT):
            continue
        if entry.kind == "dir":
            below.pop(entry.name, None)  # a folder replaces a file
            dirs.add(entry.name)
            continue
        if entry.name in dirs:
            _remove_tree(below, entry.name, keep_self=False, folder=True)  # a file replaces a folder
        for parent in _parents(entry.name):
            below.pop(parent, None)  # a file's folders replace files of those names
            dirs.add(parent)
        below[entry.name] = Placed(index, entry.name, entry.size)


def _parents(name: str) -> list[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _remove_tree(files: dict[str, Placed], name: str, *, keep_self: bool, folder: bool) -> None:
    """Remove the file ``name`` (unless ``keep_self``) and, when it is a ``folder``, all below it."""
    if not keep_self:
        files.pop(name, None)
    if not name:
        files.clear()
    elif folder:
        prefix = name + "/"
        for key in [key for key in files if key.startswith(prefix)]:
            del files[key]


# --- the pull --------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractedFile:
    path: str
    title: str
    size: int
    digest: str
    layer: str


def plan_extraction(
    engine: EcrTransfer,
    repository: str,
    registry_id: str,
    manifest: Mapping[str, Any],
    path: str | None,
    max_concurrency: int,
) -> tuple[Extraction, list[TarLayerRef]]:
    """Pass 1: read and verify every layer, check every entry, apply them in order."""
    config_ref = manifest.get("config")
    if not isinstance(config_ref, Mapping):
        raise InvalidInputError("The image manifest has no config")
    config_digest = validate_digest(config_ref.get("digest"), "config digest")
    config_source = LayerDownload(
        engine.calls, repository, config_digest, int(config_ref.get("size") or 0), registry_id=registry_id
    )
    try:
        config = json.loads(read_verified(config_source, config_digest))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"The image config is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise InvalidInputError("The image config is not a JSON object")
    layers = tar_layers(manifest, config)
    annotations = manifest.get("annotations")
    recorded = annotations.get(BUILD_PATH) if isinstance(annotations, Mapping) else None
    extraction = Extraction(image_root(path if path else recorded or "/"))

    def scan(layer: TarLayerRef) -> list[Entry]:
        name = f"layer {layer.index + 1} ({layer.digest})"
        with _open_layer(engine, repository, registry_id, layer) as tar:
            entries = [entry_of(info, name) for info in tar]
        check_entries(entries, extraction, name)
        # kept for the next step: what is under the folder extracted, and the whiteouts (a base's other files go)
        return [e for e in entries if extraction.title_of(e.name) or posixpath.basename(e.name).startswith(WHITEOUT)]

    scanned = _map(scan, layers, max_concurrency)
    dirs: set[str] = set()
    for layer, entries in zip(layers, scanned, strict=True):
        apply_layer(extraction, layer.index, entries, dirs)
    return extraction, layers


def extract_image(
    engine: EcrTransfer,
    repository: str,
    registry_id: str,
    image: ImageRecord,
    sink: FileSink,
    *,
    path: str | None = None,
    include: str | None = None,
    max_concurrency: int = 2,
) -> list[ExtractedFile]:
    """Extract the files of the image ``image`` under ``path`` through ``sink`` (a
    :class:`~.pull.FileSink`), checked first, then written: see the module's docstring."""
    manifest = json.loads(image.manifest)
    extraction, layers = plan_extraction(engine, repository, registry_id, manifest, path, max_concurrency)
    chosen = {title: placed for placed in extraction.files.values() if (title := extraction.title_of(placed.name))}
    if include:
        chosen = {title: placed for title, placed in chosen.items() if fnmatch.fnmatchcase(title, include)}
        if not chosen:
            raise InvalidInputError(f"No file of the image matches include={include!r}")
    if not chosen:
        raise InvalidInputError(f"The image holds no file under /{extraction.root}")
    check_file_names(list(chosen))
    sink.check(sorted(chosen))
    log.info(
        "Extracting %s (%s): %d files from /%s, %.1f MiB",
        repository,
        image.image_digest,
        len(chosen),
        extraction.root,
        sum(p.size for p in chosen.values()) / MiB,
    )
    by_layer: dict[int, dict[str, str]] = {}
    for title, placed in chosen.items():
        by_layer.setdefault(placed.layer, {})[placed.name] = title

    def write(layer: TarLayerRef) -> list[ExtractedFile]:
        wanted = by_layer[layer.index]
        written: list[ExtractedFile] = []
        with _open_layer(engine, repository, registry_id, layer) as tar:
            for info in tar:
                title = wanted.get(normalize(info.name, layer.digest)) if info.isreg() else None
                if title is not None:
                    written.append(_write_file(tar, info, title, sink, layer.digest))
        if len(written) != len(wanted):
            missing = sorted(set(wanted.values()) - {f.title for f in written})
            raise InvalidInputError(f"Layer {layer.digest} no longer holds {missing[:5]} on a second read")
        return written

    done = _map(write, [layer for layer in layers if layer.index in by_layer], max_concurrency)
    return sorted((f for found in done for f in found), key=lambda f: f.title)


def _write_file(tar: tarfile.TarFile, info: tarfile.TarInfo, title: str, sink: FileSink, layer: str) -> ExtractedFile:
    handle = tar.extractfile(info)
    assert handle is not None  # a regular file
    writer = sink.open(title, info.size)
    digest = hashlib.sha256()
    try:
        while chunk := handle.read(COPY_SIZE):
            digest.update(chunk)
            writer.write(memoryview(chunk))
    except BaseException:
        writer.abort()
        raise
    return ExtractedFile(writer.commit(), title, info.size, "sha256:" + digest.hexdigest(), layer)


def _map(work: Callable[[TarLayerRef], Any], layers: Sequence[TarLayerRef], max_concurrency: int) -> list[Any]:
    if max_concurrency <= 1 or len(layers) <= 1:
        return [work(layer) for layer in layers]
    with ThreadPoolExecutor(max_workers=min(max_concurrency, len(layers)), thread_name_prefix="ecr-extract") as pool:
        return list(pool.map(work, layers))
