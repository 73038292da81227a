"""Test helpers for airflow-ecr-layers: an embedded moto ECR/S3 that enforces the
real ECR contract. Nothing here imports Airflow."""
