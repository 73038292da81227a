"""Operators one by one (execute with a real hook against the strict embedded ECR and S3)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_ecr_layers.core.errors import InvalidInputError, RepositoryNotFoundError, SourceError
from airflow_ecr_layers.core.sources.identity import IDENTITY
from airflow_ecr_layers.operators import (
    CompleteLayerUploadOperator,
    InitiateLayerUploadOperator,
    PushArtifactOperator,
    PutImageOperator,
    UploadLayerPartsOperator,
)
from helpers import MiB, pattern_bytes, sha256

AWS = {"aws_conn_id": "aws_default"}


def _nothing_written(ecr: Any, stats: Any, repo: str | None = None) -> None:
    total = stats.total()
    assert (total.initiate_layer_upload_calls, total.upload_layer_part_calls, total.put_image_calls) == (0, 0, 0)
    if repo:
        assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []


def test_four_steps_chain_by_their_results(repo: str, put_object: Any, ecr: Any) -> None:
    data = pattern_bytes(11 * MiB + 5)
    url = put_object("model.bin", data)
    initiate = InitiateLayerUploadOperator(task_id="i", repository_name=repo, **AWS).execute({})
    assert set(initiate) == {"registry_id", "repository_name", "upload_id", "part_size"}
    parts = UploadLayerPartsOperator(task_id="u", source=url, upload=initiate, part_size=5 * MiB, **AWS).execute({})
    assert parts["digest"] == sha256(data) and parts["size"] == len(data) and parts["parts"] == 3
    assert parts["last_byte_received"] == len(data) - 1 and parts["upload_id"] == initiate["upload_id"]
    done = CompleteLayerUploadOperator(task_id="c", upload=parts, **AWS).execute({})
    assert done["layer_digest"] == sha256(data) and done["size"] == len(data)
    put = PutImageOperator(task_id="p", repository_name=repo, layers=[done], tags=["v1", "v2"], **AWS).execute({})
    assert put["tags"] == ["v1", "v2"] and put["manifest_media_type"] == "application/vnd.oci.image.manifest.v1+json"
    stored = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v2"}])["images"][0]["imageManifest"]
    assert sha256(stored.encode()) == put["image_digest"] and len(stored) == put["manifest_size"]
    for result in (initiate, parts, done, put):
        assert json.loads(json.dumps(result)) == result  # JSON-safe, no bytes, no datetimes


def test_put_image_takes_a_single_result_and_a_string_tag(repo: str, put_object: Any) -> None:
    url = put_object("one", b"x" * 10)
    initiate = InitiateLayerUploadOperator(task_id="i", repository_name=repo, **AWS).execute({})
    parts = UploadLayerPartsOperator(task_id="u", source=url, upload=initiate, **AWS).execute({})
    done = CompleteLayerUploadOperator(task_id="c", upload=parts, **AWS).execute({})
    put = PutImageOperator(task_id="p", repository_name=repo, layers=done, tags="only", **AWS).execute({})
    assert put["tags"] == ["only"]


def test_push_artifact_operator(repo: str, put_object: Any, ecr: Any) -> None:
    data = pattern_bytes(6 * MiB + 1)
    result = PushArtifactOperator(
        task_id="push",
        source=put_object("models/m.onnx", data),
        source_conn_id="aws_default",
        repository_name=repo,
        tags=["latest"],
        artifact_type="application/vnd.example.model.v1",
        layer_media_type="application/vnd.example.onnx",
        annotations={"org.opencontainers.image.version": "1"},
        **AWS,
    ).execute({})
    assert result["layers"][0]["digest"] == sha256(data)
    manifest = json.loads(
        ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "latest"}])["images"][0]["imageManifest"]
    )
    assert manifest["artifactType"] == "application/vnd.example.model.v1"
    assert manifest["layers"][0]["mediaType"] == "application/vnd.example.onnx"
    annotations = manifest["layers"][0]["annotations"]
    assert annotations.pop(IDENTITY).startswith("sha256:")  # the source's identity, for the next push
    assert annotations == {"org.opencontainers.image.title": "m.onnx"}
    assert manifest["annotations"] == {"org.opencontainers.image.version": "1"}


# --- bad input: a clear error naming the value, before anything is written -------------


def test_missing_source(repo: str, bucket: str, ecr: Any, stats: Any) -> None:
    with pytest.raises(SourceError, match="s3://.*artifacts/nope.bin.*does not exist"):
        PushArtifactOperator(task_id="p", source="s3://artifacts/nope.bin", repository_name=repo, **AWS).execute({})
    _nothing_written(ecr, stats, repo)


def test_source_is_a_directory(repo: str, put_object: Any, ecr: Any, stats: Any) -> None:
    put_object("dir/a.bin", b"a")
    with pytest.raises(SourceError, match="is a directory"):
        PushArtifactOperator(task_id="p", source="s3://artifacts/dir", repository_name=repo, **AWS).execute({})
    _nothing_written(ecr, stats, repo)


def test_empty_source_is_refused(repo: str, put_object: Any, ecr: Any, stats: Any) -> None:
    with pytest.raises(SourceError, match="empty"):
        PushArtifactOperator(task_id="p", source=put_object("empty", b""), repository_name=repo, **AWS).execute({})
    _nothing_written(ecr, stats, repo)


def test_missing_repository_is_named(put_object: Any, ecr: Any, stats: Any) -> None:
    url = put_object("m", b"m")
    with pytest.raises(RepositoryNotFoundError, match=r"'no/such-repo'.*123456789012"):
        PushArtifactOperator(task_id="p", source=url, repository_name="no/such-repo", **AWS).execute({})
    _nothing_written(ecr, stats)


@pytest.mark.parametrize("part_size", [1024, 21 * MiB])
def test_part_size_out_of_range(part_size: int, repo: str, put_object: Any, ecr: Any, stats: Any) -> None:
    url = put_object("m", b"m" * 100)
    with pytest.raises(InvalidInputError, match=str(part_size)):
        PushArtifactOperator(task_id="p", source=url, repository_name=repo, part_size=part_size, **AWS).execute({})
    _nothing_written(ecr, stats, repo)


@pytest.mark.parametrize("max_concurrency", [0, -1, "0", "two"])
def test_max_concurrency_below_one_is_refused(
    max_concurrency: Any, repo: str, put_object: Any, ecr: Any, stats: Any
) -> None:
    """0 used to become the default of 2 without a word."""
    url = put_object("m", b"m" * 100)
    with pytest.raises(InvalidInputError, match="max_concurrency"):
        PushArtifactOperator(
            task_id="p", source=url, repository_name=repo, max_concurrency=max_concurrency, **AWS
        ).execute({})
    _nothing_written(ecr, stats, repo)


@pytest.mark.parametrize("tags", [["bad tag"], ["v1", "v1"], [".x"]])
def test_invalid_tags(tags: list[str], repo: str, put_object: Any, ecr: Any, stats: Any) -> None:
    url = put_object("m", b"m")
    with pytest.raises(InvalidInputError, match="tag"):
        PushArtifactOperator(task_id="p", source=url, repository_name=repo, tags=tags, **AWS).execute({})
    _nothing_written(ecr, stats, repo)


@pytest.mark.parametrize("name", ["UPPER", "a", "bad//name"])
def test_invalid_repository_name(name: str, put_object: Any, ecr: Any, stats: Any) -> None:
    with pytest.raises(InvalidInputError, match=repr(name)):
        PushArtifactOperator(task_id="p", source=put_object("m", b"m"), repository_name=name, **AWS).execute({})
    _nothing_written(ecr, stats)


def test_invalid_registry_id(repo: str, put_object: Any, ecr: Any, stats: Any) -> None:
    with pytest.raises(InvalidInputError, match="'12'"):
        PushArtifactOperator(
            task_id="p", source=put_object("m", b"m"), repository_name=repo, registry_id="12", **AWS
        ).execute({})
    _nothing_written(ecr, stats, repo)


@pytest.mark.parametrize(
    "upload,message",
    [
        ({"upload_id": "u"}, "missing 'registry_id'"),
        ("not a dict", "result dict"),
        ({"registry_id": "1", "repository_name": "r", "upload_id": "u", "part_size": "big"}, "'part_size' is str"),
    ],
)
def test_malformed_upstream_results(upload: Any, message: str, ecr: Any, stats: Any) -> None:
    with pytest.raises(InvalidInputError, match=message):
        UploadLayerPartsOperator(task_id="u", source="s3://artifacts/x", upload=upload, **AWS).execute({})
    with pytest.raises(InvalidInputError, match=message):
        CompleteLayerUploadOperator(task_id="c", upload=upload, **AWS).execute({})
    _nothing_written(ecr, stats)


def test_complete_needs_the_streamed_digest(ecr: Any, stats: Any) -> None:
    upload = {"registry_id": "123456789012", "repository_name": "r1", "upload_id": "u", "part_size": 5 * MiB}
    with pytest.raises(InvalidInputError, match="missing 'digest'"):
        CompleteLayerUploadOperator(task_id="c", upload=upload, **AWS).execute({})


def test_put_image_with_malformed_layer(repo: str, ecr: Any, stats: Any) -> None:
    with pytest.raises(InvalidInputError, match="missing"):
        PutImageOperator(task_id="p", repository_name=repo, layers=[{"digest": "sha256:" + "a" * 64}], **AWS).execute(
            {}
        )
    _nothing_written(ecr, stats, repo)


def test_retry_policy_reaches_the_hook() -> None:
    from airflow_ecr_layers.core.ecr.retry import RetryPolicy

    operator = PushArtifactOperator(
        task_id="p",
        source="s3://a/b",
        repository_name="team/models",
        upload_retry_policy={"max_attempts": 2, "max_total_seconds": 30},
        **AWS,
    )
    assert operator.hook.retry_policy == RetryPolicy(max_attempts=2, max_total_seconds=30)
    with pytest.raises(InvalidInputError, match="max_tries"):
        PushArtifactOperator(task_id="q", source="s3://a/b", repository_name="r1", upload_retry_policy={"max_tries": 2})


def test_our_retry_settings_under_airflows_retry_policy_name_still_work_with_a_warning() -> None:
    from airflow_ecr_layers.core.ecr.retry import RetryPolicy

    with pytest.warns(DeprecationWarning, match="upload_retry_policy"):
        operator = PushArtifactOperator(
            task_id="p",
            source="s3://a/b",
            repository_name="team/models",
            retry_policy={"max_attempts": 2, "max_total_seconds": 30},
            **AWS,
        )
    assert operator.hook.retry_policy == RetryPolicy(max_attempts=2, max_total_seconds=30)
    # nothing of ours where Airflow's task runner looks (Airflow before 3.3 has no retry_policy at all)
    assert getattr(operator, "retry_policy", None) is None


def test_airflows_own_retry_policy_goes_to_the_task_not_to_the_uploads() -> None:
    """Airflow 3.3 calls ``task.retry_policy.evaluate(...)`` when a task fails: it must be Airflow's."""
    retry_policy = pytest.importorskip("airflow.sdk.definitions.retry_policy")
    from airflow_ecr_layers.core.ecr.retry import RetryPolicy

    airflows = retry_policy.ExceptionRetryPolicy(rules=[])
    operator = PushArtifactOperator(
        task_id="p", source="s3://a/b", repository_name="team/models", retry_policy=airflows, **AWS
    )
    assert operator.retry_policy is airflows
    assert operator.hook.retry_policy == RetryPolicy()


def test_manifest_over_ecr_limit_is_refused_before_any_upload(repo: str, put_object: Any, ecr: Any, stats: Any) -> None:
    url = put_object("m", b"m")
    with pytest.raises(InvalidInputError, match="4194304"):
        PushArtifactOperator(
            task_id="p", source=url, repository_name=repo, annotations={"notes": "x" * 4_194_304}, **AWS
        ).execute({})
    _nothing_written(ecr, stats, repo)


def test_artifact_over_max_layer_size_is_refused_before_any_upload(
    repo: str, tmp_path: Any, ecr: Any, stats: Any
) -> None:
    from airflow_ecr_layers.core.limits import MAX_LAYER_SIZE

    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as handle:  # sparse: no disk space used
        handle.truncate(MAX_LAYER_SIZE + 1)
    with pytest.raises(SourceError, match="maximum layer size"):
        PushArtifactOperator(task_id="p", source=f"file://{huge}", repository_name=repo, **AWS).execute({})
    _nothing_written(ecr, stats, repo)


def test_expected_digest_mismatch_through_the_operator(repo: str, put_object: Any, ecr: Any, stats: Any) -> None:
    from airflow_ecr_layers.core.errors import DigestMismatchError

    wrong = "sha256:" + "9" * 64
    with pytest.raises(DigestMismatchError, match=wrong):
        PushArtifactOperator(
            task_id="p",
            source=put_object("m", b"real bytes"),
            repository_name=repo,
            tags=["v1"],
            expected_digest=wrong,
            **AWS,
        ).execute({})
    assert stats.total().complete_layer_upload_calls == 0 and stats.total().put_image_calls == 0
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []


def test_artifact_with_subject_refers_to_an_image(repo: str, put_object: Any, ecr: Any) -> None:
    image = PushArtifactOperator(
        task_id="img", source=put_object("app.bin", b"app"), repository_name=repo, tags=["app"], **AWS
    ).execute({})
    stored = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "app"}])["images"][0]["imageManifest"]
    sbom = PushArtifactOperator(
        task_id="sbom",
        source=put_object("sbom.json", b'{"sbom": true}'),
        repository_name=repo,
        artifact_type="application/spdx+json",
        subject=image["image_digest"],
        **AWS,
    ).execute({})
    manifest = json.loads(
        ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": sbom["image_digest"]}])["images"][0][
            "imageManifest"
        ]
    )
    assert manifest["subject"] == {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": image["image_digest"],
        "size": len(stored.encode()),
    }
    assert manifest["artifactType"] == "application/spdx+json"


def test_subject_that_is_not_in_the_repository(repo: str, put_object: Any, ecr: Any, stats: Any) -> None:
    missing = "sha256:" + "5" * 64
    with pytest.raises(InvalidInputError, match=f"subject {missing} is not an image"):
        PushArtifactOperator(
            task_id="s", source=put_object("s.json", b"{}"), repository_name=repo, subject=missing, **AWS
        ).execute({})
    _nothing_written(ecr, stats, repo)
