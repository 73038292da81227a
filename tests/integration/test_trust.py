"""Never publish the wrong bytes, never lose a push to a side store (issue 20, items 1-5 and 7-8).

Each test drives the real parts (the CLI, the operators, the engine over botocore to the
embedded strict ECR) and would fail on the code before its fix: see each docstring.
Resume records keyed by place and expired by age (item 9) are in ``test_resume.py``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from airflow_ecr_layers.cli import main
from airflow_ecr_layers.core.errors import SourceChangedError
from airflow_ecr_layers.core.oci.layers import LayerSpec, layers_of
from airflow_ecr_layers.core.oci.manifest import DEFAULT_LAYER_MEDIA_TYPE, EMPTY_DESCRIPTOR, OCI_MANIFEST
from airflow_ecr_layers.core.push.artifact import push_artifact
from airflow_ecr_layers.core.sources.identity import IDENTITY, SOURCE_FIELDS, Target
from airflow_ecr_layers.object_storage import open_source
from airflow_ecr_layers.operators import InitiateLayerUploadOperator, UploadLayerPartsOperator
from helpers import MiB, pattern_bytes, sha256

PART = 5 * MiB


def as_layers(*urls: str, **options: Any) -> list[LayerSpec]:
    """The layers of S3 sources, read through the test connection."""
    return layers_of([open_source(url, "aws_default") for url in urls], DEFAULT_LAYER_MEDIA_TYPE, **options)


def cli(capsys: Any, *argv: str) -> tuple[int, Any, str]:
    code = main([*argv, "--conn-id", "aws_default", "--no-progress"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else out), err


def rewrite_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    """Other bytes of the same size, the old mtime put back: what ``rsync -t``, ``cp -p``,
    tar extraction and ``aws s3 sync`` leave behind."""
    before = path.stat()
    assert len(data) == before.st_size
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns


def layer_digests(ecr: Any, repo: str, tag: str) -> dict[str, str]:
    image = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": tag}])["images"][0]
    layers = json.loads(image["imageManifest"])["layers"]
    return {layer["annotations"]["org.opencontainers.image.title"]: layer["digest"] for layer in layers}


# -- 1. a local file's identity changes whenever its bytes may have ------------------------------


def test_a_file_rewritten_with_its_old_size_and_mtime_is_read_and_pushed_again(
    capsys: Any, repo: str, ecr: Any, tmp_path: Path
) -> None:
    """Before: the rewritten file was "reused" with its old digest and ``latest`` named bytes the
    file no longer held (its identity was path, size and mtime only)."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "a.bin").write_bytes(pattern_bytes(4000, seed=1))
    (folder / "b.bin").write_bytes(pattern_bytes(3000, seed=2))
    code, first, err = cli(capsys, "push", f"file://{folder}/", f"{repo}:latest")
    assert code == 0, err

    new = pattern_bytes(4000, seed=3)
    rewrite_keeping_size_and_mtime(folder / "a.bin", new)
    code, second, err = cli(capsys, "push", f"file://{folder}/", f"{repo}:latest")
    assert code == 0, err

    assert second["totals"]["reused"] == 1  # b.bin only
    assert layer_digests(ecr, repo, "latest") == {"a.bin": sha256(new), "b.bin": sha256(pattern_bytes(3000, seed=2))}
    assert second["image_digest"] != first["image_digest"]


# -- 2. identity taken once, when the source is opened, and checked after the last byte ----------


class RewriteAfterFirstPart:
    """A progress listener that rewrites the file (same size, same mtime) once ECR confirmed a part."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path, self.data, self.done = path, data, False

    def planned(self, sizes: Any) -> None:
        pass

    def advanced(self, name: str, done: int, total: int) -> None:
        if done > 0 and not self.done:
            self.done = True
            rewrite_keeping_size_and_mtime(self.path, self.data)


def test_a_file_rewritten_while_it_is_read_fails_the_push_and_nothing_is_tagged(
    hook: Any, repo: str, ecr: Any, stats: Any, tmp_path: Path
) -> None:
    """Before: nothing noticed; the layer held the old file's first part and the new file's rest."""
    path = tmp_path / "weights.bin"
    path.write_bytes(pattern_bytes(3 * PART, seed=4))
    engine = hook.engine
    engine.progress = RewriteAfterFirstPart(path, pattern_bytes(3 * PART, seed=5))
    layers = layers_of([open_source(f"file://{path}")], DEFAULT_LAYER_MEDIA_TYPE)
    with pytest.raises(SourceChangedError, match="changed while it was read"):
        push_artifact(engine, repo, layers, tags=["v1"], part_size=PART, max_concurrency=1)
    assert engine.progress.done
    assert stats.repository(repo).complete_layer_upload_calls == 0
    assert stats.repository(repo).put_image_calls == 0
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []


class RewrittenAfterFirstRead:
    """A source whose file is rewritten (same size, same mtime) right after its first read."""

    def __init__(self, source: Any, data: bytes) -> None:
        self._source, self._data, self.rewritten = source, data, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def open_at(self, offset: int, block_size: int) -> Any:
        handle, outer = self._source.open_at(offset, block_size), self

        class Handle:
            def __getattr__(self, name: str) -> Any:
                return getattr(handle, name)

            def readinto(self, view: Any) -> int:
                count: int = handle.readinto(view)
                if not outer.rewritten:
                    outer.rewritten = True
                    rewrite_keeping_size_and_mtime(Path(outer._source.path.path), outer._data)
                return count

            def __enter__(self) -> Any:
                return self

            def __exit__(self, *exc: object) -> None:
                handle.close()

        return Handle()


def test_a_file_replaced_during_the_chained_upload_fails_the_task_before_completion(
    repo: str, tmp_path: Path, stats: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: ``UploadLayerPartsOperator`` streamed half of each file, returned a digest of that
    mix, and took the identity after the upload, so the next push reused the mix for the new file."""
    from airflow_ecr_layers.operators import lifecycle

    path = tmp_path / "model.bin"
    path.write_bytes(pattern_bytes(3 * PART, seed=6))
    wrapped: list[RewrittenAfterFirstRead] = []

    def opening(*args: Any, **kwargs: Any) -> Any:
        wrapped.append(RewrittenAfterFirstRead(open_source(*args, **kwargs), pattern_bytes(3 * PART, seed=7)))
        return wrapped[-1]

    monkeypatch.setattr(lifecycle, "open_source", opening)
    upload = InitiateLayerUploadOperator(task_id="i", repository_name=repo, aws_conn_id="aws_default").execute({})
    parts = UploadLayerPartsOperator(
        task_id="u", source=f"file://{path}", upload=upload, part_size=PART, aws_conn_id="aws_default"
    )
    with pytest.raises(SourceChangedError, match="changed while it was read"):
        parts.execute({})
    assert wrapped and wrapped[0].rewritten
    assert stats.repository(repo).complete_layer_upload_calls == 0


# -- 3. a layer skipped on the caller's word records no identity ----------------------------------


def test_a_layer_skipped_on_expected_digest_records_no_identity(
    hook: Any, repo: str, ecr: Any, put_object: Any
) -> None:
    """Before: the skipped layer recorded the source's identity with the caller's digest, so a
    wrong ``expected_digest`` became what the next push reused for that source, unread."""
    held = pattern_bytes(2000, seed=8)
    push_artifact(hook.engine, repo, as_layers(put_object("held.bin", held)))
    other = put_object("other.bin", pattern_bytes(2000, seed=9))  # not the bytes the caller vouches for
    layers = as_layers(other, expected_digest=sha256(held))
    result = push_artifact(hook.engine, repo, layers, tags=["v1"])

    assert result.layers[0].skipped and result.layers[0].bytes_read == 0
    image = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["images"][0]
    annotations = json.loads(image["imageManifest"])["layers"][0]["annotations"]
    assert IDENTITY not in annotations and not set(SOURCE_FIELDS.values()) & set(annotations)


# -- 5. a planted record is not trusted under verify_reuse ---------------------------------------


def test_verify_reuse_refuses_a_planted_record_and_pushes_the_real_bytes(
    hook: Any, repo: str, ecr: Any, put_object: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer who can read the source's metadata can plant a token that maps it to a blob of
    the same size; ``verify_reuse=True`` hashes the source and does not reuse such a record.
    (Before: there was no such option; the planted layer was reused unread.)"""
    real = pattern_bytes(6000, seed=10)
    url = put_object("model.bin", real)
    planted_blob = pattern_bytes(6000, seed=11)
    decoy = push_artifact(hook.engine, repo, as_layers(put_object("decoy.bin", planted_blob)))
    source = open_source(url, "aws_default")
    token = source.identity().token(Target(decoy.registry_id, hook.engine.calls.region, repo), 0, len(real))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": EMPTY_DESCRIPTOR.to_json(),
            "layers": [
                {
                    "mediaType": DEFAULT_LAYER_MEDIA_TYPE,
                    "digest": sha256(planted_blob),
                    "size": len(planted_blob),
                    "annotations": {"org.opencontainers.image.title": "model.bin", IDENTITY: token},
                }
            ],
        }
    )
    ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="latest")

    trusting = push_artifact(
        hook.engine,
        repo,
        as_layers(url),
        tags=["trusting"],
        reuse_from="latest",
    )
    assert trusting.layers[0].reused and trusting.layers[0].digest == sha256(planted_blob)  # the documented risk

    with caplog.at_level(logging.WARNING, logger="airflow_ecr_layers"):
        verified = push_artifact(
            hook.engine,
            repo,
            as_layers(url),
            tags=["verified"],
            reuse_from="latest",
            verify_reuse=True,
        )
    assert not verified.layers[0].reused and verified.layers[0].digest == sha256(real)
    assert "is not what it holds now" in caplog.text
    assert layer_digests(ecr, repo, "verified") == {"model.bin": sha256(real)}


# -- 7. a failing resume store never takes a push down --------------------------------------------


class BrokenStore:
    """A resume store whose every call fails, as a full disk or a refused Variable write does."""

    min_interval = 0.0

    def __init__(self) -> None:
        self.calls = 0

    def _fail(self, *args: Any) -> Any:
        self.calls += 1
        raise RuntimeError("the store is down")

    load = save = delete = _fail


def test_a_resume_store_that_fails_costs_one_warning_not_the_push(
    hook: Any, repo: str, put_object: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the store's first exception failed the push."""
    data = [pattern_bytes(2 * PART + n, seed=20 + n) for n in range(3)]
    urls = [put_object(f"layer-{n}.bin", d) for n, d in enumerate(data)]
    store = BrokenStore()
    with caplog.at_level(logging.WARNING, logger="airflow_ecr_layers"):
        result = push_artifact(
            hook.engine,
            repo,
            as_layers(*urls),
            tags=["v1"],
            part_size=PART,
            resume=store,
        )
    assert [layer.digest for layer in result.layers] == [sha256(d) for d in data]
    warnings = [r for r in caplog.records if "resume record" in r.getMessage()]
    assert len(warnings) == 1 and "the push goes on without resume" in warnings[0].getMessage()
    assert store.calls == 1  # after the first failure the store is left alone


def test_a_variable_store_that_cannot_reach_airflow_costs_one_warning(
    hook: Any, repo: str, put_object: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_ecr_layers import resume_variables

    class Unreachable:
        @staticmethod
        def get(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("execution API unreachable")

        set = delete = get

    monkeypatch.setattr(resume_variables, "Variable", Unreachable)
    data = pattern_bytes(PART + 1, seed=30)
    store = resume_variables.VariableResumeStore(resume_variables.variable_name("d", "t", "r", -1))
    with caplog.at_level(logging.WARNING, logger="airflow_ecr_layers"):
        result = push_artifact(
            hook.engine,
            repo,
            as_layers(put_object("v.bin", data)),
            resume=store,
        )
    assert result.layers[0].digest == sha256(data)
    assert sum("resume record" in r.getMessage() for r in caplog.records) == 1


def test_the_cli_pushes_with_an_unwritable_cache_folder(
    capsys: Any,
    repo: str,
    aws: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: the state file could not be written and the push failed. (A file where the cache
    folder should be: root ignores permission bits, so CI, which runs as root, needs this.)"""
    for key, value in aws.env().items():
        monkeypatch.setenv(key, value)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    artifact = tmp_path / "a.bin"
    artifact.write_bytes(pattern_bytes(1000, seed=31))
    with caplog.at_level(logging.WARNING, logger="airflow_ecr_layers"):
        code = main(["push", f"file://{artifact}", f"{repo}:v1", "-v", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["layers"][0]["digest"] == sha256(pattern_bytes(1000, seed=31))
    assert sum("the push goes on without resume" in r.getMessage() for r in caplog.records) == 1


# -- 8. reuse without ecr:BatchGetImage is a full push, not a failure ----------------------------


def test_batch_get_image_denied_means_nothing_to_reuse(
    hook: Any, repo: str, put_object: Any, stats: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: AccessDeniedException on BatchGetImage (a role with the documented minimum
    permissions) failed every push whose tag already existed."""
    data = pattern_bytes(3000, seed=40)
    url = put_object("denied.bin", data)
    push_artifact(hook.engine, repo, as_layers(url), tags=["v1"])

    class Denied:
        status_code = 400

    def deny(**kwargs: Any) -> Any:
        error = {"Code": "AccessDeniedException", "Message": "not authorized to perform: ecr:BatchGetImage"}
        return Denied(), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}

    client = hook.engine.calls.client
    client.meta.events.register("before-call.ecr.BatchGetImage", deny)
    try:
        with caplog.at_level(logging.WARNING, logger="airflow_ecr_layers"):
            again = push_artifact(hook.engine, repo, as_layers(url), tags=["v1"])
    finally:
        client.meta.events.unregister("before-call.ecr.BatchGetImage", deny)
    assert again.layers[0].digest == sha256(data) and not again.layers[0].reused
    denied = [r.getMessage() for r in caplog.records if "ecr:BatchGetImage" in r.getMessage()]
    assert len(denied) == 1 and "every layer is read and pushed in full" in denied[0]
