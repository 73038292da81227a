"""Every ECR call goes through one retry loop: throttling, 5xx and connection errors are retried
under the policy; quotas and other refusals are not; a caller's own budget is not multiplied."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from airflow_ecr_layers.core.ecr.calls import EcrCalls
from airflow_ecr_layers.core.ecr.retry import RetryBudget, RetryPolicy
from airflow_ecr_layers.core.errors import (
    QuotaExceededError,
    RepositoryNotFoundError,
    ThrottledError,
    UploadAbortedError,
)

POLICY = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)
REPOSITORY = {"repositoryName": "team/models", "registryId": "123456789012", "repositoryUri": "x"}


def error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": f"{code} says no"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "Operation",
    )


class Scripted:
    """A botocore-like client whose calls fail as scripted, then answer."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls: list[str] = []

    def __getattr__(self, operation: str) -> Any:
        def call(**params: Any) -> dict[str, Any]:
            self.calls.append(operation)
            if self.failures:
                raise self.failures.pop(0)
            return {"repositories": [REPOSITORY], "repository": REPOSITORY, "images": [], "uploadId": "u-1"}

        return call


@pytest.mark.parametrize(
    "failure",
    [
        error("ThrottlingException"),
        error("TooManyRequestsException"),
        error("LimitExceededException"),  # a rate, on these calls
        error("ServerException", 500),
        error("ServiceUnavailableException", 503),
        error("SomethingNew", 502),
        EndpointConnectionError(endpoint_url="https://api.ecr.us-east-1.amazonaws.com"),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(getattr(e, "response", {}).get("Error", {}).get("Code", "")),
)
@pytest.mark.parametrize(
    "call",
    [
        lambda calls: calls.describe_repository("team/models"),
        lambda calls: calls.batch_get_image("team/models", [{"imageTag": "v1"}]),
        lambda calls: calls.initiate_layer_upload("team/models", "123456789012"),
    ],
    ids=["DescribeRepositories", "BatchGetImage", "InitiateLayerUpload"],
)
def test_transient_failures_are_retried_under_the_policy(failure: BaseException, call: Any) -> None:
    client = Scripted(failure, failure)
    call(EcrCalls(client, retry_policy=POLICY))
    assert len(client.calls) == 3  # two failures, then the answer


def test_the_policy_bounds_the_attempts_and_names_the_call() -> None:
    client = Scripted(*[error("ThrottlingException")] * 5)
    with pytest.raises(UploadAbortedError, match=r"^DescribeRepositories failed after 3 attempts") as raised:
        EcrCalls(client, retry_policy=POLICY).describe_repository("team/models")
    assert isinstance(raised.value.__cause__, ThrottledError)
    assert len(client.calls) == POLICY.max_attempts


@pytest.mark.parametrize(
    ("operation", "failure", "raised"),
    [
        ("create_repository", error("LimitExceededException"), QuotaExceededError),  # repositories per registry
        ("create_repository", error("TooManyTagsException"), QuotaExceededError),
        ("describe_repository", error("RepositoryNotFoundException"), RepositoryNotFoundError),
        ("describe_repository", error("AccessDeniedException"), Exception),
    ],
)
def test_quotas_and_refusals_are_not_retried(operation: str, failure: ClientError, raised: type[Exception]) -> None:
    client = Scripted(failure, failure)
    with pytest.raises(raised):
        getattr(EcrCalls(client, retry_policy=POLICY), operation)("team/models")
    assert len(client.calls) == 1


def test_inside_a_callers_budget_a_call_is_retried_by_that_budget_only() -> None:
    """The engine wraps one blob's calls in the blob's budget: attempts do not multiply."""
    client = Scripted(*[error("ThrottlingException")] * 4)
    calls = EcrCalls(client, retry_policy=POLICY)
    outer = RetryBudget(RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0))
    with pytest.raises(UploadAbortedError, match=r"^the blob's call failed after 2 attempts"):
        outer.call("the blob's call", lambda: calls.describe_repository("team/models"))
    assert len(client.calls) == 2
    calls.describe_repository("team/models")  # outside it, the call's own budget again: 2 failures, then it answers
    assert len(client.calls) == 2 + 3
