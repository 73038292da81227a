"""Validation of repository names, registry ids, tags and digests (pure logic)."""

from __future__ import annotations

import pytest

from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import (
    MAX_TAGS,
    validate_digest,
    validate_registry_id,
    validate_repository_name,
    validate_tags,
)


@pytest.mark.parametrize("name", ["ab", "team/models", "a.b_c__d--e/f0", "x" * 256])
def test_valid_repository_names(name: str) -> None:
    assert validate_repository_name(name) == name


@pytest.mark.parametrize("name", ["a", "Team/models", "team//models", "-team", "team/", "x" * 257, "", None, "a b"])
def test_invalid_repository_names_are_named(name: object) -> None:
    with pytest.raises(InvalidInputError, match="repository name"):
        validate_repository_name(name)


def test_registry_id() -> None:
    assert validate_registry_id("123456789012") == "123456789012"
    assert validate_registry_id(None) is None and validate_registry_id("") is None
    for bad in ("12345", "12345678901a", 123456789012):
        with pytest.raises(InvalidInputError, match="registry id"):
            validate_registry_id(bad)


@pytest.mark.parametrize("tag", ["latest", "v1.2.3", "_x", "A" * 128, "build-20260101"])
def test_valid_tags(tag: str) -> None:
    assert validate_tags([tag]) == [tag]


@pytest.mark.parametrize("tag", [".hidden", "-x", "a" * 129, "has space", "a:b", "", "ü"])
def test_invalid_tag_is_named(tag: str) -> None:
    with pytest.raises(InvalidInputError, match="Invalid image tag"):
        validate_tags(["ok", tag])


def test_duplicate_tags_are_named() -> None:
    with pytest.raises(InvalidInputError, match="'v1'"):
        validate_tags(["v1", "v2", "v1"])


def test_too_many_tags() -> None:
    with pytest.raises(InvalidInputError, match=str(MAX_TAGS)):
        validate_tags([f"t{i}" for i in range(MAX_TAGS + 1)])


def test_single_string_and_none() -> None:
    assert validate_tags("v1") == ["v1"]
    assert validate_tags(None) == []


def test_digest() -> None:
    good = "sha256:" + "a" * 64
    assert validate_digest(good) == good
    for bad in ("sha256:" + "A" * 64, "md5:" + "a" * 32, "a" * 64, None):
        with pytest.raises(InvalidInputError):
            validate_digest(bad)


def test_error_codes_are_classified_per_operation() -> None:
    from airflow_ecr_layers.core.errors import (
        CredentialsExpiredError,
        QuotaExceededError,
        ThrottledError,
        error_class_for,
        quota_of,
    )

    assert error_class_for("LimitExceededException", 400, "upload_layer_part") is ThrottledError
    assert error_class_for("LimitExceededException", 400, "put_image") is QuotaExceededError
    assert error_class_for("LimitExceededException", 400, "start_image_scan") is QuotaExceededError
    assert error_class_for("TooManyTagsException", 400, "tag_resource") is QuotaExceededError
    assert "tags per resource" in quota_of("put_image", "TooManyTagsException")
    assert error_class_for("ExpiredTokenException", 400, "upload_layer_part") is CredentialsExpiredError
    assert error_class_for("ExpiredToken", 403, "initiate_layer_upload") is CredentialsExpiredError
    assert quota_of("upload_layer_part", "ThrottlingException") == ""
