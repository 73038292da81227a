"""What both sensors share: the image to wait for, poke and deferral through one probe."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, ClassVar

from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk import PokeReturnValue

from airflow_ecr_layers._compat import AirflowException, AirflowFailException, AirflowSensorTimeout, conf
from airflow_ecr_layers.core.waits.probes import require_image_selector
from airflow_ecr_layers.core.waits.scan import ScanVerdictError
from airflow_ecr_layers.hooks.ecr_layers import EcrLayersHook
from airflow_ecr_layers.triggers.base import ERROR, FAILED, SUCCESS, TIMEOUT, EcrProbeTrigger

Context = Any


@contextmanager
def verdicts_fail_the_task() -> Iterator[None]:
    """Turn a scan verdict into ``AirflowFailException``: retrying cannot change it."""
    try:
        yield
    except ScanVerdictError as exc:
        raise AirflowFailException(str(exc)) from exc


def event_value(event: Mapping[str, Any] | None) -> dict[str, Any]:
    """The result carried by a trigger event; raises what a failure event says."""
    if not isinstance(event, Mapping):
        raise AirflowException(f"The trigger sent no event payload (got {event!r})")
    status = event.get("status")
    if status == SUCCESS and isinstance(event.get("value"), Mapping):
        return dict(event["value"])
    if status == FAILED:
        raise AirflowFailException(str(event.get("message")))
    if status == ERROR:
        raise AirflowException(str(event.get("message")))
    if status == TIMEOUT:  # soft_fail turns it into a skip, as for any sensor timeout
        raise AirflowSensorTimeout(str(event.get("message")))
    raise AirflowException(f"Unexpected trigger event: {dict(event)!r}")


class EcrImageWaitSensor(AwsBaseSensor[EcrLayersHook]):
    """Base of the ECR image sensors.

    The wait is described once, by the trigger (:attr:`trigger_class`) and its probe: in
    poke mode the sensor runs that probe with the boto3 client at every poke; with
    ``deferrable=True`` it defers to the trigger at once, which runs the same probe with
    aiobotocore in the triggerer. Both modes end in :meth:`complete`.

    :param repository_name: the ECR repository.
    :param image_tag: the image's tag.
    :param image_digest: the image's digest (``sha256:...``).
    :param registry_id: the registry's account id; the connection's account if unset.
    :param deferrable: wait in the triggerer, releasing the worker
        (default: ``[operators] default_deferrable``, False unless set).
    :param poke_interval: seconds between checks, in both modes.
    :param timeout: seconds before the sensor gives up, in both modes.
    :param aws_conn_id: the Airflow connection for AWS credentials (``aws_default``).
    :param region_name: the AWS region; the connection's or boto3's default if unset.
    :param verify: whether to verify SSL certificates, or a CA bundle path.
    :param botocore_config: botocore client configuration (retries, timeouts...).

    The result is the ``return_value`` XCom; ``multiple_outputs`` defaults to True, so each
    key is also its own XCom and ``sensor.output["image_digest"]`` reads one value.
    """

    aws_hook_class = EcrLayersHook
    trigger_class: ClassVar[type[EcrProbeTrigger]]
    allow_tag_and_digest: ClassVar[bool] = True
    template_fields: Sequence[str] = aws_template_fields("repository_name", "image_tag", "image_digest", "registry_id")
    ui_color = "#ff9900"

    def __init__(
        self,
        *,
        repository_name: str,
        image_tag: str | None = None,
        image_digest: str | None = None,
        registry_id: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("multiple_outputs", True)  # sensor.output["image_digest"] reads one key of the result
        super().__init__(**kwargs)
        require_image_selector(image_tag, image_digest, allow_both=self.allow_tag_and_digest)
        self.repository_name = repository_name
        self.image_tag = image_tag
        self.image_digest = image_digest
        self.registry_id = registry_id
        self.deferrable = deferrable

    def trigger_kwargs(self) -> dict[str, Any]:
        """The trigger's arguments (rendered values)."""
        return {
            "repository_name": self.repository_name,
            "image_tag": self.image_tag,
            "image_digest": self.image_digest,
            "registry_id": self.registry_id,
            "poll_interval": self.poke_interval,
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "botocore_config": self.botocore_config,
        }

    def trigger(self, deadline: float | None = None) -> EcrProbeTrigger:
        """The wait, as a trigger (validates the image reference) that gives up at ``deadline``."""
        return self.trigger_class(**self.trigger_kwargs(), deadline=deadline)

    def complete(self, value: dict[str, Any]) -> dict[str, Any]:
        """Judge a finished wait's result and return it as XCom (subclasses add checks)."""
        return value

    def poke(self, context: Context) -> bool | PokeReturnValue:
        with verdicts_fail_the_task():
            poll = self.trigger().probe.check(self.hook.conn)
            if poll.value is None:
                self.log.info("Waiting for %s", poll.waiting_for)
                return False
            return PokeReturnValue(is_done=True, xcom_value=self.complete(poll.value))

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        self.defer(
            trigger=self.trigger(deadline=time.time() + self.timeout),  # ends by itself, scheduler or not
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: fail as its event says, or judge and return its result."""
        with verdicts_fail_the_task():
            return self.complete(event_value(event))
