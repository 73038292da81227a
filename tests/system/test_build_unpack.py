"""An image built from files unpacks with umoci, an independent implementation, into exactly those files.

The image is built into the embedded strict ECR (from S3 and, for the same files, from a local
folder: one digest), read back through the ECR API (BatchGetImage, GetDownloadUrlForLayer) into
an OCI image layout, and unpacked with ``umoci unpack --rootless``: the root filesystem holds the
source files at ``--path``, byte for byte, with the modes the build gives, and nothing else; built
on a base image, the base's files beside them.
"""

from __future__ import annotations

import json
import stat
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from airflow_ecr_layers.cli import main
from helpers import ROOT, MiB, pattern_bytes, sha256
from image_builders import BASE_CONFIG, put_base_image, put_base_index, require_tools, run

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

FILES = {
    "config.json": b'{"model_type": "demo"}\n',
    "weights/model.safetensors": pattern_bytes(17 * MiB + 3, seed=1),  # over 16 MiB: a layer of its own
    "tokenizer/vocab.txt": b"\n".join(b"token-%d" % i for i in range(5000)),
    "tokenizer/empty.txt": b"",
    "deep/a/b/c/d/e/f/g/leaf.bin": pattern_bytes(1234, seed=2),
    "ünïcode/名前.txt": "ünïcode ✓\n".encode(),
    "long-" * 40 + "name.txt": b"a name far past ustar's 100 bytes",
    "bin/serve.sh": b"#!/bin/sh\nexec sleep infinity\n",
    **{f"shards/{i % 10}/part-{i:04d}.txt": pattern_bytes(i % 700, seed=i) for i in range(400)},
}


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def export_layout(ecr: Any, repository: str, tag: str, layout: Path) -> None:
    """The image as an OCI image layout, its manifest's exact bytes and every blob from ECR."""
    (image,) = ecr.batch_get_image(
        repositoryName=repository, imageIds=[{"imageTag": tag}], acceptedMediaTypes=[OCI_MANIFEST]
    )["images"]
    manifest_bytes = image["imageManifest"].encode("utf-8")
    manifest = json.loads(manifest_bytes)
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (blobs / sha256(manifest_bytes).split(":")[1]).write_bytes(manifest_bytes)
    for descriptor in [manifest["config"], *manifest["layers"]]:
        digest = descriptor["digest"]
        url = ecr.get_download_url_for_layer(repositoryName=repository, layerDigest=digest)["downloadUrl"]
        with urllib.request.urlopen(url, timeout=120) as response:
            data = response.read()
        assert sha256(data) == digest
        (blobs / digest.split(":")[1]).write_bytes(data)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256(manifest_bytes),
                "size": len(manifest_bytes),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))


def tree(root: Path) -> dict[str, tuple[str, bytes | None, int]]:
    """Every entry under ``root``: (kind, bytes of a file, permission bits)."""
    found: dict[str, tuple[str, bytes | None, int]] = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        relative = path.relative_to(root).as_posix()
        if stat.S_ISDIR(mode):
            found[relative] = ("dir", None, stat.S_IMODE(mode))
        elif stat.S_ISREG(mode):
            found[relative] = ("file", path.read_bytes(), stat.S_IMODE(mode))
        else:
            found[relative] = ("other", None, stat.S_IMODE(mode))
    return found


@pytest.mark.parametrize("gzip", [False, True], ids=["tar", "gzip"])
def test_umoci_unpacks_the_built_image_into_exactly_the_source_files(
    gzip: bool, capsys: Any, tmp_path: Path, ecr: Any, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tools()
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)  # every entry's mtime is then 0
    for repository in ("build/s3", "build/disk"):
        ecr.create_repository(repositoryName=repository)
    folder = write_folder(tmp_path / "model", FILES)
    for name, data in FILES.items():
        s3.put_object(Bucket=bucket, Key=f"model/{name}", Body=data)

    digests = {}
    for repository, url in (("build/s3", f"s3://{bucket}/model/"), ("build/disk", f"file://{folder}/")):
        code = main(
            ["build", url, f"{repository}:v1", "--path", "/models", "--executable", "bin/*", "--conn-id", "aws_default"]
            + (["--gzip"] if gzip else [])
        )
        out, err = capsys.readouterr()
        assert code == 0, err
        result = json.loads(out)
        assert result["totals"]["files"] == len(FILES)
        digests[repository] = result["image_digest"]
    assert digests["build/s3"] == digests["build/disk"]
    manifest, _ = _manifest(ecr, "build/s3", "v1")
    media_type = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gzip else "")
    assert {layer["mediaType"] for layer in manifest["layers"]} == {media_type}

    layout = tmp_path / "layout"
    export_layout(ecr, "build/s3", "v1", layout)
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--rootless", "--image", f"{layout}:v1", bundle)
    rootfs = bundle / "rootfs"

    unpacked = tree(rootfs)
    files = {name: entry for name, entry in unpacked.items() if entry[0] == "file"}
    assert files == {
        f"models/{name}": ("file", data, 0o755 if name.startswith("bin/") else 0o644) for name, data in FILES.items()
    }
    folders = {name for name, entry in unpacked.items() if entry[0] == "dir"}
    expected_folders = {"models"} | {
        "models/" + "/".join(name.split("/")[:i]) for name in FILES for i in range(1, name.count("/") + 1)
    }
    assert folders == expected_folders
    assert all(unpacked[name][2] == 0o755 for name in folders)
    assert not [name for name, entry in unpacked.items() if entry[0] == "other"]
    assert {(rootfs / name).stat().st_mtime for name in files} == {0}
    config = json.loads((bundle / "config.json").read_text())  # umoci's runtime spec from the image config
    assert config["root"]["path"] == "rootfs"


def test_umoci_unpacks_an_image_built_on_a_base_into_the_base_files_beside_ours(
    capsys: Any, tmp_path: Path, ecr: Any, hook: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busybox-like base (made here from tar layers, no network) in another repository: the
    built image unpacks into the base's files and ours at ``--path``, and runs as the base does."""
    require_tools()
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    for repository in ("base/tiny", "build/modelcar"):
        ecr.create_repository(repositoryName=repository)
    base_files = [
        {"bin/sh": b"#!a tiny shell\n", "bin/ln": b"#!a tiny ln\n", "bin/sleep": b"#!a tiny sleep\n"},
        {"etc/passwd": b"root:x:0:0::/root:/bin/sh\n", "etc/os-release": b"NAME=tiny\n"},
    ]
    put_base_image(hook.engine, "base/tiny", base_files, tags=("1.0",))
    model = {name: data for name, data in FILES.items() if not name.startswith("shards/")}
    folder = write_folder(tmp_path / "model", model)
    capsys.readouterr()
    code = main(
        ["build", f"file://{folder}/", "build/modelcar:v1", "--path", "/models", "--base", "base/tiny:1.0"]
        + ["--conn-id", "aws_default"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["base"].endswith("/base/tiny:1.0")

    layout = tmp_path / "layout"
    export_layout(ecr, "build/modelcar", "v1", layout)
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--rootless", "--image", f"{layout}:v1", bundle)
    unpacked = tree(bundle / "rootfs")
    files = {name: entry for name, entry in unpacked.items() if entry[0] == "file"}
    assert files == {
        **{
            name: ("file", data, 0o755 if name.startswith("bin/") else 0o644)
            for f in base_files
            for name, data in f.items()
        },
        **{f"models/{name}": ("file", data, 0o644) for name, data in model.items()},
    }
    assert {"bin", "etc", "models"} <= {name for name, entry in unpacked.items() if entry[0] == "dir"}
    process = json.loads((bundle / "config.json").read_text())["process"]  # umoci's runtime spec: the base's config
    assert process["args"] == [*BASE_CONFIG["Entrypoint"], *BASE_CONFIG["Cmd"]]
    assert process["cwd"] == BASE_CONFIG["WorkingDir"] and BASE_CONFIG["Env"][1] in process["env"]


def test_the_example_dag_builds_a_prefix_into_an_image(airflow_db: Any, ecr: Any, s3: Any, bucket: str) -> None:
    from airflow.dag_processing.dagbag import DagBag

    ecr.create_repository(repositoryName="demo/modelcar")
    files = {"config.json": b"{}", "weights/a.bin": pattern_bytes(4096, seed=3), "empty": b""}
    for name, data in files.items():
        s3.put_object(Bucket=bucket, Key=f"models/run-42/{name}", Body=data)
    bag = DagBag(dag_folder=str(ROOT / "example_dags"))
    assert bag.import_errors == {}
    dag = bag.get_dag("example_ecr_layers_build_image")
    run = dag.test(run_conf={"source": f"s3://{bucket}/models/run-42/", "repository": "demo/modelcar"})
    assert run.state == "success"
    manifest, _ = _manifest(ecr, "demo/modelcar", "latest")
    assert manifest["annotations"] == {
        "org.opencontainers.image.title": "demo model",
        "io.github.airflow-ecr-layers.build.path": "/models",
    }
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/vnd.oci.image.layer.v1.tar"]


def test_the_modelcar_example_dag_builds_on_a_multi_platform_base(
    airflow_db: Any, ecr: Any, s3: Any, bucket: str, hook: Any
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    for repository in ("docker-hub/library/busybox", "ml/sentiment-modelcar"):
        ecr.create_repository(repositoryName=repository)
    children = [
        put_base_image(hook.engine, "docker-hub/library/busybox", [{"bin/sh": arch.encode()}], platform=f"linux/{arch}")
        for arch in ("amd64", "arm64", "riscv64")
    ]
    put_base_index(hook.engine, "docker-hub/library/busybox", children, ("1.37",))
    for name, data in {"config.json": b"{}", "model.joblib": pattern_bytes(4096, seed=4)}.items():
        s3.put_object(Bucket=bucket, Key=f"models/sentiment/current/{name}", Body=data)
    bag = DagBag(dag_folder=str(ROOT / "example_dags"))
    assert bag.import_errors == {}
    run = bag.get_dag("example_ecr_layers_modelcar").test(
        run_conf={"source": f"s3://{bucket}/models/sentiment/current/"}
    )
    assert run.state == "success"
    (image,) = ecr.batch_get_image(
        repositoryName="ml/sentiment-modelcar", imageIds=[{"imageTag": "latest"}], acceptedMediaTypes=[OCI_INDEX]
    )["images"]
    index = json.loads(image["imageManifest"])
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64"]
    assert index["annotations"]["org.opencontainers.image.base.name"].endswith("/docker-hub/library/busybox:1.37")


def _manifest(ecr: Any, repository: str, tag: str) -> tuple[dict[str, Any], str]:
    (image,) = ecr.batch_get_image(
        repositoryName=repository, imageIds=[{"imageTag": tag}], acceptedMediaTypes=[OCI_MANIFEST]
    )["images"]
    return json.loads(image["imageManifest"]), image["imageId"]["imageDigest"]


def test_the_example_dag_builds_gzip_layers_and_pulls_the_files_back(
    airflow_db: Any, ecr: Any, s3: Any, bucket: str
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    ecr.create_repository(repositoryName="demo/modelcar")
    files = {"config.json": b"{}", "weights/a.bin": pattern_bytes(70_000, seed=3), "empty": b""}
    for name, data in files.items():
        s3.put_object(Bucket=bucket, Key=f"models/run-42/{name}", Body=data)
    dag = DagBag(dag_folder=str(ROOT / "example_dags")).get_dag("example_ecr_layers_build_and_pull")
    run = dag.test(
        run_conf={
            "source": f"s3://{bucket}/models/run-42/",
            "repository": "demo/modelcar",
            "destination": f"s3://{bucket}/serving/run-42/",
        }
    )
    assert run.state == "success"
    manifest, _ = _manifest(ecr, "demo/modelcar", "gzip")
    assert {layer["mediaType"] for layer in manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar+gzip"}
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="serving/run-42/")["Contents"]
    pulled = {
        o["Key"].removeprefix("serving/run-42/"): s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in listed
    }
    assert pulled == files
