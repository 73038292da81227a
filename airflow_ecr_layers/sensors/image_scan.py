"""``EcrImageScanSensor``: wait for an image's scan, then gate on its findings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_ecr_layers.core.waits.scan import SeverityThreshold, format_counts
from airflow_ecr_layers.operators.xcom import require
from airflow_ecr_layers.sensors.base import EcrImageWaitSensor
from airflow_ecr_layers.triggers.image_scan import EcrImageScanTrigger


class EcrImageScanSensor(EcrImageWaitSensor):
    """Wait until an image's scan is complete (``DescribeImageScanFindings``), then
    fail the task if the findings reach the threshold.

    Keeps waiting while the scan is ``IN_PROGRESS`` or ``PENDING``, while the image has
    no scan (``ScanNotFoundException``; ``start_scan=True`` starts one) and while the image
    is not in the repository yet. Fails without retry (``AirflowFailException``) when the
    scan ends without findings (``FAILED``, ``UNSUPPORTED_IMAGE``...; the message carries
    ECR's description) and when the findings fail the threshold (the message names the
    counts). A missing repository fails the task.

    :param image_tag: the image's tag; or give ``image_digest`` (one of the two).
    :param fail_on_severity: any finding at or above this severity fails the task
        (``"CRITICAL"`` by default; ``None`` to turn off).
    :param max_findings: per severity, the most findings of exactly that severity
        allowed, e.g. ``{"HIGH": 5}`` fails on a sixth HIGH finding.
    :param start_scan: start a scan when the image has none (basic scanning on demand).
    Other arguments as :class:`~airflow_ecr_layers.sensors.base.EcrImageWaitSensor`.

    :return: ``registry_id``, ``repository_name``, ``image_digest``, ``scan_status``,
        ``severity_counts``.
    """

    trigger_class = EcrImageScanTrigger
    allow_tag_and_digest = False

    def __init__(
        self,
        *,
        fail_on_severity: str | None = "CRITICAL",
        max_findings: Mapping[str, int] | None = None,
        start_scan: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.threshold = SeverityThreshold(fail_on_severity, dict(max_findings or {}))
        self.start_scan = start_scan

    def trigger_kwargs(self) -> dict[str, Any]:
        return {**super().trigger_kwargs(), "start_scan": self.start_scan}

    def complete(self, value: dict[str, Any]) -> dict[str, Any]:
        require(value, "image scan result", repository_name=str, image_digest=str, severity_counts=dict)
        image = f"{value['repository_name']}@{value['image_digest']}"
        self.threshold.check(value["severity_counts"], image)
        self.log.info("Image scan of %s passes the threshold: %s", image, format_counts(value["severity_counts"]))
        return value
