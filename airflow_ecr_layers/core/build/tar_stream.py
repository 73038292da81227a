"""A reproducible tar layer over files read from anywhere, as a source that opens at any byte.

:class:`TarLayer` turns an ordered list of :class:`LayerFile` (a path in the image, the
source its bytes come from, whether it is executable) into the bytes of a POSIX tar
archive, without reading anything up front and without a temporary file:

* entries sorted by path component (a folder's entries right after it), every parent
  folder written once, before its first entry;
* fixed metadata: mtime ``mtime`` (``SOURCE_DATE_EPOCH`` in a build, else 0), uid/gid 0,
  no user or group names, mode 0644 for files, 0755 for folders and executable files;
* a PAX extended header (``path``, and ``size`` past 8 GiB) where a field does not fit the
  ustar header: names over 100 bytes or not ASCII;
* two zero blocks at the end (no padding to a 10 KiB record: the layer's digest is that of
  exactly these bytes).

The archive is a list of segments: each entry's header (made when it is read, a few hundred
bytes), a slice of the file's own source, zero padding to the next 512-byte block. Its size
is known from the entries' sizes alone, and :meth:`TarLayer.open_at` starts anywhere (the
engine seeks back for a resume, and to byte 0 for a restart): memory stays one header and
the caller's buffer, whatever the files weigh. ``check_unchanged`` asks every file's source
whether it changed while it was read; ``identity`` sums up the files' identities, so a
resume record can tell the same layer on a later try (it never goes into the image).

The headers are written here, field by field, rather than by :mod:`tarfile`, whose output
has changed between Python versions (device fields of regular files): a layer's bytes must
depend on the files only.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import posixpath
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from airflow_ecr_layers.core.errors import InvalidInputError, SourceChangedError
from airflow_ecr_layers.core.sources.blobs import BlobSource, check_unchanged
from airflow_ecr_layers.core.sources.identity import SourceIdentity

BLOCK = 512
END_OF_ARCHIVE = 2 * BLOCK
"""Two zero blocks end a tar archive."""
FILE_MODE = 0o644
EXECUTABLE_MODE = 0o755
DIRECTORY_MODE = 0o755
NAME_FIELD = 100
"""Bytes of the ustar ``name`` field: longer names (or names not in ASCII) go into a PAX header."""
MAX_OCTAL_SIZE = 8**11
"""The ustar ``size`` and ``mtime`` fields hold 11 octal digits: from this on, a PAX record."""
PAX_HEADER_NAME = b"././@PaxHeader"
_REGULAR, _DIRECTORY, _PAX = b"0", b"5", b"x"
_MAGIC = b"ustar\x0000"
_ZEROS = bytes(END_OF_ARCHIVE)


@dataclass(frozen=True)
class LayerFile:
    """One file of an image: where it goes, where its bytes come from, and whether it runs."""

    path: str
    """Its absolute path in the image (``/models/config.json``)."""
    source: BlobSource
    executable: bool = False


def image_path(path: object, what: str = "path in the image") -> str:
    """``path`` as an absolute, normalised path in the image; refuses a relative path, ``..``,
    NUL, and the root itself. ``.`` components and repeated slashes are dropped."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidInputError(f"{what} {path!r} is not absolute: image paths start with '/'")
    if len(path) > 1 and "//" not in path and "/." not in path and not path.endswith("/") and "\0" not in path:
        with contextlib.suppress(UnicodeEncodeError):  # already normal (most paths): no need to split it
            path.encode("utf-8")
            return path
    if "\0" in path:
        raise InvalidInputError(f"{what} {path!r} holds a NUL character")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidInputError(f"{what} {path!r} holds '..': a path may not climb out of where it is put")
    if not parts:
        raise InvalidInputError(f"{what} {path!r} names the root folder, not a file")
    try:
        "/".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"{what} {path!r} is not valid UTF-8 ({exc.reason})") from None
    return "/" + "/".join(parts)


def path_key(path: str) -> tuple[str, ...]:
    """The order of entries: by path component, so a folder's entries follow it directly
    (``a/b`` before ``a.b``, ``a`` before ``a/b``); code points order as UTF-8 bytes do."""
    return tuple(path.strip("/").split("/"))


def check_paths(paths: Iterable[str]) -> None:
    """Refuse two files at one path, and a path that is a file and a folder at once (a file
    ``/a`` beside ``/a/b``): a tar of both would write one over the other."""
    seen: set[str] = set()
    duplicates: set[str] = set()
    for path in paths:
        (duplicates if path in seen else seen).add(path)
    if duplicates:
        listed = sorted(duplicates)
        raise InvalidInputError(
            f"{len(listed)} paths in the image are given by two sources or more: "
            f"{', '.join(map(repr, listed[:5]))}{' ...' if len(listed) > 5 else ''}"
        )
    folders: set[str] = set()
    for path in seen:
        folder = path.rpartition("/")[0]
        while folder and folder not in folders:
            folders.add(folder)
            folder = folder.rpartition("/")[0]
    both = sorted(folders & seen)
    if both:
        raise InvalidInputError(
            f"{len(both)} paths in the image are both a file and a folder holding other files: "
            f"{', '.join(map(repr, both[:5]))}{' ...' if len(both) > 5 else ''}"
        )


def parents(path: str) -> list[str]:
    """The folders above ``/a/b/c``: ``/a``, ``/a/b`` (the root is not an entry)."""
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _octal(value: int, width: int) -> bytes:
    """``width - 1`` octal digits and a NUL, as ustar numeric fields are written."""
    return b"%0*o\0" % (width - 1, value)


def _field(data: bytes, width: int) -> bytes:
    return data[:width].ljust(width, b"\0")


def _pax_record(keyword: str, value: bytes) -> bytes:
    """``"<length> <keyword>=<value>\\n"``, the length counting its own digits."""
    body = len(keyword) + len(value) + 3  # ' ', '=', '\n'
    length = guess = 0
    while True:  # the length's own digits count: settle on a fixed point (as tarfile does)
        length = body + len(str(guess))
        if length == guess:
            break
        guess = length
    return b"%d %s=%s\n" % (length, keyword.encode("ascii"), value)


def _padding(size: int) -> int:
    return -size % BLOCK


def _ustar(name: bytes, mode: int, size: int, mtime: int, kind: bytes) -> bytes:
    """One ustar header block: uid/gid 0, no user or group names, no device numbers."""
    block = b"".join(
        [
            _field(name, NAME_FIELD),
            _octal(mode, 8),
            _octal(0, 8),  # uid
            _octal(0, 8),  # gid
            _octal(size, 12),
            _octal(mtime, 12),
            b" " * 8,  # the checksum, counted as spaces
            kind,
            bytes(NAME_FIELD),  # linkname
            _MAGIC,
            bytes(32),  # uname
            bytes(32),  # gname
            bytes(8),  # devmajor
            bytes(8),  # devminor
            bytes(155),  # prefix
        ]
    ).ljust(BLOCK, b"\0")
    return block[:148] + b"%06o\0 " % sum(block) + block[156:]


def _pax_records(name: str, size: int) -> bytes:
    """The PAX records an entry needs (none when its ustar header holds it all)."""
    records = b""
    if len(name) > NAME_FIELD or not name.isascii():
        records += _pax_record("path", name.encode("utf-8"))
    if size >= MAX_OCTAL_SIZE:
        records += _pax_record("size", str(size).encode("ascii"))
    return records


def entry_header(name: str, mode: int, size: int, mtime: int, *, directory: bool = False) -> bytes:
    """The header blocks of one entry named ``name`` (relative, a folder's ending in ``/``):
    a PAX header and its records when needed, then the ustar block."""
    records = _pax_records(name, size)
    ustar_name = name.encode("ascii", "replace")
    kind = _DIRECTORY if directory else _REGULAR
    ustar = _ustar(ustar_name, mode, size if size < MAX_OCTAL_SIZE else 0, mtime, kind)
    if not records:
        return ustar
    pax = _ustar(PAX_HEADER_NAME, 0, len(records), 0, _PAX)
    return pax + records + bytes(_padding(len(records))) + ustar


def header_size(name: str, size: int) -> int:
    """``len(entry_header(name, ...))``, without making it."""
    records = len(_pax_records(name, size))
    return BLOCK + (BLOCK + records + _padding(records) if records else 0)


def entry_size(path: str, size: int) -> int:
    """The bytes a file of ``size`` bytes at ``path`` (absolute) takes in a tar: header, data, padding."""
    return header_size(path.lstrip("/"), size) + size + _padding(size)


def check_mtime(mtime: object) -> int:
    if isinstance(mtime, bool) or not isinstance(mtime, int) or not 0 <= mtime < MAX_OCTAL_SIZE:
        raise InvalidInputError(
            f"the entries' mtime must be whole seconds from 0 to {MAX_OCTAL_SIZE - 1}, got {mtime!r}"
        )
    return mtime


@dataclass(frozen=True)
class _Entry:
    """One entry of the archive: where it starts, its header's size, its data's."""

    start: int
    name: str
    """The tar name: relative, a folder's ending in ``/``."""
    mode: int
    header_size: int
    source: BlobSource | None
    """The file's bytes; None for a folder."""
    size: int

    @property
    def data_start(self) -> int:
        return self.start + self.header_size

    @property
    def end(self) -> int:
        return self.data_start + self.size + _padding(self.size)


class TarLayer:
    """A reproducible tar archive of ``files``, read on demand from their sources (a
    :class:`~airflow_ecr_layers.core.sources.blobs.BlobSource`).

    :param files: the files, in any order; their paths absolute and distinct.
    :param mtime: every entry's modification time, in seconds since the epoch.
    :param name: a display name, for logs and errors.
    """

    def __init__(self, files: Sequence[LayerFile], *, mtime: int = 0, name: str = "tar layer") -> None:
        if not files:
            raise InvalidInputError("a tar layer needs at least one file")
        self.mtime = check_mtime(mtime)
        self._name = name
        paths = [image_path(f.path) for f in files]
        check_paths(paths)
        by_path = dict(zip(paths, files, strict=True))
        folders = {folder for path in by_path for folder in parents(path)}  # a layer's share: a few thousand files
        self._entries: list[_Entry] = []
        position = 0
        for path in sorted([*folders, *by_path], key=path_key):
            found = by_path.get(path)
            relative = path.lstrip("/")
            if found is None:
                name_in_tar, mode, source, size = relative + "/", DIRECTORY_MODE, None, 0
            else:
                mode = EXECUTABLE_MODE if found.executable else FILE_MODE
                name_in_tar, source, size = relative, found.source, found.source.size
            entry = _Entry(position, name_in_tar, mode, header_size(name_in_tar, size), source, size)
            self._entries.append(entry)
            position = entry.end
        self._starts = [entry.start for entry in self._entries]
        self._size = position + END_OF_ARCHIVE
        self.files = len(by_path)
        """How many files (not folders) the layer holds."""
        self._identity: object = _UNKNOWN

    @property
    def name(self) -> str:
        return self._name

    @property
    def size(self) -> int:
        return self._size

    @property
    def paths(self) -> list[str]:
        """Every entry's name in the archive, in order (folders end in ``/``)."""
        return [entry.name for entry in self._entries]

    def sources(self) -> list[BlobSource]:
        """The files' sources, in archive order."""
        return [entry.source for entry in self._entries if entry.source is not None]

    def header(self, index: int) -> bytes:
        entry = self._entries[index]
        return entry_header(entry.name, entry.mode, entry.size, self.mtime, directory=entry.source is None)

    def segments(self) -> list[tuple[int, int, str]]:
        """``(start, end, kind)`` of every segment (``header``, ``data``, ``padding``, ``end``):
        where a reader may be asked to start."""
        found = []
        for entry in self._entries:
            found.append((entry.start, entry.data_start, "header"))
            if entry.size:
                found.append((entry.data_start, entry.data_start + entry.size, "data"))
            if entry.end > entry.data_start + entry.size:
                found.append((entry.data_start + entry.size, entry.end, "padding"))
        found.append((self._size - END_OF_ARCHIVE, self._size, "end"))
        return found

    def identity(self) -> SourceIdentity | None:
        """What tells these bytes from others without reading them, for a resume record: a
        digest of the mtime and every entry's name, mode, size and source identity. None when a
        file's source has no identity. Never written into an image."""
        if self._identity is _UNKNOWN:
            entries: list[Any] = []
            for entry in self._entries:
                known = None
                if entry.source is not None:
                    known = _identity_of(entry.source)
                    if known is None:
                        self._identity = None
                        return None
                entries.append([entry.name, entry.mode, entry.size, known.fields() if known else None])
            canonical = json.dumps({"v": 1, "mtime": self.mtime, "entries": entries}, separators=(",", ":"))
            digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
            self._identity = SourceIdentity(f"tar-layer:sha256:{digest}", self._size)
        return self._identity  # type: ignore[return-value]

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        handle = _TarReader(self, block_size)
        handle.seek(offset)
        return handle  # type: ignore[return-value]

    def check_unchanged(self) -> None:
        """Raise :class:`~airflow_ecr_layers.core.errors.SourceChangedError` when any file's source
        says it changed since it was opened (each source's own ``check_unchanged``)."""
        for source in self.sources():
            check_unchanged(source)

    def _locate(self, position: int) -> int:
        """The index of the entry holding byte ``position`` (``len(entries)`` for the end blocks)."""
        return bisect_right(self._starts, position) - 1 if position < self._size - END_OF_ARCHIVE else len(self._starts)


_UNKNOWN = object()


def _identity_of(source: BlobSource) -> SourceIdentity | None:
    get = getattr(source, "identity", None)
    found = get() if get is not None else None
    return found if isinstance(found, SourceIdentity) else None


class _TarReader(io.RawIOBase):
    """A read-only, seekable handle on a :class:`TarLayer`. Each ``readinto`` fills the
    buffer across segments; a file's source is opened where its bytes are first wanted and
    closed at its last byte (or when the reader moves elsewhere)."""

    def __init__(self, layer: TarLayer, block_size: int) -> None:
        super().__init__()
        self._layer = layer
        self._block_size = block_size
        self._position = 0
        self._header: tuple[int, bytes] | None = None
        self._open: tuple[int, int, BinaryIO] | None = None
        """(entry index, the next byte of the file it reads, handle)."""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._layer.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._position < self._layer.size:
            done += self._fill(view[done:])
        return done

    def close(self) -> None:
        self._close_file()
        super().close()

    def _fill(self, view: memoryview) -> int:
        """Copy bytes from the segment at the position into ``view``; how many."""
        layer, position = self._layer, self._position
        index = layer._locate(position)
        if index == len(layer._entries):
            count = min(len(view), layer.size - position)
            view[:count] = _ZEROS[:count]
        else:
            entry = layer._entries[index]
            if position < entry.data_start:
                header = self._header_of(index)
                at = position - entry.start
                count = min(len(view), len(header) - at)
                view[:count] = header[at : at + count]
            elif position < entry.data_start + entry.size:
                count = self._read_file(index, entry, position - entry.data_start, view)
            else:
                count = min(len(view), entry.end - position)
                view[:count] = _ZEROS[:count]
        self._position += count
        return count

    def _header_of(self, index: int) -> bytes:
        if self._header is None or self._header[0] != index:
            self._header = (index, self._layer.header(index))
        return self._header[1]

    def _read_file(self, index: int, entry: _Entry, at: int, view: memoryview) -> int:
        assert entry.source is not None
        if self._open is None or self._open[:2] != (index, at):
            self._close_file()
            self._open = (index, at, entry.source.open_at(at, self._block_size))
        handle = self._open[2]
        wanted = min(len(view), entry.size - at)
        readinto = getattr(handle, "readinto", None)
        if readinto is not None:
            count = readinto(view[:wanted]) or 0
        else:
            chunk = handle.read(wanted)
            count = len(chunk)
            view[:count] = chunk
        if not count:
            raise SourceChangedError(
                f"{entry.source.name} ended at byte {at}, {entry.size - at} bytes short of its size when it was opened"
            )
        if at + count == entry.size:
            self._close_file()
        else:
            self._open = (index, at + count, handle)
        return count

    def _close_file(self) -> None:
        if self._open is not None:
            handle = self._open[2]
            self._open = None
            handle.close()


def image_folder(path: object) -> str:
    """A folder of the image, as :func:`image_path` gives it, or ``/`` for the root."""
    if isinstance(path, str) and path.startswith("/") and not path.strip("/"):
        return "/"
    return image_path(path, "path")


def join_image_path(root: str, relative: str) -> str:
    """``relative`` (a source's title) under the folder ``root`` (absolute): refuses an
    absolute ``relative`` and one that climbs out with ``..``."""
    base = image_folder(root)
    if not isinstance(relative, str) or not relative or relative.startswith("/"):
        raise InvalidInputError(f"file name {relative!r} must be a relative path under {base}")
    if ".." in relative.split("/"):
        raise InvalidInputError(f"file name {relative!r} holds '..': it would land outside {base}")
    return image_path(posixpath.join(base, relative), f"path of {relative!r}")
