"""Operators of the airflow-ecr-layers provider."""

from airflow_ecr_layers.operators.build import BuildImageOperator
from airflow_ecr_layers.operators.copy import CopyImageOperator
from airflow_ecr_layers.operators.image_archive import PushImageArchiveOperator
from airflow_ecr_layers.operators.lifecycle import (
    CompleteLayerUploadOperator,
    InitiateLayerUploadOperator,
    PutImageOperator,
    UploadLayerPartsOperator,
)
from airflow_ecr_layers.operators.pull import PullArtifactOperator
from airflow_ecr_layers.operators.push import PushArtifactOperator
from airflow_ecr_layers.operators.repository import EnsureEcrRepositoryOperator
from airflow_ecr_layers.operators.signing import SignImageOperator, VerifyImageSignatureOperator

__all__ = [
    "BuildImageOperator",
    "CompleteLayerUploadOperator",
    "CopyImageOperator",
    "EnsureEcrRepositoryOperator",
    "InitiateLayerUploadOperator",
    "PullArtifactOperator",
    "PushArtifactOperator",
    "PushImageArchiveOperator",
    "PutImageOperator",
    "SignImageOperator",
    "UploadLayerPartsOperator",
    "VerifyImageSignatureOperator",
]
