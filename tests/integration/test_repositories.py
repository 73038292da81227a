"""Creating repositories with their settings, and checking existing ones, against the embedded ECR."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import boto3
import pytest

from airflow_ecr_layers.core.ecr.repository_settings import RepositorySettings, ensure_repository
from airflow_ecr_layers.core.errors import (
    EcrLayersError,
    EcrServiceError,
    InvalidInputError,
    RepositorySettingsMismatchError,
)
from airflow_ecr_layers.operators import (
    EnsureEcrRepositoryOperator,
    InitiateLayerUploadOperator,
    PushArtifactOperator,
)
from helpers import CONN_ID

AWS = {"aws_conn_id": CONN_ID}
NAME = "team/app"
POLICY = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "archive what nobody pulled for 90 days",
            "selection": {"tagStatus": "any", "countType": "sinceImagePulled", "countUnit": "days", "countNumber": 90},
            "action": {"type": "transition", "targetStorageClass": "archive"},
        },
        {
            "rulePriority": 2,
            "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 10},
            "action": {"type": "expire"},
        },
    ]
}


@pytest.fixture
def kms(clean_aws: Any) -> Any:
    return boto3.client("kms", endpoint_url=clean_aws.endpoint_url, region_name=clean_aws.region)


@pytest.fixture
def key_arn(kms: Any) -> str:
    arn: str = kms.create_key(Description="ecr")["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/ecr-images", TargetKeyId=arn)
    return arn


@pytest.fixture
def settings(key_arn: str) -> dict[str, Any]:
    """Every setting there is; the key given by its alias."""
    return {
        "image_tag_mutability": "IMMUTABLE_WITH_EXCLUSION",
        "image_tag_mutability_exclusion_filters": ["latest", "*-dev"],
        "scan_on_push": True,
        "encryption_type": "KMS",
        "kms_key": "alias/ecr-images",
        "lifecycle_policy": POLICY,
        "tags": {"team": "ml", "cost-center": "42"},
    }


def test_creates_a_repository_with_every_setting(hook: Any, ecr: Any, settings: dict[str, Any], key_arn: str) -> None:
    result = hook.ensure_repository(NAME, settings)
    assert result.created
    found = ecr.describe_repositories(repositoryNames=[NAME])["repositories"][0]
    assert result.as_dict() == {
        "registry_id": found["registryId"],
        "repository_name": NAME,
        "repository_uri": found["repositoryUri"],
        "repository_arn": found["repositoryArn"],
        "created": True,
    }
    assert found["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert found["imageTagMutabilityExclusionFilters"] == [
        {"filterType": "WILDCARD", "filter": "latest"},
        {"filterType": "WILDCARD", "filter": "*-dev"},
    ]
    assert found["imageScanningConfiguration"] == {"scanOnPush": True}
    assert found["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": key_arn}  # the alias's key
    assert json.loads(ecr.get_lifecycle_policy(repositoryName=NAME)["lifecyclePolicyText"]) == POLICY
    tags = ecr.list_tags_for_resource(resourceArn=found["repositoryArn"])["tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "ml", "cost-center": "42"}


def test_a_second_call_finds_the_same_settings(hook: Any, ecr: Any, settings: dict[str, Any], key_arn: str) -> None:
    first = hook.ensure_repository(NAME, settings)
    again = hook.ensure_repository(NAME, settings)
    assert again.as_dict() == {**first.as_dict(), "created": False}
    # The same settings written otherwise: the key by ARN and by id, the policy as reformatted
    # text with its rules in another order, tags as a list; and a tag someone added since.
    ecr.tag_resource(resourceArn=first.repository_arn, tags=[{"Key": "added-later", "Value": "x"}])
    text = json.dumps({"rules": POLICY["rules"][::-1]}, indent=4, sort_keys=True)
    tags = [{"Key": "team", "Value": "ml"}]
    for key in (key_arn, key_arn.rsplit("/", 1)[1]):
        assert not hook.ensure_repository(
            NAME, {**settings, "kms_key": key, "lifecycle_policy": text, "tags": tags}
        ).created
    assert not hook.ensure_repository(NAME, None).created  # no settings: any repository will do


CHANGES = {
    "image tag mutability: MUTABLE_WITH_EXCLUSION asked for, the repository has IMMUTABLE_WITH_EXCLUSION": {
        "image_tag_mutability": "MUTABLE_WITH_EXCLUSION"
    },
    'image tag mutability exclusion filters: ["*-dev", "release-*"] asked for, the repository has ["*-dev", "lat': {
        "image_tag_mutability_exclusion_filters": ["release-*", "*-dev"]
    },
    "scan on push: false asked for, the repository has true": {"scan_on_push": False},
    "encryption type: KMS_DSSE asked for, the repository has KMS": {"encryption_type": "KMS_DSSE"},
    "KMS key: 'arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000' asked for": {
        "kms_key": "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    },
    "lifecycle policy rule 2.selection.countNumber: 20 asked for, the repository has 10": {
        "lifecycle_policy": {
            "rules": [
                POLICY["rules"][0],
                {**POLICY["rules"][1], "selection": {**POLICY["rules"][1]["selection"], "countNumber": 20}},
            ]
        }
    },
    'lifecycle policy rule 3: missing (asked for {"rulePriority": 3': {
        "lifecycle_policy": {"rules": [*POLICY["rules"], {**POLICY["rules"][1], "rulePriority": 3}]}
    },
    "tag 'team': 'data' asked for, the repository has 'ml'": {"tags": {"team": "data"}},
    "tag 'owner': missing (asked for 'me')": {"tags": {"owner": "me"}},
}


@pytest.mark.parametrize("named", list(CHANGES), ids=lambda s: s.split(":")[0])
def test_each_difference_fails_naming_it(hook: Any, ecr: Any, settings: dict[str, Any], named: str) -> None:
    hook.ensure_repository(NAME, settings)
    with pytest.raises(RepositorySettingsMismatchError) as excinfo:
        hook.ensure_repository(NAME, {**settings, **CHANGES[named]})
    assert named in str(excinfo.value)
    assert len(excinfo.value.differences) == 1 and excinfo.value.differences[0].startswith(named)
    assert "never changed" in str(excinfo.value)


def test_every_difference_at_once_is_named(hook: Any, ecr: Any, settings: dict[str, Any]) -> None:
    ecr.create_repository(repositoryName=NAME)  # ECR's defaults: MUTABLE, no scan, AES256, no policy, no tags
    with pytest.raises(RepositorySettingsMismatchError) as excinfo:
        hook.ensure_repository(NAME, settings)
    assert [d.split(":")[0] for d in excinfo.value.differences] == [
        "image tag mutability",
        "image tag mutability exclusion filters",
        "scan on push",
        "encryption type",
        "KMS key",
        "lifecycle policy",
        "tag 'cost-center'",
        "tag 'team'",
    ]


def test_a_repository_created_between_the_check_and_the_create(hook: Any, ecr: Any, settings: dict[str, Any]) -> None:
    """Another task wins the race (and has yet to put its lifecycle policy): not an error."""
    winner = RepositorySettings.from_dict(settings)

    def create_first(**_: Any) -> None:
        ecr.create_repository(repositoryName=NAME, **winner.create_parameters())

    hook.conn.meta.events.register_first("before-call.ecr.CreateRepository", create_first)
    try:
        result = hook.ensure_repository(NAME, settings)
    finally:
        hook.conn.meta.events.unregister("before-call.ecr.CreateRepository", create_first)
    assert not result.created
    assert json.loads(ecr.get_lifecycle_policy(repositoryName=NAME)["lifecyclePolicyText"]) == POLICY


def test_a_race_won_with_other_settings_fails_naming_them(hook: Any, ecr: Any, settings: dict[str, Any]) -> None:
    def create_first(**_: Any) -> None:
        ecr.create_repository(repositoryName=NAME, imageScanningConfiguration={"scanOnPush": False})

    hook.conn.meta.events.register_first("before-call.ecr.CreateRepository", create_first)
    try:
        with pytest.raises(RepositorySettingsMismatchError, match="scan on push: true asked for"):
            hook.ensure_repository(NAME, {"scan_on_push": True})
    finally:
        hook.conn.meta.events.unregister("before-call.ecr.CreateRepository", create_first)


def test_concurrent_tasks_create_one_repository(clean_aws: Any, ecr: Any, settings: dict[str, Any]) -> None:
    from airflow_ecr_layers.hooks import EcrLayersHook

    hooks = [EcrLayersHook(aws_conn_id=CONN_ID) for _ in range(6)]
    for h in hooks:
        h.engine  # noqa: B018 - each its own client, built before the start
    start, results, errors = threading.Barrier(len(hooks)), [], []

    def run(h: Any) -> None:
        start.wait()
        try:
            results.append(h.ensure_repository(NAME, settings))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(h,)) for h in hooks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(r.created for r in results) == [False] * 5 + [True]
    assert json.loads(ecr.get_lifecycle_policy(repositoryName=NAME)["lifecyclePolicyText"]) == POLICY


def test_an_old_repository_without_its_policy_is_refused(hook: Any, ecr: Any) -> None:
    ecr.create_repository(repositoryName=NAME)
    wanted = RepositorySettings.from_dict({"lifecycle_policy": POLICY})
    with pytest.raises(RepositorySettingsMismatchError, match="lifecycle policy: missing"):
        ensure_repository(hook.calls, hook.retry_policy, NAME, wanted, now=lambda: time.time() + 3600)
    with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
        ecr.get_lifecycle_policy(repositoryName=NAME)
    # Young, and lacking only the policy: its creator had yet to put it (or died first).
    assert not ensure_repository(hook.calls, hook.retry_policy, NAME, wanted).created
    assert json.loads(ecr.get_lifecycle_policy(repositoryName=NAME)["lifecyclePolicyText"]) == POLICY


def test_ecr_refusals_come_through_named(hook: Any, ecr: Any) -> None:
    with pytest.raises(EcrServiceError, match="KmsException.*alias/no-such-key") as excinfo:
        hook.ensure_repository(NAME, {"encryption_type": "KMS", "kms_key": "alias/no-such-key"})
    assert excinfo.value.operation == "create_repository"
    ecr.create_repository(repositoryName=NAME, encryptionConfiguration={"encryptionType": "KMS"})
    with pytest.raises(EcrLayersError, match="kms:DescribeKey answered NotFoundException"):
        hook.ensure_repository(NAME, {"encryption_type": "KMS", "kms_key": "alias/no-such-key"})
    zero = {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 0}
    with pytest.raises(EcrServiceError, match="put_lifecycle_policy failed with InvalidParameterException"):
        hook.ensure_repository(
            "team/other",
            {"lifecycle_policy": {"rules": [{"rulePriority": 1, "selection": zero, "action": {"type": "expire"}}]}},
        )


def test_the_standalone_operator(clean_aws: Any, ecr: Any, settings: dict[str, Any]) -> None:
    op = EnsureEcrRepositoryOperator(task_id="repo", repository_name=NAME, repository_settings=settings, **AWS)
    first, second = op.execute({}), op.execute({})
    assert first["created"] and not second["created"]
    assert json.loads(json.dumps(first)) == first and set(first) == {
        "registry_id",
        "repository_name",
        "repository_uri",
        "repository_arn",
        "created",
    }
    assert ecr.describe_repositories(repositoryNames=[NAME])["repositories"][0]["imageScanningConfiguration"] == {
        "scanOnPush": True
    }


def test_push_and_initiate_create_the_repository_first(clean_aws: Any, ecr: Any, put_object: Any) -> None:
    wanted = {"image_tag_mutability": "IMMUTABLE", "tags": {"team": "ml"}}
    push = PushArtifactOperator(
        task_id="push",
        source=put_object("m.bin", b"model"),
        repository_name=NAME,
        tags=["v1"],
        create_repository=True,
        repository_settings=wanted,
        resume=False,
        **AWS,
    )
    result = push.execute({})
    assert result["repository"]["created"] and result["repository"]["repository_name"] == NAME
    assert ecr.describe_images(repositoryName=NAME)["imageDetails"][0]["imageTags"] == ["v1"]
    assert not push.execute({})["repository"]["created"]  # the same push again: same image, same tag
    initiate = InitiateLayerUploadOperator(
        task_id="i", repository_name="team/other", create_repository=True, **AWS
    ).execute({})
    assert set(initiate) == {"registry_id", "repository_name", "upload_id", "part_size"}
    assert (
        ecr.describe_repositories(repositoryNames=["team/other"])["repositories"][0]["imageTagMutability"] == "MUTABLE"
    )
    with pytest.raises(RepositorySettingsMismatchError, match="image tag mutability: MUTABLE asked for"):
        PushArtifactOperator(
            task_id="p2",
            source=put_object("m.bin", b"model"),
            repository_name=NAME,
            create_repository=True,
            repository_settings={"image_tag_mutability": "MUTABLE"},
            **AWS,
        ).execute({})


def test_settings_without_create_repository_are_refused_when_the_dag_is_parsed() -> None:
    with pytest.raises(InvalidInputError, match="repository_settings is used only with create_repository=True"):
        PushArtifactOperator(
            task_id="p", source="s3://b/k", repository_name=NAME, repository_settings={"scan_on_push": True}
        )
