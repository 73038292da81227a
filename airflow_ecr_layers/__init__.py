"""airflow-ecr-layers: push object storage artifacts and images into Amazon ECR
through ECR's own layer-upload API, from Airflow, without a docker daemon."""

from __future__ import annotations

__version__ = "0.1.0"

PACKAGE_NAME = "airflow-ecr-layers"


def get_provider_info() -> dict[str, object]:
    """Provider metadata for Airflow's ``apache_airflow_provider`` entry point."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Amazon ECR layers",
        "description": "Push artifacts and image archives from object storage into Amazon ECR "
        "through the layer-upload API (no docker daemon).",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Amazon ECR layers",
                "external-doc-url": "https://docs.aws.amazon.com/AmazonECR/latest/APIReference/Welcome.html",
                "tags": ["aws"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Amazon ECR layers",
                "python-modules": ["airflow_ecr_layers.hooks.ecr_layers"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Amazon ECR layers",
                "python-modules": [
                    "airflow_ecr_layers.sensors.image",
                    "airflow_ecr_layers.sensors.image_scan",
                    "airflow_ecr_layers.sensors.image_signed",
                ],
            }
        ],
        "triggers": [
            {
                "integration-name": "Amazon ECR layers",
                "python-modules": [
                    "airflow_ecr_layers.triggers.image",
                    "airflow_ecr_layers.triggers.image_scan",
                    "airflow_ecr_layers.triggers.image_signed",
                ],
            }
        ],
        "asset-uris": [
            {
                "schemes": ["ecr"],
                "handler": "airflow_ecr_layers.assets.sanitize_uri",
                "factory": "airflow_ecr_layers.assets.create_asset",
                "to_openlineage_converter": "airflow_ecr_layers.assets.convert_asset_to_openlineage",
            }
        ],
        "operators": [
            {
                "integration-name": "Amazon ECR layers",
                "python-modules": [
                    "airflow_ecr_layers.operators.lifecycle",
                    "airflow_ecr_layers.operators.push",
                    "airflow_ecr_layers.operators.image_archive",
                    "airflow_ecr_layers.operators.build",
                    "airflow_ecr_layers.operators.pull",
                    "airflow_ecr_layers.operators.copy",
                    "airflow_ecr_layers.operators.repository",
                    "airflow_ecr_layers.operators.signing",
                ],
            }
        ],
    }
