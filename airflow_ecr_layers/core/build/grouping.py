"""Which files share a layer: big files alone, small files in groups cut where their paths say.

A re-build pays for the layers whose bytes changed, so the grouping must keep a change
local. Cutting small files into groups by running size would move every boundary after
a changed file; here, as in content-defined chunking, whether a group ends after a file
depends on that file alone:

* a **big file** (``big_file_size``, 16 MiB, or more) is a layer of its own, at most
  :data:`MAX_OWN_LAYERS` of them (the largest, ties by path); the others join the groups;
* the **small files**, in path order, are cut into groups: a group ends after a file when
  a hash of the file's path, read as a fraction of 1, is below ``weight / average``, where
  ``weight`` is what the file takes in the tar and ``average`` the group size aimed at. So
  a group holds ``average`` bytes on average, and the files of one folder sit together.
  Changing a file's bytes changes its group only; adding or removing a file changes its
  group only, or splits it in two, or joins it to the next (when that file is where a
  group ends). A group never grows past :data:`MAX_GROUP_FACTOR` times ``average`` (nor
  past ECR's layer size): such a cut moves boundaries only up to the next natural one.
* ``average`` follows the small files' total: :data:`TARGET_GROUPS` groups of at least
  :data:`MIN_GROUP_BYTES`, rounded up to a power of two. It changes (and every group
  with it) only when that total doubles or halves past a power of two.

So 100,000 files of 1 KiB make about eighty layers, 10,000 of them about a hundred and twenty
(one changed file re-sends its group: about 2 % of the bytes, never more than 4 %), and the
count stays far below ECR's ~500 layers per image whatever the number of files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from airflow_ecr_layers.core.build.tar_stream import LayerFile, check_paths, entry_size, image_path, path_key
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import MAX_LAYER_SIZE, MiB

BIG_FILE_SIZE = 16 * MiB
"""A file of this size or more is a layer of its own."""
MAX_OWN_LAYERS = 128
"""At most this many files get a layer of their own; smaller big files join the groups."""
TARGET_GROUPS = 128
"""The small files are cut into about this many groups (between half and all of it) once they
weigh more than ``TARGET_GROUPS * MIN_GROUP_BYTES``."""
MIN_GROUP_BYTES = 128 * 1024
"""The smallest average group: a few small files are a layer or two, not one each."""
MAX_GROUP_FACTOR = 4
"""A group is cut before it grows past this many times the average."""
MAX_IMAGE_LAYERS = 400
"""Layers a build may write: ECR refuses images of more than about 500 layers, and a base
image brings its own."""

_ONE = 1 << 64
"""A path's hash is a 64-bit number: hash / _ONE is a fraction of 1."""


def path_hash(path: str) -> int:
    """The first 64 bits of the sha256 of the path's UTF-8 bytes."""
    return int.from_bytes(hashlib.sha256(path.encode("utf-8")).digest()[:8], "big")


def average_group_bytes(total: int) -> int:
    """The group size aimed at for small files weighing ``total`` bytes in the tar."""
    wanted = max(MIN_GROUP_BYTES, -(-total // TARGET_GROUPS))
    return 1 << (wanted - 1).bit_length()


def ends_group(path: str, weight: int, average: int) -> bool:
    """Whether a group ends after the file at ``path``: with probability ``weight / average``,
    decided by the path's hash alone."""
    return path_hash(path) * average < weight * _ONE


@dataclass(frozen=True)
class Grouping:
    """The layers, each a tuple of files in path order; the layers ordered by their first path."""

    layers: list[tuple[LayerFile, ...]]
    average: int
    """The group size aimed at for small files, in tar bytes."""
    own: int
    """How many layers are a big file alone."""


def group_files(
    files: Sequence[LayerFile], *, big_file_size: int = BIG_FILE_SIZE, max_layers: int = MAX_IMAGE_LAYERS
) -> Grouping:
    """The layers ``files`` go into (see the module's notes). Deterministic: the same files
    (paths and sizes) give the same layers, whatever order they come in.

    Refuses no files, a file too big for one ECR layer, and more than ``max_layers`` layers.
    """
    if isinstance(big_file_size, bool) or not isinstance(big_file_size, int) or big_file_size < 1:
        raise InvalidInputError(f"big_file_size must be a positive number of bytes, got {big_file_size!r}")
    if not files:
        raise InvalidInputError("Nothing to build: no files given")
    normalised = [LayerFile(image_path(f.path), f.source, f.executable) for f in files]
    check_paths(f.path for f in normalised)
    ordered = sorted(normalised, key=lambda f: path_key(f.path))
    weights = {f.path: entry_size(f.path, f.source.size) for f in ordered}
    too_big = [f.path for f in ordered if weights[f.path] > MAX_LAYER_SIZE]
    if too_big:
        raise InvalidInputError(
            f"{too_big[0]} is over ECR's maximum layer size ({MAX_LAYER_SIZE} bytes) in a tar layer"
            f"{f' (and {len(too_big) - 1} more)' if len(too_big) > 1 else ''}"
        )
    big = sorted((f for f in ordered if f.source.size >= big_file_size), key=lambda f: (-f.source.size, f.path))
    alone = {f.path for f in big[:MAX_OWN_LAYERS]}
    small = [f for f in ordered if f.path not in alone]
    average = average_group_bytes(sum(weights[f.path] for f in small))
    limit = min(MAX_GROUP_FACTOR * average, MAX_LAYER_SIZE)
    groups: list[tuple[LayerFile, ...]] = []
    current: list[LayerFile] = []
    held = 0
    for f in small:
        weight = weights[f.path]
        if current and held + weight > limit:
            groups.append(tuple(current))
            current, held = [], 0
        current.append(f)
        held += weight
        if ends_group(f.path, weight, average):
            groups.append(tuple(current))
            current, held = [], 0
    if current:
        groups.append(tuple(current))
    layers = sorted([*groups, *((f,) for f in ordered if f.path in alone)], key=lambda g: path_key(g[0].path))
    if len(layers) > max_layers:
        raise InvalidInputError(
            f"{len(files)} files make {len(layers)} layers, more than the {max_layers} a build writes "
            "(ECR refuses images of more than about 500 layers): raise big_file_size"
        )
    return Grouping(layers, average, len(alone))
