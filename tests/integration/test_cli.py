"""The console command against the embedded ECR+S3, with a connection id and with the plain AWS chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from airflow_ecr_layers.cli import main
from helpers import MiB, pattern_bytes, sha256


def run(capsys: Any, *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else out), err


def test_push_with_connection_id(capsys: Any, repo: str, put_object: Any, ecr: Any) -> None:
    data = pattern_bytes(5 * MiB + 3)
    url = put_object("cli/model.bin", data)
    code, result, _ = run(
        capsys,
        "push",
        url,
        f"{repo}:v1",
        "--tag",
        "v1.0",
        "--artifact-type",
        "application/vnd.example.v1",
        "--annotation",
        "owner=ml",
        "--conn-id",
        "aws_default",
    )
    assert code == 0
    assert result["tags"] == ["v1", "v1.0"] and result["layers"][0]["digest"] == sha256(data)
    manifest = json.loads(
        ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1.0"}])["images"][0]["imageManifest"]
    )
    assert manifest["annotations"] == {"owner": "ml"} and manifest["artifactType"] == "application/vnd.example.v1"


def test_push_with_plain_aws_environment(
    capsys: Any, repo: str, put_object: Any, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in aws.env().items():
        monkeypatch.setenv(key, value)
    url = put_object("cli/plain.bin", b"plain chain")
    code, result, err = run(capsys, "push", url, f"{repo}:plain")
    assert code == 0, err
    assert result["layers"][0]["digest"] == sha256(b"plain chain")


def test_the_plain_chain_takes_the_region_from_aws_region_too(
    capsys: Any, repo: str, put_object: Any, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore reads AWS_DEFAULT_REGION only; Lambda, ECS and the other SDKs set AWS_REGION."""
    for key, value in aws.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    url = put_object("cli/region.bin", b"region from AWS_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    code, _, err = run(capsys, "push", url, f"{repo}:no-region")
    assert code != 0 and "region" in err.lower()
    monkeypatch.setenv("AWS_REGION", aws.region)
    code, result, err = run(capsys, "push", url, f"{repo}:region")
    assert code == 0, err
    assert result["layers"][0]["digest"] == sha256(b"region from AWS_REGION")


def test_plan_is_a_dry_run(capsys: Any, put_object: Any, stats: Any) -> None:
    url = put_object("cli/big.bin", pattern_bytes(12 * MiB + 1))
    code, result, _ = run(capsys, "plan", url, "--part-size", str(5 * MiB), "--conn-id", "aws_default")
    assert code == 0
    assert (result["size"], result["part_size"], result["parts"]) == (12 * MiB + 1, 5 * MiB, 3)
    assert result["ranges"][-1] == [10 * MiB, 12 * MiB]
    assert stats.total().initiate_layer_upload_calls == 0


def test_errors_are_one_line_with_nonzero_exit(capsys: Any, repo: str, bucket: str) -> None:
    code, _, err = run(capsys, "push", "s3://artifacts/missing.bin", f"{repo}:v1", "--conn-id", "aws_default")
    assert code == 2 and "does not exist" in err and "Traceback" not in err
    code, _, err = run(capsys, "push", "s3://artifacts/missing.bin", "team/models:bad tag", "--conn-id", "aws_default")
    assert code == 2 and "error" in err


def test_an_ecr_refusal_is_not_bad_input(capsys: Any, put_object: Any, stats: Any) -> None:
    url = put_object("cli/refused.bin", b"r" * 100)
    code, _, err = run(capsys, "push", url, "no/such-repository:v1", "--conn-id", "aws_default")
    assert code == 1 and "RepositoryNotFoundException" in err and "Traceback" not in err


def test_console_script_is_installed(aws: Any, tmp_path: Any) -> None:
    artifact = tmp_path / "a.bin"
    artifact.write_bytes(b"x" * 100)
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "airflow-ecr-layers"), "plan", f"file://{artifact}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["parts"] == 1


def test_max_concurrency_zero_is_refused(capsys: Any, repo: str, put_object: Any, stats: Any) -> None:
    url = put_object("cli/zero.bin", b"z" * 100)
    code, _, err = run(capsys, "push", url, f"{repo}:v1", "--max-concurrency", "0", "--conn-id", "aws_default")
    assert code == 2 and "max_concurrency must be an integer of at least 1, got 0" in err
    assert stats.total().initiate_layer_upload_calls == 0


def test_push_a_prefix_then_again_unchanged_reuses_every_layer(
    capsys: Any, repo: str, put_object: Any, stats: Any
) -> None:
    for name in ("a.bin", "sub/b.bin"):
        put_object(f"cli/prefix/{name}", pattern_bytes(5 * MiB + 1, seed=len(name)))
    argv = ("push", "s3://artifacts/cli/prefix/", f"{repo}:v1", "--conn-id", "aws_default")
    code, first, err = run(capsys, *argv)
    assert code == 0, err
    assert [layer["annotations"]["org.opencontainers.image.title"] for layer in first["layers"]] == [
        "a.bin",
        "sub/b.bin",
    ]
    stats.reset()
    code, again, err = run(capsys, *argv)
    assert code == 0, err
    assert again["totals"]["reused"] == 2 and again["totals"]["bytes_read"] == 0
    assert stats.repository(repo).upload_layer_part_calls == 0
    code, hashed, err = run(capsys, *argv, "--no-reuse", "--hash-first", "--tag", "h1")
    assert code == 0, err
    assert hashed["totals"]["reused"] == 0 and hashed["totals"]["skipped"] == 2 and hashed["totals"]["bytes_sent"] == 0
    code, chunked, err = run(capsys, *argv, "--chunk-size", str(5 * MiB), "--record-source", "--tag", "c1")
    assert code == 0, err
    assert len(chunked["layers"]) == 4
    assert chunked["layers"][0]["annotations"]["io.github.airflow-ecr-layers.source.url"].endswith("cli/prefix/a.bin")
