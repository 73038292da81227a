"""What every operator of this provider shares: the AWS arguments and the hook."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

from airflow_ecr_layers.core.limits import validate_registry_id
from airflow_ecr_layers.hooks.ecr_layers import EcrLayersHook


class EcrLayersBaseOperator(AwsBaseOperator[EcrLayersHook]):
    """Base of the ECR layer operators.

    :param registry_id: the AWS account id of the registry; the connection's account if unset.
    :param aws_conn_id: the Airflow connection for AWS credentials (``aws_default``).
    :param region_name: the AWS region; the connection's or boto3's default if unset.
    :param verify: whether to verify SSL certificates, or a CA bundle path.
    :param botocore_config: botocore client configuration (retries, timeouts...).
    """

    aws_hook_class = EcrLayersHook
    template_fields: Sequence[str] = aws_template_fields("registry_id")
    ui_color = "#ff9900"

    def __init__(self, *, registry_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registry_id = registry_id

    def checked_registry_id(self) -> str | None:
        return validate_registry_id(self.registry_id)
