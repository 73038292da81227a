"""``EcrClient``: the same API as the hook on a plain boto3 client, for use outside Airflow."""

from __future__ import annotations

from typing import Any

from airflow_ecr_layers.core import fast_request
from airflow_ecr_layers.core.retry import RetryPolicy
from airflow_ecr_layers.core.transfer import EcrTransfer


class EcrClient(EcrTransfer):
    """The upload API on a boto3 ECR ``client``.

    :param fast_upload: send UploadLayerPart through :mod:`~airflow_ecr_layers.core.fast_request`
        (installed on ``client``); False leaves the client's serialisation as botocore's.
    """

    def __init__(
        self, client: Any, *, retry_policy: RetryPolicy | None = None, read_depth: int = 2, fast_upload: bool = True
    ) -> None:
        self._client = client
        if fast_upload:
            fast_request.install(client)
        if retry_policy is not None:
            self.retry_policy = retry_policy
        self.read_depth = read_depth

    @property
    def ecr_client(self) -> Any:
        return self._client
