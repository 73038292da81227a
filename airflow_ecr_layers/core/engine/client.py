"""``build_engine``: the engine on a plain boto3 ECR client, for use outside Airflow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_ecr_layers.core.ecr import fast_request
from airflow_ecr_layers.core.ecr.calls import EcrCalls
from airflow_ecr_layers.core.ecr.retry import RetryPolicy
from airflow_ecr_layers.core.engine.transfer import DEFAULT_READ_DEPTH, EcrTransfer


def build_engine(
    client: Any,
    *,
    retry_policy: RetryPolicy | None = None,
    read_depth: int = DEFAULT_READ_DEPTH,
    fast_upload: bool = True,
    refresh: Callable[[], Any] | None = None,
) -> EcrTransfer:
    """The transfer engine on a botocore/boto3 ECR ``client``.

    :param retry_policy: our retries on top of botocore's (whose own retries are the client's config).
    :param read_depth: parts alive at once per layer (the one being sent included).
    :param fast_upload: send UploadLayerPart through :mod:`~airflow_ecr_layers.core.ecr.fast_request`
        (installed on ``client``); False leaves the client's serialisation as botocore's.
    :param refresh: makes a new client with fresh credentials, for when they expire mid-push.
    """

    def prepared(new: Any) -> Any:
        if fast_upload:
            fast_request.install(new)
        return new

    fresh = (lambda: prepared(refresh())) if refresh is not None else None
    calls = EcrCalls(prepared(client), refresh=fresh, retry_policy=retry_policy)
    return EcrTransfer(calls, retry_policy=retry_policy, read_depth=read_depth)
