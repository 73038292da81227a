"""``EcrImageSignedTrigger``: wait in the triggerer until ECR managed signing has signed an image."""

from __future__ import annotations

from airflow_ecr_layers.core.waits.probes import ImageRef, Probe
from airflow_ecr_layers.core.waits.signing import SigningProbe
from airflow_ecr_layers.triggers.base import EcrProbeTrigger


class EcrImageSignedTrigger(EcrProbeTrigger):
    """Fire when every managed signing status of the image is ``COMPLETE`` and its Notary
    signature is a referrer; a ``FAILED`` status fires ``{"status": "failed", "message": ...}``.

    Arguments as :class:`~airflow_ecr_layers.triggers.base.EcrProbeTrigger`.
    """

    def build_probe(self, image: ImageRef) -> Probe:
        return SigningProbe(image)
