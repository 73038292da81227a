"""``EcrImageSignedSensor``: wait until ECR managed signing (AWS Signer) has signed an image."""

from __future__ import annotations

from airflow_ecr_layers.sensors.base import EcrImageWaitSensor
from airflow_ecr_layers.triggers.image_signed import EcrImageSignedTrigger


class EcrImageSignedSensor(EcrImageWaitSensor):
    """Wait until ECR managed signing has signed an image, and its signature is there.

    Polls ``DescribeImageSigningStatus`` until every status (one per signing rule of the
    registry's ``PutSigningConfiguration`` that matches the repository) is ``COMPLETE``,
    then ``ListImageReferrers`` until the image has a referrer of artifact type
    ``application/vnd.cncf.notary.signature``. A ``FAILED`` status fails the task at once,
    without retry, naming the profile, ECR's failure code and reason. While the image has no
    status yet (no rule matched, or signing has not started) the sensor keeps waiting until
    its ``timeout``; poke or ``deferrable=True``, with the trigger's own deadline.

    Arguments as :class:`~airflow_ecr_layers.sensors.base.EcrImageWaitSensor`.

    :return: ``registry_id``, ``repository_name``, ``image_digest``, ``signing_statuses``
        (``signing_profile_arn``, ``status``) and ``signatures`` (``digest``, ``artifact_type``, ``size``).
    """

    trigger_class = EcrImageSignedTrigger
