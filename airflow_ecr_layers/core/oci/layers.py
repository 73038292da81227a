"""From sources to the layers of an artifact: titles, identities, chunks, and the checks on them.

Every source becomes one layer titled with its name (``org.opencontainers.image.title``),
or, with a ``chunk_size``, a file larger than that becomes consecutive layers of that
size: ECR takes the parts of one layer strictly in order, so a big file goes faster as
several layers uploaded side by side, and a file over ECR's 52,000 MiB cap on one layer
can still be pushed. Each chunk is titled ``<title>.chunk-NNNN`` and annotated with the
file's title, its offset and the file's size (:mod:`.identity`), which is all a client
needs to put the file back together.

A title is a path a pull writes under its destination, so the rules on titles live here, once,
for both sides: :func:`safe_title` (a plain relative path) and :func:`check_file_names` (no two
files on one name, no file where another needs a folder). A push refuses what a pull would
refuse (:func:`check_layer_titles`), before anything is read or sent.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import MAX_LAYER_SIZE, MAX_LAYERS, MIN_PART_SIZE
from airflow_ecr_layers.core.oci.manifest import TITLE_ANNOTATION
from airflow_ecr_layers.core.sources.blobs import BlobSource, SliceSource
from airflow_ecr_layers.core.sources.identity import CHUNK_FILE_SIZE, CHUNK_OF, CHUNK_OFFSET, SourceIdentity


@runtime_checkable
class NamedSource(BlobSource, Protocol):
    """A source that knows its title and, where it can, its identity and its stored sha256."""

    @property
    def title(self) -> str:
        """The layer title: the file's path relative to what was asked for."""

    def identity(self) -> SourceIdentity | None:
        """What tells this version of the source from others without reading it, if known."""

    def stored_sha256(self) -> str | None:
        """The sha256 of the whole source as its store keeps it (``sha256:<hex>``), if it keeps one."""


@dataclass(frozen=True)
class LayerSpec:
    """One layer to push: its bytes, media type, title, and what is known of it before reading."""

    source: BlobSource
    media_type: str
    title: str | None = None
    expected_digest: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    identity: SourceIdentity | None = None
    """The identity of the object this layer's bytes come from (a whole file or a chunk of one)."""
    offset: int = 0
    """Where this layer's bytes start in that object."""

    @property
    def whole_object(self) -> bool:
        return self.offset == 0 and (self.identity is None or self.identity.size == self.source.size)

    def all_annotations(self) -> dict[str, str]:
        found = dict(self.annotations)
        if self.title:
            found.setdefault(TITLE_ANNOTATION, self.title)
        return found


def validate_chunk_size(chunk_size: object) -> int | None:
    """``None`` (no chunking) or a size a chunk can have: 5 MiB up to ECR's maximum layer size."""
    if chunk_size is None or chunk_size == "":
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise InvalidInputError(f"chunk_size must be an integer number of bytes, got {chunk_size!r}")
    if not MIN_PART_SIZE <= chunk_size <= MAX_LAYER_SIZE:
        raise InvalidInputError(
            f"chunk_size {chunk_size} is outside {MIN_PART_SIZE} (5 MiB) .. {MAX_LAYER_SIZE} (ECR's maximum layer size)"
        )
    return chunk_size


def chunk_title(title: str, index: int, count: int) -> str:
    """``model.bin.chunk-0003``: zero-padded so the titles sort in file order."""
    return f"{title}.chunk-{index:0{max(4, len(str(count - 1)))}d}"


def layers_of(
    sources: Sequence[NamedSource],
    media_type: str,
    *,
    chunk_size: int | None = None,
    expected_digest: str | None = None,
) -> list[LayerSpec]:
    """The layers for ``sources``, in order, checked before anything is read or written.

    Refuses no sources, more than :data:`MAX_LAYERS` layers, and titles that collide.
    ``expected_digest`` applies to a single unchunked source.
    """
    chunk_size = validate_chunk_size(chunk_size)
    if not sources:
        raise InvalidInputError("Nothing to push: no sources given")
    if expected_digest is not None and len(sources) != 1:
        raise InvalidInputError(f"expected_digest applies to a single source; {len(sources)} sources were given")
    layers: list[LayerSpec] = []
    for source in sources:
        identity = source.identity()
        size = source.size
        if chunk_size is None or size <= chunk_size:
            layers.append(
                LayerSpec(
                    source,
                    media_type,
                    title=source.title,
                    expected_digest=expected_digest,
                    identity=identity,
                )
            )
            continue
        count = -(-size // chunk_size)
        for index in range(count):
            offset = index * chunk_size
            length = min(chunk_size, size - offset)
            title = chunk_title(source.title, index, count)
            layers.append(
                LayerSpec(
                    SliceSource(source, offset, length, f"{source.name} [{offset}:{offset + length}]"),
                    media_type,
                    title=title,
                    annotations={CHUNK_OF: source.title, CHUNK_OFFSET: str(offset), CHUNK_FILE_SIZE: str(size)},
                    identity=identity,
                    offset=offset,
                )
            )
        if expected_digest is not None:
            raise InvalidInputError("expected_digest names a whole file's digest; it cannot check chunks of it")
    check_layers(layers)
    return layers


def safe_title(title: object) -> str:
    """A title that is a plain relative path, or an error naming it."""
    if not isinstance(title, str) or not title or "\x00" in title or "\\" in title:
        raise InvalidInputError(f"Refusing the layer title {title!r}: not a plain relative path")
    if title.startswith("/") or posixpath.isabs(title) or (len(title) > 1 and title[1] == ":"):
        raise InvalidInputError(f"Refusing the layer title {title!r}: an absolute path")
    parts = title.split("/")
    if ".." in parts:
        raise InvalidInputError(f"Refusing the layer title {title!r}: it climbs out of the destination with '..'")
    if any(part in ("", ".") for part in parts):
        raise InvalidInputError(f"Refusing the layer title {title!r}: empty or '.' path components")
    return title


def check_file_names(titles: Sequence[str]) -> None:
    """Refuse two files on one name, and a name that is a file and a folder of other files."""
    seen: set[str] = set()
    for title in titles:
        if title in seen:
            raise InvalidInputError(f"Two files are named {title!r}: a pull would write one over the other")
        seen.add(title)
    folders = {"/".join(t.split("/")[:depth]) for t in titles for depth in range(1, t.count("/") + 1)}
    clashes = sorted(seen & folders)
    if clashes:
        raise InvalidInputError(f"{clashes[0]!r} is both a file and a folder of other files")


def check_layer_titles(annotations: Sequence[Mapping[str, str]]) -> None:
    """Refuse the titles a pull would refuse, given each layer's annotations.

    A pull makes a file of each layer titled ``org.opencontainers.image.title`` and one file of
    the chunks naming the same file (:data:`~.identity.CHUNK_OF`, whose own titles are not
    files): each such name must pass :func:`safe_title`, and the names together
    :func:`check_file_names`.
    """
    files: list[str] = []
    chunked: set[str] = set()
    for found in annotations:
        if CHUNK_OF in found:
            name = safe_title(found[CHUNK_OF])
            if name not in chunked:
                chunked.add(name)
                files.append(name)
        elif TITLE_ANNOTATION in found:
            files.append(safe_title(found[TITLE_ANNOTATION]))
    check_file_names(files)


def check_layers(layers: Sequence[LayerSpec]) -> None:
    """Refuse more layers than :data:`MAX_LAYERS`, titles that collide, and titles a pull would refuse."""
    if len(layers) > MAX_LAYERS:
        raise InvalidInputError(
            f"{len(layers)} layers: an artifact may have at most {MAX_LAYERS}, ECR's limit of layers per image "
            "(narrow the prefix or glob, raise chunk_size, or build an image instead: `airflow-ecr-layers build` "
            "or BuildImageOperator packs any number of files into a few tar layers)"
        )
    titles = Counter(layer.title for layer in layers if layer.title)
    collisions = sorted(title for title, count in titles.items() if count > 1)
    if collisions:
        raise InvalidInputError(
            f"Layer titles collide: {', '.join(map(repr, collisions[:10]))}"
            f"{' ...' if len(collisions) > 10 else ''}; a pull would write one file over another"
        )
    check_layer_titles([layer.all_annotations() for layer in layers])
