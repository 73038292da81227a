"""Triggers of the airflow-ecr-layers provider: waits on ECR that release the worker."""

from airflow_ecr_layers.triggers.image import EcrImageTrigger
from airflow_ecr_layers.triggers.image_scan import EcrImageScanTrigger
from airflow_ecr_layers.triggers.image_signed import EcrImageSignedTrigger

__all__ = ["EcrImageScanTrigger", "EcrImageSignedTrigger", "EcrImageTrigger"]
