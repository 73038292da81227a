"""Images built on a base image, against the embedded strict ECR: the base's layers first (copied
into the repository where missing, from another repository or account), its config kept and
ours appended; a multi-platform base gives an index whose platforms share our layers; a base
that is missing, or lacks a platform, is refused with nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from test_build_image import blob, files_in_image, write_folder

from airflow_ecr_layers.cli import main
from airflow_ecr_layers.core.build.base import BaseImage
from airflow_ecr_layers.core.build.image import build_image, files_of, platforms_of
from airflow_ecr_layers.core.ecr.references import parse_reference
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.readback.base_image import resolve_base
from airflow_ecr_layers.core.sources.identity import BUILD_PATH
from airflow_ecr_layers.operators import BuildImageOperator
from airflow_ecr_layers.storage import PlainStorage, open_sources
from airflow_ecr_layers.testing.server import EmbeddedAws
from helpers import pattern_bytes
from image_builders import BASE_CONFIG, put_base_image, put_base_index

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
BASE_DIGEST = "org.opencontainers.image.base.digest"
BASE_NAME = "org.opencontainers.image.base.name"
OTHER_ACCOUNT = "210987654321"
BASE_FILES = [
    {"bin/sh": b"#!a tiny shell\n", "bin/sleep": b"#!a tiny sleep\n", "etc/passwd": b"root:x:0:0::/root:/bin/sh\n"},
    {"etc/os-release": b"NAME=tiny\n"},
]
MODEL = {"config.json": b'{"model_type": "demo"}', "weights/model.bin": pattern_bytes(70_000, seed=5), "empty": b""}


def manifest_of(ecr: Any, repository: str, image_id: dict[str, str]) -> tuple[dict[str, Any], str]:
    (image,) = ecr.batch_get_image(
        repositoryName=repository, imageIds=[image_id], acceptedMediaTypes=[OCI_MANIFEST, OCI_INDEX]
    )["images"]
    return json.loads(image["imageManifest"]), image["imageId"]["imageDigest"]


def on(hook: Any, reference: str, platform: str | None = None) -> BaseImage:
    """The base ``reference`` names, read through the hook's engine, for the platforms named."""
    return resolve_base(hook.engine, parse_reference(reference), platforms_of(platform))


def model_files(tmp_path: Path) -> list[Any]:
    return files_of(open_sources(write_folder(tmp_path / "model", MODEL), PlainStorage(), allow_empty=True))


@pytest.fixture
def busybox(ecr: Any, hook: Any) -> dict[str, Any]:
    """A two-layer runnable base in another repository, tagged ``1.36``."""
    ecr.create_repository(repositoryName="base/busybox")
    return put_base_image(hook.engine, "base/busybox", BASE_FILES, tags=("1.36",))


def test_an_image_on_a_base_keeps_its_config_and_puts_its_layers_first(
    hook: Any, repo: str, ecr: Any, busybox: dict[str, Any], tmp_path: Path, stats: Any
) -> None:
    base_manifest, _ = manifest_of(ecr, "base/busybox", {"imageTag": "1.36"})
    base_config = json.loads(blob(ecr, "base/busybox", base_manifest["config"]["digest"]))
    stats.reset()
    result = build_image(
        hook.engine,
        repo,
        model_files(tmp_path),
        path="/models",
        tags=["v1"],
        base=on(hook, "base/busybox:1.36"),
        labels={"team": "ml"},
        annotations={"org.opencontainers.image.title": "a modelcar"},
        source_date_epoch=1_700_000_000,
    )
    manifest, digest = manifest_of(ecr, repo, {"imageTag": "v1"})
    assert digest == result.image_digest and result.base_digest == busybox["digest"]
    assert (
        result.base
        == f"{hook.calls.repository_registry_id(repo)}.dkr.ecr.{hook.calls.region}.amazonaws.com/base/busybox:1.36"
    )
    ours = [layer.digest for layer in result.layers]
    assert [layer["digest"] for layer in manifest["layers"]] == [
        *(layer["digest"] for layer in base_manifest["layers"]),
        *ours,
    ]
    assert manifest["annotations"] == {
        "org.opencontainers.image.title": "a modelcar",
        BASE_DIGEST: busybox["digest"],
        BASE_NAME: result.base,
        BUILD_PATH: "/models",  # where a pull takes the files from
    }
    config = json.loads(blob(ecr, repo, manifest["config"]["digest"]))
    assert manifest["config"]["mediaType"] == OCI_CONFIG and config["config"] == {
        **BASE_CONFIG,
        "Labels": {"vendor": "a tiny base", "team": "ml"},
    }
    assert config["rootfs"]["diff_ids"] == [*base_config["rootfs"]["diff_ids"], *ours]
    assert config["history"][: len(base_config["history"])] == base_config["history"]
    assert len(config["history"]) == len(base_config["history"]) + len(ours)
    assert (config["os"], config["architecture"], config["created"]) == ("linux", "amd64", "2023-11-14T22:13:20Z")

    # the base's layers were copied in, once; its config was read, never written
    copied = stats.repository(repo)
    base_bytes = sum(layer["size"] for layer in base_manifest["layers"])
    # ours, the base's two layers, our config, the build record's empty config
    assert copied.layers_completed == len(ours) + 2 + 1 + 1
    assert stats.repository("base/busybox").get_download_url_for_layer_calls == 3  # two layers and the config
    assert copied.bytes_received == base_bytes + sum(layer.size for layer in result.layers) + len(
        blob(ecr, repo, manifest["config"]["digest"])
    ) + len(b"{}")  # the build record's empty config
    unpacked, _ = files_in_image(ecr, repo, "v1")
    assert unpacked == {
        **{name: data for files in BASE_FILES for name, data in files.items()},
        **{f"models/{name}": data for name, data in MODEL.items()},
    }

    # again: the same digest, nothing sent, the base's layers not read again
    stats.reset()
    again = build_image(
        hook.engine,
        repo,
        model_files(tmp_path),
        path="/models",
        tags=["v2"],
        base=on(hook, "base/busybox:1.36"),
        labels={"team": "ml"},
        annotations={"org.opencontainers.image.title": "a modelcar"},
        source_date_epoch=1_700_000_000,
    )
    assert again.image_digest == result.image_digest
    assert stats.repository(repo).layers_completed == 0
    assert stats.repository("base/busybox").get_download_url_for_layer_calls == 1  # its config only


def test_a_base_in_the_same_repository_is_not_copied(
    hook: Any, repo: str, ecr: Any, tmp_path: Path, stats: Any
) -> None:
    base = put_base_image(hook.engine, repo, BASE_FILES, tags=("base",))
    stats.reset()
    result = build_image(
        hook.engine, repo, model_files(tmp_path), tags=["v1"], base=on(hook, f"{repo}@{base['digest']}")
    )
    assert stats.repository(repo).layers_completed == len(result.layers) + 1 + 1  # ours, our config, the record's
    assert result.base is not None and result.base.endswith(f"{repo}@{base['digest']}")
    assert result.images == [
        {
            "platform": "linux/amd64",
            "image_digest": result.image_digest,
            "config_digest": result.config_digest,
            "base_layers": 2,
        }
    ]


def test_a_multi_platform_base_gives_an_index_sharing_our_layers(
    hook: Any, repo: str, ecr: Any, tmp_path: Path, stats: Any
) -> None:
    ecr.create_repository(repositoryName="base/multi")
    children = [
        put_base_image(
            hook.engine, "base/multi", [{"bin/sh": f"a shell for {arch}".encode()}], platform=f"linux/{arch}"
        )
        for arch in ("amd64", "arm64/v8")
    ]
    index_digest = put_base_index(hook.engine, "base/multi", children, ("latest",))
    stats.reset()
    result = build_image(
        hook.engine, repo, model_files(tmp_path), path="/models", tags=["v1"], base=on(hook, "base/multi:latest")
    )
    index, digest = manifest_of(ecr, repo, {"imageTag": "v1"})
    assert digest == result.image_digest and result.manifest_media_type == OCI_INDEX and result.config_digest == ""
    assert index["mediaType"] == OCI_INDEX and index["annotations"][BASE_DIGEST] == index_digest
    assert [m["platform"] for m in index["manifests"]] == [c["platform"] for c in children]
    assert result.platform == "linux/amd64,linux/arm64/v8"
    ours = [layer.digest for layer in result.layers]
    for entry, child in zip(index["manifests"], children, strict=True):
        manifest, _ = manifest_of(ecr, repo, {"imageDigest": entry["digest"]})
        assert [layer["digest"] for layer in manifest["layers"]][1:] == ours
        assert manifest["annotations"][BASE_DIGEST] == child["digest"]
        config = json.loads(blob(ecr, repo, manifest["config"]["digest"]))
        assert platform_of(config) == platform_of(child["platform"])
    # our tar layers went up once, shared by both platforms
    # ours, 2 base layers, 2 configs, the build record's empty config
    assert stats.repository(repo).initiate_layer_upload_calls == len(ours) + 2 + 2 + 1

    # only the platforms named
    one = build_image(
        hook.engine,
        repo,
        model_files(tmp_path),
        path="/models",
        tags=["arm"],
        base=on(hook, "base/multi:latest", "linux/arm64"),
    )
    index, _ = manifest_of(ecr, repo, {"imageTag": "arm"})
    assert [m["platform"] for m in index["manifests"]] == [children[1]["platform"]]
    assert one.platform == "linux/arm64/v8"


def platform_of(body: dict[str, Any]) -> tuple[Any, ...]:
    return (body["os"], body["architecture"], body.get("variant"))


@pytest.mark.parametrize(
    ("base", "platform", "message"),
    [
        ("base/busybox:9.99", None, r"base image base/busybox:9\.99 was not found"),
        ("base/nothing:1", None, r"base image base/nothing:1: its repository 'base/nothing' does not exist"),
        (  # another account's repository this connection cannot read
            f"{OTHER_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/base/busybox:1.36",
            None,
            r"its repository 'base/busybox' does not exist \(or this connection cannot read it\)",
        ),
        ("base/busybox:1.36", "linux/arm64", r"is one image for linux/amd64, not linux/arm64"),
        ("base/multi:latest", "linux/s390x", r"has no platform linux/s390x \(it has linux/amd64, linux/arm64\)"),
    ],
)
def test_a_missing_base_or_platform_is_refused_before_anything_is_written(
    hook: Any,
    repo: str,
    ecr: Any,
    busybox: dict[str, Any],
    tmp_path: Path,
    stats: Any,
    base: str,
    platform: str | None,
    message: str,
) -> None:
    ecr.create_repository(repositoryName="base/multi")
    children = [
        put_base_image(hook.engine, "base/multi", [{"bin/sh": b"sh"}], platform=f"linux/{a}")
        for a in ("amd64", "arm64")
    ]
    put_base_index(hook.engine, "base/multi", children, ("latest",))
    before = build_image(hook.engine, repo, model_files(tmp_path), tags=["v1"])
    stats.reset()
    with pytest.raises(InvalidInputError, match=message):
        build_image(hook.engine, repo, model_files(tmp_path), tags=["v1"], base=on(hook, base, platform))
    assert stats.repository(repo).initiate_layer_upload_calls == 0 and stats.repository(repo).put_image_calls == 0
    assert manifest_of(ecr, repo, {"imageTag": "v1"})[1] == before.image_digest  # no tag moved


def test_a_docker_schema2_base_gives_an_oci_image_of_the_same_layers(
    hook: Any, repo: str, ecr: Any, tmp_path: Path
) -> None:
    ecr.create_repository(repositoryName="base/docker")
    children = [
        put_base_image(hook.engine, "base/docker", BASE_FILES, platform=f"linux/{a}", docker=True)
        for a in ("amd64", "arm64")
    ]
    put_base_index(hook.engine, "base/docker", children, ("latest",), docker=True)
    result = build_image(
        hook.engine, repo, model_files(tmp_path), path="/models", tags=["v1"], base=on(hook, "base/docker:latest")
    )
    index, _ = manifest_of(ecr, repo, {"imageTag": "v1"})
    assert index["mediaType"] == OCI_INDEX and {m["mediaType"] for m in index["manifests"]} == {OCI_MANIFEST}
    base_manifest = json.loads(
        ecr.batch_get_image(repositoryName="base/docker", imageIds=[{"imageDigest": children[0]["digest"]}])["images"][
            0
        ]["imageManifest"]
    )
    manifest, _ = manifest_of(ecr, repo, {"imageDigest": index["manifests"][0]["digest"]})
    assert manifest["mediaType"] == OCI_MANIFEST and manifest["config"]["mediaType"] == OCI_CONFIG
    assert [(layer["mediaType"], layer["digest"]) for layer in manifest["layers"]] == [
        *((LAYER_GZIP, layer["digest"]) for layer in base_manifest["layers"]),
        *((LAYER_TAR, layer.digest) for layer in result.layers),
    ]
    config = json.loads(blob(ecr, repo, manifest["config"]["digest"]))
    assert config["config"]["Entrypoint"] == BASE_CONFIG["Entrypoint"]


# --- another account, and the faces ---------------------------------------------------------


@pytest.fixture
def other_account(aws: EmbeddedAws, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An Airflow connection ``aws_base`` to a second account of the embedded server, holding a base."""
    key, secret = aws.credentials_for(OTHER_ACCOUNT)
    conn = {
        "conn_type": "aws",
        "login": key,
        "password": secret,
        "extra": {"endpoint_url": aws.endpoint_url, "region_name": aws.region},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_BASE", json.dumps(conn))
    client = boto3.client(
        "ecr",
        endpoint_url=aws.endpoint_url,
        region_name=aws.region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )
    client.create_repository(repositoryName="platform/base")
    return client


def test_the_operator_builds_on_a_base_in_another_account(
    repo: str, ecr: Any, s3: Any, bucket: str, other_account: Any, stats: Any
) -> None:
    from airflow_ecr_layers.hooks import EcrLayersHook

    base_engine = EcrLayersHook(aws_conn_id="aws_base").engine
    base = put_base_image(base_engine, "platform/base", BASE_FILES, tags=("stable",))
    for name, data in MODEL.items():
        s3.put_object(Bucket=bucket, Key=f"model/{name}", Body=data)
    reference = f"{OTHER_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/platform/base:stable"
    result = BuildImageOperator(
        task_id="build",
        source=f"s3://{bucket}/model/",
        repository_name=repo,
        tags=["v1"],
        path="/models",
        base=reference,
        base_aws_conn_id="aws_base",
    ).execute({})
    json.dumps(result)
    assert result["base"] == reference and result["base_digest"] == base["digest"]
    assert result["registry_id"] != OTHER_ACCOUNT
    unpacked, _ = files_in_image(ecr, repo, "v1")
    assert "bin/sh" in unpacked and "models/weights/model.bin" in unpacked
    assert other_account.describe_images(repositoryName="platform/base")["imageDetails"][0]["imageTags"] == ["stable"]


def test_the_operator_refuses_a_missing_base_before_it_creates_the_repository(
    s3: Any, bucket: str, ecr: Any, busybox: dict[str, Any]
) -> None:
    s3.put_object(Bucket=bucket, Key="model/a.txt", Body=b"a")
    with pytest.raises(InvalidInputError, match="base/busybox:nope was not found"):
        BuildImageOperator(
            task_id="build",
            source=f"s3://{bucket}/model/",
            repository_name="build/new",
            base="base/busybox:nope",
            create_repository=True,
        ).execute({})
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["base/busybox"]


def test_the_layer_limit_counts_the_base_and_refuses_before_the_repository_is_created(
    s3: Any, bucket: str, ecr: Any, busybox: dict[str, Any], stats: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ECR's ~500 layers per image, lowered here to 3: the base's two layers and our two are four."""
    monkeypatch.setattr("airflow_ecr_layers.core.build.base.MAX_LAYERS", 3)
    s3.put_object(Bucket=bucket, Key="model/small.txt", Body=b"s")
    s3.put_object(Bucket=bucket, Key="model/big.bin", Body=bytes(70_000))
    stats.reset()
    with pytest.raises(InvalidInputError, match=r"has 2 layers and the build 2: 4 in all, over ECR's limit of 3"):
        BuildImageOperator(
            task_id="build",
            source=f"s3://{bucket}/model/",
            repository_name="build/new",
            base="base/busybox:1.36",
            big_file_size=65_536,
            create_repository=True,
        ).execute({})
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["base/busybox"]
    assert stats.total().initiate_layer_upload_calls == 0


def test_the_cli_builds_on_a_base_for_the_platforms_named(
    capsys: Any, repo: str, ecr: Any, hook: Any, aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in aws.env().items():
        monkeypatch.setenv(key, value)
    ecr.create_repository(repositoryName="base/multi")
    children = [
        put_base_image(hook.engine, "base/multi", [{"bin/sh": b"sh"}], platform=f"linux/{a}")
        for a in ("amd64", "arm64", "ppc64le")
    ]
    put_base_index(hook.engine, "base/multi", children, ("latest",))
    url = write_folder(tmp_path, {"a.txt": b"a"})
    capsys.readouterr()  # what putting the base logged
    code = main(
        [
            "build",
            url,
            f"{repo}:cli",
            "--base",
            "base/multi:latest",
            "--platform",
            "linux/arm64",
            "--platform",
            "linux/amd64",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["platform"] == "linux/arm64,linux/amd64" and len(result["images"]) == 2
    index, _ = manifest_of(ecr, repo, {"imageTag": "cli"})
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["arm64", "amd64"]


def test_a_gzip_build_on_a_base_pulls_back_to_exactly_our_files(
    hook: Any, repo: str, ecr: Any, busybox: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    """Gzip layers, a base, a re-build and a pull together: the pull gives the files under
    ``path`` and nothing of the base's (its ``/bin``, ``/etc`` lie outside that folder)."""
    first = build_image(
        hook.engine,
        repo,
        model_files(tmp_path),
        path="/models",
        tags=["gz"],
        base=on(hook, "base/busybox:1.36"),
        compress="gzip",
    )
    manifest, _ = manifest_of(ecr, repo, {"imageTag": "gz"})
    assert [layer["mediaType"] for layer in manifest["layers"]] == [LAYER_TAR] * 2 + [LAYER_GZIP] * len(first.layers)
    config = json.loads(blob(ecr, repo, manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"][2:] != [layer.digest for layer in first.layers]  # gzip: digest != diff_id

    again = build_image(
        hook.engine,
        repo,
        model_files(tmp_path),
        path="/models",
        tags=["gz"],
        base=on(hook, "base/busybox:1.36"),
        compress="gzip",
    )
    assert again.image_digest == first.image_digest and again.totals["bytes_sent"] == 0

    assert main(["pull", f"{repo}:gz", f"file://{tmp_path}/out/", "--conn-id", "aws_default"]) == 0
    pulled = json.loads(capsys.readouterr().out)
    assert pulled["image_digest"] == first.image_digest
    written = {
        str(p.relative_to(tmp_path / "out")): p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()
    }
    assert written == MODEL
