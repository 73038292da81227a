"""RetryPolicy: its values are checked when it is made, not at the first retry."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from airflow_ecr_layers.core.ecr.retry import RetryPolicy, retry_policy_from
from airflow_ecr_layers.core.errors import InvalidInputError


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": -3}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": "5"}, "max_attempts"),
        ({"base_delay": -0.1}, "base_delay"),
        ({"base_delay": math.nan}, "base_delay"),
        ({"base_delay": math.inf}, "base_delay"),
        ({"base_delay": "1"}, "base_delay"),
        ({"max_delay": -1.0}, "max_delay"),
        ({"max_delay": math.inf}, "max_delay"),
        ({"base_delay": 5.0, "max_delay": 1.0}, "max_delay"),
        ({"max_total_seconds": -1}, "max_total_seconds"),
        ({"max_total_seconds": math.nan}, "max_total_seconds"),
        ({"max_total_seconds": None}, "max_total_seconds"),
        ({"max_restarts": -1}, "max_restarts"),
        ({"max_restarts": 1.5}, "max_restarts"),
    ],
)
def test_a_bad_value_is_refused_when_the_policy_is_made_naming_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidInputError, match=rf"^RetryPolicy\.{named} "):
        RetryPolicy(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"max_attempts": 1, "base_delay": 0, "max_delay": 0, "max_total_seconds": 0, "max_restarts": 0},
        {"base_delay": 0.01, "max_delay": 0.01},
        {"max_total_seconds": math.inf},
        {"base_delay": 1, "max_delay": 2},  # ints are numbers too
    ],
)
def test_good_values_are_taken(fields: dict[str, Any]) -> None:
    policy = RetryPolicy(**fields)
    assert all(0 <= policy.delay(attempt) <= policy.max_delay for attempt in (1, 2, 10))


def test_a_dict_and_replace_are_checked_too() -> None:
    with pytest.raises(InvalidInputError, match=r"RetryPolicy\.max_attempts "):
        retry_policy_from({"max_attempts": 0})
    with pytest.raises(InvalidInputError, match=r"RetryPolicy\.max_delay "):
        replace(RetryPolicy(), max_delay=0.1)  # under the default base_delay of 0.5
