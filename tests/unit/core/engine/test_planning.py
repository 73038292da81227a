"""Part planning under ECR's limits (pure logic)."""

from __future__ import annotations

import pytest

from airflow_ecr_layers.core.engine.planning import DEFAULT_PART_SIZE, plan_parts, validate_part_size
from airflow_ecr_layers.core.errors import InvalidInputError, SourceError
from airflow_ecr_layers.core.limits import MAX_LAYER_SIZE, MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, MiB


def test_service_part_size_is_the_default() -> None:
    plan = plan_parts(25 * MiB + 3, service_part_size=10 * MiB)
    assert (plan.part_size, plan.parts) == (10 * MiB, 3)
    assert list(plan.ranges()) == [(0, 10 * MiB - 1), (10 * MiB, 20 * MiB - 1), (20 * MiB, 25 * MiB + 2)]


def test_without_service_part_size_uses_default() -> None:
    assert plan_parts(1).part_size == DEFAULT_PART_SIZE


@pytest.mark.parametrize("service", [1, MIN_PART_SIZE - 1, MAX_PART_SIZE + 1, 10**9])
def test_service_part_size_is_clamped_into_limits(service: int) -> None:
    assert MIN_PART_SIZE <= plan_parts(100 * MiB, service_part_size=service).part_size <= MAX_PART_SIZE


@pytest.mark.parametrize("bad", [0, MIN_PART_SIZE - 1, MAX_PART_SIZE + 1, -5, "10MiB", 5.5, True])
def test_user_part_size_outside_limits_is_refused_naming_it(bad: object) -> None:
    with pytest.raises(InvalidInputError, match=repr(bad) if isinstance(bad, str) else str(bad)):
        validate_part_size(bad)


def test_user_part_size_wins_over_service() -> None:
    assert plan_parts(30 * MiB, part_size=MIN_PART_SIZE, service_part_size=10 * MiB).part_size == MIN_PART_SIZE


def test_ranges_are_inclusive_consecutive_and_cover_exactly() -> None:
    plan = plan_parts(3 * MIN_PART_SIZE, part_size=MIN_PART_SIZE)
    ranges = list(plan.ranges())
    assert len(ranges) == plan.parts == 3
    assert ranges[0][0] == 0 and ranges[-1][1] == plan.size - 1
    assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:], strict=False))
    assert all(last - first + 1 == MIN_PART_SIZE for first, last in ranges)


def test_ranges_can_start_mid_artifact() -> None:
    plan = plan_parts(12 * MiB, part_size=5 * MiB)
    assert list(plan.ranges(start=7 * MiB)) == [(7 * MiB, 12 * MiB - 1)]


def test_too_many_parts_raises_the_part_size_within_limits() -> None:
    size = MAX_PARTS * MIN_PART_SIZE + 1
    plan = plan_parts(size, part_size=MIN_PART_SIZE)
    assert plan.parts <= MAX_PARTS
    assert plan.adjusted_from == MIN_PART_SIZE
    assert MIN_PART_SIZE < plan.part_size <= MAX_PART_SIZE


def test_exactly_max_parts_is_not_adjusted() -> None:
    plan = plan_parts(MAX_PARTS * MIN_PART_SIZE, part_size=MIN_PART_SIZE)
    assert (plan.parts, plan.adjusted_from) == (MAX_PARTS, None)


def test_largest_layer_fits_in_max_parts_of_legal_size() -> None:
    plan = plan_parts(MAX_LAYER_SIZE, part_size=MIN_PART_SIZE)
    assert plan.parts <= MAX_PARTS and plan.part_size <= MAX_PART_SIZE
    assert list(plan.ranges())[-1][1] == MAX_LAYER_SIZE - 1


def test_over_max_layer_size_is_refused() -> None:
    with pytest.raises(SourceError, match="maximum layer size"):
        plan_parts(MAX_LAYER_SIZE + 1)


def test_empty_artifact_is_refused() -> None:
    with pytest.raises(SourceError, match="empty"):
        plan_parts(0)
