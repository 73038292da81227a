"""``EcrProbeTrigger``: poll a :class:`~airflow_ecr_layers.core.waits.probes.Probe` with aiobotocore."""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_ecr_layers.core.ecr.retry import TRANSIENT_ERRORS
from airflow_ecr_layers.core.errors import EcrLayersError
from airflow_ecr_layers.core.waits.probes import ImageRef, Poll, Probe
from airflow_ecr_layers.core.waits.scan import ScanVerdictError
from airflow_ecr_layers.hooks.ecr_layers import EcrLayersHook

SUCCESS = "success"
"""Event status: the wait is over; ``value`` holds the result."""
FAILED = "failed"
"""Event status: a verdict no retry can change (the scan failed); ``message`` says why."""
ERROR = "error"
"""Event status: the check itself failed (missing repository, access denied...); ``message`` says why."""
TIMEOUT = "timeout"
"""Event status: the trigger's own deadline passed before the wait was over; ``message`` says what it waited for."""


def error_event(exc: EcrLayersError) -> dict[str, Any]:
    """The event payload for an error raised by a probe."""
    return {"status": FAILED if isinstance(exc, ScanVerdictError) else ERROR, "message": str(exc)}


class EcrProbeTrigger(BaseTrigger):
    """Check an image every ``poll_interval`` seconds until its probe is done, from the triggerer.

    Yields one event: ``{"status": "success", "value": {...}}`` with the probe's result,
    ``{"status": "failed" | "error", "message": ...}`` (see :func:`error_event`), or, once
    ``deadline`` has passed, ``{"status": "timeout", "message": ...}``. The deadline lives in
    the trigger itself, as the amazon provider's triggers bound their attempts: the wait
    ends even where nothing enforces the task's defer timeout (``dag.test()`` runs
    triggers inline and does not).

    A check that meets throttling, a 5xx answer or a connection error (reset, timeout:
    :data:`~airflow_ecr_layers.core.ecr.retry.TRANSIENT_ERRORS`, after botocore's own retries)
    is made again after the hook's :class:`~airflow_ecr_layers.core.ecr.retry.RetryPolicy`
    backoff, within the deadline: the wait then ends with a timeout event that names the last
    failure. Without a deadline, ``max_attempts`` failures in a row end it with an error event.

    Subclasses build the probe (:meth:`build_probe`) and add their own arguments to
    :meth:`serialize`.

    :param repository_name: the ECR repository.
    :param image_tag: the image's tag.
    :param image_digest: the image's digest.
    :param registry_id: the registry's account id; the connection's account if unset.
    :param poll_interval: seconds between checks.
    :param aws_conn_id: the Airflow connection for AWS credentials (and ``endpoint_url``).
    :param region_name: the AWS region.
    :param verify: whether to verify SSL certificates, or a CA bundle path.
    :param botocore_config: botocore client configuration.
    :param deadline: when to give up, in seconds since the epoch (UTC); None waits for ever.
    """

    def __init__(
        self,
        *,
        repository_name: str,
        image_tag: str | None = None,
        image_digest: str | None = None,
        registry_id: str | None = None,
        poll_interval: float = 60.0,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.deadline = deadline
        self.repository_name = repository_name
        self.image_tag = image_tag
        self.image_digest = image_digest
        self.registry_id = registry_id
        self.poll_interval = poll_interval
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config
        self.probe = self.build_probe(ImageRef(repository_name, image_tag, image_digest, registry_id))

    @abstractmethod
    def build_probe(self, image: ImageRef) -> Probe:
        """The check this trigger repeats."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "repository_name": self.repository_name,
                "image_tag": self.image_tag,
                "image_digest": self.image_digest,
                "registry_id": self.registry_id,
                "poll_interval": self.poll_interval,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
                "deadline": self.deadline,
            },
        )

    def hook(self) -> EcrLayersHook:
        return EcrLayersHook(
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            config=self.botocore_config,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self.hook()
        policy = hook.retry_policy
        failures = 0
        try:
            async with await hook.get_async_conn() as client:
                while True:
                    try:
                        poll = await self.probe.check_async(client)
                    except TRANSIENT_ERRORS as exc:
                        failures += 1
                        if self.deadline is None and failures >= policy.max_attempts:
                            raise
                        poll = Poll(waiting_for=f"{self.probe.image} (the last check failed: {_named(exc)})")
                        pause = policy.delay(failures)
                        self.log.warning(
                            "Check %d of %s failed (%s); retrying", failures, self.probe.image, _named(exc)
                        )
                    else:
                        failures = 0
                        if poll.value is not None:
                            break
                        pause = self.poll_interval
                    left = None if self.deadline is None else self.deadline - time.time()
                    if left is not None and left <= 0:
                        yield TriggerEvent(timeout_event(self.probe.image, poll.waiting_for))
                        return
                    pause = pause if left is None else min(pause, left)
                    self.log.info("Waiting for %s; next check in %.1f s", poll.waiting_for, pause)
                    await asyncio.sleep(pause)
        except EcrLayersError as exc:
            yield TriggerEvent(error_event(exc))
            return
        except TRANSIENT_ERRORS as exc:  # a connection error, max_attempts times in a row without a deadline
            yield TriggerEvent({"status": ERROR, "message": _named(exc)})
            return
        yield TriggerEvent({"status": SUCCESS, "value": poll.value})


def _named(exc: BaseException) -> str:
    """An error's text, with its class for those (botocore's) whose text does not say what they are."""
    return str(exc) if isinstance(exc, EcrLayersError) else f"{type(exc).__name__}: {exc}"


def timeout_event(image: object, waiting_for: str) -> dict[str, Any]:
    """The event payload of a wait whose deadline passed."""
    return {"status": TIMEOUT, "message": f"Gave up waiting for {waiting_for}: the sensor's timeout passed ({image})"}
