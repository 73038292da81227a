"""The CLI's argument parsing (no services)."""

from __future__ import annotations

import pytest

from airflow_ecr_layers.cli import split_reference
from airflow_ecr_layers.core.errors import InvalidInputError


def test_split_reference() -> None:
    assert split_reference("team/model:v1") == ("team/model", ["v1"])
    assert split_reference("team/model") == ("team/model", [])
    with pytest.raises(InvalidInputError):
        split_reference(":v1")
