"""The rule that maps what happened to a part to the next byte to send."""

from __future__ import annotations

import pytest

from airflow_ecr_layers.core.engine.attempt import Gone, NextByte, Rejected, Sent, next_byte
from airflow_ecr_layers.core.engine.reader import Part
from airflow_ecr_layers.core.errors import InvalidLayerPartError, UploadAbortedError, UploadNotFoundError

SIZE = 25
PART = Part(10, bytearray(b"x" * 10))  # bytes 10-19 of 25


def rejected(last_valid: int | None) -> Rejected:
    error = InvalidLayerPartError("InvalidLayerPartException", "First byte is 10 instead of 4", operation="u")
    error.last_valid_byte_received = last_valid
    return Rejected(error)


def test_a_part_acknowledged_to_its_last_byte_moves_past_it() -> None:
    assert next_byte(PART, Sent(19), SIZE) == NextByte(20, "sent")


@pytest.mark.parametrize("last", [-1, 4, 14, 24])
def test_a_short_or_long_acknowledgement_continues_after_the_acknowledged_byte(last: int) -> None:
    assert next_byte(PART, Sent(last), SIZE) == NextByte(last + 1, "short acknowledgement")


@pytest.mark.parametrize("last", [-2, 25, 10**9])
def test_an_acknowledgement_outside_the_blob_aborts(last: int) -> None:
    with pytest.raises(UploadAbortedError, match=f"acknowledged byte {last}"):
        next_byte(PART, Sent(last), SIZE)


@pytest.mark.parametrize(("last_valid", "position"), [(-1, 0), (3, 4), (19, 20), (24, 25)])
def test_a_rejected_part_resumes_after_the_last_valid_byte(last_valid: int, position: int) -> None:
    assert next_byte(PART, rejected(last_valid), SIZE) == NextByte(position, "resume")


@pytest.mark.parametrize("last_valid", [None, -2, 25])
def test_a_rejection_without_a_usable_resume_point_is_raised(last_valid: int | None) -> None:
    outcome = rejected(last_valid)
    with pytest.raises(InvalidLayerPartError) as excinfo:
        next_byte(PART, outcome, SIZE)
    assert excinfo.value is outcome.error


def test_a_vanished_upload_starts_over_at_byte_zero() -> None:
    gone = Gone(UploadNotFoundError("UploadNotFoundException", "gone", operation="upload_layer_part"))
    assert next_byte(PART, gone, SIZE) == NextByte(0, "restart")
