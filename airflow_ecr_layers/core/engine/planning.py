"""Part planning under ECR's limits: sizes, counts and byte ranges."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from airflow_ecr_layers.core.errors import InvalidInputError, SourceError
from airflow_ecr_layers.core.limits import (
    MAX_LAYER_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    MiB,
)

log = logging.getLogger(__name__)

DEFAULT_PART_SIZE = 10 * MiB
"""Used when neither the user nor ECR (``partSize``) says otherwise."""


@dataclass(frozen=True)
class PartPlan:
    """How an artifact of ``size`` bytes is cut into parts of ``part_size`` bytes."""

    size: int
    part_size: int
    adjusted_from: int | None = None
    """The part size asked for, when it had to be raised to stay within 4,200 parts."""

    @property
    def parts(self) -> int:
        return -(-self.size // self.part_size)

    def ranges(self, start: int = 0) -> Iterator[tuple[int, int]]:
        """Inclusive ``(first_byte, last_byte)`` pairs, the way UploadLayerPart takes them."""
        first = start
        while first < self.size:
            last = min(first + self.part_size, self.size) - 1
            yield first, last
            first = last + 1

    def as_dict(self) -> dict[str, int | None]:
        return {
            "size": self.size,
            "part_size": self.part_size,
            "parts": self.parts,
            "adjusted_from": self.adjusted_from,
        }


def validate_part_size(part_size: object) -> int:
    if isinstance(part_size, bool) or not isinstance(part_size, int):
        raise InvalidInputError(f"part_size must be an integer number of bytes, got {part_size!r}")
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise InvalidInputError(
            f"part_size {part_size} is outside ECR's limits: between {MIN_PART_SIZE} (5 MiB) and {MAX_PART_SIZE} bytes"
        )
    return part_size


def plan_parts(size: int, part_size: int | None = None, service_part_size: int | None = None) -> PartPlan:
    """Plan the parts of an artifact of ``size`` bytes.

    A user ``part_size`` is validated strictly. Otherwise the ``partSize`` that
    InitiateLayerUpload returned is used, clamped into ECR's limits. When the
    artifact would need more than 4,200 parts, the part size is raised (never
    beyond 20971520 bytes); an artifact too big even then is refused.
    """
    if size <= 0:
        raise SourceError("The artifact is empty (0 bytes): ECR cannot store an empty layer (EmptyUploadException)")
    if size > MAX_LAYER_SIZE:
        raise SourceError(f"The artifact is {size} bytes, over ECR's maximum layer size of {MAX_LAYER_SIZE} bytes")
    if part_size is not None:
        chosen = validate_part_size(part_size)
    elif service_part_size:
        chosen = min(max(int(service_part_size), MIN_PART_SIZE), MAX_PART_SIZE)
    else:
        chosen = DEFAULT_PART_SIZE
    if -(-size // chosen) <= MAX_PARTS:
        return PartPlan(size, chosen)
    needed = -(-size // MAX_PARTS)
    if needed > MAX_PART_SIZE:
        raise SourceError(
            f"The artifact is {size} bytes: even {MAX_PART_SIZE}-byte parts would need more than {MAX_PARTS} parts"
        )
    log.warning(
        "Part size %d would need %d parts for %d bytes (ECR allows %d); using %d-byte parts",
        chosen,
        -(-size // chosen),
        size,
        MAX_PARTS,
        needed,
    )
    return PartPlan(size, needed, adjusted_from=chosen)
