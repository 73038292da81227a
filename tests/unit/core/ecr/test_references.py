"""Image references: the full ECR form, the short form, tags and digests, and the bad ones."""

from __future__ import annotations

import pytest

from airflow_ecr_layers.core.ecr.references import ImageReference, parse_reference, reference_from
from airflow_ecr_layers.core.errors import InvalidInputError

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("team/model:v1", ImageReference("team/model", tag="v1")),
        (f"team/model@{DIGEST}", ImageReference("team/model", digest=DIGEST)),
        (f"team/model:v1@{DIGEST}", ImageReference("team/model", tag="v1", digest=DIGEST)),
        (
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ml/model:latest",
            ImageReference("ml/model", tag="latest", registry_id="123456789012", region="eu-west-1"),
        ),
        (
            f"210987654321.dkr.ecr-fips.us-gov-west-1.amazonaws.com/a/b/c@{DIGEST}",
            ImageReference("a/b/c", digest=DIGEST, registry_id="210987654321", region="us-gov-west-1"),
        ),
    ],
)
def test_references_parse(text: str, expected: ImageReference) -> None:
    assert parse_reference(text) == expected


def test_the_full_form_round_trips_and_a_digest_wins_the_image_id() -> None:
    text = f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/ml/model:v1@{DIGEST}"
    reference = parse_reference(text)
    assert str(reference) == text
    assert reference.image_id() == {"imageDigest": DIGEST}
    assert parse_reference("ml/model:v1").image_id() == {"imageTag": "v1"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ml/model", "add :TAG or @sha256:DIGEST"),
        ("ghcr.io/ml/model:v1", "not an ECR registry"),
        ("localhost:5000/ml/model:v1", "not an ECR registry"),
        ("ML/Model:v1", "repository name"),
        ("ml/model:bad tag", "tag"),
        ("ml/model@sha256:short", "digest"),
        ("", "Expected an image reference"),
    ],
)
def test_bad_references_are_refused_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_reference(text)


def test_a_destination_may_be_a_bare_repository() -> None:
    assert parse_reference("prod/model", require_image=False) == ImageReference("prod/model")


def test_a_reference_or_its_parts_not_both() -> None:
    assert reference_from(repository_name="r1", image_tag="v1", registry_id="123456789012") == ImageReference(
        "r1", tag="v1", registry_id="123456789012"
    )
    assert reference_from("r1:v1", region_name="eu-west-1").region == "eu-west-1"
    assert reference_from("123456789012.dkr.ecr.us-east-2.amazonaws.com/r1:v1", region_name="eu-west-1").region == (
        "us-east-2"
    )
    with pytest.raises(InvalidInputError, match="not both"):
        reference_from("r1:v1", repository_name="r1")
    with pytest.raises(InvalidInputError, match="image_tag or image_digest"):
        reference_from(repository_name="r1")
