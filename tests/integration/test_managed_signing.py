"""EcrImageSignedSensor and its trigger against the embedded ECR's managed signing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_ecr_layers.core.oci.layers import LayerSpec
from airflow_ecr_layers.core.push.artifact import push_artifact
from airflow_ecr_layers.core.sources.blobs import BytesSource
from airflow_ecr_layers.sensors import EcrImageSignedSensor
from airflow_ecr_layers.testing import managed_signing
from airflow_ecr_layers.triggers import EcrImageSignedTrigger

AWS = {"aws_conn_id": "aws_default"}
PROFILE = "arn:aws:signer:us-east-1:123456789012:/signing-profiles/release"
NOTARY = "application/vnd.cncf.notary.signature"


def _fail_exception() -> type[BaseException]:
    from airflow_ecr_layers._compat import AirflowFailException

    return AirflowFailException


def configure(ecr: Any, filters: list[str] | None = None) -> None:
    rule: dict[str, Any] = {"signingProfileArn": PROFILE}
    if filters is not None:
        rule["repositoryFilters"] = [{"filter": f, "filterType": "WILDCARD_MATCH"} for f in filters]
    ecr.put_signing_configuration(signingConfiguration={"rules": [rule]})


def push(hook: Any, repo: str, tag: str = "v1") -> str:
    layer = LayerSpec(BytesSource(b"weights " + tag.encode()), "application/octet-stream")
    return push_artifact(hook.engine, repo, [layer], tags=[tag]).image_digest


def test_the_embedded_ecr_keeps_a_signing_configuration(ecr: Any) -> None:
    with pytest.raises(ecr.exceptions.ClientError, match="SigningConfigurationNotFoundException"):
        ecr.get_signing_configuration()
    configure(ecr, ["team/*"])
    rules = ecr.get_signing_configuration()["signingConfiguration"]["rules"]
    assert rules[0]["signingProfileArn"] == PROFILE


def test_a_layer_upload_push_gets_signed_and_the_sensor_waits_for_it(ecr: Any, hook: Any, repo: str) -> None:
    configure(ecr, ["team/*"])
    digest = push(hook, repo)
    sensor = EcrImageSignedSensor(task_id="signed", repository_name=repo, image_tag="v1", **AWS)
    assert sensor.poke({}) is False  # IN_PROGRESS
    done = sensor.poke({})
    value = done.xcom_value  # type: ignore[union-attr]
    assert value["image_digest"] == digest
    assert value["signing_statuses"] == [{"signing_profile_arn": PROFILE, "status": "COMPLETE"}]
    (signature,) = value["signatures"]
    assert signature["artifact_type"] == NOTARY
    referrers = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": digest})["referrers"]
    assert [r["digest"] for r in referrers] == [signature["digest"]]


def test_a_repository_no_rule_matches_gets_no_status(ecr: Any, hook: Any, repo: str) -> None:
    configure(ecr, ["prod/*"])
    push(hook, repo)
    sensor = EcrImageSignedSensor(task_id="signed", repository_name=repo, image_tag="v1", **AWS)
    assert sensor.poke({}) is False
    assert ecr.describe_image_signing_status(repositoryName=repo, imageId={"imageTag": "v1"})["signingStatuses"] == []


def test_a_failed_signing_fails_at_once_naming_the_reason(ecr: Any, hook: Any, repo: str) -> None:
    configure(ecr)
    managed_signing.fail_signing(PROFILE, "SigningProfileRevoked", "the signing profile was revoked")
    push(hook, repo)
    sensor = EcrImageSignedSensor(task_id="signed", repository_name=repo, image_tag="v1", **AWS)
    assert sensor.poke({}) is False
    with pytest.raises(_fail_exception(), match="SigningProfileRevoked \\(the signing profile was revoked\\)"):
        sensor.poke({})


def _first_event(trigger: EcrImageSignedTrigger) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), 20))


def test_the_deferred_wait_fires_once_signed_or_failed(ecr: Any, hook: Any, repo: str) -> None:
    configure(ecr)
    digest = push(hook, repo)
    event = _first_event(EcrImageSignedTrigger(repository_name=repo, image_digest=digest, poll_interval=0.01, **AWS))
    assert event["status"] == "success" and event["value"]["signatures"][0]["artifact_type"] == NOTARY
    managed_signing.fail_signing(PROFILE, "AccessDenied", "signer:SignPayload denied")
    push(hook, repo, "v2")
    event = _first_event(EcrImageSignedTrigger(repository_name=repo, image_tag="v2", poll_interval=0.01, **AWS))
    assert event["status"] == "failed" and "AccessDenied (signer:SignPayload denied)" in event["message"]
