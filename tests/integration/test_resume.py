"""Crash-safe pushes: an upload a killed worker left is continued by the next attempt, not redone.

The first tests leave an upload half-done by hand (initiate, send some parts, record them),
then push with the record; the last one SIGKILLs a real CLI push mid-upload and runs it again.
(The same through a DAG's task: tests/system/test_resume_dag.py.)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_ecr_layers.core.ecr.calls import UploadSession
from airflow_ecr_layers.core.engine.resume import RECORD_LIFETIME, FileResumeStore, MemoryResumeStore, ResumePoint
from airflow_ecr_layers.core.sources.blobs import LocalFileSource
from airflow_ecr_layers.core.sources.identity import Target
from airflow_ecr_layers.testing.fault_proxy import FaultProxy, FaultRule
from airflow_ecr_layers.testing.server import EmbeddedAws
from helpers import ROOT, MiB, pattern_bytes, sha256, wait_for

PART = 5 * MiB
PARTS = 10
SIZE = PARTS * PART - 12_345  # ten parts, the last one short
REGION = "us-east-1"


@pytest.fixture
def artifact(tmp_path: Path) -> tuple[LocalFileSource, bytes]:
    data = pattern_bytes(SIZE, seed=11)
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    return LocalFileSource(str(path)), data


def half_done(hook: Any, repo: str, source: LocalFileSource, parts: int) -> UploadSession:
    """An upload that has received the first ``parts`` parts of ``source``, as a killed worker leaves it."""
    session = hook.calls.initiate_layer_upload(repo)
    with open(source.path, "rb") as handle:
        for n in range(parts):
            hook.calls.upload_layer_part(session, n * PART, handle.read(PART))
    return session


def point(store: Any, source: LocalFileSource, repo: str) -> ResumePoint:
    found = ResumePoint.of(store, source.identity(), None, Target("123456789012", REGION, repo), 0, source.size)
    assert found is not None
    return found


def test_an_upload_left_at_part_four_is_continued_from_part_five(
    hook: Any, repo: str, stats: Any, artifact: tuple[LocalFileSource, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    source, data = artifact
    session = half_done(hook, repo, source, 4)
    store = MemoryResumeStore()
    resume = point(store, source, repo)
    resume.save(resume.record(session.registry_id, repo, session.upload_id, PART, SIZE, 4 * PART), force=True)
    stats.reset()
    with caplog.at_level(logging.INFO, logger="airflow_ecr_layers"):
        blob = hook.engine.push_blob(repo, source, media_type="application/octet-stream", part_size=PART, resume=resume)
    assert blob.digest == sha256(data)
    assert stats.repository(repo).upload_layer_part_calls == PARTS - 4
    assert stats.repository(repo).bytes_received == SIZE - 4 * PART
    assert blob.bytes_read == SIZE  # the confirmed prefix was read and hashed, not sent
    assert f"continuing upload {session.upload_id}, which an earlier attempt left at byte {4 * PART}" in caplog.text
    assert store.records == {}  # deleted once the layer is complete


def test_a_record_behind_ecr_costs_one_refused_part_not_the_layer(
    hook: Any, repo: str, stats: Any, artifact: tuple[LocalFileSource, bytes]
) -> None:
    source, data = artifact
    session = half_done(hook, repo, source, 4)
    store = MemoryResumeStore()
    resume = point(store, source, repo)
    resume.save(resume.record(session.registry_id, repo, session.upload_id, PART, SIZE, 2 * PART), force=True)
    stats.reset()
    blob = hook.engine.push_blob(repo, source, media_type="application/octet-stream", part_size=PART, resume=resume)
    assert blob.digest == sha256(data)
    assert stats.repository(repo).upload_layer_part_calls == 1 + PARTS - 4  # part 3 refused, then 5 to 10


def test_a_changed_source_finds_the_old_record_and_replaces_it(
    hook: Any, repo: str, stats: Any, artifact: tuple[LocalFileSource, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """Records are keyed by where the upload goes and what it reads, not by the source's version:
    the source rewritten since the killed attempt finds that attempt's record, and starts over."""
    source, _ = artifact
    session = half_done(hook, repo, source, 4)
    store = MemoryResumeStore()
    killed = point(store, source, repo)
    killed.save(killed.record(session.registry_id, repo, session.upload_id, PART, SIZE, 4 * PART), force=True)

    rewritten = pattern_bytes(SIZE, seed=12)  # the same size, other bytes: a new version of the file
    Path(source.path).write_bytes(rewritten)
    changed = LocalFileSource(source.path)
    retry = point(store, changed, repo)
    assert retry.key == killed.key and retry.source != killed.source
    stats.reset()
    with caplog.at_level(logging.INFO, logger="airflow_ecr_layers"):
        blob = hook.engine.push_blob(repo, changed, media_type="application/octet-stream", part_size=PART, resume=retry)
    assert blob.digest == sha256(rewritten) and stats.repository(repo).upload_layer_part_calls == PARTS
    assert "was of other bytes (the source changed since): starting over" in caplog.text
    assert store.records == {}  # the old record was dropped, the new one deleted on completion


def test_an_expired_upload_starts_over_saying_why(
    hook: Any, repo: str, stats: Any, artifact: tuple[LocalFileSource, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    source, data = artifact
    store = MemoryResumeStore()
    resume = point(store, source, repo)
    gone = resume.record("123456789012", repo, "no-such-upload", PART, SIZE, 4 * PART)
    resume.save(gone, force=True)
    with caplog.at_level(logging.INFO, logger="airflow_ecr_layers"):
        again = hook.engine.push_blob(
            repo, source, media_type="application/octet-stream", part_size=PART, resume=resume
        )
    assert again.digest == sha256(data)
    assert "Upload no-such-upload expired or vanished" in caplog.text and "restarting from byte 0" in caplog.text


def test_a_record_older_than_a_day_is_dropped_unread(artifact: tuple[LocalFileSource, bytes]) -> None:
    source, _ = artifact
    store = MemoryResumeStore()
    resume = point(store, source, "team/models")
    record = resume.record("123456789012", "team/models", "u-1", PART, SIZE, 4 * PART)
    store.save(resume.key, type(record)(**{**record.to_json(), "updated": time.time() - RECORD_LIFETIME - 60}))
    assert resume.load() is None and store.records == {}
    resume.save(record, force=True)
    assert resume.load() is not None  # a fresh record is read back


def test_a_file_store_survives_the_process_and_ignores_garbage(tmp_path: Path) -> None:
    store = FileResumeStore(tmp_path / "resume")
    from airflow_ecr_layers.core.sources.identity import SourceIdentity

    home = Target("123456789012", REGION, "r1")
    resume = ResumePoint.of(store, SourceIdentity("file:///m", 10, mtime_ns=5), None, home, 0, 10)
    assert resume is not None and resume.load() is None
    resume.save(resume.record("123456789012", "r1", "u-1", PART, 10, 5), force=True)
    assert FileResumeStore(tmp_path / "resume").load(resume.key) == resume.load()
    next(iter((tmp_path / "resume").glob("*.json"))).write_text("{not json")
    assert resume.load() is None
    resume.delete()
    assert list((tmp_path / "resume").glob("*.json")) == []


# -- a real process, killed mid-upload ---------------------------------------------------------


def test_a_killed_cli_push_is_continued_by_the_rerun(
    aws: EmbeddedAws, repo: str, stats: Any, artifact: tuple[LocalFileSource, bytes], tmp_path: Path
) -> None:
    source, data = artifact
    env = {**os.environ, **aws.env(), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    cli = [
        sys.executable,
        "-m",
        "airflow_ecr_layers.cli",
        "push",
        f"file://{source.path}",
        f"{repo}:v1",
        "--part-size",
        str(PART),
    ]
    hold = FaultRule("UploadLayerPart", 5, "delay", delay_seconds=None, forward_after_delay=False)
    with FaultProxy(aws.endpoint_url, [hold]) as proxy:
        first = subprocess.Popen(
            [*cli, "--endpoint-url", proxy.endpoint_url],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        wait_for(lambda: proxy.calls("UploadLayerPart") >= 5 or first.poll() is not None)
        first.send_signal(signal.SIGKILL)  # ECR acknowledged four parts; the fifth is in flight
        first.wait()
    assert first.returncode == -signal.SIGKILL
    records = list((tmp_path / "cache" / "airflow-ecr-layers" / "resume").glob("*.json"))
    assert len(records) == 1 and json.loads(records[0].read_text())["confirmed"] == 4 * PART
    stats.reset()
    second = subprocess.run(
        [*cli, "--endpoint-url", aws.endpoint_url], env=env, capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert result["layers"][0]["digest"] == sha256(data)
    sent = stats.repository(repo)
    assert sent.upload_layer_part_calls <= 7  # the six parts left (and the 2-byte empty config)
    assert sent.bytes_received == SIZE - 4 * PART + 2
    assert list((tmp_path / "cache" / "airflow-ecr-layers" / "resume").glob("*.json")) == []
