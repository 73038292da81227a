"""``EcrImageTrigger``: wait in the triggerer until an image exists."""

from __future__ import annotations

from airflow_ecr_layers.core.waits.probes import ImageProbe, ImageRef, Probe
from airflow_ecr_layers.triggers.base import EcrProbeTrigger


class EcrImageTrigger(EcrProbeTrigger):
    """Fire when the image (tag and/or digest) is in the repository.

    The success event's ``value`` is ``registry_id``, ``repository_name``,
    ``image_digest``, ``tags`` and ``pushed_at`` (ISO 8601). Arguments as
    :class:`~airflow_ecr_layers.triggers.base.EcrProbeTrigger`.
    """

    def build_probe(self, image: ImageRef) -> Probe:
        return ImageProbe(image)
