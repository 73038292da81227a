"""Images built from files, against the embedded strict ECR+S3: the same files from S3 and from a
local folder give the same image; thousands of small files, empty files and nested folders
come back out of the layers exactly; what cannot be built is refused before anything is written;
a file that changes while it is read fails the build with nothing tagged."""

from __future__ import annotations

import io
import json
import tarfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from airflow_ecr_layers.cli import main
from airflow_ecr_layers.core.build.image import build_image, files_of, plan_build
from airflow_ecr_layers.core.engine.resume import MemoryResumeStore, ResumePoint
from airflow_ecr_layers.core.errors import InvalidInputError, SourceChangedError
from airflow_ecr_layers.core.sources.identity import Target
from airflow_ecr_layers.operators import BuildImageOperator
from airflow_ecr_layers.storage import ObjectStorageSource, PlainStorage, open_sources
from helpers import MiB, pattern_bytes, sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def dataset(count: int) -> dict[str, bytes]:
    """``count`` small files in nested folders, empty files among them, a unicode name, a long
    name, and one file big enough for a layer of its own."""
    files = {f"shard-{i % 7}/part-{i // 7 % 5}/file-{i:05d}.txt": pattern_bytes(i % 1500, seed=i) for i in range(count)}
    files |= {
        "empty/.keep": b"",
        "empty-at-the-top": b"",
        "deep/" * 12 + "nested.json": b'{"deep": true}',
        "naïve/ünïcode-名前.txt": "ünïcode".encode(),
        "long-" * 30 + ".bin": b"a name of 154 bytes",
        "weights/model.bin": pattern_bytes(3 * MiB + 5, seed=99),
    }
    return files


def write_folder(root: Path, files: dict[str, bytes]) -> str:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return f"file://{root}/"


def put_prefix(s3: Any, bucket: str, prefix: str, files: dict[str, bytes]) -> str:
    def put(item: tuple[str, bytes]) -> None:
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{item[0]}", Body=item[1])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, files.items()))
    return f"s3://{bucket}/{prefix}/"


def stored_image(ecr: Any, repository: str, tag: str) -> tuple[dict[str, Any], str]:
    (image,) = ecr.batch_get_image(
        repositoryName=repository, imageIds=[{"imageTag": tag}], acceptedMediaTypes=[OCI_MANIFEST]
    )["images"]
    return json.loads(image["imageManifest"]), image["imageId"]["imageDigest"]


def blob(ecr: Any, repository: str, digest: str) -> bytes:
    url = ecr.get_download_url_for_layer(repositoryName=repository, layerDigest=digest)["downloadUrl"]
    with urllib.request.urlopen(url, timeout=60) as response:
        data: bytes = response.read()
    assert sha256(data) == digest
    return data


def files_in_image(ecr: Any, repository: str, tag: str) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every regular file of the image's layers, by path, and its config."""
    manifest, _ = stored_image(ecr, repository, tag)
    config = json.loads(blob(ecr, repository, manifest["config"]["digest"]))
    found: dict[str, bytes] = {}
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(blob(ecr, repository, layer["digest"]))) as tar:
            for member in tar:
                assert member.isreg() or member.isdir(), member.name
                if member.isreg():
                    handle = tar.extractfile(member)
                    assert handle is not None and member.name not in found
                    found[member.name] = handle.read()
    return found, config


@pytest.fixture
def two_repositories(ecr: Any) -> tuple[str, str]:
    for name in ("build/from-s3", "build/from-disk"):
        ecr.create_repository(repositoryName=name)
    return "build/from-s3", "build/from-disk"


def test_the_same_files_from_s3_and_from_a_local_folder_give_the_same_image(
    hook: Any, s3: Any, bucket: str, ecr: Any, tmp_path: Path, two_repositories: tuple[str, str], stats: Any
) -> None:
    files = dataset(2_100)
    from_s3, from_disk = two_repositories
    storage = PlainStorage()
    built = {}
    for repository, url in (
        (from_s3, put_prefix(s3, bucket, "model", files)),
        (from_disk, write_folder(tmp_path, files)),
    ):
        sources = open_sources(url, _airflow if url.startswith("s3://") else storage, allow_empty=True)
        built[repository] = build_image(
            hook.engine,
            repository,
            files_of(sources, ["weights/*"]),
            path="/models",
            tags=["v1"],
            annotations={"org.opencontainers.image.title": "a model"},
            source_date_epoch=1_700_000_000,
        )
    a, b = built[from_s3], built[from_disk]
    assert a.image_digest == b.image_digest and a.config_digest == b.config_digest
    assert [layer.digest for layer in a.layers] == [layer.digest for layer in b.layers]
    assert a.totals["files"] == len(files) and 2 <= len(a.layers) <= 60
    # and the config, and the build record's empty config (the record is beside the image, not in it)
    assert stats.repository(from_disk).initiate_layer_upload_calls == len(b.layers) + 2

    manifest, digest = stored_image(ecr, from_s3, "v1")
    assert digest == a.image_digest
    assert manifest["config"]["mediaType"] == OCI_CONFIG and "artifactType" not in manifest
    assert {layer["mediaType"] for layer in manifest["layers"]} == {LAYER_TAR}
    assert manifest["annotations"] == {
        "org.opencontainers.image.title": "a model",
        "io.github.airflow-ecr-layers.build.path": "/models",
    }
    assert "s3://" not in json.dumps(manifest) and str(tmp_path) not in json.dumps(manifest)

    unpacked, config = files_in_image(ecr, from_disk, "v1")
    assert unpacked == {f"models/{name}": data for name, data in files.items()}
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"] for layer in manifest["layers"]]}
    assert (config["os"], config["architecture"], config["created"]) == ("linux", "amd64", "2023-11-14T22:13:20Z")
    assert len(config["history"]) == len(manifest["layers"])

    # built again from the same files: the same digest, every layer already there
    again = build_image(
        hook.engine,
        from_disk,
        files_of(open_sources(f"file://{tmp_path}/", storage, allow_empty=True), ["weights/*"]),
        path="/models",
        tags=["v2"],
        annotations={"org.opencontainers.image.title": "a model"},
        source_date_epoch=1_700_000_000,
    )
    assert again.image_digest == b.image_digest and all(layer.skipped for layer in again.layers)


def _airflow(url: str) -> Any:
    """A URL on Airflow's object storage: s3:// through the connection to the embedded S3."""
    from airflow_ecr_layers.object_storage import to_path

    return to_path(url, "aws_default")


@pytest.mark.parametrize(
    ("path", "extra", "message"),
    [
        ("models", [], "not absolute"),
        ("/models/../etc", [], r"'\.\.'"),
        ("/models", ["other/a.txt"], "given by two sources"),
    ],
)
def test_what_cannot_be_built_is_refused_before_anything_is_written(
    hook: Any, repo: str, s3: Any, bucket: str, ecr: Any, stats: Any, path: str, extra: list[str], message: str
) -> None:
    url = put_prefix(s3, bucket, "data", {"a.txt": b"a", "b.txt": b"b"})
    for key in extra:
        s3.put_object(Bucket=bucket, Key=key, Body=b"another a.txt")
    sources = open_sources([url, *(f"s3://{bucket}/{key}" for key in extra)], _airflow, allow_empty=True)
    with pytest.raises(InvalidInputError, match=message):
        build_image(hook.engine, repo, files_of(sources), path=path, tags=["v1"])
    received = stats.repository(repo)
    assert received.initiate_layer_upload_calls == 0 and received.put_image_calls == 0
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []


def test_an_object_overwritten_after_it_was_listed_fails_the_build_with_nothing_tagged(
    hook: Any, repo: str, s3: Any, bucket: str, ecr: Any, stats: Any
) -> None:
    url = put_prefix(s3, bucket, "data", {f"f{i}.txt": b"%d" % i for i in range(20)})
    sources = open_sources(url, _airflow, allow_empty=True)
    s3.put_object(Bucket=bucket, Key="data/f7.txt", Body=b"seven, rewritten")
    with pytest.raises(SourceChangedError):
        build_image(hook.engine, repo, files_of(sources), tags=["v1"])
    assert stats.repository(repo).put_image_calls == 0
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []


def test_a_local_file_rewritten_while_it_is_read_fails_the_build_with_nothing_tagged(
    hook: Any, repo: str, ecr: Any, stats: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = write_folder(tmp_path, {f"f{i}.txt": b"%04d" % i for i in range(20)})
    sources = open_sources(url, PlainStorage(), allow_empty=True)
    opened = ObjectStorageSource.open_at

    def open_then_rewrite(self: ObjectStorageSource, offset: int, block_size: int) -> Any:
        handle = opened(self, offset, block_size)
        if self.title == "f7.txt":
            (tmp_path / "f7.txt").write_bytes(b"7777")  # same size, new bytes: a new mtime and ctime
        return handle

    monkeypatch.setattr(ObjectStorageSource, "open_at", open_then_rewrite)
    with pytest.raises(SourceChangedError, match="f7.txt changed while it was read"):
        build_image(hook.engine, repo, files_of(sources), tags=["v1"])
    assert stats.repository(repo).put_image_calls == 0
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []


def test_a_tar_layer_left_half_uploaded_is_continued_by_the_next_build(
    hook: Any, repo: str, stats: Any, tmp_path: Path
) -> None:
    """A killed build's upload is picked up where ECR stopped: the layer's identity (its files'
    identities summed up) keys the resume record; the record never goes into the image."""
    part = 5 * MiB
    url = write_folder(tmp_path, {"model.bin": pattern_bytes(12 * MiB, seed=4), "small.txt": b"s"})
    files = files_of(open_sources(url, PlainStorage(), allow_empty=True))
    (layer,) = [layer for layer in plan_build(files, big_file_size=MiB).layers if layer.files == 1 and layer.size > MiB]
    identity = layer.identity()
    assert identity is not None
    session = hook.calls.initiate_layer_upload(repo)
    with layer.open_at(0, part) as handle:
        hook.calls.upload_layer_part(session, 0, handle.read(part))
    store = MemoryResumeStore()
    registry_id = hook.calls.repository_registry_id(repo)
    resume = ResumePoint.of(store, identity, None, Target(registry_id, hook.calls.region, repo), 0, layer.size)
    assert resume is not None
    resume.save(resume.record(registry_id, repo, session.upload_id, part, layer.size, part), force=True)
    stats.reset()
    result = build_image(hook.engine, repo, files, tags=["v1"], big_file_size=MiB, part_size=part, resume=store)
    big = next(built for built in result.layers if built.size == layer.size)
    assert big.bytes_sent == layer.size - part and big.bytes_read == layer.size
    assert store.records == {}
    assert "tar-layer" not in json.dumps(stored_image(hook.calls.client, repo, "v1")[0])


# --- the faces: the operator and the command ---------------------------------------------


def test_the_operator_builds_from_a_prefix_and_marks_executables(repo: str, s3: Any, bucket: str, ecr: Any) -> None:
    files = {
        "bin/serve": b"#!/bin/sh\nexec sleep 1\n",
        "config.json": b"{}",
        "empty.txt": b"",
        "big.bin": bytes(70_000),
    }
    url = put_prefix(s3, bucket, "app", files)
    result = BuildImageOperator(
        task_id="build",
        source=url,
        repository_name=repo,
        tags=["v1"],
        path="/opt/app",
        platform="linux/arm64/v8",
        executable=["bin/*"],
        labels={"team": "ml"},
        big_file_size=65_536,
    ).execute({})
    json.dumps(result)  # JSON-safe, for XCom
    assert result["tags"] == ["v1"] and result["platform"] == "linux/arm64/v8" and result["path"] == "/opt/app"
    assert result["totals"]["files"] == 4 and result["totals"]["layers"] == 2  # big.bin alone
    manifest, digest = stored_image(ecr, repo, "v1")
    assert digest == result["image_digest"] and len(manifest["layers"]) == 2
    config = json.loads(blob(ecr, repo, manifest["config"]["digest"]))
    assert (config["architecture"], config["variant"], config["config"]) == ("arm64", "v8", {"Labels": {"team": "ml"}})
    modes = {}
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(blob(ecr, repo, layer["digest"]))) as tar:
            modes |= {m.name: m.mode for m in tar if m.isreg()}
    assert modes == {
        "opt/app/bin/serve": 0o755,
        "opt/app/config.json": 0o644,
        "opt/app/empty.txt": 0o644,
        "opt/app/big.bin": 0o644,
    }


def test_the_cli_builds_a_local_folder_on_the_plain_aws_chain(
    capsys: Any, repo: str, ecr: Any, aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in aws.env().items():
        monkeypatch.setenv(key, value)
    url = write_folder(tmp_path, {"a.txt": b"a", "sub/b.txt": b"b", "sub/empty": b""})
    code = main(["build", url, f"{repo}:cli", "--path", "/data", "--annotation", "k=v", "--tag", "also"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["tags"] == ["cli", "also"] and result["totals"]["files"] == 3
    unpacked, _ = files_in_image(ecr, repo, "cli")
    assert unpacked == {"data/a.txt": b"a", "data/sub/b.txt": b"b", "data/sub/empty": b""}


def test_the_operator_refuses_before_it_creates_the_repository(s3: Any, bucket: str, ecr: Any) -> None:
    url = put_prefix(s3, bucket, "data", {"a.txt": b"a"})
    with pytest.raises(InvalidInputError, match="not absolute"):
        BuildImageOperator(
            task_id="build", source=url, repository_name="build/new", path="models", create_repository=True
        ).execute({})
    assert ecr.describe_repositories()["repositories"] == []
