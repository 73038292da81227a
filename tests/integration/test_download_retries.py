"""A layer download answered with a 5xx is tried again under the retry policy, as ECR calls are."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from airflow_ecr_layers.core.ecr.calls import DownloadUrl, EcrCalls
from airflow_ecr_layers.core.errors import TransferError
from airflow_ecr_layers.operators import PullArtifactOperator, PushArtifactOperator
from airflow_ecr_layers.testing.server import EmbeddedAws
from helpers import pattern_bytes
from proxies import CuttingProxy

POLICY = {"max_attempts": 3, "base_delay": 0.01, "max_delay": 0.02, "max_total_seconds": 10.0}
DATA = pattern_bytes(300_000, seed=12)
SLOW_DOWN = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
INTERNAL = b"<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>"


@pytest.fixture
def answering(monkeypatch: pytest.MonkeyPatch, aws: EmbeddedAws) -> Iterator[Callable[..., CuttingProxy]]:
    """``answering(status, body, answers)``: the first ``answers`` ranged GETs of a download get that
    answer; the others reach the embedded blob server."""
    proxies: list[CuttingProxy] = []
    real = EcrCalls.get_download_url_for_layer

    def make(status: int, body: bytes, answers: int | None) -> CuttingProxy:
        proxy = CuttingProxy(aws.blob_url, keep=0, cuts=0, answer=(status, body), answers=answers).__enter__()
        proxies.append(proxy)

        def via_proxy(self: EcrCalls, *args: Any, **kwargs: Any) -> DownloadUrl:
            found = real(self, *args, **kwargs)
            url = urlunsplit(urlsplit(found.url)._replace(netloc=urlsplit(proxy.endpoint_url).netloc))
            return DownloadUrl(url, found.digest)

        monkeypatch.setattr(EcrCalls, "get_download_url_for_layer", via_proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.__exit__()


@pytest.fixture
def pushed(clean_aws: EmbeddedAws, repo: str, put_object: Callable[[str, bytes], str]) -> str:
    PushArtifactOperator(
        task_id="push", source=put_object("model/weights.bin", DATA), repository_name=repo, tags=["v1"]
    ).execute({})
    return f"{repo}:v1"


def pull(reference: str, tmp_path: Any) -> dict[str, Any]:
    operator = PullArtifactOperator(
        task_id="pull",
        reference=reference,
        destination=f"file://{tmp_path}/",
        aws_conn_id="aws_default",
        upload_retry_policy=POLICY,
    )
    result: dict[str, Any] = operator.execute({})
    return result


@pytest.mark.parametrize(("status", "body"), [(503, SLOW_DOWN), (500, INTERNAL)], ids=["503", "500"])
def test_a_download_answered_5xx_is_tried_again_and_lands(
    pushed: str,
    answering: Callable[..., CuttingProxy],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Any,
    status: int,
    body: bytes,
) -> None:
    proxy = answering(status, body, answers=2)
    with caplog.at_level(logging.WARNING, logger="airflow_ecr_layers"):
        result = pull(pushed, tmp_path)
    assert (tmp_path / "weights.bin").read_bytes() == DATA
    assert result["files"][0]["size"] == len(DATA)
    assert len(proxy.ranged_gets()) == 3  # two answered, then the one that got the bytes
    assert f"attempt 2/3 failed (BrokenDownload: HTTP {status} " in caplog.text


def test_a_download_that_keeps_answering_503_fails_within_the_policy(
    pushed: str, answering: Callable[..., CuttingProxy], tmp_path: Any
) -> None:
    proxy = answering(503, SLOW_DOWN, answers=None)
    with pytest.raises(TransferError, match=r"reading bytes 0-299999 .* failed after 3 attempts .*HTTP 503"):
        pull(pushed, tmp_path)
    assert len(proxy.ranged_gets()) == POLICY["max_attempts"]
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
