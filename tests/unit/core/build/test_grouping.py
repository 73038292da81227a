"""Files into layers: big files alone, small files in groups a change touches one of (pure logic)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

import pytest

from airflow_ecr_layers.core.build.grouping import (
    BIG_FILE_SIZE,
    MAX_GROUP_FACTOR,
    MAX_OWN_LAYERS,
    MIN_GROUP_BYTES,
    average_group_bytes,
    group_files,
)
from airflow_ecr_layers.core.build.tar_stream import LayerFile, entry_size
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import MiB


@dataclass(frozen=True)
class Sized:
    """A source of known size that is never read: grouping reads nothing."""

    size: int
    name: str = "sized"

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        raise AssertionError("grouping reads nothing")


def files(count: int, size: int = 1024, prefix: str = "/data") -> list[LayerFile]:
    return [LayerFile(f"{prefix}/d{i % 37:02d}/f{i:06d}.txt", Sized(size)) for i in range(count)]


def membership(layers: Sequence[tuple[LayerFile, ...]]) -> set[tuple[str, ...]]:
    return {tuple(f.path for f in layer) for layer in layers}


def test_the_same_files_in_any_order_give_the_same_layers() -> None:
    given = files(3000) + [LayerFile("/data/big.bin", Sized(BIG_FILE_SIZE))]
    first = group_files(given)
    shuffled = given[:]
    random.Random(5).shuffle(shuffled)
    again = group_files(shuffled)
    assert [tuple(f.path for f in g) for g in first.layers] == [tuple(f.path for f in g) for g in again.layers]
    for layer in first.layers:
        assert [f.path for f in layer] == sorted(f.path for f in layer)  # path order inside a layer
    firsts = [layer[0].path for layer in first.layers]
    assert firsts == sorted(firsts)


def test_a_big_file_is_a_layer_of_its_own() -> None:
    given = [*files(50), LayerFile("/data/d03/weights.bin", Sized(BIG_FILE_SIZE)), LayerFile("/x", Sized(1))]
    grouping = group_files(given)
    assert ("/data/d03/weights.bin",) in membership(grouping.layers)
    assert grouping.own == 1
    assert sum(len(layer) for layer in grouping.layers) == 52
    assert group_files(given, big_file_size=BIG_FILE_SIZE + 1).own == 0


def test_only_the_largest_big_files_get_their_own_layers_and_the_rest_share() -> None:
    given = [LayerFile(f"/big/{i:04d}", Sized(BIG_FILE_SIZE + i)) for i in range(600)]
    grouping = group_files(given)
    alone = [layer[0] for layer in grouping.layers if len(layer) == 1]
    assert grouping.own == MAX_OWN_LAYERS
    largest = {f.path for f in given[-MAX_OWN_LAYERS:]}
    assert largest <= {f.path for f in alone}
    assert len(grouping.layers) < 300  # the 472 others share layers of a few files each


@pytest.mark.parametrize(("count", "at_most"), [(1, 1), (300, 12), (2_000, 30), (10_000, 150)])
def test_the_layer_count_stays_far_below_ecr_s_limit(count: int, at_most: int) -> None:
    grouping = group_files(files(count))
    assert 1 <= len(grouping.layers) <= at_most
    assert sum(len(layer) for layer in grouping.layers) == count


def test_a_hundred_thousand_files_of_one_kib_make_about_a_hundred_layers() -> None:
    grouping = group_files(files(100_000))
    total = sum(entry_size(f.path, 1024) for f in files(100_000))
    assert grouping.average == average_group_bytes(total) == 2 * MiB
    assert 40 <= len(grouping.layers) <= 160


def test_no_group_grows_past_its_bound() -> None:
    given = files(10_000)
    grouping = group_files(given)
    limit = MAX_GROUP_FACTOR * grouping.average
    assert grouping.average == MIN_GROUP_BYTES
    for layer in grouping.layers:
        assert sum(entry_size(f.path, f.source.size) for f in layer) <= limit
    # so one changed file of 10,000 re-sends at most 4 % of the bytes
    total = sum(entry_size(f.path, f.source.size) for f in given)
    assert limit / total < 0.04


Key = set[tuple[tuple[str, int], ...]]


def grouped(given: Sequence[LayerFile]) -> Key:
    """The groups, each by its files' paths and sizes."""
    return {tuple((f.path, f.source.size) for f in layer) for layer in group_files(given).layers}


def changed_groups(before: Key, after: Sequence[LayerFile]) -> tuple[int, int]:
    """(groups of ``before`` gone, groups of ``after`` new)."""
    new = grouped(after)
    return len(before - new), len(new - before)


BEFORE = files(10_000)


@pytest.fixture(scope="module")
def before() -> Key:
    return grouped(BEFORE)


@pytest.mark.parametrize("seed", range(4))
def test_changing_adding_or_removing_one_small_file_touches_one_group(seed: int, before: Key) -> None:
    """A change touches the changed file's group; where that file ends a group, a split or
    a join touches its neighbour too, and where a group was cut at its size bound, the
    groups up to the next natural end: never every group after it."""
    rng = random.Random(seed)
    index = rng.randrange(len(BEFORE))
    target = BEFORE[index]

    # its bytes change, not its size: the same groups (one of them has other bytes)
    assert changed_groups(before, BEFORE) == (0, 0)

    grown = [*BEFORE[:index], LayerFile(target.path, Sized(target.source.size + 100)), *BEFORE[index + 1 :]]
    gone, new = changed_groups(before, grown)
    assert 1 <= gone <= 3 and 1 <= new <= 3

    gone, new = changed_groups(before, BEFORE[:index] + BEFORE[index + 1 :])
    assert 1 <= gone <= 3 and 1 <= new + 1 <= 3

    gone, new = changed_groups(before, [*BEFORE, LayerFile(f"{target.path}.new", Sized(2048))])
    assert 1 <= gone + 1 <= 3 and 1 <= new <= 3


def test_cutting_by_running_size_would_have_moved_every_group_after_the_change() -> None:
    """The contrast this grouping exists for: fixed-size groups over the sorted files shift
    after an inserted file (so the test above is not passing by accident)."""
    after = sorted([*BEFORE, LayerFile("/data/d00/f000000.txt.new", Sized(1024))], key=lambda f: f.path)

    def by_count(given: Sequence[LayerFile]) -> set[tuple[str, ...]]:
        ordered = sorted(given, key=lambda f: f.path)
        return {tuple(f.path for f in ordered[i : i + 100]) for i in range(0, len(ordered), 100)}

    assert len(by_count(BEFORE) - by_count(after)) > 90
    gone, new = changed_groups(grouped(BEFORE), after)
    assert gone <= 1 and new <= 2


def test_refusals() -> None:
    with pytest.raises(InvalidInputError, match="no files"):
        group_files([])
    with pytest.raises(InvalidInputError, match="two sources"):
        group_files([LayerFile("/a", Sized(1)), LayerFile("/a", Sized(2))])
    with pytest.raises(InvalidInputError, match="maximum layer size"):
        group_files([LayerFile("/huge", Sized(52_000 * MiB))])
    with pytest.raises(InvalidInputError, match="big_file_size"):
        group_files(files(2), big_file_size=0)
    with pytest.raises(InvalidInputError, match="more than the 3 a build writes"):
        group_files([LayerFile(f"/big/{i}", Sized(BIG_FILE_SIZE)) for i in range(4)], max_layers=3)
