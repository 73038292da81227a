"""The hook against the strict embedded ECR over HTTP, reading sources from S3 through s3fs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_ecr_layers.core.errors import (
    DigestMismatchError,
    ImageTagAlreadyExistsError,
    LayersNotFoundError,
)
from airflow_ecr_layers.core.limits import MIN_PART_SIZE
from airflow_ecr_layers.core.oci.layers import LayerSpec
from airflow_ecr_layers.core.oci.manifest import Descriptor, Manifest, build_image_manifest
from airflow_ecr_layers.core.push.artifact import push_artifact, put_artifact_manifest
from airflow_ecr_layers.core.sources.blobs import BytesSource
from airflow_ecr_layers.object_storage import open_source
from airflow_ecr_layers.operators.xcom import descriptor_of
from helpers import MiB, pattern_bytes, sha256

PART = MIN_PART_SIZE


def _manifest_in_ecr(ecr: Any, repo: str, tag: str) -> bytes:
    image = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": tag}])["images"][0]
    return image["imageManifest"].encode("utf-8")


@pytest.mark.parametrize(
    "size,parts",
    [
        (1, 1),
        (PART, 1),
        (3 * PART, 3),
        (2 * PART + 12_345, 3),
        (12 * PART + 1, 13),
    ],
    ids=["1-byte", "exactly-one-part", "exact-multiple", "not-a-multiple", "many-parts"],
)
def test_push_sizes_digests_check_out_against_ecr(
    size: int, parts: int, hook: Any, repo: str, put_object: Any, ecr: Any, stats: Any
) -> None:
    data = pattern_bytes(size, seed=size)
    source = open_source(put_object(f"blob-{size}", data), "aws_default")
    result = push_artifact(
        hook.engine,
        repo,
        [LayerSpec(source, "application/octet-stream", title=source.title)],
        tags=["v1"],
        part_size=PART,
    ).as_dict()
    layer = result["layers"][0]
    assert layer["digest"] == sha256(data)
    assert layer["size"] == size
    manifest_bytes = _manifest_in_ecr(ecr, repo, "v1")
    assert result["image_digest"] == sha256(manifest_bytes)
    assert json.loads(manifest_bytes)["layers"][0]["digest"] == sha256(data)
    found = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[layer["digest"]])["layers"]
    assert found[0]["layerAvailability"] == "AVAILABLE" and found[0]["layerSize"] == size
    # the blob went up in exactly the planned parts (plus one 2-byte part for the empty config)
    assert stats.repository(repo).upload_layer_part_calls == parts + 1
    assert stats.repository(repo).bytes_received == size + 2
    json.dumps(result)  # JSON-safe


def test_service_part_size_is_used_by_default(hook: Any, repo: str, put_object: Any, stats: Any) -> None:
    data = pattern_bytes(21 * MiB)
    session = hook.calls.initiate_layer_upload(repo)
    uploaded = hook.engine.upload_parts(session, open_source(put_object("x", data), "aws_default"))
    assert uploaded.part_size == session.part_size == 10 * MiB
    assert uploaded.parts == 3 and uploaded.digest == sha256(data)


def test_repush_is_a_success_and_uploads_nothing_with_expected_digest(
    hook: Any, repo: str, put_object: Any, ecr: Any, stats: Any
) -> None:
    data = pattern_bytes(PART + 7)
    source = open_source(put_object("again", data), "aws_default")
    spec = LayerSpec(source, "application/octet-stream", title="again", expected_digest=sha256(data))
    first = push_artifact(hook.engine, repo, [spec], tags=["v1"]).as_dict()
    manifest_before = _manifest_in_ecr(ecr, repo, "v1")
    stats.reset()
    second = push_artifact(hook.engine, repo, [spec], tags=["v1"]).as_dict()
    assert second["image_digest"] == first["image_digest"]
    assert second["layers"][0]["skipped"] is True
    assert stats.repository(repo).upload_layer_part_calls == 0
    assert _manifest_in_ecr(ecr, repo, "v1") == manifest_before


def test_layer_already_exists_at_complete_counts_as_success(hook: Any, repo: str, put_object: Any) -> None:
    data = pattern_bytes(100)
    source = open_source(put_object("dup", data), "aws_default")
    first = hook.engine.push_blob(repo, source, media_type="application/octet-stream")
    second = hook.engine.push_blob(repo, source, media_type="application/octet-stream")  # ECR: LayerAlreadyExists
    assert first.digest == second.digest == sha256(data)
    assert (first.skipped, second.skipped) == (False, True)


def test_expected_digest_mismatch_never_completes_or_tags(
    hook: Any, repo: str, put_object: Any, ecr: Any, stats: Any
) -> None:
    data = pattern_bytes(PART + 1)
    wrong = "sha256:" + "0" * 64
    source = open_source(put_object("m", data), "aws_default")
    with pytest.raises(DigestMismatchError, match=wrong):
        push_artifact(
            hook.engine, repo, [LayerSpec(source, "application/octet-stream", expected_digest=wrong)], tags=["v1"]
        )
    assert stats.repository(repo).complete_layer_upload_calls == 0
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []


def test_digest_mismatch_at_complete_is_caught(hook: Any, repo: str, put_object: Any) -> None:
    data = pattern_bytes(300)
    session = hook.calls.initiate_layer_upload(repo)
    hook.engine.upload_parts(session, open_source(put_object("c", data), "aws_default"))
    with pytest.raises(DigestMismatchError, match=session.upload_id):
        hook.engine.complete_upload(session, "sha256:" + "1" * 64, 300)


def test_put_image_with_never_uploaded_layer_fails(hook: Any, repo: str, ecr: Any) -> None:
    ghost = {"digest": "sha256:" + "2" * 64, "size": 10, "media_type": "application/octet-stream"}
    with pytest.raises(LayersNotFoundError, match="team/models"):
        put_artifact_manifest(hook.engine, repo, [descriptor_of(ghost)], tags=["v1"])
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []


def test_put_image_with_never_uploaded_config_fails(hook: Any, repo: str, put_object: Any) -> None:
    blob = hook.engine.push_blob(
        repo, open_source(put_object("l", b"layer"), "aws_default"), media_type="application/octet-stream"
    )
    config = {"digest": "sha256:" + "3" * 64, "size": 2, "media_type": "application/vnd.oci.image.config.v1+json"}
    with pytest.raises(LayersNotFoundError):
        put_artifact_manifest(hook.engine, repo, [blob.descriptor()], config=descriptor_of(config), tags=["v1"])


def test_image_digest_must_be_sha256_of_the_manifest(hook: Any, repo: str, put_object: Any) -> None:
    """A client that sent the wrong imageDigest would fail on real ECR; the strict server agrees."""
    blob = hook.engine.push_blob(
        repo, open_source(put_object("l2", b"layer2"), "aws_default"), media_type="application/octet-stream"
    )
    hook.engine.push_blob(repo, BytesSource(b"{}"), media_type="application/vnd.oci.empty.v1+json")
    good = build_image_manifest([Descriptor("application/octet-stream", blob.digest, blob.size)])

    class Lying(Manifest):
        @property
        def digest(self) -> str:
            return "sha256:" + "4" * 64

    with pytest.raises(Exception, match="ImageDigestDoesNotMatch"):
        hook.calls.put_image(repo, Lying(good.data, good.media_type), "v1")
    assert hook.calls.put_image(repo, good, "v1").image_digest == good.digest


def test_one_put_image_per_tag_and_repush_same_tags(
    hook: Any, repo: str, put_object: Any, ecr: Any, stats: Any
) -> None:
    source = open_source(put_object("t", b"tagged"), "aws_default")
    spec = LayerSpec(source, "application/octet-stream")
    first = push_artifact(hook.engine, repo, [spec], tags=["a", "b", "c"]).as_dict()
    assert stats.repository(repo).put_image_calls == 3
    again = push_artifact(hook.engine, repo, [spec], tags=["a", "b", "c"]).as_dict()
    assert again["image_digest"] == first["image_digest"]
    details = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert len(details) == 1 and sorted(details[0]["imageTags"]) == ["a", "b", "c"]


def test_immutable_tag_is_a_clear_error(hook: Any, ecr: Any, put_object: Any) -> None:
    ecr.create_repository(repositoryName="locked", imageTagMutability="IMMUTABLE")
    push_artifact(
        hook.engine,
        "locked",
        [LayerSpec(open_source(put_object("i1", b"one"), "aws_default"), "application/octet-stream")],
        tags=["v1"],
    )
    with pytest.raises(ImageTagAlreadyExistsError, match="locked"):
        push_artifact(
            hook.engine,
            "locked",
            [LayerSpec(open_source(put_object("i2", b"two"), "aws_default"), "application/octet-stream")],
            tags=["v1"],
        )


def test_parallel_layers_keep_order(hook: Any, repo: str, put_object: Any, ecr: Any) -> None:
    blobs = [pattern_bytes(PART + i, seed=i) for i in range(3)]
    specs = [
        LayerSpec(open_source(put_object(f"p{i}", b), "aws_default"), "application/octet-stream", title=f"p{i}")
        for i, b in enumerate(blobs)
    ]
    result = push_artifact(hook.engine, repo, specs, tags=["multi"], max_concurrency=3).as_dict()
    assert [layer["digest"] for layer in result["layers"]] == [sha256(b) for b in blobs]
    manifest = json.loads(_manifest_in_ecr(ecr, repo, "multi"))
    assert [layer["annotations"]["org.opencontainers.image.title"] for layer in manifest["layers"]] == [
        "p0",
        "p1",
        "p2",
    ]


def test_file_url_source(hook: Any, repo: str, tmp_path: Any) -> None:
    path = tmp_path / "local.bin"
    data = pattern_bytes(PART + 99)
    path.write_bytes(data)
    source = open_source(f"file://{path}")
    assert source.size == len(data)
    assert hook.engine.push_blob(repo, source, media_type="application/octet-stream", part_size=PART).digest == sha256(
        data
    )


def test_the_hook_refreshes_expired_credentials_through_its_connection(
    aws: Any, repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_ecr_layers.hooks import EcrLayersHook
    from airflow_ecr_layers.testing.fault_proxy import FaultProxy, FaultRule

    data = pattern_bytes(2 * PART + 5)
    with FaultProxy(aws.endpoint_url, [FaultRule("UploadLayerPart", 2, "expired_token")]) as proxy:
        monkeypatch.setenv(
            "AIRFLOW_CONN_ECR_VIA_PROXY",
            json.dumps(
                {
                    "conn_type": "aws",
                    "login": "testing",
                    "password": "testing",
                    "extra": {"endpoint_url": proxy.endpoint_url, "region_name": aws.region},
                }
            ),
        )
        hook = EcrLayersHook(aws_conn_id="ecr_via_proxy")
        engine = hook.engine
        blob = hook.engine.push_blob(repo, BytesSource(data), media_type="application/octet-stream", part_size=PART)
    assert blob.digest == sha256(data) and len(proxy.fired) == 1
    assert engine.calls.refreshes == 1 and engine.calls.client is not hook.conn  # a client from a new session
    assert hook.engine is engine  # the hook keeps its engine (and the fresh client in it)
