"""EcrImageSensor and EcrImageScanSensor against the strict embedded ECR, in both modes:
poke (boto3) and deferred (the trigger run to its event over aiobotocore, then
``execute_complete``)."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from airflow_ecr_layers.core.errors import InvalidInputError, RepositoryNotFoundError
from airflow_ecr_layers.core.oci.layers import LayerSpec
from airflow_ecr_layers.core.push.artifact import push_artifact
from airflow_ecr_layers.core.sources.blobs import BytesSource
from airflow_ecr_layers.sensors import EcrImageScanSensor, EcrImageSensor
from airflow_ecr_layers.testing.fault_proxy import FaultProxy, FaultRule
from airflow_ecr_layers.triggers import EcrImageScanTrigger, EcrImageTrigger
from airflow_ecr_layers.triggers.base import EcrProbeTrigger

AWS = {"aws_conn_id": "aws_default"}
ACCOUNT = "123456789012"  # moto's default account
MISSING_DIGEST = "sha256:" + "0" * 64


def _exceptions() -> tuple[type[BaseException], ...]:
    from airflow_ecr_layers._compat import AirflowException, AirflowFailException, AirflowSensorTimeout, TaskDeferred

    return AirflowException, AirflowFailException, AirflowSensorTimeout, TaskDeferred


AirflowException, AirflowFailException, AirflowSensorTimeout, TaskDeferred = _exceptions()


# -- helpers -------------------------------------------------------------------------


@pytest.fixture
def push(hook: Any, repo: str) -> Callable[..., dict[str, Any]]:
    """Push a one-layer artifact to ``repo``; returns push_artifact's result."""

    def push(data: bytes = b"model weights", tags: tuple[str, ...] = ("v1",)) -> dict[str, Any]:
        layer = LayerSpec(BytesSource(data), "application/octet-stream")
        return push_artifact(hook.engine, repo, [layer], tags=list(tags)).as_dict()

    return push


def first_event(trigger: EcrProbeTrigger, timeout: float = 20.0) -> dict[str, Any]:
    """Run the trigger until its first event; return the event's payload."""

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), timeout))


def event_after(trigger: EcrProbeTrigger, action: Callable[[], Any], delay: float = 0.4) -> tuple[bool, dict[str, Any]]:
    """Start the trigger, run ``action`` after ``delay`` s; returns (fired before the action, event)."""

    async def scenario() -> tuple[bool, dict[str, Any]]:
        async def first() -> dict[str, Any]:
            async for event in trigger.run():
                return event.payload
            raise AssertionError("the trigger ended without an event")

        task = asyncio.create_task(first())
        await asyncio.sleep(delay)
        fired_early = task.done()
        await asyncio.to_thread(action)
        return fired_early, await asyncio.wait_for(task, 20)

    return asyncio.run(scenario())


def _scan_response(real: dict[str, Any], status: str, counts: dict[str, int], description: str) -> dict[str, Any]:
    response = {key: real[key] for key in ("registryId", "repositoryName", "imageId")}
    response["imageScanStatus"] = {"status": status, "description": description}
    if status in ("COMPLETE", "ACTIVE"):
        response["imageScanFindings"] = {"findings": [], "findingSeverityCounts": counts}
    return response


class ScanScript:
    """Replaces what moto's DescribeImageScanFindings answers, in the server (same process).

    moto's own checks still run first (no image: ImageNotFoundException; no scan:
    ScanNotFoundException); then each call answers the next scripted result, the last
    one repeating.
    """

    def __init__(self) -> None:
        self.results: list[tuple[str, dict[str, int], str]] = []
        self.calls = 0

    def script(self, *results: tuple[str, dict[str, int]] | tuple[str, dict[str, int], str]) -> None:
        self.results = [(r[0], r[1], r[2] if len(r) > 2 else f"scan {r[0].lower()}") for r in results]

    def answer(self, real: dict[str, Any]) -> dict[str, Any]:
        if not self.results:
            return real
        self.calls += 1
        status, counts, description = self.results[min(self.calls, len(self.results)) - 1]
        return _scan_response(real, status, counts, description)


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch, ecr: Any) -> Iterator[ScanScript]:
    from moto.ecr.models import ECRBackend

    script = ScanScript()
    original = ECRBackend.describe_image_scan_findings

    def describe_image_scan_findings(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return script.answer(original(self, *args, **kwargs))

    monkeypatch.setattr(ECRBackend, "describe_image_scan_findings", describe_image_scan_findings)
    yield script


def start_scan(ecr: Any, repo: str, tag: str = "v1") -> None:
    ecr.start_image_scan(repositoryName=repo, imageId={"imageTag": tag})


def import_string(classpath: str) -> Any:
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _done_value(poked: Any) -> dict[str, Any]:
    from airflow.sdk import PokeReturnValue

    assert isinstance(poked, PokeReturnValue) and poked.is_done
    assert json.loads(json.dumps(poked.xcom_value)) == poked.xcom_value  # JSON-safe XCom
    return poked.xcom_value


# -- EcrImageSensor, poke ---------------------------------------------------------------


def test_image_sensor_waits_for_the_tag_then_returns_the_image(repo: str, push: Any) -> None:
    sensor = EcrImageSensor(task_id="wait", repository_name=repo, image_tag="v1", **AWS)
    assert sensor.poke({}) is False
    pushed = push()
    value = _done_value(sensor.poke({}))
    assert value == {
        "registry_id": ACCOUNT,
        "repository_name": repo,
        "image_digest": pushed["image_digest"],
        "tags": ["v1"],
        "pushed_at": value["pushed_at"],
    }
    assert datetime.fromisoformat(value["pushed_at"]).tzinfo is not None


def test_image_sensor_by_digest(repo: str, push: Any) -> None:
    pushed = push()
    assert EcrImageSensor(task_id="w", repository_name=repo, image_digest=MISSING_DIGEST, **AWS).poke({}) is False
    sensor = EcrImageSensor(task_id="w", repository_name=repo, image_digest=pushed["image_digest"], **AWS)
    assert _done_value(sensor.poke({}))["image_digest"] == pushed["image_digest"]


def test_image_sensor_with_tag_and_digest_waits_until_the_digest_carries_the_tag(repo: str, push: Any) -> None:
    pushed = push(tags=("v1",))
    sensor = EcrImageSensor(
        task_id="w", repository_name=repo, image_tag="prod", image_digest=pushed["image_digest"], **AWS
    )
    assert sensor.poke({}) is False  # the digest exists, without the tag
    push(tags=("prod",))  # same bytes, same manifest: the tag lands on the same digest
    assert sorted(_done_value(sensor.poke({}))["tags"]) == ["prod", "v1"]


def test_image_sensor_execute_in_poke_mode_returns_the_image_or_times_out(repo: str, push: Any) -> None:
    sensor = EcrImageSensor(task_id="w", repository_name=repo, image_tag="v1", poke_interval=0.1, timeout=0.5, **AWS)
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute({})
    pushed = push()
    assert sensor.execute({})["image_digest"] == pushed["image_digest"]


def test_image_sensor_fails_clearly_on_a_missing_repository(clean_aws: Any) -> None:
    sensor = EcrImageSensor(task_id="w", repository_name="no/such-repo", image_tag="v1", **AWS)
    with pytest.raises(RepositoryNotFoundError, match="no/such-repo"):
        sensor.poke({})


def test_image_sensor_refuses_bad_image_references(repo: str) -> None:
    with pytest.raises(InvalidInputError, match="image_tag or image_digest"):
        EcrImageSensor(task_id="w", repository_name=repo, **AWS)
    with pytest.raises(InvalidInputError, match="Invalid image tag"):
        EcrImageSensor(task_id="w", repository_name=repo, image_tag="-bad", **AWS).poke({})
    with pytest.raises(InvalidInputError, match="Invalid image digest"):
        EcrImageSensor(task_id="w", repository_name=repo, image_digest="sha256:abc", **AWS).poke({})


# -- EcrImageSensor, deferred -------------------------------------------------------------


def test_deferrable_image_sensor_defers_with_its_trigger(repo: str) -> None:
    sensor = EcrImageSensor(
        task_id="w", repository_name=repo, image_tag="v1", deferrable=True, poke_interval=7, timeout=90, **AWS
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == timedelta(seconds=90)
    trigger = deferred.value.trigger
    assert isinstance(trigger, EcrImageTrigger)
    _, kwargs = trigger.serialize()
    assert (kwargs["repository_name"], kwargs["image_tag"], kwargs["poll_interval"]) == (repo, "v1", 7)
    assert kwargs["aws_conn_id"] == "aws_default"


def test_image_trigger_waits_for_the_push_then_fires(repo: str, push: Any) -> None:
    trigger = EcrImageTrigger(repository_name=repo, image_tag="v1", poll_interval=0.05, **AWS)
    pushed: dict[str, Any] = {}
    fired_early, event = event_after(trigger, lambda: pushed.update(push()))
    assert not fired_early, "the trigger fired before the image existed"
    assert event["status"] == "success"
    assert event["value"]["image_digest"] == pushed["image_digest"]
    assert json.loads(json.dumps(event)) == event  # a trigger event must be JSON-safe


def test_image_trigger_and_poke_return_the_same_result(repo: str, push: Any) -> None:
    push()
    sensor = EcrImageSensor(task_id="w", repository_name=repo, image_tag="v1", **AWS)
    event = first_event(EcrImageTrigger(repository_name=repo, image_tag="v1", **AWS))
    assert sensor.execute_complete({}, event) == _done_value(sensor.poke({}))


def test_image_trigger_reports_a_missing_repository(clean_aws: Any) -> None:
    event = first_event(EcrImageTrigger(repository_name="no/such-repo", image_tag="v1", **AWS))
    assert event["status"] == "error"
    assert "RepositoryNotFoundException" in event["message"] and "no/such-repo" in event["message"]
    sensor = EcrImageSensor(task_id="w", repository_name="no/such-repo", image_tag="v1", **AWS)
    with pytest.raises(AirflowException, match="no/such-repo") as raised:
        sensor.execute_complete({}, event)
    assert not isinstance(raised.value, AirflowFailException)  # retries apply: the repository may appear


@pytest.mark.parametrize(
    "event",
    [None, {}, {"status": "success"}, {"status": "success", "value": "not a dict"}, {"status": "running"}],
)
def test_execute_complete_refuses_a_malformed_event(event: Any) -> None:
    sensor = EcrImageSensor(task_id="w", repository_name="team/models", image_tag="v1", **AWS)
    with pytest.raises(AirflowException, match="event"):
        sensor.execute_complete({}, event)


# -- EcrImageScanSensor, poke (moto's own scan results) ----------------------------------------


def test_scan_sensor_waits_while_the_image_has_no_scan(repo: str, push: Any) -> None:
    sensor = EcrImageScanSensor(task_id="scan", repository_name=repo, image_tag="v1", **AWS)
    assert sensor.poke({}) is False  # no image yet
    push()
    assert sensor.poke({}) is False  # ScanNotFoundException, and start_scan is off
    assert sensor.poke({}) is False


def test_scan_sensor_starts_the_scan_and_passes_below_the_threshold(repo: str, push: Any, ecr: Any) -> None:
    pushed = push()
    sensor = EcrImageScanSensor(task_id="scan", repository_name=repo, image_tag="v1", start_scan=True, **AWS)
    assert sensor.poke({}) is False  # started the scan
    assert ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageTag": "v1"})["imageScanStatus"]
    value = _done_value(sensor.poke({}))  # moto completes at once with one HIGH finding
    assert value == {
        "registry_id": ACCOUNT,
        "repository_name": repo,
        "image_digest": pushed["image_digest"],
        "scan_status": "COMPLETE",
        "severity_counts": {"HIGH": 1},
    }


def test_scan_sensor_fails_at_the_threshold_naming_the_counts(repo: str, push: Any, ecr: Any) -> None:
    push()
    start_scan(ecr, repo)
    sensor = EcrImageScanSensor(task_id="scan", repository_name=repo, image_tag="v1", fail_on_severity="HIGH", **AWS)
    with pytest.raises(AirflowFailException, match=r"1 finding at or above HIGH \(HIGH: 1\)"):
        sensor.poke({})


# -- EcrImageScanSensor, poke (scripted scan results) -------------------------------------------


def test_scan_sensor_waits_while_in_progress_then_judges(repo: str, push: Any, ecr: Any, scans: ScanScript) -> None:
    push()
    start_scan(ecr, repo)
    scans.script(("IN_PROGRESS", {}), ("PENDING", {}), ("COMPLETE", {"MEDIUM": 4, "CRITICAL": 0, "HIGH": 2}))
    sensor = EcrImageScanSensor(task_id="scan", repository_name=repo, image_tag="v1", **AWS)
    assert [sensor.poke({}), sensor.poke({})] == [False, False]
    assert _done_value(sensor.poke({}))["severity_counts"] == {"CRITICAL": 0, "HIGH": 2, "MEDIUM": 4}
    assert scans.calls == 3


@pytest.mark.parametrize(
    ("counts", "passes"),
    [({"HIGH": 5, "MEDIUM": 40}, True), ({"HIGH": 6}, False), ({"CRITICAL": 1}, False)],
)
def test_scan_sensor_max_findings(
    repo: str, push: Any, ecr: Any, scans: ScanScript, counts: dict[str, int], passes: bool
) -> None:
    push()
    start_scan(ecr, repo)
    scans.script(("COMPLETE", counts))
    sensor = EcrImageScanSensor(task_id="scan", repository_name=repo, image_tag="v1", max_findings={"HIGH": 5}, **AWS)
    if passes:
        assert _done_value(sensor.poke({}))["severity_counts"] == counts
        return
    with pytest.raises(AirflowFailException) as failed:
        sensor.poke({})
    message = str(failed.value)
    assert "fails the severity threshold" in message and f"{repo}@sha256:" in message
    for severity, count in counts.items():
        assert f"{severity}: {count}" in message


@pytest.mark.parametrize("status", ["FAILED", "UNSUPPORTED_IMAGE"])
def test_scan_sensor_fails_when_the_scan_fails(repo: str, push: Any, ecr: Any, scans: ScanScript, status: str) -> None:
    push()
    start_scan(ecr, repo)
    scans.script((status, {}, "UnsupportedImageError: The operating system and/or package manager are not supported."))
    sensor = EcrImageScanSensor(task_id="scan", repository_name=repo, image_tag="v1", **AWS)
    with pytest.raises(AirflowFailException, match=f"ended with status {status}: UnsupportedImageError"):
        sensor.poke({})


def test_scan_sensor_fails_at_once_when_ecr_refuses_to_start_a_scan(
    repo: str, push: Any, ecr: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LimitExceededException from StartImageScan is the daily scan quota, not throttling:
    the sensor fails with that said, instead of backing off and asking again."""
    from moto.ecr.exceptions import LimitExceededException
    from moto.ecr.models import ECRBackend

    attempts: list[int] = []

    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(1)
        raise LimitExceededException()

    monkeypatch.setattr(ECRBackend, "start_image_scan", refuse)
    push()
    sensor = EcrImageScanSensor(task_id="scan", repository_name=repo, image_tag="v1", start_scan=True, **AWS)
    with pytest.raises(AirflowFailException, match="LIMIT_EXCEEDED.*one scan per image every 24 hours"):
        sensor.poke({})
    assert len(attempts) == 1, "a refused scan must not be asked for again"
    event = first_event(
        EcrImageScanTrigger(repository_name=repo, image_tag="v1", start_scan=True, poll_interval=0.05, **AWS)
    )
    assert event["status"] == "failed" and "LIMIT_EXCEEDED" in event["message"]
    assert len(attempts) == 2


def test_scan_sensor_soft_fail_skips_instead_of_failing(repo: str, push: Any, ecr: Any, scans: ScanScript) -> None:
    from airflow_ecr_layers._compat import AirflowSkipException

    push()
    start_scan(ecr, repo)
    scans.script(("COMPLETE", {"CRITICAL": 2}))
    sensor = EcrImageScanSensor(task_id="scan", repository_name=repo, image_tag="v1", soft_fail=True, **AWS)
    with pytest.raises(AirflowSkipException):
        sensor.execute({})


def test_scan_sensor_refuses_bad_arguments_when_defined(repo: str) -> None:
    with pytest.raises(InvalidInputError, match="not both"):
        EcrImageScanSensor(task_id="s", repository_name=repo, image_tag="v1", image_digest=MISSING_DIGEST, **AWS)
    with pytest.raises(InvalidInputError, match="fail_on_severity"):
        EcrImageScanSensor(task_id="s", repository_name=repo, image_tag="v1", fail_on_severity="SEVERE", **AWS)
    with pytest.raises(InvalidInputError, match="max_findings"):
        EcrImageScanSensor(task_id="s", repository_name=repo, image_tag="v1", max_findings={"HIGH": -1}, **AWS)


# -- EcrImageScanSensor, deferred ------------------------------------------------------------


def test_deferrable_scan_sensor_defers_with_its_trigger(repo: str) -> None:
    sensor = EcrImageScanSensor(
        task_id="scan",
        repository_name=repo,
        image_digest=MISSING_DIGEST,
        start_scan=True,
        deferrable=True,
        poke_interval=15,
        timeout=600,
        region_name="us-east-1",
        **AWS,
    )
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    after = time.time()
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == timedelta(seconds=600)
    trigger = deferred.value.trigger
    assert isinstance(trigger, EcrImageScanTrigger)
    kwargs = trigger.serialize()[1]
    assert before + 600 <= kwargs.pop("deadline") <= after + 600  # the trigger's own deadline
    assert kwargs == {
        "repository_name": repo,
        "image_tag": None,
        "image_digest": MISSING_DIGEST,
        "registry_id": None,
        "poll_interval": 15,
        "aws_conn_id": "aws_default",
        "region_name": "us-east-1",
        "verify": None,
        "botocore_config": None,
        "start_scan": True,
    }


def test_scan_trigger_starts_the_scan_and_fires_with_the_counts(repo: str, push: Any, ecr: Any) -> None:
    pushed = push()
    trigger = EcrImageScanTrigger(
        repository_name=repo, image_digest=pushed["image_digest"], start_scan=True, poll_interval=0.05, **AWS
    )
    event = first_event(trigger)
    assert event == {
        "status": "success",
        "value": {
            "registry_id": ACCOUNT,
            "repository_name": repo,
            "image_digest": pushed["image_digest"],
            "scan_status": "COMPLETE",
            "severity_counts": {"HIGH": 1},
        },
    }
    passing = EcrImageScanSensor(task_id="scan", repository_name=repo, image_tag="v1", **AWS)
    assert passing.execute_complete({}, event) == event["value"]
    failing = EcrImageScanSensor(task_id="scan", repository_name=repo, image_tag="v1", fail_on_severity="HIGH", **AWS)
    with pytest.raises(AirflowFailException, match="HIGH: 1"):
        failing.execute_complete({}, event)


def test_scan_trigger_keeps_polling_while_in_progress(repo: str, push: Any, ecr: Any, scans: ScanScript) -> None:
    push()
    start_scan(ecr, repo)
    scans.script(("IN_PROGRESS", {}), ("IN_PROGRESS", {}), ("COMPLETE", {"LOW": 3}))
    event = first_event(EcrImageScanTrigger(repository_name=repo, image_tag="v1", poll_interval=0.05, **AWS))
    assert event["status"] == "success" and event["value"]["severity_counts"] == {"LOW": 3}
    assert scans.calls == 3


def test_scan_trigger_waits_for_a_scan_started_elsewhere(repo: str, push: Any, ecr: Any) -> None:
    push()
    trigger = EcrImageScanTrigger(repository_name=repo, image_tag="v1", poll_interval=0.05, **AWS)
    fired_early, event = event_after(trigger, lambda: start_scan(ecr, repo))
    assert not fired_early, "the trigger fired before any scan existed"
    assert event["status"] == "success" and event["value"]["scan_status"] == "COMPLETE"


def test_scan_trigger_reports_a_failed_scan(repo: str, push: Any, ecr: Any, scans: ScanScript) -> None:
    push()
    start_scan(ecr, repo)
    scans.script(("FAILED", {}, "The scan failed: layer could not be read"))
    event = first_event(EcrImageScanTrigger(repository_name=repo, image_tag="v1", poll_interval=0.05, **AWS))
    assert event["status"] == "failed"
    assert "ended with status FAILED: The scan failed: layer could not be read" in event["message"]
    sensor = EcrImageScanSensor(task_id="scan", repository_name=repo, image_tag="v1", **AWS)
    with pytest.raises(AirflowFailException, match="layer could not be read"):
        sensor.execute_complete({}, event)


# -- triggers serialize ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "trigger",
    [
        EcrImageTrigger(
            repository_name="team/models",
            image_tag="v1",
            image_digest=MISSING_DIGEST,
            registry_id=ACCOUNT,
            poll_interval=12.5,
            aws_conn_id="my_aws",
            region_name="eu-west-1",
            verify="/etc/ssl/ca.pem",
            botocore_config={"retries": {"max_attempts": 7}},
            deadline=1_900_000_000.5,
        ),
        EcrImageScanTrigger(repository_name="team/models", image_digest=MISSING_DIGEST, start_scan=True),
        EcrImageScanTrigger(repository_name="team/models", image_tag="v1", aws_conn_id=None, verify=False),
    ],
    ids=["image", "scan-by-digest", "scan-by-tag"],
)
def test_trigger_serialize_round_trip(trigger: EcrProbeTrigger) -> None:
    """Through the trigger table's own encoding, as the scheduler stores it and the triggerer reads it."""
    from airflow.models.trigger import Trigger

    classpath, kwargs = trigger.serialize()
    assert import_string(classpath) is type(trigger)
    stored = Trigger.from_object(trigger)
    rebuilt = import_string(stored.classpath)(**stored.kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert rebuilt.probe.image == trigger.probe.image
    assert rebuilt.hook().aws_conn_id == trigger.aws_conn_id


def test_trigger_refuses_a_bad_image_reference_before_deferring() -> None:
    with pytest.raises(InvalidInputError, match="Invalid ECR repository name"):
        EcrImageTrigger(repository_name="Bad Repo", image_tag="v1")


# -- waits that end by themselves --------------------------------------------------------------


def test_a_trigger_gives_up_by_itself_when_its_deadline_passes(repo: str) -> None:
    trigger = EcrImageTrigger(repository_name=repo, image_tag="never", poll_interval=0.2, deadline=time.time() + 0.6)
    event = first_event(trigger)  # fails if no event comes: the trigger did not give up by itself
    assert time.time() >= trigger.deadline  # and not before its deadline
    assert event["status"] == "timeout"
    assert "image team/models:never" in event["message"] and "timeout passed" in event["message"]


def test_a_timeout_event_fails_the_sensor_as_a_sensor_timeout(repo: str) -> None:
    sensor = EcrImageSensor(task_id="s", repository_name=repo, image_tag="v1", **AWS)
    with pytest.raises(AirflowSensorTimeout, match="Gave up waiting"):
        sensor.execute_complete({}, {"status": "timeout", "message": "Gave up waiting for image x"})


def test_deferring_puts_the_sensor_timeout_into_the_trigger(repo: str) -> None:
    sensor = EcrImageScanSensor(task_id="s", repository_name=repo, image_tag="v1", deferrable=True, timeout=90, **AWS)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    after = time.time()
    trigger = deferred.value.trigger  # type: ignore[attr-defined]
    assert before + 90 <= trigger.deadline <= after + 90
    assert trigger.serialize()[1]["deadline"] == trigger.deadline


# -- deferred waits ride out throttling and broken connections ---------------------------------


@pytest.fixture
def faulty_conn(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FaultProxy]]:
    """``faulty_conn(*rules)``: the connection ``aws_faults`` reaches the embedded ECR through a
    fault proxy with those rules."""
    proxies: list[FaultProxy] = []

    def make(*rules: FaultRule) -> FaultProxy:
        proxy = FaultProxy(aws.endpoint_url, list(rules)).start()
        proxies.append(proxy)
        conn = {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": proxy.endpoint_url, "region_name": aws.region},
        }
        monkeypatch.setenv("AIRFLOW_CONN_AWS_FAULTS", json.dumps(conn))
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


NO_BOTOCORE_RETRIES = {"retries": {"mode": "standard", "total_max_attempts": 1}, "read_timeout": 1}
"""Each fault reaches the trigger itself: botocore does not retry it first."""


def faulty_trigger(cls: type[EcrProbeTrigger], repo: str, deadline: float | None, **kwargs: Any) -> EcrProbeTrigger:
    return cls(
        repository_name=repo,
        image_tag="v1",
        poll_interval=0.05,
        aws_conn_id="aws_faults",
        botocore_config=NO_BOTOCORE_RETRIES,
        deadline=deadline,
        **kwargs,
    )


@pytest.mark.parametrize("kind", ["throttling", "http_503", "reset_before_body", "delay"])
def test_a_deferred_image_wait_rides_out_throttling_and_broken_connections(
    repo: str, push: Any, faulty_conn: Callable[..., FaultProxy], kind: str
) -> None:
    pushed = push()
    proxy = faulty_conn(FaultRule("DescribeImages", 1, kind, times=2, delay_seconds=1.5))  # type: ignore[arg-type]
    event = first_event(faulty_trigger(EcrImageTrigger, repo, time.time() + 120), timeout=60)
    assert event["status"] == "success", event
    assert event["value"]["image_digest"] == pushed["image_digest"]
    assert len(proxy.fired) == 2 and proxy.calls("DescribeImages") == 3


def test_a_deferred_scan_wait_rides_out_a_throttled_start(
    repo: str, push: Any, ecr: Any, faulty_conn: Callable[..., FaultProxy]
) -> None:
    push()
    proxy = faulty_conn(FaultRule("StartImageScan", 1, "throttling"))
    trigger = faulty_trigger(EcrImageScanTrigger, repo, time.time() + 120, start_scan=True)
    event = first_event(trigger, timeout=60)
    assert event["status"] == "success", event
    assert proxy.calls("StartImageScan") == 2


def test_a_deferred_wait_that_stays_throttled_ends_at_its_deadline_saying_why(
    repo: str, push: Any, faulty_conn: Callable[..., FaultProxy]
) -> None:
    push()
    faulty_conn(FaultRule("DescribeImages", 1, "throttling", times=None))
    event = first_event(faulty_trigger(EcrImageTrigger, repo, time.time() + 1.0), timeout=60)
    assert event["status"] == "timeout", event
    assert "timeout passed" in event["message"] and "ThrottlingException" in event["message"]


def test_a_deferred_wait_still_ends_at_once_on_what_retrying_cannot_change(
    clean_aws: Any, faulty_conn: Callable[..., FaultProxy]
) -> None:
    proxy = faulty_conn()
    event = first_event(faulty_trigger(EcrImageTrigger, "no/such-repo", time.time() + 120), timeout=60)
    assert event["status"] == "error" and "RepositoryNotFoundException" in event["message"]
    assert proxy.calls("DescribeImages") == 1


def test_a_deferred_wait_without_a_deadline_gives_up_after_max_attempts_failures_in_a_row(
    repo: str, faulty_conn: Callable[..., FaultProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_ecr_layers.core.ecr.retry import RetryPolicy

    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt: 0.01)
    proxy = faulty_conn(FaultRule("DescribeImages", 1, "reset_before_body", times=None))
    event = first_event(faulty_trigger(EcrImageTrigger, repo, None), timeout=60)
    assert event["status"] == "error" and "ConnectionClosedError" in event["message"], event
    assert proxy.calls("DescribeImages") == RetryPolicy().max_attempts
