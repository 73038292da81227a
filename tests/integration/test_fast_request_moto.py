"""The fast UploadLayerPart request against the strict embedded ECR: digests, concurrency, the hook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from airflow_ecr_layers.core.ecr import fast_request
from airflow_ecr_layers.core.engine.client import build_engine
from airflow_ecr_layers.core.limits import MIN_PART_SIZE
from airflow_ecr_layers.core.oci.layers import LayerSpec
from airflow_ecr_layers.core.push.artifact import push_layers
from airflow_ecr_layers.core.sources.blobs import BytesSource
from helpers import pattern_bytes, sha256

PART = MIN_PART_SIZE


def _counting_splices(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real_splice = fast_request.splice_blob

    def counting_splice(body: bytes, token: bytes, blob: bytes | bytearray) -> bytearray:
        calls.append(len(blob))
        return real_splice(body, token, blob)

    monkeypatch.setattr(fast_request, "splice_blob", counting_splice)
    return calls


def test_moto_takes_fast_parts_and_computes_our_digest(
    ecr: Any, repo: str, stats: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    splices = _counting_splices(monkeypatch)
    data = pattern_bytes(2 * PART + 12_345, seed=3)
    result = build_engine(ecr).push_blob(repo, BytesSource(data), media_type="application/octet-stream", part_size=PART)
    assert result.digest == sha256(data)  # ECR's digest of what it received was compared with ours
    assert splices == [PART, PART, 12_345]
    assert stats.repository(repo).bytes_received == len(data)


def test_moto_takes_concurrent_uploads_on_one_client(
    ecr: Any, repo: str, stats: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    splices = _counting_splices(monkeypatch)
    blobs = [pattern_bytes(2 * PART + 1000 * n, seed=n) for n in range(1, 5)]
    layers = [LayerSpec(BytesSource(blob, f"blob-{n}"), "application/octet-stream") for n, blob in enumerate(blobs)]
    results = push_layers(build_engine(ecr), repo, layers, part_size=PART, max_concurrency=4)
    assert [r.digest for r in results] == [sha256(blob) for blob in blobs]
    assert len(splices) == 3 * len(blobs)
    assert stats.repository(repo).bytes_received == sum(map(len, blobs))


@pytest.mark.parametrize("fast_upload", [True, False], ids=["fast", "stock"])
def test_the_hook_installs_it_once_unless_switched_off(
    fast_upload: bool, clean_aws: Any, repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_ecr_layers.hooks import EcrLayersHook

    splices = _counting_splices(monkeypatch)
    installs: list[Any] = []
    real_install: Callable[[Any], None] = fast_request.install

    def counting_install(client: Any) -> None:
        installs.append(client)
        real_install(client)

    monkeypatch.setattr(fast_request, "install", counting_install)
    hook = EcrLayersHook(aws_conn_id="aws_default", fast_upload=fast_upload)
    data = pattern_bytes(PART + 99, seed=9)
    result = hook.engine.push_blob(repo, BytesSource(data), media_type="application/octet-stream", part_size=PART)
    assert result.digest == sha256(data)
    assert hook.calls.client is hook.conn
    assert splices == ([PART, 99] if fast_upload else [])
    assert installs == ([hook.conn] if fast_upload else [])
