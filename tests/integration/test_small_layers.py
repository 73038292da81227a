"""Small layers (no bigger than one part) on the strict embedded ECR: read once and hashed before
any upload, checked with one batched BatchCheckLayerAvailability, only what ECR lacks uploaded
(from the bytes already read), many at a time.

Counts come from the servers: GetObject requests per object (what was read) and the strict
ECR's calls (what was checked, initiated and sent)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_ecr_layers.core.engine.transfer import EcrTransfer
from airflow_ecr_layers.core.errors import SourceChangedError
from airflow_ecr_layers.core.oci.layers import layers_of
from airflow_ecr_layers.core.oci.manifest import TITLE_ANNOTATION
from airflow_ecr_layers.core.push import artifact, discovery
from airflow_ecr_layers.core.push.artifact import push_artifact
from airflow_ecr_layers.object_storage import open_sources
from airflow_ecr_layers.storage import PlainStorage
from airflow_ecr_layers.storage import open_sources as plain_open_sources
from airflow_ecr_layers.testing.s3_reads import S3_READS
from helpers import MiB, pattern_bytes, sha256

PART = 5 * MiB
PREFIX = "site/"


def files(count: int, seed: int = 0) -> dict[str, bytes]:
    return {f"page-{index:03d}.html": pattern_bytes(4096 - index, seed=seed + index) for index in range(count)}


@pytest.fixture
def put_prefix(put_object: Callable[[str, bytes], str]) -> Callable[[dict[str, bytes]], str]:
    def put(objects: dict[str, bytes]) -> str:
        for name, data in objects.items():
            put_object(PREFIX + name, data)
        return f"s3://artifacts/{PREFIX}"

    return put


def push(hook: Any, url: str, repo: str, tags: list[str], **kwargs: Any) -> Any:
    layers = layers_of(open_sources(url, "aws_default"), "text/html")
    return push_artifact(hook.engine, repo, layers, tags=tags, part_size=PART, **kwargs)


def reads() -> dict[str, int]:
    return {name.rsplit("/", 1)[1]: count for name, count in S3_READS.under("artifacts", PREFIX).items()}


@pytest.fixture
def in_flight(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], int]]:
    """The most ``push_blob`` calls (one layer's upload each) that ran at once; ``wait``: the first
    that many wait for each other at a barrier, which only that much concurrency passes."""
    lock = threading.Lock()
    state = {"now": 0, "most": 0}
    stock = EcrTransfer.push_blob

    def counting(self: EcrTransfer, *args: Any, **kwargs: Any) -> Any:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        try:
            return stock(self, *args, **kwargs)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(EcrTransfer, "push_blob", counting)
    yield lambda: state["most"]


def test_small_files_are_read_once_and_a_new_tag_uploads_none_of_what_ecr_holds(
    put_prefix: Callable[[dict[str, bytes]], str], repo: str, hook: Any, stats: Any
) -> None:
    objects = files(30)
    url = put_prefix(objects)
    stats.reset()
    S3_READS.reset()
    first = push(hook, url, repo, ["v1"])
    assert reads() == dict.fromkeys(objects, 1)  # hashed from one GET, uploaded from the same bytes
    sent = stats.repository(repo)
    assert (sent.initiate_layer_upload_calls, sent.upload_layer_part_calls, sent.layers_completed) == (31, 31, 31)
    assert first.totals == {
        "layers": 30,
        "reused": 0,
        "skipped": 0,
        "bytes_read": sum(map(len, objects.values())),
        "bytes_sent": sum(map(len, objects.values())),
    }
    assert [layer.digest for layer in first.layers] == [sha256(objects[name]) for name in sorted(objects)]

    # the same files under a new first tag: nothing recorded to reuse, so each is read and hashed,
    # and the one batched check finds them all
    stats.reset()
    S3_READS.reset()
    again = push(hook, url, repo, ["v2"])
    assert reads() == dict.fromkeys(objects, 1)
    checked = stats.repository(repo)
    assert (checked.initiate_layer_upload_calls, checked.upload_layer_part_calls) == (0, 0)
    assert checked.batch_check_layer_availability_calls == 2  # the 30 layers; the empty config
    assert checked.digests_checked == 31
    assert again.totals["skipped"] == 30 and again.totals["bytes_sent"] == 0
    assert [layer.digest for layer in again.layers] == [layer.digest for layer in first.layers]


def test_only_the_changed_small_file_is_uploaded_and_checks_go_100_digests_a_call(
    put_prefix: Callable[[dict[str, bytes]], str], repo: str, hook: Any, stats: Any
) -> None:
    objects = files(150)
    url = put_prefix(objects)
    push(hook, url, repo, ["v1"])
    changed = {"page-077.html": pattern_bytes(4000, seed=9_999)}
    put_prefix(changed)
    stats.reset()
    again = push(hook, url, repo, ["v2"], reuse=False)
    counted = stats.repository(repo)
    assert (counted.initiate_layer_upload_calls, counted.layers_completed) == (1, 1)
    assert counted.bytes_received == 4000
    assert counted.batch_check_layer_availability_calls == 3  # 100 + 50 digests; the empty config
    uploaded = [layer.annotations[TITLE_ANNOTATION] for layer in again.layers if not layer.skipped]
    assert uploaded == ["page-077.html"]


def test_small_layers_go_up_many_at_a_time(
    put_prefix: Callable[[dict[str, bytes]], str],
    repo: str,
    hook: Any,
    in_flight: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Certain, not timed: the first eight uploads wait for each other at a barrier, which only
    eight layers in flight at once can pass (at ``max_concurrency`` 2)."""
    barrier = threading.Barrier(8, timeout=120)
    lock = threading.Lock()
    arrived: list[int] = []
    passed: list[int] = []
    stock = EcrTransfer.push_blob  # in_flight's counter

    def meet(self: EcrTransfer, *args: Any, **kwargs: Any) -> Any:
        with lock:
            arrived.append(1)
            first_eight = len(arrived) <= 8
        if first_eight:
            barrier.wait()  # BrokenBarrierError (the push fails) unless eight are here at once
            with lock:
                passed.append(1)
        return stock(self, *args, **kwargs)

    monkeypatch.setattr(EcrTransfer, "push_blob", meet)
    url = put_prefix(files(24))
    push(hook, url, repo, ["v1"], max_concurrency=2)
    assert len(passed) == 8 and not barrier.broken
    assert in_flight() <= artifact.ONE_PART_CONCURRENCY


def test_large_one_part_layers_go_up_fewer_at_a_time(
    put_prefix: Callable[[dict[str, bytes]], str],
    repo: str,
    hook: Any,
    in_flight: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(artifact, "ONE_PART_BYTES_IN_FLIGHT", 3 * MiB)
    url = put_prefix({f"chunk-{index}.bin": pattern_bytes(MiB + index, seed=index) for index in range(6)})
    push(hook, url, repo, ["v1"], max_concurrency=1)
    assert in_flight() <= 2  # 3 MiB of layers over 1 MiB each


def test_one_part_layers_start_at_a_bounded_rate() -> None:
    """A lower bound on elapsed time is certain on any machine: 11 starts at 50 a second take 0.2 s."""
    pace = artifact._Pace(50.0)
    started = time.monotonic()
    threads = [threading.Thread(target=pace.wait) for _ in range(11)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started >= 0.2 - 1e-3


def test_a_small_local_file_changed_before_it_is_read_is_refused(tmp_path: Path, repo: str, hook: Any) -> None:
    folder = tmp_path / "site"
    folder.mkdir()
    for name, data in files(3).items():
        (folder / name).write_bytes(data)
    sources = plain_open_sources(f"file://{folder}/", PlainStorage())
    changed = folder / "page-001.html"
    changed.write_bytes(pattern_bytes(4095, seed=77))  # same size, other bytes, a later mtime
    later = changed.stat().st_mtime_ns + 5_000_000_000
    os.utime(changed, ns=(later, later))
    with pytest.raises(SourceChangedError, match="page-001.html"):
        push_artifact(hook.engine, repo, layers_of(sources, "text/html"), tags=["v1"], part_size=PART)


def test_small_layers_past_what_may_be_kept_are_streamed_not_read_twice(
    put_prefix: Callable[[dict[str, bytes]], str], repo: str, hook: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discovery, "KEEP_BYTES", 3 * MiB)
    objects = {f"shard-{index}.bin": pattern_bytes(MiB, seed=50 + index) for index in range(6)}
    url = put_prefix(objects)
    S3_READS.reset()
    result = push(hook, url, repo, ["v1"])
    assert reads() == dict.fromkeys(objects, 1)  # three hashed first and kept, three streamed
    assert result.totals["bytes_read"] == result.totals["bytes_sent"] == 6 * MiB
    assert [layer.digest for layer in result.layers] == [sha256(objects[name]) for name in sorted(objects)]
