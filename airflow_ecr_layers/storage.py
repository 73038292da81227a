"""Artifact sources and pull destinations on a plain fsspec filesystem (s3://, file://, gs://, ...).

Everything that reads or writes object storage lives here, on :class:`FsPath` (a path on
an fsspec filesystem): sources (sizes, ETags, identities, ``If-Match`` ranged reads on
S3 through :class:`~airflow_ecr_layers.s3_reader.S3DirectReader`), prefixes and globs,
image archives (tar, tar.gz, OCI layout directories) and sinks for ``pull``. It never
imports Airflow: how a URL becomes a filesystem is the caller's :data:`Resolver`.

* :class:`PlainStorage` resolves URLs with fsspec itself (s3fs on the plain AWS
  credentials chain; S3 objects are read by a boto3 client on the same chain): the CLI
  without ``--conn-id``.
* :mod:`airflow_ecr_layers.object_storage` resolves them with Airflow's
  ``ObjectStoragePath`` and a connection id: the operators, and the CLI with ``--conn-id``.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import posixpath
import stat
import unicodedata
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any, BinaryIO

from airflow_ecr_layers.core.archives.gzip_streams import GunzipSource, is_gzip
from airflow_ecr_layers.core.archives.reading import ArchiveReader, DirectoryLayout
from airflow_ecr_layers.core.archives.tar_index import HostileArchiveError, TarIndex, normalize
from airflow_ecr_layers.core.errors import InvalidInputError, SourceChangedError, SourceError
from airflow_ecr_layers.core.sources.blobs import BlobSource, check_same_file, local_identity
from airflow_ecr_layers.core.sources.identity import SourceIdentity

if TYPE_CHECKING:
    from airflow_ecr_layers.s3_reader import DirectS3

log = logging.getLogger("airflow_ecr_layers")
GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class FsPath:
    """A path on an fsspec filesystem: ``fs`` reads it, ``path`` is its name there (``bucket/key``,
    ``/tmp/model.bin``), ``protocol`` the URL scheme it was asked for with (``s3``, ``file``).

    ``direct``, on S3: the synchronous client its objects are read with, on the same credentials
    as ``fs`` (the resolver that made the path knows them); without one, s3fs reads them."""

    fs: Any
    path: str
    protocol: str
    direct: DirectS3 | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.protocol}://{self.path}"

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def parent(self) -> FsPath:
        return replace(self, path=posixpath.dirname(self.path.rstrip("/")))

    def __truediv__(self, child: str) -> FsPath:
        return replace(self, path=f"{self.path.rstrip('/')}/{child}")

    @property
    def is_local(self) -> bool:
        protocol = self.fs.protocol
        return bool({"file", "local"} & set(protocol if isinstance(protocol, (tuple, list)) else [protocol]))

    @property
    def on_s3(self) -> bool:
        return is_s3fs(self.fs)

    def is_symlink(self) -> bool:
        try:
            return bool(self.fs.info(self.path).get("islink"))
        except FileNotFoundError:
            return False

    def kind(self) -> str:
        """``file``, ``dir`` or ``missing``, as the store says now (not a listing cached earlier in
        this process), with unreadable paths reported clearly."""
        try:
            self.fs.invalidate_cache(self.path)
            if not self.fs.exists(self.path):
                return "missing"
            return "dir" if self.fs.isdir(self.path) else "file"
        except (OSError, ValueError) as exc:
            raise SourceError(f"Cannot read source {str(self)!r}: {exc}") from exc


Resolver = Callable[[str], FsPath]
"""How a URL becomes an :class:`FsPath` (its filesystem, with whatever credentials)."""


def is_s3fs(fs: Any) -> bool:
    """Whether ``fs`` is an s3fs filesystem (without importing s3fs where it is not installed)."""
    return any(cls.__module__.startswith("s3fs.") and cls.__name__ == "S3FileSystem" for cls in type(fs).__mro__)


def check_url(source: object) -> str:
    """``source`` if it is a non-empty URL string, else a clear :class:`SourceError`."""
    if not isinstance(source, str) or not source.strip():
        raise SourceError(f"source must be an object storage URL (s3://bucket/key, file:///path), got {source!r}")
    return source


class PlainStorage:
    """A :data:`Resolver` on fsspec alone: ``s3://`` is s3fs on the plain AWS credentials chain
    (``AWS_PROFILE``, ``AWS_ENDPOINT_URL``, ...), its objects read by a boto3 client on the same
    chain, ``file://`` the local disk, other schemes fsspec's own implementations. One filesystem
    per scheme for this object's lifetime, made fresh (not fsspec's instance cache), so it sees
    the environment as it is now."""

    def __init__(self) -> None:
        self._filesystems: dict[str, Any] = {}
        self._direct: dict[str, DirectS3] = {}

    def __call__(self, url: str) -> FsPath:
        import fsspec

        scheme, sep, _ = check_url(url).partition("://")
        protocol = scheme if sep else "file"
        fs = self._filesystems.get(protocol)
        if fs is None:
            try:
                fs = fsspec.filesystem(protocol, skip_instance_cache=True)
            except (ImportError, ValueError) as exc:
                raise SourceError(f"Cannot read {url!r}: {exc}") from exc
            self._filesystems[protocol] = fs
        direct = self._direct.get(protocol)
        if direct is None and is_s3fs(fs):
            from airflow_ecr_layers.s3_reader import DirectS3

            direct = self._direct[protocol] = DirectS3(fs, partial(_default_session, fs))
        return FsPath(fs, fs._strip_protocol(url), protocol, direct)


def _default_session(fs: Any) -> Any:
    """A boto3 session on the default credentials chain (the profile an s3fs filesystem was given)."""
    import boto3

    return boto3.Session(profile_name=(getattr(fs, "kwargs", None) or {}).get("profile"))


def _stat_snapshot(path: FsPath) -> os.stat_result:
    """One ``os.stat`` of a local source, the snapshot its size and identity describe."""
    try:
        return os.stat(path.path)
    except FileNotFoundError:
        raise SourceError(f"Source {str(path)!r} does not exist") from None
    except OSError as exc:
        raise SourceError(f"Cannot read source {str(path)!r}: {exc}") from exc


class ObjectStorageSource:
    """A :class:`~airflow_ecr_layers.core.oci.layers.NamedSource` over an :class:`FsPath`.

    On S3 (s3fs), handles are :class:`~airflow_ecr_layers.s3_reader.S3DirectReader`: one
    ranged GET per read, made on the reading thread and written straight into the reader's
    part buffer (:class:`~airflow_ecr_layers.s3_reader.S3RangeReader`, through s3fs, where
    the path has no direct client). Other
    filesystems get their own file object, opened with ``block_size`` equal to the
    part size and no read-ahead cache, so each part is one ranged read and no
    50 MiB buffer sits behind it.

    What it knows of the object (size, ETag, version id; on a local disk one ``os.stat``) is a
    snapshot taken once: a local file's when the source is made, an object's from the listing
    that found it or from one fresh metadata request, never from a cache. Its size and
    :meth:`identity` describe that snapshot, not the object as it is later. On S3 every GET
    then carries ``If-Match`` with that ETag, so the bytes read are the ones its identity names.
    """

    def __init__(self, path: FsPath, *, title: str | None = None, info: Mapping[str, Any] | None = None):
        self.path = path
        self._title = title
        self._stat = _stat_snapshot(path) if path.is_local else None
        self._info: Mapping[str, Any] | None = {"size": self._stat.st_size} if self._stat is not None else info

    @property
    def name(self) -> str:
        return str(self.path)

    @property
    def title(self) -> str:
        """The layer title: the path relative to the prefix or glob that found it, else the file name."""
        return self._title or self.path.name

    @property
    def info(self) -> Mapping[str, Any]:
        """The object's metadata, taken once (on S3 with the ETag every GET is then pinned to)."""
        if self._info is None:
            fs = self.path.fs
            if self.path.on_s3:
                self._info = fs.info(self.path.path, refresh=True)
            else:
                self._info = {"size": fs.info(self.path.path)["size"]}
        return self._info

    @property
    def size(self) -> int:
        return int(self.info["size"])

    def identity(self) -> SourceIdentity | None:
        """The snapshot's identity. S3: URL, size, ETag, version id. A local file: path, size,
        ``mtime_ns``, inode, device, ``ctime_ns``. Elsewhere the store's own ETag or generation.
        None where the store reports neither an ETag nor a version (an S3-compatible store
        without ETags included): such a source is never reused by its URL and size alone."""
        if self._stat is not None:
            return local_identity(self.path.path, self._stat)
        info = self.info
        if self.path.on_s3:
            bucket, key, version_id = self.path.fs.split_path(self.path.path)
            url, etag, version = f"s3://{bucket}/{key}", info.get("ETag"), info.get("VersionId") or version_id
        else:
            url, etag = str(self.path), info.get("ETag") or info.get("etag") or info.get("md5Hash")
            version = info.get("VersionId") or info.get("generation")
        if not etag and not version:
            return None
        return SourceIdentity(url, self.size, str(etag) if etag else None, str(version) if version else None)

    def check_unchanged(self) -> None:
        """After the last byte: a local file must still be the one opened; another store's object
        must still have the ETag, generation and size it had (S3 reads are pinned by ``If-Match``)."""
        if self._stat is not None:
            check_same_file(self.path.path, self._stat)
            return
        if self.path.on_s3:
            return
        opened = self.identity()
        try:
            info = self.path.fs.info(self.path.path)
        except (OSError, ValueError) as exc:
            raise SourceChangedError(f"{self.name} is gone or unreadable after it was read ({exc})") from exc
        now = ObjectStorageSource(self.path, title=self._title, info=info)
        if now.size != self.size or now.identity() != opened:
            raise SourceChangedError(f"{self.name} changed while it was read; nothing was completed from it")

    def stored_sha256(self) -> str | None:
        """S3's full-object SHA-256 of this object (HeadObject in checksum mode), if S3 keeps one.

        A composite checksum of a multipart upload (``...-N``, or ``ChecksumType`` COMPOSITE)
        is not the object's sha256 and is not used; nor is an answer for another ETag.
        """
        fs = self.path.fs
        if not self.path.on_s3:
            return None
        bucket, key, version_id = fs.split_path(self.path.path)
        version = {"VersionId": version_id} if version_id else {}
        client = self.path.direct.client() if self.path.direct is not None else None
        try:
            if client is not None:
                from botocore.exceptions import BotoCoreError, ClientError

                try:
                    extra = self.path.direct.request_args("HeadObject") if self.path.direct else {}
                    head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED", **version, **extra)
                except (BotoCoreError, ClientError) as exc:
                    raise OSError(str(exc)) from exc
            else:
                from fsspec.asyn import sync

                head = sync(
                    fs.loop, fs._call_s3, "head_object", Bucket=bucket, Key=key, ChecksumMode="ENABLED", **version
                )
        except OSError as exc:
            log.info("%s: no checksum to learn its digest from (%s)", self.name, exc)
            return None
        return full_object_sha256(head, self.info.get("ETag"))

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        if self.path.on_s3:
            from airflow_ecr_layers.s3_reader import S3DirectReader, S3RangeReader  # s3fs is loaded already

            etag = self.info.get("ETag")  # every GET of every handle must match the object this size is of
            direct = self.path.direct
            if direct is not None and direct.client() is not None:
                return S3DirectReader(direct, self.path.path, self.size, offset, etag=etag)  # type: ignore[return-value]
            reader = S3RangeReader(self.path.fs, self.path.path, self.size, offset, etag=etag)
            return reader  # type: ignore[return-value]
        handle: BinaryIO = self.path.fs.open(self.path.path, "rb", block_size=block_size, cache_type="none")
        if offset:
            handle.seek(offset)
        return handle


def full_object_sha256(head: Mapping[str, Any], etag: str | None) -> str | None:
    """``sha256:<hex>`` from a HeadObject answer, only where it is the whole object's sha256."""
    value = head.get("ChecksumSHA256")
    if not isinstance(value, str) or "-" in value or (etag and head.get("ETag") != etag):
        return None
    kind = head.get("ChecksumType")
    if kind is None and "-" in str(head.get("ETag", "")):
        return None  # an older answer without ChecksumType, for a multipart upload: composite
    if kind not in (None, "FULL_OBJECT"):
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return "sha256:" + raw.hex() if len(raw) == 32 else None


def _path(source: str | FsPath, resolve: Resolver) -> FsPath:
    return source if isinstance(source, FsPath) else resolve(check_url(source))


def open_source(source: str | FsPath, resolve: Resolver, *, allow_empty: bool = False) -> ObjectStorageSource:
    """Resolve and check a source URL: it must exist, be a file, and not be empty (unless
    ``allow_empty``: a file in a tar layer may be empty, an artifact's layer may not)."""
    path = _path(source, resolve)
    kind = path.kind()
    if kind == "missing":
        raise SourceError(f"Source {str(path)!r} does not exist")
    if kind == "dir":
        raise SourceError(
            f"Source {str(path)!r} is a directory, not a file; end it with '/' to push every object under it"
        )
    found = ObjectStorageSource(path)
    if found.size == 0 and not allow_empty:
        raise SourceError(f"Source {str(path)!r} is empty (0 bytes): ECR cannot store an empty layer, so it is refused")
    return found


def is_prefix(url: str) -> bool:
    """Whether a source URL stands for many objects: it ends in ``/``, or holds a glob."""
    return url.endswith("/") or bool(GLOB_CHARACTERS & set(url.partition("://")[2]))


def open_sources(
    sources: str | FsPath | Sequence[str | FsPath], resolve: Resolver, *, allow_empty: bool = False
) -> list[ObjectStorageSource]:
    """Every source a URL, a prefix (``.../``), a glob (``*``, ``**``) or a list of them stands for.

    A prefix or a glob gives the objects it matches, sorted by key, each titled with its
    path relative to the prefix (or to the glob's directory). A prefix or glob that
    matches nothing is refused; so is an empty object, unless ``allow_empty`` (a build's
    tar layers hold empty files).
    """
    items = [sources] if isinstance(sources, (str, FsPath)) else list(sources)
    found: list[ObjectStorageSource] = []
    for item in items:
        if isinstance(item, str) and is_prefix(item):
            found.extend(expand(item, resolve, allow_empty=allow_empty))
        else:
            found.append(open_source(item, resolve, allow_empty=allow_empty))
    return found


def list_prefix(url: str, resolve: Resolver) -> list[str]:
    """The URLs of the objects a prefix or glob stands for, sorted."""
    return [str(source.path) for source in expand(url, resolve)]


def expand(url: str, resolve: Resolver, *, allow_empty: bool = False) -> list[ObjectStorageSource]:
    """The objects under a prefix or matching a glob, sorted by key, titled relative to it."""
    scheme, _, rest = check_url(url).partition("://")
    pattern = bool(GLOB_CHARACTERS & set(rest))
    root = resolve(f"{scheme}://{_static_part(rest)}" if pattern else url)
    fs = root.fs
    base = root.path.rstrip("/") + "/"
    try:
        fs.invalidate_cache(base)
        matches = fs.glob(fs._strip_protocol(url), detail=True) if pattern else fs.find(base, detail=True)
    except (OSError, ValueError) as exc:
        raise SourceError(f"Cannot list {url!r}: {exc}") from exc
    objects = {
        name: info
        for name, info in sorted(matches.items())
        if info.get("type", "file") == "file" and not name.endswith("/")
    }
    if not objects:
        raise SourceError(f"{url!r} matches no objects: nothing to push")
    empty = [name for name, info in objects.items() if int(info.get("size") or 0) == 0]
    if empty and not allow_empty:
        raise SourceError(
            f"{url!r} matches empty objects, which ECR cannot store as layers: {', '.join(empty[:5])}"
            f"{' ...' if len(empty) > 5 else ''} (leave them out with a glob)"
        )
    return [
        ObjectStorageSource(
            replace(root, path=name),
            title=name[len(base) :] if name.startswith(base) else name.rsplit("/", 1)[-1],
            info=info,
        )
        for name, info in objects.items()
    ]


def _static_part(path: str) -> str:
    """The directory of a glob before its first glob character (``b/models/*.bin`` -> ``b/models/``)."""
    first = min((path.index(c) for c in GLOB_CHARACTERS if c in path), default=len(path))
    return path[: path.rfind("/", 0, first) + 1]


def open_image_archive(source: str | FsPath, resolve: Resolver) -> ArchiveReader:
    """A tar (optionally gzip-compressed) or an OCI layout directory, read in place."""
    path = _path(source, resolve)
    kind = path.kind()
    if kind == "missing":
        raise SourceError(f"Image archive {str(path)!r} does not exist")
    if kind == "dir":
        return DirectoryLayout(str(path), lambda relative: _layout_file(path, relative))
    archive: BlobSource = ObjectStorageSource(path)
    if archive.size == 0:
        raise SourceError(f"Image archive {str(path)!r} is empty")
    if is_gzip(archive):
        archive = GunzipSource(archive)
    return TarIndex(archive)


def _layout_file(root: FsPath, relative: str) -> ObjectStorageSource | None:
    """A file inside a layout directory; refuses paths that escape or pass through a symlink."""
    clean = normalize(relative, str(root))
    current = root
    for part in clean.split("/"):
        current = current / part
        if current.is_symlink():
            raise HostileArchiveError(f"{root}: blob path {relative!r} resolves through a symlink ({part!r})")
    return ObjectStorageSource(current) if current.kind() == "file" else None


class ObjectStorageSink:
    """Pulled files under a folder or prefix, each visible only once verified.

    On S3 a file is a streaming multipart upload (``block_size`` bytes held at a time),
    completed by :meth:`_Writer.commit` and aborted (nothing appears) by
    :meth:`_Writer.abort`. A local file is written under a hidden temporary name in its
    folder and renamed into place (:class:`_LocalWriter`). Other stores write a temporary
    object and move it.

    A local folder is never written outside of: :meth:`check` refuses, before anything is
    written, a symlink on any file's way (a folder, or the file's own name) and names that
    differ only by case when the folder's file system does not tell them apart; the writer
    then opens each folder on the way without following symlinks, so one put there meanwhile
    fails the file instead of leading it elsewhere. The destination folder itself may be a
    symlink: that is where it was asked to write.
    """

    def __init__(self, root: FsPath, *, block_size: int = 16 * 1024 * 1024) -> None:
        self.root = root
        self.block_size = block_size

    def check(self, titles: Sequence[str]) -> None:
        """Refuse files that would be written through a symlink, or over one another because
        the local file system folds case; nothing is written when refused."""
        if not self.root.is_local:
            return  # object stores have no symlinks and tell every name apart
        root = self.root.path
        for title in titles:
            _refuse_links(root, title)
        clashes = _case_clashes(titles)
        if not clashes:
            return
        made = _make_folders(root)
        try:
            sensitive = case_sensitive(root)
        except BaseException:
            _remove_folders(made)
            raise
        if not sensitive:
            _remove_folders(made)
            shown = "; ".join(" and ".join(map(repr, group)) for group in clashes[:10])
            raise InvalidInputError(
                f"Refusing to pull into {root}: its file system does not tell names apart by case, and these "
                f"names of the artifact differ only by case: {shown}{' ...' if len(clashes) > 10 else ''} "
                "(one would be written over the other). Pull into a case-sensitive folder, or an object store"
            )

    def open(self, title: str, size: int) -> _Writer | _LocalWriter:
        target = self.root / title
        fs = target.fs
        if target.on_s3:
            # S3 allows 10,000 parts: make the blocks big enough for the file
            block = max(self.block_size, -(-size // 9_000))
            return _Writer(target, fs.open(target.path, "wb", block_size=block), None)
        if target.is_local and _FOLDER_FDS:
            return _LocalWriter(self.root.path, title, str(target))
        temporary = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:12]}"
        if target.is_local:
            os.makedirs(os.path.dirname(target.path), exist_ok=True)
        return _Writer(target, fs.open(temporary.path, "wb"), temporary)


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_FOLDER_FDS = bool(_NOFOLLOW and _DIRECTORY) and {os.open, os.mkdir, os.rename, os.unlink} <= os.supports_dir_fd
"""Whether folders can be opened without following symlinks and used as ``dir_fd`` (POSIX)."""


def case_sensitive(folder: str) -> bool:
    """Whether the file system of ``folder`` (an existing local folder) tells names apart by case.

    Probes it: a hidden file with a lower-case name is made there, looked up by its upper-case
    name, and removed. (Case folding can be set per folder, as ext4's ``casefold`` is; the
    destination folder's is what counts, since the folders a pull makes inherit it.)
    """
    name = f".airflow-ecr-layers-case-probe-{uuid.uuid4().hex}"
    path = os.path.join(folder, name)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600))
    try:
        return not os.path.lexists(os.path.join(folder, name.upper()))
    finally:
        os.unlink(path)


def _caseless(name: str) -> str:
    """Unicode's canonical caseless form (what a case- and normalization-insensitive disk compares)."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


def _case_clashes(titles: Sequence[str]) -> list[list[str]]:
    """Groups of paths (files, and the folders on their way) that differ only by case."""
    names = set(titles) | {"/".join(t.split("/")[:depth]) for t in titles for depth in range(1, t.count("/") + 1)}
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(_caseless(name), []).append(name)
    return [group for group in groups.values() if len(group) > 1]


def _refuse_links(root: str, title: str) -> None:
    """Refuse a title whose way under ``root`` passes a symlink, a file where a folder is needed,
    or ends on a folder (what is not there yet is made by the pull, and is fine)."""
    parts = title.split("/")
    path = root
    for depth, part in enumerate(parts, 1):
        path = os.path.join(path, part)
        try:
            found = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(found.st_mode):
            raise InvalidInputError(
                f"Refusing to pull {title!r}: {path!r} is a symlink (to {os.readlink(path)!r}) in the destination, "
                "and a pull never writes through a symlink; remove it, or pull into another folder"
            )
        if depth < len(parts) and not stat.S_ISDIR(found.st_mode):
            raise InvalidInputError(f"Refusing to pull {title!r}: {path!r} is a file, where it needs a folder")
        if depth == len(parts) and stat.S_ISDIR(found.st_mode):
            raise InvalidInputError(f"Refusing to pull {title!r}: {path!r} is a folder")


def _make_folders(path: str) -> list[str]:
    """``os.makedirs(path)``; returns the folders it made, deepest first."""
    missing: list[str] = []
    current = os.path.abspath(path)
    while not os.path.lexists(current):
        missing.append(current)
        current = os.path.dirname(current)
    os.makedirs(path, exist_ok=True)
    return missing


def _remove_folders(made: list[str]) -> None:
    for folder in made:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def _open_folder(root: str, folders: Sequence[str], title: str) -> int:
    """A descriptor of ``root/folders...``, each made if missing and opened without following a
    symlink: a folder swapped for a symlink since :meth:`ObjectStorageSink.check` fails here."""
    os.makedirs(root, exist_ok=True)
    flags = os.O_RDONLY | _DIRECTORY | _CLOEXEC
    fd = os.open(root, flags)
    try:
        for depth, part in enumerate(folders, 1):
            try:
                try:
                    inner = os.open(part, flags | _NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o777, dir_fd=fd)
                    inner = os.open(part, flags | _NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                where = os.path.join(root, *folders[:depth])
                raise InvalidInputError(
                    f"Refusing to pull {title!r}: {where!r} is not a plain folder (a symlink or a file: "
                    f"{exc.strerror}); a pull never writes through a symlink"
                ) from exc
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


class _LocalWriter:
    """One file being written in a local folder: a hidden temporary file, made without following
    a symlink in a folder opened without following one, renamed into place by :meth:`commit`
    (a rename replaces a name; it never writes through it)."""

    def __init__(self, root: str, title: str, shown: str) -> None:
        *folders, self.name = title.split("/")
        self.shown = shown
        self.folder = _open_folder(root, folders, title)
        self.temporary = f".{self.name}.partial-{uuid.uuid4().hex[:12]}"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
            self.handle = os.fdopen(os.open(self.temporary, flags, 0o666, dir_fd=self.folder), "wb")
        except BaseException:
            os.close(self.folder)
            raise

    def write(self, data: memoryview) -> None:
        self.handle.write(data)

    def commit(self) -> str:
        try:
            self.handle.close()
            # POSIX rename (renameat) replaces the name atomically, as os.replace does
            os.rename(self.temporary, self.name, src_dir_fd=self.folder, dst_dir_fd=self.folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self.temporary, dir_fd=self.folder)
            raise
        finally:
            os.close(self.folder)
        return self.shown

    def abort(self) -> None:
        try:
            self.handle.close()
            with contextlib.suppress(OSError):
                os.unlink(self.temporary, dir_fd=self.folder)
        finally:
            os.close(self.folder)


class _Writer:
    """One file being written: ``handle`` writes to the final name (S3) or to ``temporary``."""

    def __init__(self, target: FsPath, handle: Any, temporary: FsPath | None) -> None:
        self.target = target
        self.handle = handle
        self.temporary = temporary

    def write(self, data: memoryview) -> None:
        self.handle.write(data)

    def commit(self) -> str:
        self.handle.close()
        if self.temporary is not None:
            if self.target.is_local:
                os.replace(self.temporary.path, self.target.path)
            else:
                self.target.fs.mv(self.temporary.path, self.target.path)
        return str(self.target)

    def abort(self) -> None:
        if self.temporary is None:
            self.handle.discard()  # s3fs: abort the multipart upload; the object never appears
            self.handle.closed = True
            return
        self.handle.close()
        with contextlib.suppress(OSError):
            self.temporary.fs.rm(self.temporary.path)


def open_sink(destination: str | FsPath, resolve: Resolver) -> ObjectStorageSink:
    """Where to pull files to: a folder or prefix URL (``s3://bucket/prefix/``, ``file:///dir/``)."""
    if isinstance(destination, str) and not destination.strip():
        raise SourceError("destination must be a folder or prefix URL (s3://bucket/prefix/, file:///dir/)")
    root = _path(destination, resolve)
    if root.kind() == "file":
        raise SourceError(f"Destination {str(root)!r} is a file: pull writes files under a folder or prefix")
    return ObjectStorageSink(root)
