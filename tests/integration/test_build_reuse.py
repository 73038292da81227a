"""Re-builds against the embedded strict ECR: unchanged tar layers are neither read nor sent, one
changed file re-sends its group only; the build record lives beside the image (never in it), and a
record that is missing, unreadable, refused, planted or names a layer ECR lacks only ever costs a
full build."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from airflow_ecr_layers.cli import main
from airflow_ecr_layers.core.build.image import BuildResult, build_image, files_of, plan_build
from airflow_ecr_layers.core.build.records import BUILD_RECORD_TYPE, DIFF_ID, record_tag
from airflow_ecr_layers.core.oci.manifest import EMPTY_DESCRIPTOR
from airflow_ecr_layers.core.sources.identity import IDENTITY, Target
from airflow_ecr_layers.operators import BuildImageOperator
from airflow_ecr_layers.storage import PlainStorage, open_sources
from helpers import pattern_bytes

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
BIG = 64 * 1024
"""``big_file_size`` here: the two 100 KB files get a layer each, the small ones are grouped."""


def write_folder(root: Path, files: dict[str, bytes]) -> str:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return f"file://{root}/"


def small_files(count: int) -> dict[str, bytes]:
    files = {f"data/{i % 9}/f-{i:04d}.txt": pattern_bytes(300 + i % 700, seed=i) for i in range(count)}
    return files | {"big/a.bin": pattern_bytes(100_000, seed=1), "big/b.bin": pattern_bytes(100_000, seed=2)}


def build(hook: Any, repo: str, root: Path, **options: Any) -> BuildResult:
    files = files_of(open_sources(f"file://{root}/", PlainStorage(), allow_empty=True))
    options.setdefault("tags", ["latest"])
    return build_image(hook.engine, repo, files, path="/data", big_file_size=BIG, **options)


def manifest_of(ecr: Any, repo: str, tag: str) -> tuple[dict[str, Any], str]:
    (image,) = ecr.batch_get_image(
        repositoryName=repo, imageIds=[{"imageTag": tag}], acceptedMediaTypes=[OCI_MANIFEST]
    )["images"]
    return json.loads(image["imageManifest"]), image["imageId"]["imageDigest"]


def api_params(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The parameters of an ECR call, as a ``before-call`` handler sees them (the JSON body)."""
    found: dict[str, Any] = json.loads(kwargs["params"]["body"] or b"{}")
    return found


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_rebuild_reads_and_sends_nothing_unchanged_and_one_changed_file_resends_its_group(
    hook: Any, repo: str, ecr: Any, tmp_path: Path, stats: Any
) -> None:
    write_folder(tmp_path, small_files(600))
    first = build(hook, repo, tmp_path)
    total = first.totals["bytes"]
    assert first.totals["reused"] == 0 and first.totals["bytes_read"] == total == first.totals["bytes_sent"]
    assert first.record_digest is not None and first.totals["layers"] >= 4

    # the record is a referrer of the image, beside it: the image itself names no identity
    image, digest = manifest_of(ecr, repo, "latest")
    assert digest == first.image_digest and IDENTITY not in json.dumps(image) and str(tmp_path) not in json.dumps(image)
    record, record_digest = manifest_of(ecr, repo, record_tag(first.image_digest))
    assert record_digest == first.record_digest and record["artifactType"] == BUILD_RECORD_TYPE
    assert record["subject"]["digest"] == first.image_digest and record["config"] == EMPTY_DESCRIPTOR.to_json()
    assert [layer["digest"] for layer in record["layers"]] == [layer["digest"] for layer in image["layers"]]
    assert all(layer["annotations"][DIFF_ID] == layer["digest"] for layer in record["layers"])  # uncompressed
    assert str(tmp_path) not in json.dumps(record) and "tar-layer" not in json.dumps(record)
    referrers = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": first.image_digest})
    assert [(r["digest"], r["artifactType"]) for r in referrers["referrers"]] == [
        (first.record_digest, BUILD_RECORD_TYPE)
    ]

    stats.reset()
    again = build(hook, repo, tmp_path)
    assert again.image_digest == first.image_digest and again.totals["reused"] == again.totals["layers"]
    assert again.totals["bytes_read"] == 0 and again.totals["bytes_sent"] == 0
    assert (
        stats.repository(repo).initiate_layer_upload_calls == 0 and stats.repository(repo).upload_layer_part_calls == 0
    )

    (tmp_path / "data/3/f-0012.txt").write_bytes(b"changed")
    changed = build(hook, repo, tmp_path)
    assert changed.image_digest != first.image_digest
    sent = [layer for layer in changed.layers if not layer.reused]
    assert len(sent) == 1 and sent[0].bytes_read == sent[0].size == sent[0].bytes_sent
    assert changed.totals["bytes_sent"] <= 0.5 * total
    assert [layer.digest for layer in changed.layers if layer.reused] == [
        layer.digest for layer in first.layers if layer.digest != first.layers[changed.layers.index(sent[0])].digest
    ]
    # the new image has its own record: the next build reuses the changed group too
    assert build(hook, repo, tmp_path).totals["bytes_read"] == 0


def test_a_rebuild_into_another_tag_reuses_from_reuse_from_and_the_operator_takes_the_options(
    hook: Any, repo: str, tmp_path: Path
) -> None:
    write_folder(tmp_path, small_files(50))
    first = build(hook, repo, tmp_path, tags=["v1"])
    fresh = build(hook, repo, tmp_path, tags=["v2"])  # no v2 yet: nothing to reuse
    assert fresh.totals["reused"] == 0 and fresh.image_digest == first.image_digest
    reused = build(hook, repo, tmp_path, tags=["v3"], reuse_from="v1")
    assert reused.totals["reused"] == reused.totals["layers"] and reused.totals["bytes_read"] == 0
    by_digest = build(hook, repo, tmp_path, tags=["v4"], reuse_from=first.image_digest, verify_reuse=True)
    assert by_digest.totals["reused"] == by_digest.totals["layers"]
    assert by_digest.totals["bytes_read"] == by_digest.totals["bytes"] and by_digest.totals["bytes_sent"] == 0
    off = build(hook, repo, tmp_path, tags=["v1"], reuse=False)
    assert off.totals["reused"] == 0 and off.totals["bytes_read"] == off.totals["bytes"]

    operated = BuildImageOperator(
        task_id="build",
        source=f"file://{tmp_path}/",
        repository_name=repo,
        tags=["op"],
        reuse_from="v1",
        path="/data",
        big_file_size=BIG,
    ).execute({})
    assert operated["totals"]["reused"] == operated["totals"]["layers"] and operated["totals"]["bytes_read"] == 0
    assert operated["record_digest"]


def test_the_cli_rebuilds_with_verify_reuse_reading_but_sending_nothing(
    capsys: Any, repo: str, ecr: Any, aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_folder(tmp_path, small_files(50))
    for key, value in aws.env().items():
        monkeypatch.setenv(key, value)
    results = []
    for extra in ([], ["--verify-reuse"], ["--no-reuse"]):
        code = main(["build", f"file://{tmp_path}/", f"{repo}:v1", "--path", "/data", *extra])
        out, err = capsys.readouterr()
        assert code == 0, err
        results.append(json.loads(out)["totals"])
    first, verified, off = results
    assert first["reused"] == 0 and first["bytes_sent"] == first["bytes"]
    assert verified["reused"] == verified["layers"] and verified["bytes_read"] == verified["bytes"]
    assert verified["bytes_sent"] == 0
    assert off["reused"] == 0 and off["bytes_read"] == off["bytes"]


def _plant_record(ecr: Any, repo: str, image_digest: str, layers: list[dict[str, Any]], **extra: Any) -> None:
    """Overwrite the build record of ``image_digest`` (its tag is mutable here) with ``layers``."""
    (image,) = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": image_digest}])["images"]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUILD_RECORD_TYPE,
        "config": EMPTY_DESCRIPTOR.to_json(),
        "layers": layers,
        "subject": {"mediaType": OCI_MANIFEST, "digest": image_digest, "size": len(image["imageManifest"])},
        **extra,
    }
    ecr.put_image(repositoryName=repo, imageManifest=json.dumps(manifest), imageTag=record_tag(image_digest))


@pytest.mark.parametrize("how", ["missing", "another artifact type", "another subject", "refused"])
def test_a_missing_unreadable_or_refused_record_costs_one_warning_and_a_full_build(
    how: str, hook: Any, repo: str, ecr: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_folder(tmp_path, small_files(40))
    first = build(hook, repo, tmp_path)
    tag = record_tag(first.image_digest)
    record, _ = manifest_of(ecr, repo, tag)
    client = hook.engine.calls.client

    def deny(**kwargs: Any) -> Any:
        if api_params(kwargs)["imageIds"][0].get("imageTag") != tag:
            return None
        error = {"Code": "AccessDeniedException", "Message": "not authorized to perform: ecr:BatchGetImage"}
        return type("Denied", (), {"status_code": 400})(), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}

    if how == "missing":
        ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": tag}])
    elif how == "another artifact type":
        _plant_record(ecr, repo, first.image_digest, record["layers"], artifactType="application/vnd.other+json")
    elif how == "another subject":
        other = tmp_path.with_name(f"{tmp_path.name}-other")
        write_folder(other, {"x.txt": b"x"})
        record["subject"]["digest"] = build(hook, repo, other, tags=["other"]).image_digest
        ecr.put_image(repositoryName=repo, imageManifest=json.dumps(record), imageTag=tag)
    else:
        client.meta.events.register("before-call.ecr.BatchGetImage", deny)
    try:
        with caplog.at_level(logging.WARNING, logger="airflow_ecr_layers"):
            again = build(hook, repo, tmp_path)
    finally:
        client.meta.events.unregister("before-call.ecr.BatchGetImage", deny)
    assert again.image_digest == first.image_digest and again.totals["reused"] == 0
    assert again.totals["bytes_read"] == again.totals["bytes"]
    (warning,) = warnings_of(caplog)
    assert "every layer is read and sent in full" in warning
    assert {"missing": "has no build record", "refused": "ecr:BatchGetImage"}.get(how, "not one this build reads") in (
        warning
    )


def test_a_recorded_layer_ecr_does_not_report_available_is_read_and_sent_again(
    hook: Any, repo: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Trust first: a record only names digests; ECR must still hold each one before it is used."""
    write_folder(tmp_path, small_files(40))
    first = build(hook, repo, tmp_path)
    missing = first.layers[0].digest
    client = hook.engine.calls.client

    def unavailable(**kwargs: Any) -> Any:
        digests = api_params(kwargs)["layerDigests"]
        if missing not in digests:
            return None
        layers = [
            {"layerDigest": d, "layerAvailability": "AVAILABLE", "layerSize": layer.size}
            for d in digests
            for layer in first.layers
            if layer.digest == d and d != missing
        ]
        failures = [{"layerDigest": missing, "failureCode": "MissingLayerDigest", "failureReason": "gone"}]
        return type("Ok", (), {"status_code": 200})(), {"layers": layers, "failures": failures}

    client.meta.events.register("before-call.ecr.BatchCheckLayerAvailability", unavailable)
    try:
        with caplog.at_level(logging.INFO, logger="airflow_ecr_layers"):
            again = build(hook, repo, tmp_path)
    finally:
        client.meta.events.unregister("before-call.ecr.BatchCheckLayerAvailability", unavailable)
    assert again.image_digest == first.image_digest
    assert [layer.reused for layer in again.layers] == [layer.digest != missing for layer in first.layers]
    assert again.layers[0].bytes_read == again.layers[0].size
    assert "is not usable in ECR" in caplog.text


def test_verify_reuse_refuses_a_planted_record(
    hook: Any, repo: str, ecr: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Who can push and read the files' metadata can map a layer's token to another blob of the
    same size: trusted, it is reused (the documented risk); ``verify_reuse`` reads the files and
    refuses it."""
    decoy_root, real_root = tmp_path / "decoy", tmp_path / "real"
    write_folder(decoy_root, {"model.txt": b"b" * 1000})
    write_folder(real_root, {"model.txt": b"a" * 1000})
    decoy = build(hook, repo, decoy_root, tags=["decoy"])
    real = build(hook, repo, real_root)
    files = files_of(open_sources(f"file://{real_root}/", PlainStorage(), allow_empty=True))
    (layer,) = plan_build(files, path="/data", big_file_size=BIG).layers
    identity = layer.identity()
    assert identity is not None and decoy.layers[0].size == layer.size
    token = identity.token(Target(real.registry_id, hook.engine.calls.region, repo), 0, layer.size)
    planted = decoy.layers[0].digest
    _plant_record(
        ecr,
        repo,
        real.image_digest,
        [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": planted,
                "size": layer.size,
                "annotations": {IDENTITY: token, DIFF_ID: planted},
            }
        ],
    )
    trusting = build(hook, repo, real_root, tags=["trusting"], reuse_from="latest")
    assert trusting.layers[0].reused and trusting.layers[0].digest == planted  # the documented risk

    with caplog.at_level(logging.WARNING, logger="airflow_ecr_layers"):
        verified = build(hook, repo, real_root, tags=["verified"], reuse_from="latest", verify_reuse=True)
    assert not verified.layers[0].reused and verified.image_digest == real.image_digest
    assert "is not what it holds now" in caplog.text


def test_a_record_ecr_refuses_to_write_costs_one_warning_not_the_build(
    hook: Any, repo: str, ecr: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_folder(tmp_path, small_files(20))
    client = hook.engine.calls.client

    def refuse(**kwargs: Any) -> Any:
        if not str(api_params(kwargs).get("imageTag", "")).endswith(".build"):
            return None
        error = {"Code": "AccessDeniedException", "Message": "not authorized to perform: ecr:PutImage"}
        return type("Denied", (), {"status_code": 400})(), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}

    client.meta.events.register("before-call.ecr.PutImage", refuse)
    try:
        with caplog.at_level(logging.WARNING, logger="airflow_ecr_layers"):
            built = build(hook, repo, tmp_path)
    finally:
        client.meta.events.unregister("before-call.ecr.PutImage", refuse)
    assert built.record_digest is None and manifest_of(ecr, repo, "latest")[1] == built.image_digest
    (warning,) = warnings_of(caplog)
    assert "could not be written" in warning
