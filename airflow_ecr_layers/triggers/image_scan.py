"""``EcrImageScanTrigger``: wait in the triggerer until an image's scan is complete."""

from __future__ import annotations

from typing import Any

from airflow_ecr_layers.core.waits.probes import ImageRef, Probe, ScanProbe
from airflow_ecr_layers.triggers.base import EcrProbeTrigger


class EcrImageScanTrigger(EcrProbeTrigger):
    """Fire when the image's scan is complete, or has failed.

    The success event's ``value`` is ``registry_id``, ``repository_name``,
    ``image_digest``, ``scan_status`` and ``severity_counts``; judging the counts is
    the sensor's job. A failed scan fires ``{"status": "failed", "message": ...}``.

    :param start_scan: start a scan (``StartImageScan``) when the image has none.
    Other arguments as :class:`~airflow_ecr_layers.triggers.base.EcrProbeTrigger`
    (one of ``image_tag`` and ``image_digest``, not both).
    """

    def __init__(self, *, start_scan: bool = False, **kwargs: Any) -> None:
        self.start_scan = start_scan
        super().__init__(**kwargs)

    def build_probe(self, image: ImageRef) -> Probe:
        return ScanProbe(image, start_scan=self.start_scan)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        classpath, kwargs = super().serialize()
        return classpath, {**kwargs, "start_scan": self.start_scan}
