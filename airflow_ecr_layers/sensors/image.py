"""``EcrImageSensor``: wait until an image tag or digest exists in a repository."""

from __future__ import annotations

from airflow_ecr_layers.sensors.base import EcrImageWaitSensor
from airflow_ecr_layers.triggers.image import EcrImageTrigger


class EcrImageSensor(EcrImageWaitSensor):
    """Wait until an image is in an ECR repository (``DescribeImages``).

    Give ``image_tag``, ``image_digest``, or both (then the image is there once that
    digest carries that tag). A missing image means "not yet"; a missing repository
    fails the task (``RepositoryNotFoundError`` naming it).

    Arguments as :class:`~airflow_ecr_layers.sensors.base.EcrImageWaitSensor`.

    :return: ``registry_id``, ``repository_name``, ``image_digest``, ``tags``,
        ``pushed_at`` (ISO 8601).
    """

    trigger_class = EcrImageTrigger
