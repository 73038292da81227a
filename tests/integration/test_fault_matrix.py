"""Faults injected between botocore and the strict embedded ECR: the matrix, and the
resume, restart and retry paths of the upload loop, each checked on its own."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import boto3
import botocore.endpoint
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from airflow_ecr_layers.core.ecr import retry
from airflow_ecr_layers.core.ecr.retry import RetryPolicy
from airflow_ecr_layers.core.engine.client import build_engine
from airflow_ecr_layers.core.engine.reader import PartReader
from airflow_ecr_layers.core.engine.transfer import EcrTransfer
from airflow_ecr_layers.core.errors import (
    CredentialsExpiredError,
    QuotaExceededError,
    SourceChangedError,
    UploadAbortedError,
    UploadNotFoundError,
)
from airflow_ecr_layers.core.oci.layers import LayerSpec
from airflow_ecr_layers.core.oci.manifest import OCI_LAYER_TAR
from airflow_ecr_layers.core.push.artifact import push_artifact
from airflow_ecr_layers.core.sources.blobs import BytesSource
from airflow_ecr_layers.testing.fault_matrix import (
    CellResult,
    MatrixConfig,
    Position,
    artifact_bytes,
    call_positions,
    check_failed_clean,
    check_pushed,
    ecr_client,
    format_table,
    positions_for,
    run_cell,
    summary_line,
    tag_map,
)
from airflow_ecr_layers.testing.fault_proxy import FAULT_KINDS, FaultProxy, FaultRule
from airflow_ecr_layers.testing.server import EmbeddedAws
from airflow_ecr_layers.testing.strict_ecr import STATS
from helpers import ROOT, sha256

CONFIG = MatrixConfig()
PART = CONFIG.part_size
DATA = artifact_bytes(CONFIG.artifact_size)
SIZE = len(DATA)
POSITIONS = positions_for(CONFIG.parts)

MAY_FAIL_CLEAN = {("upload_not_found", "PutImage")}
"""Real PutImage never answers UploadNotFoundException: given one, failing clean is the
right outcome. Every other cell must push: one fault is within our retries."""


def new_repository(aws: EmbeddedAws, name: str) -> str:
    repository_name = f"fault-tests/{name}-{uuid.uuid4().hex[:8]}"
    ecr_client(aws.endpoint_url).create_repository(repositoryName=repository_name)
    return repository_name


def api_through(proxy: FaultProxy, config: MatrixConfig = CONFIG, policy: RetryPolicy | None = None) -> EcrTransfer:
    """The client under test: the matrix's timeouts and retries, its endpoint the proxy."""
    return build_engine(ecr_client(proxy.endpoint_url, config), retry_policy=policy or config.retry_policy)


def raw_client(endpoint_url: str, *, read_timeout: float = 5.0) -> Any:
    """An ECR client that does not retry, to see each fault as botocore sees it."""
    return ecr_client(endpoint_url, replace(CONFIG, botocore_attempts=1, read_timeout=read_timeout))


# -- the matrix ------------------------------------------------------------------------


@pytest.mark.parametrize("position", POSITIONS, ids=lambda p: p.name.replace(" ", "-"))
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_fault_matrix_cell(aws: EmbeddedAws, kind: str, position: Position) -> None:
    cell = run_cell(aws.endpoint_url, kind, position, config=CONFIG, data=DATA)  # type: ignore[arg-type]
    assert cell.passed, cell.detail
    assert cell.fired == 1
    expected = "failed clean" if (kind, position.name) in MAY_FAIL_CLEAN else "pushed"
    assert cell.outcome == expected, cell.detail


CALL_CELLS = [(kind, position) for position in call_positions() for kind in position.kinds or ()]


@pytest.mark.parametrize(
    "kind,position", CALL_CELLS, ids=[f"{k}-{p.name.replace(' ', '-').replace(':', '')}" for k, p in CALL_CELLS]
)
def test_fault_matrix_call_cell(aws: EmbeddedAws, kind: str, position: Position) -> None:
    """Each call around the upload (and each a copy makes to read its source) gets through a fault
    that outlasts botocore's own retries: our retries carry it, so the push (or copy) lands."""
    cell = run_cell(aws.endpoint_url, kind, position, config=CONFIG, data=DATA)  # type: ignore[arg-type]
    assert cell.outcome == "pushed", cell.detail
    assert cell.fired == CONFIG.botocore_attempts
    assert cell.calls[position.operation] > CONFIG.botocore_attempts  # and then one that got through


def test_matrix_command_prints_the_call_cells_in_their_own_table() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_ecr_layers.testing.fault_matrix",
            "--kinds",
            "throttling",
            "--positions",
            "last part,DescribeRepositories,copy: ListImageReferrers",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
    )
    lines = completed.stdout.strip().splitlines()
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert lines[-1] == "fault matrix: 3/3 cells passed"
    headers = [line for line in lines if line.startswith("| fault")]
    assert [[c.strip() for c in h.split("|")[2:-1]] for h in headers] == [
        ["last part"],
        ["DescribeRepositories", "copy: ListImageReferrers"],
    ]


OWN_RETRY_CELLS = [
    *((kind, "middle part") for kind in ("reset_before_body", "http_503", "throttling")),
    *(
        (kind, position)
        for kind in ("drop_response", "delay")
        for position in ("middle part", "CompleteLayerUpload", "PutImage")
    ),
]


@pytest.mark.parametrize("kind,position_name", OWN_RETRY_CELLS)
def test_fault_matrix_cell_without_botocore_retries(aws: EmbeddedAws, kind: str, position_name: str) -> None:
    """The same cells with botocore's retries off: the upload loop's own retries carry them."""
    position = next(p for p in POSITIONS if p.name == position_name)
    config = replace(CONFIG, botocore_attempts=1)
    cell = run_cell(aws.endpoint_url, kind, position, config=config, data=DATA)  # type: ignore[arg-type]
    assert cell.outcome == "pushed", cell.detail
    assert cell.fired == 1


def test_a_fault_that_never_fires_fails_the_cell(aws: EmbeddedAws) -> None:
    cell = run_cell(aws.endpoint_url, "http_500", Position("part 99", "UploadLayerPart", 99), data=DATA)
    assert cell.outcome == "FAIL"
    assert "never fired" in cell.detail
    assert cell.calls["UploadLayerPart"] == CONFIG.parts + 1  # the layer's parts and the config blob


def test_the_judge_sees_moved_tags_unclear_errors_and_wrong_bytes(aws: EmbeddedAws) -> None:
    repository_name = new_repository(aws, "judge")
    direct = ecr_client(aws.endpoint_url)
    data = b"layer bytes"
    layers = [LayerSpec(BytesSource(data), OCI_LAYER_TAR)]
    result = push_artifact(build_engine(direct), repository_name, layers, tags=["v1"]).as_dict()
    tags_now = tag_map(direct, repository_name)
    error = UploadNotFoundError("UploadNotFoundException", "gone", operation="PutImage")
    assert check_failed_clean(direct, repository_name, error, tags_now) is None
    assert "tags point somewhere new" in str(check_failed_clean(direct, repository_name, error, {}))
    assert "unclear error KeyError" in str(check_failed_clean(direct, repository_name, KeyError("x"), tags_now))
    assert check_pushed(direct, repository_name, result, data) is None
    assert "is not the source's" in str(check_pushed(direct, repository_name, result, b"other bytes"))


def test_table_and_summary_line() -> None:
    results = [
        CellResult("drop_response", "first part", "pushed"),
        CellResult("drop_response", "PutImage", "failed clean", "UploadAbortedError: ..."),
        CellResult("delay", "first part", "FAIL", "tag v1 not found"),
        CellResult("delay", "PutImage", "pushed"),
    ]
    table = format_table(results).splitlines()
    assert [c.strip() for c in table[0].split("|")[1:-1]] == ["fault \\ position", "first part", "PutImage"]
    assert len({len(line) for line in table}) == 1  # aligned columns
    assert "ok: failed clean" in table[2] and "ok: pushed" in table[2]
    assert "FAIL: tag v1 not found" in table[3]
    assert summary_line(results) == "fault matrix: 3/4 cells passed"


def test_matrix_command_prints_table_and_summary() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_ecr_layers.testing.fault_matrix",
            "--kinds",
            "throttling,drop_response",
            "--positions",
            "last part",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    lines = completed.stdout.strip().splitlines()
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert lines[-1] == "fault matrix: 2/2 cells passed"
    assert any(line.startswith("| throttling") and "ok: pushed" in line for line in lines)


# -- resume, restart, task retry, bounded retries -----------------------------------------


def test_lost_answer_on_a_middle_part_resumes_from_last_valid_byte(
    aws: EmbeddedAws, caplog: pytest.LogCaptureFixture
) -> None:
    repository_name = new_repository(aws, "drop-middle")
    with FaultProxy(aws.endpoint_url, [FaultRule("UploadLayerPart", 2, "drop_response")]) as proxy:
        api = api_through(proxy)
        with caplog.at_level(logging.INFO, logger="airflow_ecr_layers"):
            session = api.calls.initiate_layer_upload(repository_name)
            uploaded = api.upload_parts(session, BytesSource(DATA), part_size=PART)
            existed = api.complete_upload(uploaded.session, uploaded.digest, uploaded.size)
    assert len(proxy.fired) == 1
    assert (uploaded.digest, uploaded.resumes, uploaded.restarts, existed) == (sha256(DATA), 1, 0, False)
    assert f"ECR holds bytes up to {2 * PART - 1} (we sent {PART}-{2 * PART - 1}); continuing from byte {2 * PART}" in (
        caplog.text
    )
    stats = STATS.repository(repository_name)
    # The dropped part reached ECR; botocore re-sent it once (rejected); nothing else twice.
    assert stats.bytes_received == SIZE + PART
    assert stats.initiate_layer_upload_calls == 1
    assert stats.layers_completed == 1


def test_upload_not_found_mid_upload_restarts_from_byte_zero(
    aws: EmbeddedAws, caplog: pytest.LogCaptureFixture
) -> None:
    repository_name = new_repository(aws, "expired-middle")
    with FaultProxy(aws.endpoint_url, [FaultRule("UploadLayerPart", 2, "upload_not_found")]) as proxy:
        api = api_through(proxy)
        with caplog.at_level(logging.INFO, logger="airflow_ecr_layers"):
            session = api.calls.initiate_layer_upload(repository_name)
            uploaded = api.upload_parts(session, BytesSource(DATA), part_size=PART)
            api.complete_upload(uploaded.session, uploaded.digest, uploaded.size)
    assert uploaded.restarts == 1
    assert uploaded.session.upload_id != session.upload_id
    assert uploaded.digest == sha256(DATA)
    assert f"restarting from byte 0 as upload {uploaded.session.upload_id} (restart 1/2)" in caplog.text
    stats = STATS.repository(repository_name)
    assert stats.initiate_layer_upload_calls == 2
    assert stats.bytes_received == PART + SIZE  # the first upload's one part, then the whole artifact once
    assert stats.layers_completed == 1


def test_upload_gone_at_completion_restarts_a_bounded_number_of_times(
    aws: EmbeddedAws, caplog: pytest.LogCaptureFixture
) -> None:
    repository_name = new_repository(aws, "expired-complete")
    always = FaultRule("CompleteLayerUpload", 1, "upload_not_found", times=None)
    policy = replace(CONFIG.retry_policy, max_restarts=1)
    with FaultProxy(aws.endpoint_url, [always]) as proxy:
        api = api_through(proxy, policy=policy)
        with (
            caplog.at_level(logging.WARNING, logger="airflow_ecr_layers"),
            pytest.raises(UploadAbortedError, match="vanished before completion 2 times"),
        ):
            api.push_blob(repository_name, BytesSource(b"x" * 1000), media_type=OCI_LAYER_TAR)
    assert proxy.calls("CompleteLayerUpload") == 2
    assert "vanished before completion (UploadNotFoundException); restarting from byte 0" in caplog.text
    assert STATS.repository(repository_name).initiate_layer_upload_calls == 2
    assert STATS.repository(repository_name).layers_completed == 0


@pytest.mark.parametrize(
    "held_parts",
    [[PART, PART], [6 * 1024 * 1024, 6 * 1024 * 1024], [PART, PART, PART, SIZE - 3 * PART]],
    ids=["first-2-parts", "ends-inside-part-3", "every-byte"],
)
def test_task_retry_resumes_an_upload_that_already_holds_bytes(
    aws: EmbeddedAws, caplog: pytest.LogCaptureFixture, held_parts: list[int]
) -> None:
    repository_name = new_repository(aws, "task-retry")
    direct = ecr_client(aws.endpoint_url)
    upload_id = direct.initiate_layer_upload(repositoryName=repository_name)["uploadId"]
    first = 0
    for length in held_parts:  # the attempt that died
        direct.upload_layer_part(
            repositoryName=repository_name,
            uploadId=upload_id,
            partFirstByte=first,
            partLastByte=first + length - 1,
            layerPartBlob=DATA[first : first + length],
        )
        first += length
    held = first
    retry = build_engine(ecr_client(aws.endpoint_url))  # the retried task's own client
    session = retry.calls.initiate_layer_upload(repository_name)
    session = replace(session, upload_id=upload_id)  # handed the old upload id, e.g. from XCom
    with caplog.at_level(logging.INFO, logger="airflow_ecr_layers"):
        uploaded = retry.upload_parts(session, BytesSource(DATA), part_size=PART)
    assert f"continuing from byte {held}" in caplog.text
    assert (uploaded.digest, uploaded.resumes, uploaded.restarts) == (sha256(DATA), 1, 0)
    assert retry.complete_upload(uploaded.session, uploaded.digest, uploaded.size) is False
    stats = STATS.repository(repository_name)
    # What the dead attempt sent, the rejected first part, then only the bytes ECR lacked.
    assert stats.bytes_received == held + PART + (SIZE - held)
    assert stats.layers_completed == 1


def test_restarts_are_bounded_per_blob_across_upload_and_completion(aws: EmbeddedAws) -> None:
    """max_restarts counts every start-over of one blob, whichever phase saw the upload vanish
    (counted per phase, max_restarts=2 let one blob start over up to 8 times)."""
    repository_name = new_repository(aws, "restarts-per-blob")
    rules = [
        FaultRule("UploadLayerPart", 1, "upload_not_found", times=2),
        FaultRule("CompleteLayerUpload", 1, "upload_not_found", times=None),
    ]
    policy = replace(CONFIG.retry_policy, max_restarts=2)
    with FaultProxy(aws.endpoint_url, rules) as proxy:
        api = api_through(proxy, policy=policy)
        with pytest.raises(UploadAbortedError, match=r"vanished before completion 3 times .*max_restarts=2"):
            api.push_blob(repository_name, BytesSource(b"x" * 1000), media_type=OCI_LAYER_TAR)
    assert STATS.repository(repository_name).initiate_layer_upload_calls == policy.max_restarts + 1
    assert proxy.calls("CompleteLayerUpload") == 1
    assert STATS.repository(repository_name).layers_completed == 0


def test_time_waited_on_retries_is_bounded_per_blob_across_phases(
    aws: EmbeddedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_total_seconds is one blob's budget: waits on its parts and on its completion add up
    (counted per phase, each phase had a fresh budget)."""
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt: 0.3)
    repository_name = new_repository(aws, "time-per-blob")
    rules = [
        FaultRule("UploadLayerPart", 1, "throttling"),
        FaultRule("CompleteLayerUpload", 1, "throttling", times=2),
    ]
    policy = replace(CONFIG.retry_policy, max_total_seconds=0.5)
    with FaultProxy(aws.endpoint_url, rules) as proxy:
        api = api_through(proxy, replace(CONFIG, botocore_attempts=1), policy)
        with pytest.raises(UploadAbortedError, match=r"CompleteLayerUpload .* \(0\.6s of retry waits\)"):
            api.push_blob(repository_name, BytesSource(b"x" * 1000), media_type=OCI_LAYER_TAR)
    assert proxy.calls("CompleteLayerUpload") == 2
    assert STATS.repository(repository_name).layers_completed == 0


def test_limit_exceeded_at_put_image_is_a_quota_and_fails_at_once(aws: EmbeddedAws) -> None:
    """At PutImage, LimitExceededException is the images-per-repository quota: our retries
    leave it alone (botocore's own retry mode is the user's to set; off here)."""
    repository_name = new_repository(aws, "quota-put-image")
    config = replace(CONFIG, botocore_attempts=1)
    with FaultProxy(aws.endpoint_url, [FaultRule("PutImage", 1, "limit_exceeded", times=None)]) as proxy:
        api = api_through(proxy, config)
        with pytest.raises(QuotaExceededError, match="images per repository") as excinfo:
            push_artifact(
                api, repository_name, [LayerSpec(BytesSource(DATA), OCI_LAYER_TAR)], tags=["v1"], part_size=PART
            )
    assert excinfo.value.code == "LimitExceededException"
    assert "retrying will not help" in str(excinfo.value)
    assert proxy.calls("PutImage") == 1
    assert tag_map(ecr_client(aws.endpoint_url), repository_name) == {}


def test_limit_exceeded_on_a_part_is_still_throttling(aws: EmbeddedAws) -> None:
    repository_name = new_repository(aws, "limit-part")
    config = replace(CONFIG, botocore_attempts=1)
    with FaultProxy(aws.endpoint_url, [FaultRule("UploadLayerPart", 2, "limit_exceeded")]) as proxy:
        api = api_through(proxy, config)
        result = push_artifact(
            api, repository_name, [LayerSpec(BytesSource(DATA), OCI_LAYER_TAR)], tags=["v1"], part_size=PART
        )
    assert result.layers[0].digest == sha256(DATA)
    assert len(proxy.fired) == 1


def test_credentials_that_expire_on_a_middle_part_are_refreshed_and_the_push_goes_on(
    aws: EmbeddedAws, caplog: pytest.LogCaptureFixture
) -> None:
    repository_name = new_repository(aws, "expired-token")
    made: list[Any] = []

    def fresh() -> Any:
        made.append(ecr_client(aws.endpoint_url, CONFIG))
        return made[-1]

    with FaultProxy(aws.endpoint_url, [FaultRule("UploadLayerPart", 2, "expired_token")]) as proxy:
        api = build_engine(ecr_client(proxy.endpoint_url, CONFIG), retry_policy=CONFIG.retry_policy, refresh=fresh)
        with caplog.at_level(logging.WARNING, logger="airflow_ecr_layers"):
            result = push_artifact(
                api, repository_name, [LayerSpec(BytesSource(DATA), OCI_LAYER_TAR)], tags=["v1"], part_size=PART
            )
    assert result.layers[0].digest == sha256(DATA) and len(proxy.fired) == 1
    assert api.calls.refreshes == 1 and len(made) == 1
    assert "ExpiredTokenException; refreshing the credentials and trying again" in caplog.text
    # the refused part never reached ECR; the fresh client sent it once, and nothing else twice
    assert STATS.repository(repository_name).bytes_received == SIZE + 2
    assert STATS.repository(repository_name).initiate_layer_upload_calls == 2  # the layer and the empty config


def test_credentials_that_stay_expired_fail_clean(aws: EmbeddedAws) -> None:
    repository_name = new_repository(aws, "expired-always")
    always = FaultRule("UploadLayerPart", 1, "expired_token", times=None)
    with FaultProxy(aws.endpoint_url, [always]) as proxy:
        api = build_engine(
            ecr_client(proxy.endpoint_url, CONFIG), refresh=lambda: ecr_client(proxy.endpoint_url, CONFIG)
        )
        with pytest.raises(CredentialsExpiredError, match="ExpiredTokenException"):
            push_artifact(
                api, repository_name, [LayerSpec(BytesSource(DATA), OCI_LAYER_TAR)], tags=["v1"], part_size=PART
            )
    assert proxy.calls("UploadLayerPart") == 2  # the first try, and one with fresh credentials
    assert tag_map(ecr_client(aws.endpoint_url), repository_name) == {}


def test_retries_are_bounded_when_ecr_always_answers_503(aws: EmbeddedAws, monkeypatch: pytest.MonkeyPatch) -> None:
    repository_name = new_repository(aws, "always-503")
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_total_seconds=5.0)
    config = replace(CONFIG, botocore_attempts=2)
    waits: list[float] = []  # the backoff asked for, not the wall clock (which a loaded machine stretches)

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    for module in (botocore.endpoint, retry):  # where botocore's retries and ours sleep
        monkeypatch.setattr(module, "time", SimpleNamespace(sleep=sleep))
    with FaultProxy(aws.endpoint_url, [FaultRule("UploadLayerPart", 1, "http_503", times=None)]) as proxy:
        api = api_through(proxy, config, policy)
        with pytest.raises(UploadAbortedError, match=r"UploadLayerPart 0-5242879 .* failed after 3 attempts"):
            push_artifact(
                api, repository_name, [LayerSpec(BytesSource(DATA), OCI_LAYER_TAR)], tags=["v1"], part_size=PART
            )
    assert proxy.calls("UploadLayerPart") == config.botocore_attempts * policy.max_attempts
    assert len(proxy.fired) == 6
    assert len(waits) == 5 and sum(waits) < 10  # botocore's backoff (under 1 s a retry) and ours (under 0.05 s)
    assert STATS.repository(repository_name).bytes_received == 0
    assert tag_map(ecr_client(aws.endpoint_url), repository_name) == {}


# -- the proxy itself -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,status,code",
    [
        ("http_500", 500, "ServerException"),
        ("http_503", 503, "ServiceUnavailableException"),
        ("throttling", 400, "ThrottlingException"),
        ("limit_exceeded", 400, "LimitExceededException"),
        ("upload_not_found", 400, "UploadNotFoundException"),
        ("expired_token", 400, "ExpiredTokenException"),
    ],
)
def test_proxy_answers_errors_like_ecr_without_forwarding(aws: EmbeddedAws, kind: str, status: int, code: str) -> None:
    repository_name = new_repository(aws, f"answer-{kind.replace('_', '-')}")
    with FaultProxy(aws.endpoint_url, [FaultRule("InitiateLayerUpload", 1, kind)]) as proxy:  # type: ignore[arg-type]
        client = raw_client(proxy.endpoint_url)
        with pytest.raises(ClientError) as excinfo:
            client.initiate_layer_upload(repositoryName=repository_name)
        second = client.initiate_layer_upload(repositoryName=repository_name)  # same keep-alive connection
    response = excinfo.value.response
    assert response["Error"]["Code"] == code and response["Error"]["Message"]
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == code
    assert response["ResponseMetadata"]["RequestId"]
    assert second["uploadId"]
    assert STATS.repository(repository_name).initiate_layer_upload_calls == 1  # only the second got through


def test_proxy_reset_before_body_never_reaches_ecr(aws: EmbeddedAws) -> None:
    repository_name = new_repository(aws, "reset")
    upload_id = ecr_client(aws.endpoint_url).initiate_layer_upload(repositoryName=repository_name)["uploadId"]
    with (
        FaultProxy(aws.endpoint_url, [FaultRule("UploadLayerPart", 1, "reset_before_body")]) as proxy,
        pytest.raises(ConnectionClosedError),
    ):
        raw_client(proxy.endpoint_url).upload_layer_part(
            repositoryName=repository_name,
            uploadId=upload_id,
            partFirstByte=0,
            partLastByte=PART - 1,
            layerPartBlob=DATA[:PART],
        )
    assert STATS.repository(repository_name).upload_layer_part_calls == 0


def test_proxy_drop_response_applies_the_call(aws: EmbeddedAws) -> None:
    repository_name = new_repository(aws, "drop")
    with (
        FaultProxy(aws.endpoint_url, [FaultRule("InitiateLayerUpload", 1, "drop_response")]) as proxy,
        pytest.raises(ConnectionClosedError),
    ):
        raw_client(proxy.endpoint_url).initiate_layer_upload(repositoryName=repository_name)
    assert STATS.repository(repository_name).initiate_layer_upload_calls == 1


@pytest.mark.parametrize("forward", [True, False], ids=["then-forward", "then-drop"])
def test_proxy_delay_outlasts_the_read_timeout(aws: EmbeddedAws, forward: bool) -> None:
    repository_name = new_repository(aws, "delay")
    rule = FaultRule("InitiateLayerUpload", 1, "delay", delay_seconds=None, forward_after_delay=forward)
    with FaultProxy(aws.endpoint_url, [rule]) as proxy:
        with pytest.raises(ReadTimeoutError):
            raw_client(proxy.endpoint_url, read_timeout=0.5).initiate_layer_upload(repositoryName=repository_name)
        assert STATS.repository(repository_name).initiate_layer_upload_calls == 0  # held until the proxy stops
    # Leaving the proxy ended the hold and waited for the held request.
    assert STATS.repository(repository_name).initiate_layer_upload_calls == (1 if forward else 0)


def test_proxy_passes_s3_through_untouched(aws: EmbeddedAws) -> None:
    data = artifact_bytes(3 * 1024 * 1024 + 17, seed=9)
    with FaultProxy(aws.endpoint_url, [FaultRule("UploadLayerPart", 1, "http_500", times=None)]) as proxy:
        s3 = boto3.client(
            "s3",
            endpoint_url=proxy.endpoint_url,
            region_name=aws.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        bucket = f"fault-proxy-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="blob", Body=data)
        got = s3.get_object(Bucket=bucket, Key="blob", Range="bytes=100-")["Body"].read()
        head = s3.head_object(Bucket=bucket, Key="blob")
    assert got == data[100:]
    assert head["ContentLength"] == len(data)
    assert proxy.fired == []


def test_a_probabilistic_rule_never_fires_on_the_last_attempt(aws: EmbeddedAws) -> None:
    """A share of calls refused at random must not fail a call by chance: botocore's last try goes through."""
    repository_name = new_repository(aws, "spared")
    almost_always = FaultRule("InitiateLayerUpload", 1, "throttling", times=None, probability=0.999999)
    with FaultProxy(aws.endpoint_url, [almost_always]) as proxy:
        ecr_client(proxy.endpoint_url, replace(CONFIG, botocore_attempts=3)).initiate_layer_upload(
            repositoryName=repository_name
        )
    assert proxy.calls("InitiateLayerUpload") == 3 and len(proxy.fired) == 2


def test_rules_are_validated() -> None:
    with pytest.raises(ValueError, match="Unknown fault kind"):
        FaultRule("PutImage", 1, "explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1-based"):
        FaultRule("PutImage", 0, "delay")
    rule = FaultRule("PutImage", 2, "http_500", times=2)
    assert [rule.matches("PutImage", n) for n in (1, 2, 3, 4)] == [False, True, True, False]
    assert not rule.matches("UploadLayerPart", 2)


# -- the reader's hash_remaining (used when ECR already holds the end of the blob) ----------


def test_hash_remaining_hashes_what_was_never_returned() -> None:
    data = artifact_bytes(10_500)
    with PartReader(BytesSource(data), 4096) as reader:
        reader.next_part()
        reader.seek(len(data))  # a resume to the very end
        reader.hash_remaining()
        assert reader.digest() == sha256(data)


def test_hash_remaining_raises_the_source_error() -> None:
    class Short(BytesSource):
        @property
        def size(self) -> int:
            return len(self.data) + 10

    with PartReader(Short(b"x" * 100), 64) as reader, pytest.raises(SourceChangedError, match="ended at byte 100"):
        reader.hash_remaining()
