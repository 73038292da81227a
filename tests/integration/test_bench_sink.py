"""The benchmark's sink (benchmarks/sink.py) answers botocore like ECR, so the figures it
gives are for real requests: the fast and the stock UploadLayerPart bodies both parse."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from airflow_ecr_layers.core.ecr import fast_request
from helpers import ROOT, load_script

SINK_PATH = ROOT / "benchmarks" / "sink.py"


sink = load_script(SINK_PATH, "bench_sink")


@pytest.fixture
def server() -> Iterator[Any]:
    running = sink.EcrSinkServer(0, part_size=5 * 1024 * 1024)
    thread = threading.Thread(target=running.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.shutdown()
        running.server_close()
        thread.join(5)


def _client(url: str, fast: bool) -> Any:
    client = boto3.client(
        "ecr", endpoint_url=url, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    if fast:
        fast_request.install(client)
    return client


@pytest.mark.parametrize("fast", [True, False], ids=["fast-request", "stock"])
def test_a_part_round_trip_counts_the_body_and_echoes_the_last_byte(server: Any, fast: bool) -> None:
    ecr = _client(server.endpoint_url, fast)
    started = ecr.initiate_layer_upload(repositoryName="bench/layers")
    assert started["partSize"] == 5 * 1024 * 1024
    blob = bytes(range(256)) * 4000 + b"x"  # 1,024,001 bytes
    answer = ecr.upload_layer_part(
        repositoryName="bench/layers",
        uploadId=started["uploadId"],
        partFirstByte=3_000_000,
        partLastByte=3_000_000 + len(blob) - 1,
        layerPartBlob=blob,
    )
    assert answer["lastByteReceived"] == 3_000_000 + len(blob) - 1
    assert answer["uploadId"] == started["uploadId"]
    assert answer["repositoryName"] == "bench/layers"
    assert server.received > 4 * len(blob) / 3  # the base64 body was read, not skipped
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    done = ecr.complete_layer_upload(repositoryName="bench/layers", uploadId=started["uploadId"], layerDigests=[digest])
    assert done["layerDigest"] == digest


def test_part_last_byte_is_found_at_either_edge_and_missing_is_an_error() -> None:
    assert sink.part_last_byte(b'{"partLastByte": 41, "layerPartBlob": "', b"") == 41
    assert sink.part_last_byte(b'{"layerPartBlob": "AAAA', b'AAAA", "partLastByte":7}') == 7
    with pytest.raises(ValueError, match="partLastByte"):
        sink.part_last_byte(b'{"layerPartBlob": "AAAA', b'AAAA"}')


def test_the_slow_sink_still_answers_each_part(server: Any) -> None:
    server.part_delay = 0.01
    ecr = _client(server.endpoint_url, fast=True)
    upload_id = ecr.initiate_layer_upload(repositoryName="bench/layers")["uploadId"]
    for first in (0, 10):
        answer = ecr.upload_layer_part(
            repositoryName="bench/layers",
            uploadId=upload_id,
            partFirstByte=first,
            partLastByte=first + 9,
            layerPartBlob=b"0123456789",
        )
        assert answer["lastByteReceived"] == first + 9
