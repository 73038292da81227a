"""Image archives built by real tools (umoci, skopeo), pushed through PushImageArchiveOperator.

One module-scoped fixture builds every image once: an OCI layout with one image
(a small layer and an 11 MiB incompressible one, so parts of 5 MiB make a
multi-part upload), its skopeo ``docker-archive`` (plain and gzipped) and
``oci-archive``, a two-platform layout (amd64 + arm64 under an OCI image index) with
its ``oci-archive --all``, and a docker-archive holding two images. Each test pushes
from the embedded S3 (or a file:// layout directory) into the strict embedded ECR,
and reads the result back through the ECR API. Hostile archives are crafted with
tarfile: each is refused with a clear error and no tag is written.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_ecr_layers.core.archives.gzip_streams import GzipSource
from airflow_ecr_layers.core.archives.tar_index import HostileArchiveError
from airflow_ecr_layers.core.errors import DigestMismatchError, InvalidInputError
from airflow_ecr_layers.core.oci.manifest import DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST
from airflow_ecr_layers.core.sources.blobs import BytesSource
from airflow_ecr_layers.operators import PushImageArchiveOperator
from helpers import ROOT
from image_builders import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    REF_NAME,
    CraftedLayout,
    MiB,
    TarEntry,
    add_platform_index,
    gzip_copy,
    layer_tar,
    layout_blob,
    layout_ref,
    make_tree,
    random_bytes,
    require_tools,
    sha256,
    skopeo_copy,
    tar_members,
    umoci_image,
    write_tar,
)

PART = 5 * MiB
ACCEPTED = [
    OCI_MANIFEST,
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
]


# --- the images, built once -------------------------------------------------------------


@dataclass(frozen=True)
class Images:
    single: Path
    """OCI layout directory with one image, ref ``v1``: a small layer and an 11 MiB layer."""
    docker_tar: Path
    docker_tgz: Path
    oci_tar: Path
    multi: Path
    """OCI layout with refs ``amd64``, ``arm64`` and ``v1`` (an image index over the two)."""
    multi_tar: Path
    """``skopeo copy --all oci:multi:v1 oci-archive:...``: only the index, ref ``v1``."""
    docker_multi_tar: Path
    """A docker-archive with two images (``example/img:amd64``, ``example/img:arm64``)."""


def _merge_docker_archives(archives: list[Path], destination: Path) -> Path:
    """One docker-save tarball holding every image of ``archives`` (manifest.json entries joined)."""
    entries: list[Any] = []
    seen: set[str] = set()
    with tarfile.open(destination, "w") as out:
        for archive in archives:
            with tarfile.open(archive) as tar:
                for info in tar:
                    if info.name == "manifest.json":
                        handle = tar.extractfile(info)
                        assert handle is not None
                        entries.extend(json.load(handle))
                    elif info.name != "repositories" and info.name not in seen:
                        seen.add(info.name)
                        out.addfile(info, tar.extractfile(info) if info.isreg() else None)
        data = json.dumps(entries).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))
    return destination


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    require_tools()
    root = tmp_path_factory.mktemp("images")
    app = make_tree(root / "tree-app", {"app/hello.txt": b"hello from umoci\n", "app/etc/config.yaml": b"a: 1\n"})
    data = make_tree(root / "tree-data", {"weights.bin": random_bytes(11 * MiB + 4321, seed=7)})

    single = root / "single"
    umoci_image(single, "v1", [(app, "/opt"), (data, "/data")], arch="amd64", cmd="/opt/app/hello.txt")
    docker_tar = root / "single.docker.tar"
    skopeo_copy(f"oci:{single}:v1", f"docker-archive:{docker_tar}:example/img:v1")
    docker_tgz = gzip_copy(docker_tar)
    oci_tar = root / "single.oci.tar"
    skopeo_copy(f"oci:{single}:v1", f"oci-archive:{oci_tar}:v1")

    multi = root / "multi"
    for arch, seed in (("amd64", 1), ("arm64", 2)):
        own = make_tree(root / f"tree-{arch}", {f"bin/{arch}": random_bytes(4096, seed=seed)})
        umoci_image(multi, arch, [(data, "/data"), (own, "/usr")], arch=arch, cmd=f"/usr/bin/{arch}")
    add_platform_index(multi, "v1", {"amd64": "amd64", "arm64": "arm64"})
    multi_tar = root / "multi.oci.tar"
    skopeo_copy(f"oci:{multi}:v1", f"oci-archive:{multi_tar}:v1", all_images=True)

    per_arch = []
    for arch in ("amd64", "arm64"):
        per_arch.append(root / f"{arch}.docker.tar")
        skopeo_copy(f"oci:{multi}:{arch}", f"docker-archive:{per_arch[-1]}:example/img:{arch}")
    docker_multi_tar = _merge_docker_archives(per_arch, root / "multi.docker.tar")
    return Images(single, docker_tar, docker_tgz, oci_tar, multi, multi_tar, docker_multi_tar)


# --- helpers ------------------------------------------------------------------------------


def _upload(s3: Any, bucket: str, path: Path, key: str) -> str:
    s3.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def _upload_tree(s3: Any, bucket: str, root: Path, prefix: str) -> str:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")
    return f"s3://{bucket}/{prefix}"


def _push(source: str, repository: str, tags: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    return PushImageArchiveOperator(
        task_id="push_image",
        source=source,
        repository_name=repository,
        tags=["v1"] if tags is None else tags,
        part_size=PART,
        **kwargs,
    ).execute({})


def _stored(ecr: Any, repository: str, image_id: dict[str, str]) -> tuple[bytes, str, str]:
    """(manifest bytes, image digest, media type) as BatchGetImage returns them."""
    response = ecr.batch_get_image(repositoryName=repository, imageIds=[image_id], acceptedMediaTypes=ACCEPTED)
    assert response["failures"] == [], response["failures"]
    (image,) = response["images"]
    return image["imageManifest"].encode("utf-8"), image["imageId"]["imageDigest"], image["imageManifestMediaType"]


def _assert_available(ecr: Any, repository: str, sizes: dict[str, int]) -> None:
    """Every digest is AVAILABLE in ``repository`` with exactly the expected size."""
    response = ecr.batch_check_layer_availability(repositoryName=repository, layerDigests=sorted(sizes))
    assert response["failures"] == []
    found = {layer["layerDigest"]: (layer["layerAvailability"], layer["layerSize"]) for layer in response["layers"]}
    assert found == {digest: ("AVAILABLE", size) for digest, size in sizes.items()}


def _blob_sizes(manifest: dict[str, Any]) -> dict[str, int]:
    return {d["digest"]: d["size"] for d in [manifest["config"], *manifest["layers"]]}


def _parts(sizes: dict[str, int]) -> int:
    return sum(-(-size // PART) for size in sizes.values())


def _assert_first_push(result: dict[str, Any], stats: Any, repository: str, sizes: dict[str, int]) -> None:
    """Every blob uploaded once, in parts of PART bytes, none skipped."""
    assert {b["digest"]: b["size"] for b in result["blobs"]} == sizes
    assert not any(b["skipped"] for b in result["blobs"])
    received = stats.repository(repository)
    assert received.layers_completed == len(sizes)
    assert received.upload_layer_part_calls == _parts(sizes)
    assert received.bytes_received == sum(sizes.values())
    assert max(sizes.values()) > 2 * PART  # the big layer really went up in several parts


def _assert_repush_uploads_nothing(
    source: str, repository: str, stats: Any, first: dict[str, Any], **kwargs: Any
) -> None:
    stats.reset()
    again = _push(source, repository, **kwargs)
    received = stats.repository(repository)
    assert received.initiate_layer_upload_calls == received.upload_layer_part_calls == received.bytes_received == 0
    assert again["blobs"] and all(b["skipped"] for b in again["blobs"])
    assert {b["digest"] for b in again["blobs"]} == {b["digest"] for b in first["blobs"]}
    assert again["image_digest"] == first["image_digest"]
    assert received.put_image_calls == len(first["manifests"]) - 1 + max(1, len(first["tags"]))


def _nothing_tagged(ecr: Any, repository: str) -> None:
    assert ecr.describe_images(repositoryName=repository)["imageDetails"] == []


# --- docker-archive -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tar", "tar.gz"])
def test_docker_archive_lands_as_oci_manifest_over_its_layers(
    kind: str, images: Images, repo: str, s3: Any, bucket: str, ecr: Any, stats: Any
) -> None:
    archive = images.docker_tar if kind == "tar" else images.docker_tgz
    source = _upload(s3, bucket, archive, f"builds/app.docker.{kind}")
    members = tar_members(images.docker_tar)
    (entry,) = json.loads(members["manifest.json"])
    config_bytes = members[entry["Config"]]
    image_id = "sha256:" + entry["Config"].removesuffix(".json")  # the docker image id
    config = json.loads(config_bytes)
    diff_ids = config["rootfs"]["diff_ids"]
    assert len(diff_ids) == 2 and sha256(config_bytes) == image_id
    # skopeo kept umoci's filesystem layers: same diff ids as the OCI config.
    oci_manifest = json.loads(layout_blob(images.single, layout_ref(images.single, "v1")["digest"]))
    assert json.loads(layout_blob(images.single, oci_manifest["config"]["digest"]))["rootfs"]["diff_ids"] == diff_ids

    result = _push(source, repo, tags=["v1", "stable"])

    data, digest, media_type = _stored(ecr, repo, {"imageTag": "stable"})
    manifest = json.loads(data)
    assert media_type == OCI_MANIFEST == manifest["mediaType"] == result["manifest_media_type"]
    assert [layer["digest"] for layer in manifest["layers"]] == diff_ids
    assert [layer["mediaType"] for layer in manifest["layers"]] == [OCI_LAYER, OCI_LAYER]
    assert [layer["size"] for layer in manifest["layers"]] == [len(members[p]) for p in entry["Layers"]]
    assert manifest["config"] == {"mediaType": OCI_CONFIG, "digest": image_id, "size": len(config_bytes)}
    assert digest == sha256(data) == result["image_digest"]
    assert _stored(ecr, repo, {"imageTag": "v1"})[1] == digest
    assert result["tags"] == ["v1", "stable"] and result["format"] == "docker-save"
    sizes = _blob_sizes(manifest)
    _assert_available(ecr, repo, sizes)
    _assert_first_push(result, stats, repo, sizes)
    assert json.loads(json.dumps(result)) == result  # XCom-safe

    _assert_repush_uploads_nothing(source, repo, stats, result, tags=["v1", "stable"])


def test_docker_archive_with_gzip_layers_lands_as_docker_v2(
    images: Images, repo: str, s3: Any, bucket: str, ecr: Any, stats: Any
) -> None:
    """The other docker-save option: layers gzipped on the fly into Docker v2 schema 2."""
    source = _upload(s3, bucket, images.docker_tar, "builds/app-gz.docker.tar")
    members = tar_members(images.docker_tar)
    (entry,) = json.loads(members["manifest.json"])
    config_bytes = members[entry["Config"]]
    diff_ids = json.loads(config_bytes)["rootfs"]["diff_ids"]

    result = _push(source, repo, tags=["gz"], gzip_layers=True)

    data, digest, media_type = _stored(ecr, repo, {"imageTag": "gz"})
    manifest = json.loads(data)
    assert media_type == manifest["mediaType"] == DOCKER_MANIFEST == result["manifest_media_type"]
    assert manifest["config"] == {"mediaType": DOCKER_CONFIG, "digest": sha256(config_bytes), "size": len(config_bytes)}
    for layer, path, diff_id in zip(manifest["layers"], entry["Layers"], diff_ids, strict=True):
        assert layer["mediaType"] == DOCKER_LAYER_GZIP
        # The strict ECR checked that the uploaded bytes hash to layer["digest"]; those
        # bytes are the deterministic gzip of the layer, which decompresses to the diff id.
        with GzipSource(BytesSource(members[path])).open_at(0, MiB) as handle:
            compressed = handle.read()
        assert (sha256(compressed), len(compressed)) == (layer["digest"], layer["size"])
        assert sha256(gzip.decompress(compressed)) == diff_id
    assert digest == sha256(data) == result["image_digest"]
    _assert_available(ecr, repo, _blob_sizes(manifest))
    _assert_repush_uploads_nothing(source, repo, stats, result, tags=["gz"], gzip_layers=True)


def test_gzip_layers_is_refused_for_oci_layouts(images: Images, repo: str, ecr: Any, stats: Any) -> None:
    with pytest.raises(InvalidInputError, match="gzip_layers applies to docker-save"):
        _push(f"file://{images.single}", repo, gzip_layers=True)
    assert stats.total().initiate_layer_upload_calls == 0
    _nothing_tagged(ecr, repo)


# --- OCI layouts: tar and directory ----------------------------------------------------


def _assert_layout_image_exact(ecr: Any, repo: str, layout: Path, ref: str, result: dict[str, Any]) -> None:
    descriptor = layout_ref(layout, ref)
    expected = layout_blob(layout, descriptor["digest"])
    data, digest, media_type = _stored(ecr, repo, {"imageTag": "v1"})
    assert data == expected  # byte for byte
    assert digest == descriptor["digest"] == sha256(expected) == result["image_digest"]
    assert media_type == descriptor["mediaType"] == result["manifest_media_type"]
    manifest = json.loads(expected)
    for blob in [manifest["config"], *manifest["layers"]]:
        assert len(layout_blob(layout, blob["digest"])) == blob["size"]
    _assert_available(ecr, repo, _blob_sizes(manifest))


def test_oci_archive_lands_digest_identical(
    images: Images, repo: str, s3: Any, bucket: str, ecr: Any, stats: Any
) -> None:
    # skopeo's oci-archive holds the same manifest bytes as the layout it was copied from.
    members = tar_members(images.oci_tar)
    (entry,) = json.loads(members["index.json"])["manifests"]
    assert entry["digest"] == layout_ref(images.single, "v1")["digest"]
    source = _upload(s3, bucket, images.oci_tar, "builds/app.oci.tar")

    result = _push(source, repo)

    _assert_layout_image_exact(ecr, repo, images.single, "v1", result)
    assert result["format"] == "oci-layout" and [m["digest"] for m in result["manifests"]] == [entry["digest"]]
    manifest = json.loads(members[f"blobs/sha256/{entry['digest'].split(':')[1]}"])
    assert manifest["layers"][0]["mediaType"] == OCI_LAYER + "+gzip"  # umoci's layers, as they are
    _assert_first_push(result, stats, repo, _blob_sizes(manifest))

    _assert_repush_uploads_nothing(source, repo, stats, result)


@pytest.mark.parametrize("where", ["file", "s3-prefix"])
def test_oci_layout_directory_lands_digest_identical(
    where: str, images: Images, repo: str, s3: Any, bucket: str, ecr: Any, stats: Any
) -> None:
    source = images.single.as_uri() if where == "file" else _upload_tree(s3, bucket, images.single, "layouts/app")
    result = _push(source, repo)

    _assert_layout_image_exact(ecr, repo, images.single, "v1", result)
    manifest = json.loads(layout_blob(images.single, result["image_digest"]))
    _assert_first_push(result, stats, repo, _blob_sizes(manifest))
    # umoci leaves a stale manifest and config in blobs/ after each step; only the image's blobs went up.
    assert len(list((images.single / "blobs" / "sha256").iterdir())) > len(result["blobs"]) + 1

    _assert_repush_uploads_nothing(source, repo, stats, result)


# --- two platforms under an OCI image index ----------------------------------------------


def _assert_index_exact(ecr: Any, repo: str, layout: Path, result: dict[str, Any]) -> dict[str, int]:
    """The index (tagged) and both children (untagged) exact; returns every blob's size."""
    descriptor = layout_ref(layout, "v1")
    index_bytes = layout_blob(layout, descriptor["digest"])
    data, digest, media_type = _stored(ecr, repo, {"imageTag": "v1"})
    assert data == index_bytes and digest == descriptor["digest"] == result["image_digest"]
    assert media_type == OCI_INDEX == result["manifest_media_type"]
    children = json.loads(index_bytes)["manifests"]
    assert [c["platform"]["architecture"] for c in children] == ["amd64", "arm64"]
    sizes: dict[str, int] = {}
    for child in children:
        child_bytes, child_digest, child_type = _stored(ecr, repo, {"imageDigest": child["digest"]})
        assert child_bytes == layout_blob(layout, child["digest"]) and len(child_bytes) == child["size"]
        assert child_digest == child["digest"] and child_type == OCI_MANIFEST
        sizes.update(_blob_sizes(json.loads(child_bytes)))
        config = json.loads(layout_blob(layout, json.loads(child_bytes)["config"]["digest"]))
        assert config["architecture"] == child["platform"]["architecture"]
    # The children went first, the index last; the tag is on the index only.
    assert [m["digest"] for m in result["manifests"]] == [c["digest"] for c in children] + [digest]
    listed = ecr.describe_images(repositoryName=repo)["imageDetails"]
    details = {d["imageDigest"]: d.get("imageTags", []) for d in listed}
    assert details == {digest: ["v1"], children[0]["digest"]: [], children[1]["digest"]: []}
    _assert_available(ecr, repo, sizes)
    return sizes


@pytest.mark.parametrize("where", ["oci-archive", "layout-dir"])
def test_two_platform_index_lands_digest_identical(
    where: str, images: Images, repo: str, s3: Any, bucket: str, ecr: Any, stats: Any
) -> None:
    if where == "oci-archive":
        source, kwargs = _upload(s3, bucket, images.multi_tar, "builds/multi.oci.tar"), {}
        members = tar_members(images.multi_tar)
        (entry,) = json.loads(members["index.json"])["manifests"]
        assert entry["digest"] == layout_ref(images.multi, "v1")["digest"]  # skopeo --all kept the index
    else:
        source, kwargs = images.multi.as_uri(), {"image_ref": "v1"}

    result = _push(source, repo, **kwargs)

    sizes = _assert_index_exact(ecr, repo, images.multi, result)
    # The 11 MiB layer is shared by both platforms: three blobs per platform, one of them common.
    assert len(sizes) == 5
    _assert_first_push(result, stats, repo, sizes)

    _assert_repush_uploads_nothing(source, repo, stats, result, **kwargs)


# --- several images: a selector is required ------------------------------------------------


def test_several_images_need_an_image_ref(
    images: Images, repo: str, s3: Any, bucket: str, ecr: Any, stats: Any
) -> None:
    layout = images.multi.as_uri()
    with pytest.raises(InvalidInputError) as caught:
        _push(layout, repo)
    message = str(caught.value)
    assert "holds 3 images" in message and "image_ref" in message
    assert "['amd64', 'arm64', 'v1']" in message
    with pytest.raises(InvalidInputError, match=r"no image named 'riscv64'; it has \['amd64', 'arm64', 'v1'\]"):
        _push(layout, repo, image_ref="riscv64")

    docker = _upload(s3, bucket, images.docker_multi_tar, "builds/multi.docker.tar")
    with pytest.raises(InvalidInputError) as caught:
        _push(docker, repo)
    message = str(caught.value)
    assert "holds 2 images" in message
    assert "['docker.io/example/img:amd64', 'docker.io/example/img:arm64']" in message
    # A docker-save tarball has no index: "*" must not quietly push one of its images.
    with pytest.raises(InvalidInputError, match=r"holds 2 images; choose one with image_ref"):
        _push(docker, repo, image_ref="*")
    with pytest.raises(InvalidInputError, match=r"no image tagged 'example/img:amd64'; it has \['docker\.io/"):
        _push(docker, repo, image_ref="example/img:amd64")
    total = stats.total()
    assert (total.initiate_layer_upload_calls, total.put_image_calls) == (0, 0)
    _nothing_tagged(ecr, repo)

    # By ref name from the layout: exactly that manifest.
    arm = _push(layout, repo, tags=["arm"], image_ref="arm64")
    assert arm["image_digest"] == layout_ref(images.multi, "arm64")["digest"]
    data, digest, _ = _stored(ecr, repo, {"imageTag": "arm"})
    assert data == layout_blob(images.multi, digest)
    assert len(arm["manifests"]) == 1

    # By RepoTags entry from the docker-archive: that image's config and layers.
    amd = _push(docker, repo, tags=["amd"], image_ref="docker.io/example/img:amd64")
    manifest = json.loads(_stored(ecr, repo, {"imageTag": "amd"})[0])
    amd_layout = json.loads(layout_blob(images.multi, layout_ref(images.multi, "amd64")["digest"]))
    amd_config = json.loads(layout_blob(images.multi, amd_layout["config"]["digest"]))
    assert [layer["digest"] for layer in manifest["layers"]] == amd_config["rootfs"]["diff_ids"]
    assert (
        json.loads(tar_members(images.docker_multi_tar)[manifest["config"]["digest"].split(":")[1] + ".json"])[
            "architecture"
        ]
        == "amd64"
    )
    assert amd["image_digest"] != arm["image_digest"]

    # "*": index.json itself, byte for byte, as an image index over all three refs.
    whole = _push(layout, repo, tags=["all"], image_ref="*")
    index_json = (images.multi / "index.json").read_bytes()
    data, digest, media_type = _stored(ecr, repo, {"imageTag": "all"})
    assert data == index_json and digest == sha256(index_json) == whole["image_digest"]
    assert media_type == OCI_INDEX
    refs = ["amd64", "arm64", "v1"]
    assert [m["digest"] for m in whole["manifests"]][-2:] == [layout_ref(images.multi, "v1")["digest"], digest]
    for ref in refs:
        assert _stored(ecr, repo, {"imageDigest": layout_ref(images.multi, ref)["digest"]})[1]


# --- through a DAG ------------------------------------------------------------------------


def test_example_dag_pushes_an_image_archive(
    airflow_db: Any, images: Images, repo: str, s3: Any, bucket: str, ecr: Any
) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    source = _upload(s3, bucket, images.multi_tar, "builds/multi.oci.tar")
    bag = DagBag(dag_folder=str(ROOT / "example_dags"))
    assert bag.import_errors == {}
    dag = bag.get_dag("example_ecr_layers_image_archive")
    run = dag.test(run_conf={"source": source, "repository": repo, "tag": "v1"})
    assert run.state == "success"
    with create_session() as session:
        (row,) = (
            session.query(XComModel)
            .filter_by(dag_id=dag.dag_id, run_id=run.run_id, task_id="push_image", key="return_value")
            .all()
        )
        result = row.value
    if isinstance(result, str):
        result = json.loads(result)
    _assert_index_exact(ecr, repo, images.multi, result)
    assert result["tags"] == ["v1"] and len(json.dumps(result)) < 4096


# --- hostile archives -------------------------------------------------------------------


def _crafted() -> CraftedLayout:
    layers = [layer_tar({"etc/motd": b"hello\n"}), layer_tar({"data/blob.bin": random_bytes(64 * 1024, seed=3)})]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer) for layer in layers]},
        }
    ).encode()
    return CraftedLayout(config, layers)


def _hex(data: bytes) -> str:
    return sha256(data).split(":", 1)[1]


def _relink(layout: CraftedLayout, kind: str) -> list[TarEntry]:
    """The second layer's blob path made a symlink/hardlink to the real bytes stored elsewhere."""
    blobs = layout.blob_names()
    name = f"blobs/sha256/{_hex(layout.layers[1])}"
    data = blobs.pop(name)
    target = "../../stash/layer" if kind == "symlink" else "stash/layer"
    return [
        TarEntry("stash", kind="dir"),
        TarEntry("stash/layer", data),
        *layout.entries(blobs),
        TarEntry(name, kind=kind, target=target),
    ]


def _symlinked_blobs_dir(layout: CraftedLayout) -> list[TarEntry]:
    """blobs/sha256 is a symlink to a directory that holds the real blobs."""
    moved = [TarEntry(name.replace("blobs/sha256", "real"), data) for name, data in layout.blob_names().items()]
    return [
        TarEntry("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        TarEntry("index.json", layout.index()),
        TarEntry("real", kind="dir"),
        *moved,
        TarEntry("blobs", kind="dir"),
        TarEntry("blobs/sha256", kind="symlink", target="../real"),
    ]


def _tampered(layout: CraftedLayout, which: str) -> list[TarEntry]:
    """One blob's bytes changed (same length) under its original digest name."""
    blobs = layout.blob_names()
    original = layout.layers[1] if which == "layer" else layout.manifest()
    name = f"blobs/sha256/{_hex(original)}"
    data = bytearray(blobs[name])
    data[len(data) // 2] ^= 0xFF
    blobs[name] = bytes(data)
    return layout.entries(blobs)


def _missing(layout: CraftedLayout) -> list[TarEntry]:
    blobs = layout.blob_names()
    del blobs[f"blobs/sha256/{_hex(layout.layers[0])}"]
    return layout.entries(blobs)


def _with(**changes: Any) -> list[TarEntry]:
    layout = _crafted()
    for key, value in changes.items():
        setattr(layout, key, value)
    return layout.entries()


def _docker_save(layer_path: str) -> list[TarEntry]:
    layout = _crafted()
    config_name = _hex(layout.config) + ".json"
    manifest = [{"Config": config_name, "RepoTags": ["x:1"], "Layers": [layer_path]}]
    return [
        TarEntry("manifest.json", json.dumps(manifest).encode()),
        TarEntry(config_name, layout.config),
        TarEntry(_hex(layout.layers[0]) + ".tar", layout.layers[0]),
    ]


SIZE_LIE = len(_crafted().layers[1]) + 512
UNKNOWN_TYPE = "application/vnd.example.unknown.v1+json"
LAYER_DIGEST = sha256(_crafted().layers[1])
MANIFEST_DIGEST = sha256(_crafted().manifest())

# (entries, gzip?, exception type, message pattern, upload may start)
HOSTILE = {
    "dotdot-member": (
        lambda: [*_with(), TarEntry("../escape.txt", b"x")],
        False,
        HostileArchiveError,
        r"member '\.\./escape\.txt' escapes the archive with '\.\.'",
        False,
    ),
    "dotdot-inside-path-gzipped": (
        lambda: [*_with(), TarEntry("blobs/sha256/../../../etc/cron.d/x", b"x")],
        True,
        HostileArchiveError,
        r"escapes the archive with '\.\.'",
        False,
    ),
    "absolute-member": (
        lambda: [*_with(), TarEntry("/etc/passwd", b"root::0:0::/:/bin/sh\n")],
        False,
        HostileArchiveError,
        r"member '/etc/passwd' has an absolute path",
        False,
    ),
    "blobs-dir-is-symlink": (
        lambda: _symlinked_blobs_dir(_crafted()),
        False,
        HostileArchiveError,
        r"resolves through a symlink \('blobs/sha256'\)",
        False,
    ),
    "blob-is-symlink": (
        lambda: _relink(_crafted(), "symlink"),
        False,
        HostileArchiveError,
        rf"blob path 'blobs/sha256/{LAYER_DIGEST[7:]}' resolves through a symlink",
        False,
    ),
    "blob-is-hardlink": (
        lambda: _relink(_crafted(), "hardlink"),
        False,
        HostileArchiveError,
        rf"blob path 'blobs/sha256/{LAYER_DIGEST[7:]}' resolves through a hardlink",
        False,
    ),
    "layer-bytes-not-its-digest": (
        lambda: _tampered(_crafted(), "layer"),
        False,
        DigestMismatchError,
        rf"not the expected {LAYER_DIGEST}",
        True,
    ),
    "manifest-bytes-not-its-digest": (
        lambda: _tampered(_crafted(), "manifest"),
        False,
        DigestMismatchError,
        rf"hashes to sha256:[0-9a-f]{{64}}, not {MANIFEST_DIGEST}",
        False,
    ),
    "blob-missing": (
        lambda: _missing(_crafted()),
        False,
        HostileArchiveError,
        rf"'blobs/sha256/{_hex(_crafted().layers[0])}' is named but missing",
        False,
    ),
    "unknown-manifest-media-type": (
        lambda: _with(manifest_media_type=UNKNOWN_TYPE),
        False,
        HostileArchiveError,
        rf"manifest {MANIFEST_DIGEST} has unknown media type '{re.escape(UNKNOWN_TYPE)}'",
        False,
    ),
    "manifest-body-names-unknown-media-type": (
        lambda: _with(body_media_type=UNKNOWN_TYPE),
        False,
        HostileArchiveError,
        rf"manifest sha256:[0-9a-f]{{64}} says '{re.escape(UNKNOWN_TYPE)}', its descriptor '{re.escape(OCI_MANIFEST)}'",
        False,
    ),
    "layer-size-disagrees": (
        lambda: _with(layer_sizes=[len(_crafted().layers[0]), SIZE_LIE]),
        False,
        HostileArchiveError,
        rf"blob {LAYER_DIGEST} is {SIZE_LIE - 512} bytes, its descriptor says {SIZE_LIE}",
        False,
    ),
    "manifest-size-disagrees": (
        lambda: _with(manifest_size=7),
        False,
        HostileArchiveError,
        rf"manifest {MANIFEST_DIGEST} is \d+ bytes, declared 7",
        False,
    ),
    "docker-save-layer-escapes": (
        lambda: _docker_save("../" + _hex(_crafted().layers[0]) + ".tar"),
        False,
        HostileArchiveError,
        r"escapes the archive with '\.\.'",
        False,
    ),
    "docker-save-layer-missing": (
        lambda: _docker_save(_hex(_crafted().layers[1]) + ".tar"),
        False,
        HostileArchiveError,
        r"\.tar' is named but missing from the archive",
        False,
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_nothing_is_tagged(
    case: str, tmp_path: Path, repo: str, s3: Any, bucket: str, ecr: Any, stats: Any
) -> None:
    entries, compress, error, pattern, may_upload = HOSTILE[case]
    archive = write_tar(tmp_path / ("hostile.tar.gz" if compress else "hostile.tar"), entries(), compress=compress)
    source = _upload(s3, bucket, archive, f"hostile/{archive.name}")

    with pytest.raises(error, match=pattern):
        _push(source, repo)

    _nothing_tagged(ecr, repo)
    total = stats.total()
    assert total.put_image_calls == 0
    if not may_upload:
        assert (total.initiate_layer_upload_calls, total.upload_layer_part_calls) == (0, 0)
    else:  # the lying blob streamed, but was never completed into the repository
        response = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[LAYER_DIGEST])
        assert [f["layerDigest"] for f in response["failures"]] + [
            layer["layerDigest"] for layer in response["layers"] if layer["layerAvailability"] != "AVAILABLE"
        ] == [LAYER_DIGEST]


def test_layout_directory_with_a_symlinked_blob_is_refused(tmp_path: Path, repo: str, ecr: Any, stats: Any) -> None:
    layout = _crafted()
    root = tmp_path / "layout"
    for entry in layout.entries():
        path = root / entry.name
        if entry.kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(entry.data)
    outside = tmp_path / "outside.tar"
    blob = root / "blobs" / "sha256" / _hex(layout.layers[1])
    shutil.move(blob, outside)
    os.symlink(outside, blob)
    assert blob.read_bytes() == layout.layers[1]  # a plain reader would follow it

    name = _hex(layout.layers[1])
    pattern = rf"blob path 'blobs/sha256/{name}' resolves through a symlink \('{name}'\)"
    with pytest.raises(HostileArchiveError, match=pattern):
        _push(root.as_uri(), repo)

    _nothing_tagged(ecr, repo)
    total = stats.total()
    assert (total.initiate_layer_upload_calls, total.upload_layer_part_calls, total.put_image_calls) == (0, 0, 0)


# --- an ambiguous image_ref ---------------------------------------------------------------


def _layout_naming(ref: str, *, same_manifest: bool) -> tuple[list[TarEntry], list[str]]:
    """An OCI layout whose index.json has two entries both named ``ref``, and their digests.

    Two different manifests (the first with a platform, the second without) unless
    ``same_manifest``: then the one manifest twice (containerd exports an image under
    each of its names, every entry with the same short ref name).
    """
    first = _crafted()
    second = first if same_manifest else CraftedLayout(first.config.replace(b'"amd64"', b'"arm64"'), first.layers)
    descriptors = []
    for layout, platform in ((first, {"platform": {"os": "linux", "architecture": "amd64"}}), (second, {})):
        manifest = layout.manifest()
        descriptors.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256(manifest),
                "size": len(manifest),
                "annotations": {REF_NAME: ref},
                **platform,
            }
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}).encode()
    entries = [
        TarEntry("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        TarEntry("index.json", index),
        TarEntry("blobs", kind="dir"),
        TarEntry("blobs/sha256", kind="dir"),
        *(TarEntry(name, data) for name, data in {**first.blob_names(), **second.blob_names()}.items()),
    ]
    return entries, [d["digest"] for d in descriptors]


def test_an_ambiguous_image_ref_is_refused_and_nothing_is_written(
    tmp_path: Path, repo: str, s3: Any, bucket: str, ecr: Any, stats: Any
) -> None:
    entries, (amd, other) = _layout_naming("v1", same_manifest=False)
    assert amd != other
    archive = write_tar(tmp_path / "ambiguous.oci.tar", entries)
    source = _upload(s3, bucket, archive, "ambiguous/ambiguous.oci.tar")

    with pytest.raises(InvalidInputError) as caught:
        _push(source, repo, image_ref="v1")

    message = str(caught.value)
    assert "image_ref 'v1' is ambiguous" in message
    assert f"{amd} (linux/amd64)" in message and other in message
    _nothing_tagged(ecr, repo)
    total = stats.total()
    assert (total.initiate_layer_upload_calls, total.upload_layer_part_calls, total.put_image_calls) == (0, 0, 0)


def test_one_manifest_listed_twice_under_the_same_name_is_not_ambiguous(
    tmp_path: Path, repo: str, s3: Any, bucket: str, ecr: Any, stats: Any
) -> None:
    entries, (digest, again) = _layout_naming("v1", same_manifest=True)
    assert digest == again
    archive = write_tar(tmp_path / "twice.oci.tar", entries)
    source = _upload(s3, bucket, archive, "twice/twice.oci.tar")

    result = _push(source, repo, image_ref="v1")

    assert result["image_digest"] == digest
    assert _stored(ecr, repo, {"imageTag": "v1"})[1] == digest
