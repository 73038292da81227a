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


def calls_to(client: Any, operation: str) -> list[int]:
    """A list that grows by one at each ``operation`` call ``client`` makes (rejected ones too)."""
    made: list[int] = []
    client.meta.events.register(f"before-call.ecr.{operation}", lambda **_: made.append(1))
    return made


def race_lost_to(hook: Any, ecr: Any, winner: dict[str, Any]) -> list[int]:
    """Make ``hook`` lose a creation race to a task asking for ``winner``: the repository appears
    between its lookup and its CreateRepository, and the winner puts its lifecycle policy only
    after ``hook`` has read the repository once (and found no policy). Returns the list that
    counts ``hook``'s own PutLifecyclePolicy calls."""
    wanted = RepositorySettings.from_dict(winner)
    state = {"policy put": False}

    def create_first(**_: Any) -> None:
        ecr.create_repository(repositoryName=NAME, **wanted.create_parameters())

    def put_after_the_first_read(**_: Any) -> None:
        if not state["policy put"] and wanted.lifecycle_policy is not None:
            state["policy put"] = True
            ecr.put_lifecycle_policy(repositoryName=NAME, lifecyclePolicyText=wanted.lifecycle_policy)

    hook.conn.meta.events.register_first("before-call.ecr.CreateRepository", create_first)
    hook.conn.meta.events.register("after-call.ecr.GetLifecyclePolicy", put_after_the_first_read)
    return calls_to(hook.conn, "PutLifecyclePolicy")


def test_a_repository_created_between_the_check_and_the_create(hook: Any, ecr: Any, settings: dict[str, Any]) -> None:
    """Another task with the same settings wins the race and puts its lifecycle policy only after
    the loser has read the repository: not an error, and the loser puts nothing."""
    own_puts = race_lost_to(hook, ecr, settings)
    result = hook.ensure_repository(NAME, settings)
    assert not result.created
    assert json.loads(ecr.get_lifecycle_policy(repositoryName=NAME)["lifecyclePolicyText"]) == POLICY
    assert own_puts == []  # the winner's policy, waited for; never put by the loser


def test_a_race_won_with_another_lifecycle_policy_fails_and_changes_nothing(
    hook: Any, ecr: Any, settings: dict[str, Any]
) -> None:
    """The winner's policy is not there yet when the loser first reads the repository; the loser
    waits for it instead of putting its own, then fails naming how it differs."""
    twenty = {**POLICY["rules"][1], "selection": {**POLICY["rules"][1]["selection"], "countNumber": 20}}
    winner = {**settings, "lifecycle_policy": {"rules": [POLICY["rules"][0], twenty]}}
    own_puts = race_lost_to(hook, ecr, winner)
    with pytest.raises(RepositorySettingsMismatchError) as excinfo:
        hook.ensure_repository(NAME, settings)
    assert excinfo.value.differences == [
        "lifecycle policy rule 2.selection.countNumber: 10 asked for, the repository has 20"
    ]
    assert own_puts == []
    assert (
        json.loads(ecr.get_lifecycle_policy(repositoryName=NAME)["lifecyclePolicyText"]) == winner["lifecycle_policy"]
    )


def test_a_race_won_with_other_settings_fails_naming_them(hook: Any, ecr: Any, settings: dict[str, Any]) -> None:
    def create_first(**_: Any) -> None:
        ecr.create_repository(repositoryName=NAME, imageScanningConfiguration={"scanOnPush": False})

    hook.conn.meta.events.register_first("before-call.ecr.CreateRepository", create_first)
    try:
        with pytest.raises(RepositorySettingsMismatchError, match="scan on push: true asked for"):
            hook.ensure_repository(NAME, {"scan_on_push": True})
    finally:
        hook.conn.meta.events.unregister("before-call.ecr.CreateRepository", create_first)


def race(settings: list[dict[str, Any]]) -> tuple[list[Any], list[Exception], list[int], list[int]]:
    """One thread per settings, each with its own hook (so its own client), all at once.

    Returns the results, the errors, the index of the settings of each result and each error,
    and a list counting every PutLifecyclePolicy any of them made."""
    from airflow_ecr_layers.hooks import EcrLayersHook

    hooks = [EcrLayersHook(aws_conn_id=CONN_ID) for _ in settings]
    puts: list[int] = []
    for h in hooks:
        h.engine  # noqa: B018 - each its own client, built before the start
        h.conn.meta.events.register("before-call.ecr.PutLifecyclePolicy", lambda **_: puts.append(1))
    start = threading.Barrier(len(hooks))
    results: list[Any] = []
    errors: list[Exception] = []
    who: list[tuple[str, int]] = []

    def run(number: int) -> None:
        start.wait()
        try:
            results.append(hooks[number].ensure_repository(NAME, settings[number]))
            who.append(("ok", number))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
            who.append(("error", number))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(hooks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors, [n for kind, n in who if kind == "ok"], puts


def test_concurrent_tasks_create_one_repository(clean_aws: Any, ecr: Any, settings: dict[str, Any]) -> None:
    results, errors, _, puts = race([settings] * 6)
    assert errors == []
    assert sorted(r.created for r in results) == [False] * 5 + [True]
    assert json.loads(ecr.get_lifecycle_policy(repositoryName=NAME)["lifecyclePolicyText"]) == POLICY
    assert len(puts) == 1  # by the creator alone


def test_concurrent_tasks_with_other_settings_one_wins_the_rest_agree_or_fail(
    clean_aws: Any, ecr: Any, settings: dict[str, Any]
) -> None:
    """Three tasks ask for one lifecycle policy and three for another, all else equal (the hardest
    case: the difference shows only once the winner has put its policy). Exactly one creates the
    repository; the tasks that asked for its settings succeed, the others fail naming the
    difference; nobody but the creator puts anything."""
    other = {**settings, "lifecycle_policy": {"rules": [POLICY["rules"][1]]}}
    asked = [settings, other] * 3
    results, errors, succeeded, puts = race(asked)
    [winner] = [r for r in results if r.created]
    found = json.loads(ecr.get_lifecycle_policy(repositoryName=NAME)["lifecyclePolicyText"])
    won = settings if found == POLICY else other
    assert found == won["lifecycle_policy"]
    assert sorted(succeeded) == [n for n, s in enumerate(asked) if s is won]
    assert len(errors) == 3 and all(isinstance(e, RepositorySettingsMismatchError) for e in errors)
    for error in errors:
        assert isinstance(error, RepositorySettingsMismatchError)
        assert error.differences[0].startswith("lifecycle policy rule 1")
    assert len(puts) == 1 and winner.repository_name == NAME


def test_an_old_repository_without_its_policy_is_refused(hook: Any, ecr: Any) -> None:
    ecr.create_repository(repositoryName=NAME)
    reads = calls_to(hook.conn, "GetLifecyclePolicy")
    wanted = RepositorySettings.from_dict({"lifecycle_policy": POLICY})
    with pytest.raises(RepositorySettingsMismatchError, match="lifecycle policy: missing"):
        ensure_repository(hook.calls, hook.retry_policy, NAME, wanted, now=lambda: time.time() + 3600)
    assert len(reads) == 1  # an hour old: nobody is about to put a policy on it, so no wait
    with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
        ecr.get_lifecycle_policy(repositoryName=NAME)


def test_a_young_repository_someone_else_made_is_never_changed(hook: Any, ecr: Any) -> None:
    """Created a moment ago, by someone else, without a lifecycle policy, and lacking only that:
    maybe its creator is about to put one, maybe it never will. It is waited for (a bounded time),
    never put: only the task whose CreateRepository succeeded puts settings on a repository."""
    ecr.create_repository(repositoryName=NAME)
    reads = calls_to(hook.conn, "GetLifecyclePolicy")
    puts = calls_to(hook.conn, "PutLifecyclePolicy")
    started = time.time()
    ticks = iter(range(0, 10**6, 20))  # a clock that says 20 s pass between any two looks at it

    def clock() -> float:
        return started + next(ticks)

    wanted = RepositorySettings.from_dict({"lifecycle_policy": POLICY})
    with pytest.raises(RepositorySettingsMismatchError, match="lifecycle policy: missing") as excinfo:
        ensure_repository(hook.calls, hook.retry_policy, NAME, wanted, now=clock)
    assert "waited" in str(excinfo.value)
    assert puts == [] and len(reads) > 1  # it looked again while it waited, and put nothing
    with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
        ecr.get_lifecycle_policy(repositoryName=NAME)


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
