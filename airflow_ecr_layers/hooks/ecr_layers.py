"""``EcrLayersHook``: the ECR layer-upload API on an Airflow AWS connection."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from airflow_ecr_layers.core import fast_request
from airflow_ecr_layers.core.retry import RetryPolicy
from airflow_ecr_layers.core.transfer import EcrTransfer


class EcrLayersHook(EcrTransfer, AwsBaseHook):
    """Interact with Amazon ECR's layer-upload API.

    A thin hook over ``boto3.client("ecr")``: one method per ECR call
    (``batch_check_layer_availability``, ``initiate_layer_upload``,
    ``upload_layer_part``, ``complete_layer_upload``, ``put_image``,
    ``batch_get_image``, ``describe_images``) returning small typed results, plus
    the streaming upload loop (``upload_parts``, ``complete_upload``, ``push_blob``,
    ``put_manifest``) that owns retry, resume and digest verification.

    Service errors are raised as :mod:`airflow_ecr_layers.core.errors` exceptions.

    :param retry_policy: our retries on top of botocore's own (set botocore's with
        the connection's or operator's ``botocore_config``).
    :param read_depth: parts alive at once per layer (the one being sent included).
    :param fast_upload: send UploadLayerPart through :mod:`~airflow_ecr_layers.core.fast_request`
        (the same request body, built without botocore's JSON pass over the blob);
        False keeps botocore's stock serialisation.
    """

    hook_name = "Amazon ECR layers"

    def __init__(
        self,
        *args: Any,
        retry_policy: RetryPolicy | None = None,
        read_depth: int = 2,
        fast_upload: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs["client_type"] = "ecr"
        super().__init__(*args, **kwargs)
        if retry_policy is not None:
            self.retry_policy = retry_policy
        self.read_depth = read_depth
        self.fast_upload = fast_upload
        self._fast_client: Any = None

    @property
    def ecr_client(self) -> Any:
        client = self.conn
        if self.fast_upload and client is not self._fast_client:
            fast_request.install(client)
            self._fast_client = client
        return client
