"""Images of tar layers pulled back into files, against the embedded strict ECR+S3.

An image built from a prefix (tar layers, or gzip layers) pulled into another prefix or a local
folder gives the same files byte for byte, at their paths under the build's ``path``; an image
whose layers hold what a pull must not write is refused before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_ecr_layers.cli import main
from airflow_ecr_layers.core.build.image import build_image, files_of
from airflow_ecr_layers.core.errors import DigestMismatchError, InvalidInputError
from airflow_ecr_layers.core.oci.manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER_TAR,
    OCI_LAYER_TAR_GZIP,
    Descriptor,
    build_image_manifest,
    encode_manifest,
)
from airflow_ecr_layers.core.sources.blobs import BytesSource
from airflow_ecr_layers.operators import PullArtifactOperator
from airflow_ecr_layers.storage import open_sources
from helpers import MiB, pattern_bytes, sha256
from image_builders import TarEntry, tar_bytes

FILES = {
    "config.json": b'{"model_type": "demo"}',
    "weights/model.bin": pattern_bytes(2 * MiB + 7, seed=5),  # a layer of its own (big_file_size below)
    "tokenizer/vocab.txt": b"\n".join(b"token-%d" % i for i in range(3000)),
    "empty/.keep": b"",
    "deep/a/b/c/d/leaf.bin": pattern_bytes(1234, seed=2),
    "naïve/名前.txt": "ünïcode".encode(),
    "long-" * 30 + ".bin": b"a long name",
    **{f"shards/{i % 5}/part-{i:03d}.txt": pattern_bytes(i % 900, seed=i) for i in range(120)},
}


def put_prefix(s3: Any, bucket: str, prefix: str, files: dict[str, bytes]) -> str:
    for name, data in files.items():
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=data)
    return f"s3://{bucket}/{prefix}/"


def objects(s3: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"][len(prefix) :]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


def folder(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def pull(reference: str, destination: str, **kwargs: Any) -> dict[str, Any]:
    operator = PullArtifactOperator(
        task_id="pull", reference=reference, destination=destination, aws_conn_id="aws_default", **kwargs
    )
    result: dict[str, Any] = operator.execute({})
    return result


@pytest.mark.parametrize("compress", [None, "gzip"], ids=["tar", "gzip"])
def test_an_image_built_from_a_prefix_pulls_back_byte_for_byte(
    compress: str | None, hook: Any, repo: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    url = put_prefix(s3, bucket, "model", FILES)
    built = build_image(
        hook.engine,
        repo,
        files_of(open_sources(url, _airflow, allow_empty=True)),
        path="/models",
        tags=["v1"],
        big_file_size=MiB,
        compress=compress,
    )
    assert len(built.layers) >= 2

    into_prefix = pull(f"{repo}:v1", f"s3://{bucket}/copy/")
    assert objects(s3, bucket, "copy/") == FILES
    assert into_prefix["image_digest"] == built.image_digest and into_prefix["bytes"] == sum(map(len, FILES.values()))
    by_title = {f["title"]: f for f in into_prefix["files"]}
    assert {t: f["digest"] for t, f in by_title.items()} == {t: sha256(d) for t, d in FILES.items()}
    assert {f["layers"][0] for f in into_prefix["files"]} == {layer.digest for layer in built.layers}

    pull(f"{repo}@{built.image_digest}", f"file://{tmp_path}/out/")
    assert folder(tmp_path / "out") == FILES

    pull(f"{repo}:v1", f"file://{tmp_path}/whole/", path="/")  # the whole image: the files under models/
    assert folder(tmp_path / "whole") == {f"models/{name}": data for name, data in FILES.items()}
    pull(f"{repo}:v1", f"file://{tmp_path}/weights/", path="/models/weights", include="*.bin")
    assert folder(tmp_path / "weights") == {"model.bin": FILES["weights/model.bin"]}


def test_the_cli_pulls_a_gzip_build_into_a_folder(
    capsys: Any, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "src"
    for name, data in FILES.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    common = ["--conn-id", "aws_default"]
    assert main(["build", f"file://{source}/", f"{repo}:g", "--path", "/srv/m", "--gzip", *common]) == 0
    built = json.loads(capsys.readouterr().out)
    assert main(["pull", f"{repo}:g", f"file://{tmp_path}/out/", *common]) == 0
    pulled = json.loads(capsys.readouterr().out)
    assert pulled["image_digest"] == built["image_digest"] and len(pulled["files"]) == len(FILES)
    assert folder(tmp_path / "out") == FILES


def put_image(
    engine: Any,
    repo: str,
    tag: str,
    layers: list[bytes],
    *,
    media_type: str = OCI_LAYER_TAR,
    docker: bool = False,
    diff_ids: list[str] | None = None,
) -> None:
    """An image of these layer blobs (tar, or gzip with ``media_type``), its config's diff_ids right."""
    descriptors = [
        Descriptor(media_type, pushed.digest, pushed.size)
        for pushed in (engine.push_blob(repo, BytesSource(data), media_type=media_type) for data in layers)
    ]
    if diff_ids is None:
        diff_ids = [sha256(_gunzip(data) if media_type != OCI_LAYER_TAR else data) for data in layers]
    config = json.dumps({"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    config_type = DOCKER_CONFIG if docker else OCI_CONFIG
    stored = engine.push_blob(repo, BytesSource(config.encode()), media_type=config_type)
    config_descriptor = Descriptor(config_type, stored.digest, stored.size)
    if docker:
        body = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": config_descriptor.to_json(),
            "layers": [d.to_json() for d in descriptors],
        }
        manifest = encode_manifest(body, DOCKER_MANIFEST)
    else:
        manifest = build_image_manifest(descriptors, config=config_descriptor)
    engine.put_manifest(repo, manifest, [tag])


def _gunzip(data: bytes) -> bytes:
    import gzip

    return gzip.decompress(data)


HOSTILE = {
    "absolute": (TarEntry("/etc/cron.d/evil", b"x"), "absolute path"),
    "dotdot": (TarEntry("../../escape.txt", b"x"), r"'\.\.'"),
    "symlink": (TarEntry("link", kind="symlink", target="/etc/passwd"), "which leaves the destination"),
    "hardlink": (TarEntry("hard", kind="hardlink", target="../outside"), "which leaves the destination"),
    "device": (TarEntry("null", kind="device"), "device node"),
    "fifo": (TarEntry("pipe", kind="fifo"), "fifo"),
    "duplicate": (TarEntry("ok.txt", b"again"), "in the layer twice"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_image_is_refused_with_nothing_written(
    case: str, hook: Any, repo: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    crafted, message = HOSTILE[case]
    fine = [TarEntry("ok.txt", b"fine"), TarEntry("sub/also-ok.txt", b"fine")]
    harmless = tar_bytes(fine)
    hostile = tar_bytes([TarEntry("ok.txt", b"fine"), TarEntry("z-more.txt", b"more"), crafted], compress=True)
    put_image(hook.engine, repo, "fine", [harmless], media_type=OCI_LAYER_TAR)
    put_image(hook.engine, repo, "evil", [tar_bytes(fine, compress=True), hostile], media_type=OCI_LAYER_TAR_GZIP)
    with pytest.raises(InvalidInputError, match=message):
        pull(f"{repo}:evil", f"file://{tmp_path}/out/")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.txt").exists()
    with pytest.raises(InvalidInputError, match=message):
        pull(f"{repo}:evil", f"s3://{bucket}/out/")
    assert objects(s3, bucket, "") == {}
    pull(f"{repo}:fine", f"file://{tmp_path}/fine/")
    assert folder(tmp_path / "fine") == {"ok.txt": b"fine", "sub/also-ok.txt": b"fine"}


def test_a_docker_image_with_whiteouts_pulls_as_its_layers_say(hook: Any, repo: str, tmp_path: Path) -> None:
    lower = tar_bytes(
        [
            TarEntry("app", kind="dir"),
            TarEntry("app/keep.txt", b"kept"),
            TarEntry("app/gone.txt", b"deleted above"),
            TarEntry("app/cache/old.bin", b"old"),
            TarEntry("bin/sh", kind="symlink", target="busybox"),  # a base's link: outside /app
        ],
        compress=True,
    )
    upper = tar_bytes(
        [
            TarEntry("app/.wh.gone.txt"),
            TarEntry("app/cache/.wh..wh..opq"),
            TarEntry("app/cache/new.bin", b"new"),
            TarEntry("app/keep.txt", b"replaced"),
        ],
        compress=True,
    )
    put_image(hook.engine, repo, "d", [lower, upper], media_type=DOCKER_LAYER_GZIP, docker=True)
    result = pull(f"{repo}:d", f"file://{tmp_path}/out/", path="/app")
    assert folder(tmp_path / "out") == {"keep.txt": b"replaced", "cache/new.bin": b"new"}
    assert len(result["files"]) == 2
    with pytest.raises(InvalidInputError, match="'bin/sh' is a symlink"):
        pull(f"{repo}:d", f"file://{tmp_path}/all/")  # no build path recorded: the whole image, links and all
    assert not (tmp_path / "all").exists()


def test_a_layer_whose_tar_is_not_the_configs_diff_id_is_refused(hook: Any, repo: str, tmp_path: Path) -> None:
    layer = tar_bytes([TarEntry("a.txt", b"a")], compress=True)
    put_image(hook.engine, repo, "lie", [layer], media_type=OCI_LAYER_TAR_GZIP, diff_ids=[sha256(b"other")])
    with pytest.raises(DigestMismatchError, match="not the config's diff_id"):
        pull(f"{repo}:lie", f"file://{tmp_path}/out/")
    assert not (tmp_path / "out").exists()


def _airflow(url: str) -> Any:
    from airflow_ecr_layers.object_storage import to_path

    return to_path(url, "aws_default")
