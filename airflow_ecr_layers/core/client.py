"""``EcrClient``: the same API as the hook on a plain boto3 client, for use outside Airflow."""

from __future__ import annotations

from typing import Any

from airflow_ecr_layers.core.retry import RetryPolicy
from airflow_ecr_layers.core.transfer import EcrTransfer


class EcrClient(EcrTransfer):
    def __init__(self, client: Any, *, retry_policy: RetryPolicy | None = None, read_depth: int = 2) -> None:
        self._client = client
        if retry_policy is not None:
            self.retry_policy = retry_policy
        self.read_depth = read_depth

    @property
    def ecr_client(self) -> Any:
        return self._client
