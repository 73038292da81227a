"""Pull and copy against the embedded ECR, which serves layers at download URLs as ECR does.

Every layer goes over HTTP: GetDownloadUrlForLayer, then ranged GETs of the URL. A proxy
between the reader and the blob server cuts or corrupts bodies where a test needs it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import boto3
import pytest

from airflow_ecr_layers.core.ecr.calls import DownloadUrl, EcrCalls
from airflow_ecr_layers.core.errors import DigestMismatchError, InvalidInputError
from airflow_ecr_layers.core.oci.manifest import (
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    build_image_manifest,
    encode_manifest,
)
from airflow_ecr_layers.core.push.artifact import ensure_empty_config, put_artifact_manifest
from airflow_ecr_layers.core.sources.blobs import BytesSource
from airflow_ecr_layers.operators import CopyImageOperator, PullArtifactOperator, PushArtifactOperator
from airflow_ecr_layers.testing.server import EmbeddedAws
from helpers import MiB, another_account, make_signing_key, pattern_bytes, sha256
from proxies import CuttingProxy

PART = 5 * MiB
OTHER_ACCOUNT = "210987654321"
FILES = {
    "config.json": b'{"layers": 12}',
    "weights/a.bin": pattern_bytes(6 * MiB + 11, seed=2),
    "weights/b.bin": pattern_bytes(300_000, seed=3),
}


def push(source: Any, repo: str, tag: str = "v1", **kwargs: Any) -> dict[str, Any]:
    operator = PushArtifactOperator(
        task_id="push",
        source=source,
        repository_name=repo,
        tags=[tag],
        part_size=PART,
        aws_conn_id="aws_default",
        **kwargs,
    )
    result: dict[str, Any] = operator.execute({})
    return result


def pull(reference: str, destination: str, **kwargs: Any) -> dict[str, Any]:
    operator = PullArtifactOperator(
        task_id="pull", reference=reference, destination=destination, aws_conn_id="aws_default", **kwargs
    )
    result: dict[str, Any] = operator.execute({})
    return result


def objects(s3: Any, prefix: str) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket="artifacts", Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix) :]: s3.get_object(Bucket="artifacts", Key=o["Key"])["Body"].read() for o in listed}


@pytest.fixture
def pushed(put_object: Callable[[str, bytes], str], repo: str) -> dict[str, Any]:
    for name, data in FILES.items():
        put_object(f"models/run-7/{name}", data)
    return push("s3://artifacts/models/run-7/", repo)


@pytest.fixture
def through(monkeypatch: pytest.MonkeyPatch, aws: EmbeddedAws) -> Iterator[Callable[..., CuttingProxy]]:
    """``through(keep=..., cuts=..., corrupt=...)``: every download URL ECR gives goes through a proxy."""
    proxies: list[CuttingProxy] = []
    real = EcrCalls.get_download_url_for_layer

    def make(**kwargs: Any) -> CuttingProxy:
        proxy = CuttingProxy(aws.blob_url, **{"keep": 1000, "cuts": 0, **kwargs}).__enter__()
        proxies.append(proxy)

        def via_proxy(self: EcrCalls, *args: Any, **kw: Any) -> DownloadUrl:
            found = real(self, *args, **kw)
            parts = urlsplit(found.url)
            return DownloadUrl(urlunsplit(parts._replace(netloc=urlsplit(proxy.endpoint_url).netloc)), found.digest)

        monkeypatch.setattr(EcrCalls, "get_download_url_for_layer", via_proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.__exit__()


# -- pull ------------------------------------------------------------------------------------------


def test_a_pushed_prefix_pulls_back_byte_for_byte_into_another_prefix(
    pushed: dict[str, Any], repo: str, s3: Any
) -> None:
    result = pull(f"{repo}:v1", "s3://artifacts/restored/run-7/")
    assert objects(s3, "restored/run-7/") == FILES
    assert [(f["title"], f["size"], f["digest"]) for f in result["files"]] == [
        (name, len(data), sha256(data)) for name, data in sorted(FILES.items())
    ]
    assert result["files"][0]["path"] == "s3://artifacts/restored/run-7/config.json"
    assert result["image_digest"] == pushed["image_digest"] and result["bytes"] == sum(map(len, FILES.values()))
    json.dumps(result)
    assert "X-Amz" not in json.dumps(result) and "sig=" not in json.dumps(result)  # no download URL in XCom


def test_pull_by_digest_into_a_local_folder_with_include(pushed: dict[str, Any], repo: str, tmp_path: Any) -> None:
    result = pull(f"{repo}@{pushed['image_digest']}", f"file://{tmp_path}/out/", include="weights/*")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()) == [
        "weights/a.bin",
        "weights/b.bin",
    ]
    assert (tmp_path / "out" / "weights" / "a.bin").read_bytes() == FILES["weights/a.bin"]
    assert len(result["files"]) == 2


def test_a_chunked_file_comes_back_as_one_file(
    put_object: Callable[[str, bytes], str], repo: str, tmp_path: Any
) -> None:
    data = pattern_bytes(16 * MiB + 3, seed=5)
    push(put_object("big/model.bin", data), repo, chunk_size=6 * MiB, max_concurrency=3)
    result = pull(f"{repo}:v1", f"file://{tmp_path}/")
    assert (tmp_path / "model.bin").read_bytes() == data
    [file] = result["files"]
    assert (file["title"], file["size"], file["digest"], len(file["layers"])) == (
        "model.bin",
        len(data),
        sha256(data),
        3,
    )


def test_hostile_titles_are_refused_before_anything_is_read_or_written(
    repo: str, hook: Any, tmp_path: Any, stats: Any
) -> None:
    engine = hook.engine
    good = engine.push_blob(repo, BytesSource(b"fine"), media_type="application/octet-stream")
    evil = engine.push_blob(repo, BytesSource(b"evil"), media_type="application/octet-stream")
    title = "org.opencontainers.image.title"
    # crafted by hand: put_artifact_manifest refuses such titles, as a push does
    ensure_empty_config(engine, repo, None)
    crafted = build_image_manifest(
        [
            Descriptor(good.media_type, good.digest, good.size, {title: "ok.txt"}),
            Descriptor(evil.media_type, evil.digest, evil.size, {title: "../../escape.txt"}),
        ]
    )
    engine.put_manifest(repo, crafted, ["evil"])
    with pytest.raises(InvalidInputError, match=r"'\.\./\.\./escape\.txt': it climbs out"):
        pull(f"{repo}:evil", f"file://{tmp_path}/out/")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.txt").exists()
    assert stats.repository(repo).get_download_url_for_layer_calls == 0


@pytest.mark.parametrize("link", ["weights", "config.json"])
def test_a_symlink_in_the_destination_is_not_followed(
    pushed: dict[str, Any], repo: str, tmp_path: Any, stats: Any, link: str
) -> None:
    """A folder (or file) of the destination that is a symlink to somewhere else: nothing is
    written through it, nor anywhere else; the error names it."""
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "config.json").write_bytes(b"theirs")
    (out / link).symlink_to(elsewhere if link == "weights" else elsewhere / "config.json")
    with pytest.raises(InvalidInputError, match=f"symlink.*{link}") as excinfo:
        pull(f"{repo}:v1", f"file://{out}/")
    assert str(out / link) in str(excinfo.value)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["config.json"]
    assert (elsewhere / "config.json").read_bytes() == b"theirs"
    assert [p.name for p in out.iterdir()] == [link] and (out / link).is_symlink()  # nothing written
    assert stats.repository(repo).get_download_url_for_layer_calls == 0  # refused before reading


@pytest.fixture
def cased(put_object: Callable[[str, bytes], str], repo: str) -> dict[str, Any]:
    """An artifact whose names differ only by case: fine in S3, two files in one on some disks."""
    put_object("cased/Model.bin", b"upper")
    put_object("cased/model.bin", b"lower")
    put_object("cased/Docs/a.txt", b"a")
    put_object("cased/docs/b.txt", b"b")
    return push("s3://artifacts/cased/", repo, tag="cased")


def test_names_that_differ_only_by_case_are_refused_on_a_case_insensitive_folder(
    cased: dict[str, Any], repo: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_ecr_layers import storage

    probed: list[str] = []

    def insensitive(folder: str) -> bool:
        probed.append(folder)
        return False

    monkeypatch.setattr(storage, "case_sensitive", insensitive, raising=False)
    with pytest.raises(InvalidInputError, match="differ only by case") as excinfo:
        pull(f"{repo}:cased", f"file://{tmp_path}/out/")
    assert "'Docs' and 'docs'" in str(excinfo.value) and "'Model.bin' and 'model.bin'" in str(excinfo.value)
    assert probed == [str(tmp_path / "out")]
    assert not (tmp_path / "out").exists()  # nothing written, not even the folder
    monkeypatch.undo()
    pull(f"{repo}:cased", f"file://{tmp_path}/out/")  # this disk tells the names apart
    assert (tmp_path / "out" / "Model.bin").read_bytes() == b"upper"
    assert (tmp_path / "out" / "model.bin").read_bytes() == b"lower"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["Docs", "Model.bin", "docs", "model.bin"]


def test_the_case_probe_tells_this_disk_apart(tmp_path: Any) -> None:
    from airflow_ecr_layers import storage

    assert storage.case_sensitive(str(tmp_path)) is True
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind


@pytest.mark.parametrize(
    ("keys", "refused"),
    [
        (["odd/ok.bin", "odd/a\\b.bin"], "Refusing the layer title 'a\\\\b.bin'"),
        (["odd/a", "odd/a/b"], "'a' is both a file and a folder"),
    ],
)
def test_a_push_refuses_the_titles_a_pull_would_refuse(
    put_object: Callable[[str, bytes], str], repo: str, stats: Any, keys: list[str], refused: str
) -> None:
    for key in keys:
        put_object(key, b"data")
    with pytest.raises(InvalidInputError, match=re.escape(refused)):
        push("s3://artifacts/odd/", repo)
    assert stats.total().initiate_layer_upload_calls == 0  # refused before anything was read or sent


def test_a_manifest_put_step_by_step_refuses_them_too(repo: str, hook: Any, ecr: Any) -> None:
    blob = hook.engine.push_blob(repo, BytesSource(b"evil"), media_type="application/octet-stream")
    hostile = Descriptor(blob.media_type, blob.digest, blob.size, {"org.opencontainers.image.title": "../x"})
    with pytest.raises(InvalidInputError, match="Refusing the layer title '../x'"):
        put_artifact_manifest(hook.engine, repo, [hostile], tags=["evil"])
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []


def test_a_download_whose_body_breaks_resumes_where_it_broke(
    pushed: dict[str, Any], repo: str, tmp_path: Any, through: Callable[..., CuttingProxy]
) -> None:
    proxy = through(keep=1_000_000, cuts=1)
    pull(f"{repo}:v1", f"file://{tmp_path}/", include="weights/a.bin")
    assert (tmp_path / "weights" / "a.bin").read_bytes() == FILES["weights/a.bin"]
    gets = proxy.ranged_gets()
    assert gets[0].cut and gets[0].range_start == 0
    assert gets[1].range_start == 1_000_000  # from the first byte not received, not from the start
    assert not proxy.errors


def test_a_corrupted_download_fails_with_nothing_written(
    pushed: dict[str, Any], repo: str, s3: Any, tmp_path: Any, through: Callable[..., CuttingProxy]
) -> None:
    through(corrupt=1)
    with pytest.raises(DigestMismatchError, match="weights/a.bin"):
        pull(f"{repo}:v1", "s3://artifacts/corrupt/", include="weights/a.bin")
    assert objects(s3, "corrupt/") == {}
    assert s3.list_multipart_uploads(Bucket="artifacts").get("Uploads", []) == []
    through(corrupt=1)
    with pytest.raises(DigestMismatchError):
        pull(f"{repo}:v1", f"file://{tmp_path}/", include="weights/a.bin")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # no final file, no temporary one


def test_an_expired_download_url_is_replaced(pushed: dict[str, Any], repo: str, tmp_path: Any) -> None:
    from airflow_ecr_layers.testing import blob_server

    blob_server.set_url_lifetime(-1)  # every URL ECR gives is already expired
    try:
        with pytest.raises(Exception, match="refused"):
            pull(f"{repo}:v1", f"file://{tmp_path}/", include="config.json")
    finally:
        blob_server.set_url_lifetime(blob_server.DEFAULT_URL_LIFETIME)
    pull(f"{repo}:v1", f"file://{tmp_path}/", include="config.json")
    assert (tmp_path / "config.json").read_bytes() == FILES["config.json"]


# -- copy ------------------------------------------------------------------------------------------


def manifest_bytes(ecr: Any, repo: str, image_id: dict[str, str]) -> bytes:
    image = ecr.batch_get_image(
        repositoryName=repo,
        imageIds=[image_id],
        acceptedMediaTypes=[OCI_MANIFEST, OCI_INDEX],
    )["images"][0]
    return str(image["imageManifest"]).encode()


def copy(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("aws_conn_id", "aws_default")
    result: dict[str, Any] = CopyImageOperator(task_id="copy", **kwargs).execute({})
    return result


def test_a_copy_to_another_region_keeps_every_digest(
    pushed: dict[str, Any], repo: str, ecr: Any, aws: EmbeddedAws
) -> None:
    west = boto3.client("ecr", endpoint_url=aws.endpoint_url, region_name="eu-west-1")
    west.create_repository(repositoryName="dr/models")
    result = copy(source=f"{repo}:v1", repository_name="dr/models", region_name="eu-west-1")
    assert result["image_digest"] == pushed["image_digest"] and result["tags"] == ["v1"]
    assert manifest_bytes(west, "dr/models", {"imageTag": "v1"}) == manifest_bytes(ecr, repo, {"imageTag": "v1"})
    digests = [layer["digest"] for layer in pushed["layers"]]
    found = west.batch_check_layer_availability(repositoryName="dr/models", layerDigests=digests)["layers"]
    assert {f["layerDigest"]: f["layerSize"] for f in found} == {
        layer["digest"]: layer["size"] for layer in pushed["layers"]
    }


@pytest.fixture
def prod(aws: EmbeddedAws, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An Airflow connection ``aws_prod`` to a second account of the embedded server."""
    client = another_account(aws, monkeypatch, OTHER_ACCOUNT)
    client.create_repository(repositoryName="prod/models")
    return client


def test_a_copy_to_another_account_with_its_own_connection(
    pushed: dict[str, Any], repo: str, ecr: Any, prod: Any, stats: Any
) -> None:
    result = copy(
        source=f"{repo}:v1",
        source_aws_conn_id="aws_default",
        aws_conn_id="aws_prod",
        repository_name="prod/models",
        tags=["release"],
    )
    assert result["registry_id"] == OTHER_ACCOUNT and result["tags"] == ["release"]
    assert manifest_bytes(prod, "prod/models", {"imageTag": "release"}) == manifest_bytes(ecr, repo, {"imageTag": "v1"})
    assert result["bytes_copied"] == sum(map(len, FILES.values())) + 2  # the files and the empty config
    assert prod.describe_images(repositoryName="prod/models")["imageDetails"][0]["registryId"] == OTHER_ACCOUNT


def test_a_copy_sends_only_the_blobs_the_target_lacks(
    put_object: Callable[[str, bytes], str], repo: str, ecr: Any, hook: Any, stats: Any
) -> None:
    blobs = [pattern_bytes(PART + 1000 * n, seed=n) for n in range(4)]
    for n, data in enumerate(blobs):
        put_object(f"four/{n}.bin", data)
    pushed = push("s3://artifacts/four/", repo)
    ecr.create_repository(repositoryName="team/mirror")
    for data in blobs[:2]:  # the target already holds half of them
        hook.engine.push_blob("team/mirror", BytesSource(data), media_type="application/octet-stream", part_size=PART)
    ensure_empty_config(hook.engine, "team/mirror", None)
    stats.reset()
    result = copy(source=f"{repo}:v1", repository_name="team/mirror")
    mirror = stats.repository("team/mirror")
    assert mirror.layers_completed == 2 and mirror.bytes_received == len(blobs[2]) + len(blobs[3])
    assert sorted(b["digest"] for b in result["blobs"] if not b["skipped"]) == sorted(sha256(b) for b in blobs[2:])
    assert stats.repository(repo).get_download_url_for_layer_calls == 2
    assert result["image_digest"] == pushed["image_digest"]


def test_a_two_platform_index_is_copied_children_first(repo: str, ecr: Any, hook: Any) -> None:
    engine = hook.engine
    children = []
    for platform in ("amd64", "arm64"):
        layer = engine.push_blob(
            repo,
            BytesSource(f"layer for {platform}".encode() * 1000),
            media_type="application/vnd.oci.image.layer.v1.tar",
        )
        config = engine.push_blob(
            repo,
            BytesSource(json.dumps({"architecture": platform, "os": "linux"}).encode()),
            media_type="application/vnd.oci.image.config.v1+json",
        )
        manifest = build_image_manifest(
            [layer.descriptor()], config=Descriptor(config.media_type, config.digest, config.size)
        )
        engine.put_manifest(repo, manifest, [])
        children.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": manifest.digest,
                "size": manifest.size,
                "platform": {"architecture": platform, "os": "linux"},
            }
        )
    index = encode_manifest({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}, OCI_INDEX)
    engine.put_manifest(repo, index, ["multi"])
    ecr.create_repository(repositoryName="team/mirror")
    result = copy(source=f"{repo}:multi", repository_name="team/mirror")
    assert result["image_digest"] == index.digest and result["manifest_media_type"] == OCI_INDEX
    assert [m["digest"] for m in result["manifests"]] == [c["digest"] for c in children] + [index.digest]
    assert manifest_bytes(ecr, "team/mirror", {"imageTag": "multi"}) == index.data
    for child in children:
        assert manifest_bytes(ecr, "team/mirror", {"imageDigest": child["digest"]}) == manifest_bytes(
            ecr, repo, {"imageDigest": child["digest"]}
        )


def test_referrers_follow_the_image_when_asked(pushed: dict[str, Any], repo: str, ecr: Any, put_object: Any) -> None:
    sbom = push(
        put_object("sbom/sbom.json", b'{"spdxVersion": "SPDX-2.3"}'),
        repo,
        tag="sbom",
        subject=pushed["image_digest"],
        artifact_type="application/spdx+json",
    )
    ecr.create_repository(repositoryName="team/mirror")
    plain = copy(source=f"{repo}:v1", repository_name="team/mirror")
    assert plain["referrers"] == []
    ecr.create_repository(repositoryName="team/mirror2")
    result = copy(source=f"{repo}:v1", repository_name="team/mirror2", include_referrers=True)
    assert [r["image_digest"] for r in result["referrers"]] == [sbom["image_digest"]]
    assert manifest_bytes(ecr, "team/mirror2", {"imageDigest": sbom["image_digest"]}) == manifest_bytes(
        ecr, repo, {"imageDigest": sbom["image_digest"]}
    )


def test_a_copy_tags_the_destination_after_its_referrers(
    pushed: dict[str, Any], repo: str, ecr: Any, put_object: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a push does, tags go last: nothing tagged in the destination points at an image whose
    referrers (an SBOM, and a signature of that SBOM) are still missing there."""
    sbom = push(
        put_object("sbom/sbom.json", b'{"spdxVersion": "SPDX-2.3"}'),
        repo,
        tag="sbom",
        subject=pushed["image_digest"],
        artifact_type="application/spdx+json",
    )
    signature = push(
        put_object("sig/sig.json", b'{"signature": "of the sbom"}'),
        repo,
        tag="sig",
        subject=sbom["image_digest"],
        artifact_type="application/vnd.example.signature",
    )
    puts: list[tuple[str, str, str | None]] = []
    real = EcrCalls.put_image

    def recorded(self: EcrCalls, repository_name: str, manifest: Any, tag: str | None, *args: Any, **kw: Any) -> Any:
        puts.append((repository_name, manifest.digest, tag))
        return real(self, repository_name, manifest, tag, *args, **kw)

    monkeypatch.setattr(EcrCalls, "put_image", recorded)
    ecr.create_repository(repositoryName="team/mirror")
    result = copy(source=f"{repo}:v1", repository_name="team/mirror", include_referrers=True, tags=["v1", "prod"])
    assert [r["image_digest"] for r in result["referrers"]] == [sbom["image_digest"], signature["image_digest"]]
    assert result["tags"] == ["v1", "prod"]
    into = [(digest, tag) for repository, digest, tag in puts if repository == "team/mirror"]
    first_tagged = min(n for n, (_, tag) in enumerate(into) if tag is not None)
    referrers_put = [
        n for n, (digest, _) in enumerate(into) if digest in (sbom["image_digest"], signature["image_digest"])
    ]
    assert referrers_put and max(referrers_put) < first_tagged
    assert into[first_tagged:] == [(pushed["image_digest"], "v1"), (pushed["image_digest"], "prod")]
    for tag in ("v1", "prod"):
        assert manifest_bytes(ecr, "team/mirror", {"imageTag": tag}) == manifest_bytes(ecr, repo, {"imageTag": "v1"})


def platform_image(engine: Any, repo: str, platform: str) -> dict[str, Any]:
    """Put a small image for ``platform`` (untagged); its descriptor, as an index names it."""
    layer = engine.push_blob(
        repo, BytesSource(f"layer for {platform}".encode() * 1000), media_type="application/vnd.oci.image.layer.v1.tar"
    )
    config = engine.push_blob(
        repo,
        BytesSource(json.dumps({"architecture": platform, "os": "linux"}).encode()),
        media_type="application/vnd.oci.image.config.v1+json",
    )
    manifest = build_image_manifest(
        [layer.descriptor()], config=Descriptor(config.media_type, config.digest, config.size)
    )
    engine.put_manifest(repo, manifest, [])
    return {
        "mediaType": OCI_MANIFEST,
        "digest": manifest.digest,
        "size": manifest.size,
        "platform": {"architecture": platform, "os": "linux"},
    }


def put_index(engine: Any, repo: str, entries: list[dict[str, Any]], tags: list[str] | None = None) -> Any:
    index = encode_manifest({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, OCI_INDEX)
    engine.put_manifest(repo, index, tags or [])
    return index


def test_an_index_listing_one_child_twice_is_copied(repo: str, ecr: Any, hook: Any, stats: Any) -> None:
    child = platform_image(hook.engine, repo, "amd64")
    variant = {**child, "platform": {"architecture": "amd64", "os": "linux", "variant": "v2"}}
    index = put_index(hook.engine, repo, [child, variant], ["twice"])
    ecr.create_repository(repositoryName="team/mirror")
    stats.reset()
    result = copy(source=f"{repo}:twice", repository_name="team/mirror")
    assert [m["digest"] for m in result["manifests"]] == [child["digest"], index.digest]
    assert manifest_bytes(ecr, "team/mirror", {"imageTag": "twice"}) == index.data
    assert stats.repository("team/mirror").put_image_calls == 2  # the child once, the index once
    assert stats.repository("team/mirror").layers_completed == 2  # its layer and config, once each


def test_a_child_shared_by_two_nested_indexes_is_copied_once(repo: str, ecr: Any, hook: Any, stats: Any) -> None:
    engine = hook.engine
    amd, arm, shared = (platform_image(engine, repo, p) for p in ("amd64", "arm64", "riscv64"))
    left = put_index(engine, repo, [amd, shared])
    right = put_index(engine, repo, [shared, arm])
    nested = [{"mediaType": OCI_INDEX, "digest": i.digest, "size": i.size} for i in (left, right)]
    top = put_index(engine, repo, nested, ["nested"])
    ecr.create_repository(repositoryName="team/mirror")
    stats.reset()
    result = copy(source=f"{repo}:nested", repository_name="team/mirror")
    assert [m["digest"] for m in result["manifests"]] == [
        amd["digest"],
        shared["digest"],
        left.digest,
        arm["digest"],
        right.digest,
        top.digest,
    ]
    assert stats.repository("team/mirror").put_image_calls == 6  # each manifest once
    assert manifest_bytes(ecr, "team/mirror", {"imageTag": "nested"}) == top.data
    for digest in (shared["digest"], left.digest, right.digest):
        assert manifest_bytes(ecr, "team/mirror", {"imageDigest": digest}) == manifest_bytes(
            ecr, repo, {"imageDigest": digest}
        )


def test_copy_refuses_a_digest_as_destination_and_a_missing_source(repo: str, ecr: Any, stats: Any) -> None:
    with pytest.raises(InvalidInputError, match="takes tags, not a digest"):
        copy(source=f"{repo}:v1", destination="team/other@sha256:" + "0" * 64)
    ecr.create_repository(repositoryName="team/mirror")
    with pytest.raises(InvalidInputError, match="No image"):
        copy(source=f"{repo}:nope", repository_name="team/mirror")
    assert stats.total().initiate_layer_upload_calls == 0


def test_the_cli_pulls_and_copies(pushed: dict[str, Any], repo: str, ecr: Any, tmp_path: Any, capsys: Any) -> None:
    from airflow_ecr_layers.cli import main

    assert main(["pull", f"{repo}:v1", f"file://{tmp_path}/", "--conn-id", "aws_default"]) == 0
    pulled = json.loads(capsys.readouterr().out)
    assert len(pulled["files"]) == 3 and (tmp_path / "config.json").read_bytes() == FILES["config.json"]
    ecr.create_repository(repositoryName="team/mirror")
    assert main(["copy", f"{repo}:v1", "team/mirror:copied", "--conn-id", "aws_default"]) == 0
    copied = json.loads(capsys.readouterr().out)
    assert copied["tags"] == ["copied"] and copied["image_digest"] == pushed["image_digest"]


def test_include_referrers_also_copies_cosigns_signature_tag_and_it_verifies_in_prod(
    pushed: dict[str, Any], repo: str, prod: Any, ecr: Any, kms: Any
) -> None:
    from airflow_ecr_layers.operators import SignImageOperator, VerifyImageSignatureOperator

    make_signing_key(kms)
    SignImageOperator(task_id="sign", reference=f"{repo}:v1", key="awskms:///alias/release").execute({})
    tag = "sha256-" + pushed["image_digest"][7:] + ".sig"
    result = copy(
        source=f"{repo}:v1",
        aws_conn_id="aws_prod",
        source_aws_conn_id="aws_default",
        repository_name="prod/models",
        include_referrers=True,
    )
    assert result["signature_tags"] == [tag]
    assert manifest_bytes(prod, "prod/models", {"imageTag": tag}) == manifest_bytes(ecr, repo, {"imageTag": tag})
    verified = VerifyImageSignatureOperator(
        task_id="verify",
        reference="prod/models:v1",
        keys="awskms:///alias/release",
        kms_aws_conn_id="aws_default",  # the key is in the account that signed
        accepted_references=[repo],  # the payload names the repository it was signed in
        aws_conn_id="aws_prod",
    ).execute({})
    assert verified["verified"] and verified["registry_id"] == OTHER_ACCOUNT
