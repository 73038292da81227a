"""The strict ECR patches, driven over HTTP with boto3 against EmbeddedAws."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from airflow_ecr_layers.testing import strict_ecr
from airflow_ecr_layers.testing.server import EmbeddedAws, aws_env
from helpers import ROOT

MiB = 1024 * 1024
REPO = "strict/repo"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def aws() -> Iterator[EmbeddedAws]:
    with EmbeddedAws() as server:
        yield server


@pytest.fixture
def ecr(aws: EmbeddedAws) -> Any:
    aws.reset()
    client = boto3.client(
        "ecr",
        endpoint_url=aws.endpoint_url,
        region_name=aws.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    client.create_repository(repositoryName=REPO)
    return client


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = excinfo.value.response["Error"]
    return error["Code"], error["Message"]


def upload(ecr: Any, data: bytes, part_sizes: list[int] | None = None, digest: str | None = None) -> dict[str, Any]:
    """Push ``data`` as one layer in parts of the given sizes (one part by default)."""
    upload_id = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    send_parts(ecr, upload_id, data, part_sizes or [len(data)])
    result: dict[str, Any] = ecr.complete_layer_upload(
        repositoryName=REPO, uploadId=upload_id, layerDigests=[digest or sha256(data)]
    )
    return result


def send_parts(ecr: Any, upload_id: str, data: bytes, part_sizes: list[int]) -> None:
    offset = 0
    for size in part_sizes:
        part = data[offset : offset + size]
        ecr.upload_layer_part(
            repositoryName=REPO,
            uploadId=upload_id,
            partFirstByte=offset,
            partLastByte=offset + len(part) - 1,
            layerPartBlob=part,
        )
        offset += len(part)
    assert offset == len(data)


def image_manifest(layers: list[bytes], config: bytes = EMPTY_BLOB) -> str:
    config_type = OCI_EMPTY if config == EMPTY_BLOB else "application/vnd.oci.image.config.v1+json"
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": config_type, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": LAYER_TYPE, "digest": sha256(b), "size": len(b)} for b in layers],
        },
        separators=(",", ":"),
    )


# --- UploadLayerPart ---------------------------------------------------------


def test_part_over_20971520_bytes_is_rejected_and_upload_stays_usable(ecr: Any) -> None:
    upload_id = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    too_big = bytes(strict_ecr.MAX_PART_SIZE + 1)
    with pytest.raises(ClientError) as excinfo:
        ecr.upload_layer_part(
            repositoryName=REPO,
            uploadId=upload_id,
            partFirstByte=0,
            partLastByte=len(too_big) - 1,
            layerPartBlob=too_big,
        )
    code, message = error_of(excinfo)
    assert code == "InvalidLayerPartException"
    assert "20971520" in message
    assert excinfo.value.response["lastValidByteReceived"] == -1
    # Nothing of the rejected part was kept: the upload resumes at byte 0.
    send_parts(ecr, upload_id, b"abc", [3])
    done = ecr.complete_layer_upload(repositoryName=REPO, uploadId=upload_id, layerDigests=[sha256(b"abc")])
    assert done["layerDigest"] == sha256(b"abc")


def test_part_at_wrong_offset_reports_last_valid_byte(ecr: Any) -> None:
    upload_id = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    send_parts(ecr, upload_id, b"0123456789", [10])
    with pytest.raises(ClientError) as excinfo:
        ecr.upload_layer_part(
            repositoryName=REPO, uploadId=upload_id, partFirstByte=20, partLastByte=22, layerPartBlob=b"xyz"
        )
    code, message = error_of(excinfo)
    assert code == "InvalidLayerPartException"
    assert message == "First byte of the layer part is 20 instead of 10"
    assert excinfo.value.response["lastValidByteReceived"] == 9


def test_part_with_wrong_last_byte_is_rejected(ecr: Any) -> None:
    upload_id = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    with pytest.raises(ClientError) as excinfo:
        ecr.upload_layer_part(
            repositoryName=REPO, uploadId=upload_id, partFirstByte=0, partLastByte=3, layerPartBlob=b"xyz"
        )
    code, message = error_of(excinfo)
    assert code == "InvalidLayerPartException"
    assert message == "Last byte of the layer part is 3 instead of 2"


def test_more_parts_than_the_limit_are_rejected(ecr: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(strict_ecr, "MAX_PARTS", 2)  # the server runs in this process
    upload_id = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    send_parts(ecr, upload_id, b"ab", [1, 1])
    with pytest.raises(ClientError) as excinfo:
        ecr.upload_layer_part(
            repositoryName=REPO, uploadId=upload_id, partFirstByte=2, partLastByte=2, layerPartBlob=b"c"
        )
    assert error_of(excinfo) == ("InvalidLayerPartException", "A layer can have at most 2 parts")


# --- CompleteLayerUpload -----------------------------------------------------


def test_complete_without_parts_is_empty_upload_and_upload_survives(ecr: Any) -> None:
    upload_id = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    with pytest.raises(ClientError) as excinfo:
        ecr.complete_layer_upload(repositoryName=REPO, uploadId=upload_id, layerDigests=[EMPTY_DIGEST])
    assert error_of(excinfo)[0] == "EmptyUploadException"
    send_parts(ecr, upload_id, EMPTY_BLOB, [2])
    done = ecr.complete_layer_upload(repositoryName=REPO, uploadId=upload_id, layerDigests=[EMPTY_DIGEST])
    assert done["layerDigest"] == EMPTY_DIGEST


def test_small_part_before_the_last_is_rejected_and_upload_consumed(ecr: Any) -> None:
    data = bytes(5 * MiB + 2)
    upload_id = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    send_parts(ecr, upload_id, data, [5 * MiB, 1, 1])  # the middle part is 1 byte
    with pytest.raises(ClientError) as excinfo:
        ecr.complete_layer_upload(repositoryName=REPO, uploadId=upload_id, layerDigests=[sha256(data)])
    assert error_of(excinfo) == (
        "LayerPartTooSmallException",
        "All layer parts except the last part should be at least 5MB",
    )
    with pytest.raises(ClientError) as excinfo:
        ecr.complete_layer_upload(repositoryName=REPO, uploadId=upload_id, layerDigests=[sha256(data)])
    assert error_of(excinfo)[0] == "UploadNotFoundException"


def test_wrong_digest_is_invalid_layer_and_nothing_is_stored(ecr: Any) -> None:
    data = b"some layer bytes"
    wrong = sha256(b"other bytes")
    with pytest.raises(ClientError) as excinfo:
        upload(ecr, data, digest=wrong)
    code, message = error_of(excinfo)
    assert code == "InvalidLayerException"
    assert wrong in message and sha256(data) in message
    check = ecr.batch_check_layer_availability(repositoryName=REPO, layerDigests=[sha256(data), wrong])
    assert check["layers"] == []
    assert {f["failureCode"] for f in check["failures"]} == {"MissingLayerDigest"}


def test_good_upload_passes_then_same_layer_already_exists(ecr: Any) -> None:
    data = os.urandom(5 * MiB + 1)
    digest = sha256(data)
    done = upload(ecr, data, [5 * MiB, 1])
    assert done["layerDigest"] == digest

    check = ecr.batch_check_layer_availability(repositoryName=REPO, layerDigests=[digest])
    assert [(la["layerDigest"], la["layerAvailability"], la["layerSize"]) for la in check["layers"]] == [
        (digest, "AVAILABLE", 5 * MiB + 1)
    ]
    assert check["failures"] == []

    with pytest.raises(ClientError) as excinfo:
        upload(ecr, data, [5 * MiB, 1])
    code, message = error_of(excinfo)
    assert code == "LayerAlreadyExistsException"
    assert message.startswith(f"The layer with digest {digest} already exists in the repository with name '{REPO}'")


def test_stats_count_parts_and_bytes_per_repository(ecr: Any) -> None:
    with pytest.raises(ClientError, match="LayerPartTooSmallException"):
        upload(ecr, b"x" * 10, [4, 6])
    stats = strict_ecr.STATS.repository(REPO)
    assert (stats.initiate_layer_upload_calls, stats.upload_layer_part_calls, stats.bytes_received) == (1, 2, 10)
    # The 4-byte first part is too small: counted as received, not completed.
    assert (stats.complete_layer_upload_calls, stats.layers_completed) == (1, 0)
    assert strict_ecr.STATS.repository("never/used").upload_layer_part_calls == 0
    strict_ecr.reset_stats()
    assert strict_ecr.STATS.total() == strict_ecr.RepositoryStats()


def test_batch_check_with_over_100_digests_is_rejected(ecr: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        ecr.batch_check_layer_availability(repositoryName=REPO, layerDigests=[EMPTY_DIGEST] * 101)
    assert error_of(excinfo)[0] == "InvalidParameterException"


# --- PutImage ----------------------------------------------------------------


@pytest.fixture
def pushed_layer(ecr: Any) -> bytes:
    """The empty config blob and one layer, both uploaded to REPO."""
    upload(ecr, EMPTY_BLOB)
    layer = b"layer-content"
    upload(ecr, layer)
    return layer


def describe_digest(ecr: Any, tag: str) -> str:
    details = ecr.describe_images(repositoryName=REPO, imageIds=[{"imageTag": tag}])["imageDetails"]
    assert len(details) == 1
    digest: str = details[0]["imageDigest"]
    return digest


def test_put_image_with_correct_digest_succeeds_and_is_idempotent(ecr: Any, pushed_layer: bytes) -> None:
    manifest = image_manifest([pushed_layer])
    digest = sha256(manifest.encode())
    image = ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="v1", imageDigest=digest)["image"]
    assert image["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    assert describe_digest(ecr, "v1") == digest
    with pytest.raises(ClientError) as excinfo:
        ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="v1", imageDigest=digest)
    assert error_of(excinfo)[0] == "ImageAlreadyExistsException"


def test_put_image_without_digest_stores_sha256_of_manifest(ecr: Any, pushed_layer: bytes) -> None:
    manifest = image_manifest([pushed_layer]) + "\n"  # the exact bytes count
    ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="latest")
    assert describe_digest(ecr, "latest") == sha256(manifest.encode())


def test_put_image_with_wrong_digest_fails(ecr: Any, pushed_layer: bytes) -> None:
    manifest = image_manifest([pushed_layer])
    wrong = sha256(manifest.encode() + b"\n")
    with pytest.raises(ClientError) as excinfo:
        ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="v1", imageDigest=wrong)
    code, message = error_of(excinfo)
    assert code == "ImageDigestDoesNotMatchException"
    assert wrong in message and sha256(manifest.encode()) in message
    assert ecr.list_images(repositoryName=REPO)["imageIds"] == []


def test_put_image_with_never_uploaded_layer_fails(ecr: Any, pushed_layer: bytes) -> None:
    manifest = image_manifest([pushed_layer, b"never uploaded"])
    with pytest.raises(ClientError) as excinfo:
        ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="v1")
    code, message = error_of(excinfo)
    assert code == "LayersNotFoundException"
    assert sha256(b"never uploaded") in message
    assert sha256(pushed_layer) not in message


def test_put_image_requires_the_empty_config_blob_too(ecr: Any) -> None:
    layer = b"only the layer"
    upload(ecr, layer)
    with pytest.raises(ClientError) as excinfo:
        ecr.put_image(repositoryName=REPO, imageManifest=image_manifest([layer]), imageTag="v1")
    code, message = error_of(excinfo)
    assert code == "LayersNotFoundException"
    assert EMPTY_DIGEST in message


def test_put_image_with_wrong_descriptor_size_fails(ecr: Any, pushed_layer: bytes) -> None:
    manifest = json.loads(image_manifest([pushed_layer]))
    manifest["layers"][0]["size"] += 1
    with pytest.raises(ClientError) as excinfo:
        ecr.put_image(repositoryName=REPO, imageManifest=json.dumps(manifest), imageTag="v1")
    assert error_of(excinfo)[0] == "InvalidParameterException"


def test_put_image_into_missing_repository_fails(ecr: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        ecr.put_image(repositoryName="no/such-repo", imageManifest=image_manifest([]), imageTag="v1")
    code, message = error_of(excinfo)
    assert code == "RepositoryNotFoundException"
    assert "no/such-repo" in message


def test_put_image_with_oversized_manifest_fails(ecr: Any, pushed_layer: bytes) -> None:
    manifest = json.loads(image_manifest([pushed_layer]))
    manifest["annotations"] = {"padding": ""}
    text = json.dumps(manifest)
    manifest["annotations"]["padding"] = "x" * (strict_ecr.MAX_MANIFEST_CHARS - len(text) + 1)
    text = json.dumps(manifest)
    assert len(text) == strict_ecr.MAX_MANIFEST_CHARS + 1
    with pytest.raises(ClientError) as excinfo:
        ecr.put_image(repositoryName=REPO, imageManifest=text, imageTag="v1")
    code, message = error_of(excinfo)
    assert code == "InvalidParameterException"
    assert str(strict_ecr.MAX_MANIFEST_CHARS) in message


def test_put_image_with_media_type_parameters_fails(ecr: Any, pushed_layer: bytes) -> None:
    with pytest.raises(ClientError) as excinfo:
        ecr.put_image(
            repositoryName=REPO,
            imageManifest=image_manifest([pushed_layer]),
            imageManifestMediaType=OCI_MANIFEST + "; charset=utf-8",
            imageTag="v1",
        )
    code, message = error_of(excinfo)
    assert code == "InvalidParameterException"
    assert "charset" in message


def test_put_image_with_contradicting_media_type_fails(ecr: Any, pushed_layer: bytes) -> None:
    with pytest.raises(ClientError) as excinfo:
        ecr.put_image(
            repositoryName=REPO,
            imageManifest=image_manifest([pushed_layer]),
            imageManifestMediaType="application/vnd.docker.distribution.manifest.v2+json",
            imageTag="v1",
        )
    assert error_of(excinfo)[0] == "InvalidParameterException"


def test_put_image_with_invalid_json_fails(ecr: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        ecr.put_image(repositoryName=REPO, imageManifest="{not json", imageTag="v1")
    assert error_of(excinfo) == (
        "InvalidParameterException",
        "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'",
    )


def test_index_may_only_reference_pushed_images(ecr: Any, pushed_layer: bytes) -> None:
    manifest = image_manifest([pushed_layer])
    image_digest = sha256(manifest.encode())
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": image_digest, "size": len(manifest)}],
        }
    )
    with pytest.raises(ClientError) as excinfo:
        ecr.put_image(repositoryName=REPO, imageManifest=index, imageTag="multi")
    code, message = error_of(excinfo)
    assert code == "ReferencedImagesNotFoundException"
    assert image_digest in message

    ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageDigest=image_digest)  # untagged
    ecr.put_image(repositoryName=REPO, imageManifest=index, imageTag="multi")
    assert describe_digest(ecr, "multi") == sha256(index.encode())


def two_images(ecr: Any, repository: str, pushed_layer: bytes) -> tuple[str, str]:
    """Two manifests whose blobs are all in ``repository``."""
    for blob in (EMPTY_BLOB, pushed_layer, b"second"):
        upload_id = ecr.initiate_layer_upload(repositoryName=repository)["uploadId"]
        ecr.upload_layer_part(
            repositoryName=repository,
            uploadId=upload_id,
            partFirstByte=0,
            partLastByte=len(blob) - 1,
            layerPartBlob=blob,
        )
        ecr.complete_layer_upload(repositoryName=repository, uploadId=upload_id, layerDigests=[sha256(blob)])
    return image_manifest([pushed_layer]), image_manifest([b"second"])


def test_immutable_tag_cannot_move(ecr: Any, pushed_layer: bytes) -> None:
    ecr.create_repository(repositoryName="immutable", imageTagMutability="IMMUTABLE")
    strict_ecr.install()  # idempotent
    first, second = two_images(ecr, "immutable", pushed_layer)
    ecr.put_image(repositoryName="immutable", imageManifest=first, imageTag="v1")
    with pytest.raises(ClientError) as excinfo:
        ecr.put_image(repositoryName="immutable", imageManifest=second, imageTag="v1")
    assert error_of(excinfo)[0] == "ImageTagAlreadyExistsException"


@pytest.mark.parametrize(
    ("mode", "filters", "movable", "fixed"),
    [
        # moto ran the filters as regexes: "*-dev" failed with a 500, and "release-*"
        # exempted "release" ("release" then any number of "-").
        ("IMMUTABLE_WITH_EXCLUSION", ["*-dev", "latest"], ["x-dev", "latest"], ["v1", "latest-2", "dev"]),
        ("MUTABLE_WITH_EXCLUSION", ["release-*", "a*b"], ["latest", "release", "ab-c"], ["release-1", "a-b", "ab"]),
    ],
)
def test_exclusion_filters_are_wildcards_over_the_whole_tag(
    ecr: Any, pushed_layer: bytes, mode: str, filters: list[str], movable: list[str], fixed: list[str]
) -> None:
    ecr.create_repository(
        repositoryName="excluding",
        imageTagMutability=mode,
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": f} for f in filters],
    )
    first, second = two_images(ecr, "excluding", pushed_layer)
    for tag in movable + fixed:
        ecr.put_image(repositoryName="excluding", imageManifest=first, imageTag=tag)
    for tag in movable:
        ecr.put_image(repositoryName="excluding", imageManifest=second, imageTag=tag)
        assert describe_digest_in(ecr, "excluding", tag) == sha256(second.encode())
    for tag in fixed:
        with pytest.raises(ClientError) as excinfo:
            ecr.put_image(repositoryName="excluding", imageManifest=second, imageTag=tag)
        assert error_of(excinfo)[0] == "ImageTagAlreadyExistsException", tag


def describe_digest_in(ecr: Any, repository: str, tag: str) -> str:
    details = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
    digest: str = details[0]["imageDigest"]
    return digest


@pytest.mark.parametrize(
    ("params", "code", "words"),
    [
        (
            {
                "imageTagMutability": "MUTABLE_WITH_EXCLUSION",
                "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "v1/x"}],
            },
            "InvalidParameterException",
            "^[0-9a-zA-Z._*-]{1,128}$",
        ),
        (
            {
                "imageTagMutability": "MUTABLE_WITH_EXCLUSION",
                "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": str(i)} for i in range(6)],
            },
            "InvalidParameterException",
            "less than or equal to 5",
        ),
        ({"encryptionConfiguration": {"encryptionType": "AES256", "kmsKey": "k"}}, "InvalidParameterException", "KMS"),
        ({"encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": "alias/none"}}, "KmsException", "alias/none"),
    ],
)
def test_repository_settings_ecr_refuses(ecr: Any, params: dict[str, Any], code: str, words: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        ecr.create_repository(repositoryName="refused", **params)
    assert error_of(excinfo)[0] == code and words in error_of(excinfo)[1]


def test_put_image_tag_mutability_refuses_filters_with_a_plain_mode(ecr: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        ecr.put_image_tag_mutability(
            repositoryName=REPO,
            imageTagMutability="IMMUTABLE",
            imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "dev-*"}],
        )
    assert error_of(excinfo)[0] == "InvalidParameterException"
    assert ecr.describe_repositories(repositoryNames=[REPO])["repositories"][0]["imageTagMutability"] == "MUTABLE"


def test_a_kms_key_is_reported_as_its_arn(ecr: Any, aws: EmbeddedAws) -> None:
    kms = boto3.client(
        "kms", endpoint_url=aws.endpoint_url, region_name=aws.region, aws_access_key_id="t", aws_secret_access_key="t"
    )
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/images", TargetKeyId=key["KeyId"])
    for i, given in enumerate((key["KeyId"], "alias/images", key["Arn"])):
        created = ecr.create_repository(
            repositoryName=f"keyed{i}", encryptionConfiguration={"encryptionType": "KMS_DSSE", "kmsKey": given}
        )
        assert created["repository"]["encryptionConfiguration"] == {"encryptionType": "KMS_DSSE", "kmsKey": key["Arn"]}


# --- install / uninstall, environment, standalone server ---------------------


def test_uninstall_restores_lax_moto_and_install_is_idempotent(ecr: Any) -> None:
    try:
        strict_ecr.uninstall()
        assert not strict_ecr.is_installed()
        lax = upload(ecr, b"lax", digest=sha256(b"something else"))  # moto ignores the digest sent
        assert lax["layerDigest"] == sha256(b"lax")
    finally:
        strict_ecr.install()
        strict_ecr.install()
    assert strict_ecr.is_installed()
    with pytest.raises(ClientError) as excinfo:
        upload(ecr, b"strict", digest=sha256(b"something else"))
    assert error_of(excinfo)[0] == "InvalidLayerException"


def test_aws_env_points_a_default_boto3_client_at_the_server(
    aws: EmbeddedAws, ecr: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = aws_env(aws.endpoint_url, aws.region)
    assert env == {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": aws.endpoint_url,
    }
    assert aws.env() == env
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_ECR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = boto3.session.Session().client("ecr")
    names = [r["repositoryName"] for r in client.describe_repositories()["repositories"]]
    assert names == [REPO]


def test_standalone_server_prints_endpoint_and_stops_on_sigterm() -> None:
    root = ROOT
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_ecr_layers.testing.server"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=root,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline().strip()
        assert first_line.startswith("ENDPOINT http://127.0.0.1:")
        endpoint = first_line.split(" ", 1)[1]
        client = boto3.client(
            "ecr",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_repository(repositoryName="other")
        with pytest.raises(ClientError) as excinfo:  # strict mode is on in that process
            client.complete_layer_upload(
                repositoryName="other",
                uploadId=client.initiate_layer_upload(repositoryName="other")["uploadId"],
                layerDigests=[EMPTY_DIGEST],
            )
        assert error_of(excinfo)[0] == "EmptyUploadException"
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_a_moved_tag_leaves_its_old_image_untagged_as_ecr_does(ecr: Any, repo: str) -> None:
    """moto deletes an image whose last tag moves to another image; ECR keeps it, untagged."""
    first, second = (
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [],
                "annotations": {"n": str(n)},
            }
        )
        for n in (1, 2)
    )
    for manifest in (first, second):
        ecr.put_image(
            repositoryName=repo,
            imageManifest=manifest,
            imageTag="moving",
            imageDigest="sha256:" + hashlib.sha256(manifest.encode()).hexdigest(),
        )
    details = {
        d["imageDigest"]: d.get("imageTags", []) for d in ecr.describe_images(repositoryName=repo)["imageDetails"]
    }
    assert details == {
        "sha256:" + hashlib.sha256(first.encode()).hexdigest(): [],
        "sha256:" + hashlib.sha256(second.encode()).hexdigest(): ["moving"],
    }
    old = ecr.batch_get_image(
        repositoryName=repo,
        imageIds=[{"imageDigest": "sha256:" + hashlib.sha256(first.encode()).hexdigest()}],
        acceptedMediaTypes=["application/vnd.oci.image.index.v1+json"],
    )["images"]
    assert old and old[0]["imageManifest"] == first


def test_an_image_with_more_than_500_layers_is_refused_as_real_ecr_refuses_it(ecr: Any, repo: str) -> None:
    """Real ECR answers PutImage with "Limit on number of layers per image exceeded" past about 500."""
    layers = [{"mediaType": "application/octet-stream", "digest": f"sha256:{n:064x}", "size": 1} for n in range(501)]
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": f"sha256:{0:064x}", "size": 2},
        "layers": layers,
    }
    with pytest.raises(ClientError) as refused:
        ecr.put_image(repositoryName=repo, imageManifest=json.dumps(manifest), imageTag="many")
    assert refused.value.response["Error"]["Code"] == "LimitExceededException"
    assert "layers per image" in refused.value.response["Error"]["Message"]
