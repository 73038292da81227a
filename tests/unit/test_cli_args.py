"""The CLI's argument parsing (no services)."""

from __future__ import annotations

import pytest

from airflow_ecr_layers.cli import exit_code, split_reference
from airflow_ecr_layers.core.errors import (
    DigestMismatchError,
    EcrLayersError,
    InvalidInputError,
    QuotaExceededError,
    RepositoryNotFoundError,
    SourceChangedError,
    SourceError,
    ThrottledError,
    TransferError,
    UploadAbortedError,
)


def test_split_reference() -> None:
    assert split_reference("team/model:v1") == ("team/model", ["v1"])
    assert split_reference("team/model") == ("team/model", [])
    with pytest.raises(InvalidInputError):
        split_reference(":v1")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidInputError("bad tag"), 2),
        (SourceError("s3://b/k does not exist"), 2),
        (TransferError("s3://b/k: reading bytes 0-9 broke off 6 times"), 3),
        (SourceChangedError("s3://b/k changed while it was being read"), 3),
        (UploadAbortedError("gave up after 5 restarts"), 3),
        (ThrottledError("ThrottlingException", "slow down", operation="UploadLayerPart"), 3),
        (RepositoryNotFoundError("RepositoryNotFoundException", "no such", operation="InitiateLayerUpload"), 1),
        (DigestMismatchError("sha256:aa != sha256:bb"), 1),
        (QuotaExceededError("LimitExceededException", "images", operation="PutImage"), 1),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_the_exit_code_tells_bad_input_from_a_failure_a_new_try_may_get_past(error: EcrLayersError, code: int) -> None:
    assert exit_code(error) == code
