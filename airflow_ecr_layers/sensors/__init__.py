"""Sensors of the airflow-ecr-layers provider."""

from airflow_ecr_layers.sensors.image import EcrImageSensor
from airflow_ecr_layers.sensors.image_scan import EcrImageScanSensor
from airflow_ecr_layers.sensors.image_signed import EcrImageSignedSensor

__all__ = ["EcrImageScanSensor", "EcrImageSensor", "EcrImageSignedSensor"]
