"""Repository settings: what is refused before any call, and what counts as a difference."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_ecr_layers.core.ecr.repository_settings import RepositorySettings, RepositoryState, differences
from airflow_ecr_layers.core.errors import InvalidInputError

RULE = {
    "rulePriority": 1,
    "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 5},
    "action": {"type": "expire"},
}
POLICY = {"rules": [RULE]}
KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"encryption_type": "AES128"},
            "Unknown encryption_type 'AES128'; expected one of ['AES256', 'KMS', 'KMS_DSSE']",
        ),
        ({"kms_key": KEY}, "kms_key is given but encryption_type is None"),
        ({"encryption_type": "AES256", "kms_key": KEY}, "kms_key is given but encryption_type is 'AES256'"),
        ({"image_tag_mutability": "FROZEN"}, "Unknown image_tag_mutability 'FROZEN'"),
        (
            {"image_tag_mutability": "IMMUTABLE", "image_tag_mutability_exclusion_filters": ["dev-*"]},
            "use IMMUTABLE_WITH_EXCLUSION",
        ),
        ({"image_tag_mutability_exclusion_filters": ["dev-*"]}, "ECR refuses filters with no mode"),
        ({"image_tag_mutability": "MUTABLE_WITH_EXCLUSION"}, "needs image_tag_mutability_exclusion_filters"),
        (
            {"image_tag_mutability": "MUTABLE_WITH_EXCLUSION", "image_tag_mutability_exclusion_filters": ["v1/x"]},
            "Invalid image tag mutability exclusion filter 'v1/x'",
        ),
        (
            {
                "image_tag_mutability": "MUTABLE_WITH_EXCLUSION",
                "image_tag_mutability_exclusion_filters": list("abcdef"),
            },
            "6 image_tag_mutability_exclusion_filters given; ECR allows at most 5",
        ),
        (
            {
                "image_tag_mutability": "MUTABLE_WITH_EXCLUSION",
                "image_tag_mutability_exclusion_filters": [{"filterType": "REGEX", "filter": "a"}],
            },
            "WILDCARD is the only filter type",
        ),
        ({"lifecycle_policy": '{"rules": [}'}, "lifecycle_policy is not valid JSON: Expecting value: line 1"),
        ({"lifecycle_policy": '{"rulez": []}'}, 'a non-empty "rules" list'),
        ({"lifecycle_policy": {"rules": [{**RULE, "rulePriority": "1"}]}}, "rulePriority must be a positive integer"),
        ({"lifecycle_policy": {"rules": [RULE, RULE]}}, "rulePriority [1] used by more than one rule"),
        ({"lifecycle_policy": {"rules": [{"rulePriority": 1, "selection": {}}]}}, "rule 1 lacks ['action']"),
        ({"lifecycle_policy": [RULE]}, "lifecycle_policy must be a JSON object"),
        ({"lifecycle_policy": {"rules": [RULE], "x": "y" * 30720}}, "ECR takes 100 to 30720"),
        ({"scan_on_push": "yes"}, "scan_on_push must be true or false, got 'yes'"),
        ({"tags": {"aws:owner": "me"}}, "the 'aws:' prefix is reserved"),
        ({"tags": {"k" * 129: "v"}}, "1-128 characters"),
        ({"tags": {f"k{i}": "v" for i in range(51)}}, "51 repository tags given; ECR allows at most 50"),
        ({"tags": [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]}, "Repository tag keys repeat"),
        ({"tags": "team=ml"}, "tags must be a dict"),
        ({"scan_on_pushh": True}, "Unknown repository_settings keys ['scan_on_pushh']"),
    ],
)
def test_bad_settings_are_refused_clearly(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError) as excinfo:
        RepositorySettings.from_dict(settings)
    assert message in str(excinfo.value)


def test_settings_become_create_repository_parameters_and_round_trip() -> None:
    settings = RepositorySettings.from_dict(
        {
            "image_tag_mutability": "IMMUTABLE_WITH_EXCLUSION",
            "image_tag_mutability_exclusion_filters": ["latest", {"filterType": "WILDCARD", "filter": "*-dev"}],
            "scan_on_push": False,
            "encryption_type": "KMS",
            "kms_key": KEY,
            "lifecycle_policy": json.dumps(POLICY, indent=2),
            "tags": [{"Key": "team", "Value": "ml"}],
        }
    )
    assert settings.create_parameters() == {
        "tags": [{"Key": "team", "Value": "ml"}],
        "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
        "imageTagMutabilityExclusionFilters": [
            {"filterType": "WILDCARD", "filter": "latest"},
            {"filterType": "WILDCARD", "filter": "*-dev"},
        ],
        "imageScanningConfiguration": {"scanOnPush": False},
        "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": KEY},
    }
    assert settings.lifecycle_policy == json.dumps(POLICY, separators=(",", ":"))  # sent compact
    assert json.loads(json.dumps(settings.as_dict())) == settings.as_dict()
    assert RepositorySettings.from_dict(settings.as_dict()) == settings
    assert RepositorySettings.from_dict(None).create_parameters() == {}  # ECR's defaults, nothing compared


def state(**changes: Any) -> RepositoryState:
    fields: dict[str, Any] = {
        "registry_id": "123456789012",
        "repository_name": "team/app",
        "repository_arn": "arn:aws:ecr:eu-west-1:123456789012:repository/team/app",
        "repository_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app",
        "created_at": None,
        "image_tag_mutability": "MUTABLE",
        "image_tag_mutability_exclusion_filters": (),
        "scan_on_push": False,
        "encryption_type": "KMS",
        "kms_key": KEY,
        "lifecycle_policy": json.dumps(POLICY),
        "tags": {"team": "ml", "added-by-a-tag-policy": "yes"},
    }
    return RepositoryState(**{**fields, **changes})


def test_tags_are_a_subset_and_unspecified_settings_are_not_compared() -> None:
    assert differences(RepositorySettings.from_dict({"tags": {"team": "ml"}}), state()) == []
    assert differences(RepositorySettings(), state(scan_on_push=True, image_tag_mutability="IMMUTABLE")) == []


def test_a_policy_differs_by_meaning_not_by_text() -> None:
    second = {**RULE, "rulePriority": 2, "selection": {**RULE["selection"], "tagStatus": "any"}}
    wanted = RepositorySettings.from_dict({"lifecycle_policy": {"rules": [RULE, second]}})
    reordered = json.dumps({"rules": [second, RULE]}, indent=3, sort_keys=True)
    assert differences(wanted, state(lifecycle_policy=reordered)) == []
    assert differences(wanted, state(lifecycle_policy=json.dumps(POLICY))) == [
        'lifecycle policy rule 2: missing (asked for {"rulePriority": 2, "selection": {"tagStatus": "any", '
        '"countType": "imageCountMoreThan", "countNumber": 5}, "action": {"type": "expire"}})'
    ]


@pytest.mark.parametrize(
    ("kms_key", "same"),
    [
        (KEY, True),
        ("1234abcd-12ab-34cd-56ef-1234567890ab", True),  # a key id: the end of the ARN ECR reports
        ("1234abcd-0000-34cd-56ef-1234567890ab", False),
        ("alias/images", True),  # resolved to KEY below
        ("alias/other", False),
    ],
)
def test_a_kms_key_is_compared_in_the_form_it_was_given(kms_key: str, same: bool) -> None:
    aliases = {"alias/images": KEY, "alias/other": KEY.replace("1234abcd", "99999999")}
    wanted = RepositorySettings(encryption_type="KMS", kms_key=kms_key)
    found = differences(wanted, state(), aliases.__getitem__)
    assert found == ([] if same else [f"KMS key: {kms_key!r} asked for, the repository uses {KEY!r}"])
