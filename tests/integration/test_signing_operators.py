"""Signing and verification through the operators and the CLI, on the embedded ECR and KMS."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from airflow_ecr_layers.cli import main
from airflow_ecr_layers.core.errors import EcrServiceError
from airflow_ecr_layers.core.signing.verify import SignatureVerificationError
from airflow_ecr_layers.operators import (
    CopyImageOperator,
    PushArtifactOperator,
    SignImageOperator,
    VerifyImageSignatureOperator,
)
from airflow_ecr_layers.testing.server import EmbeddedAws
from helpers import make_signing_key


@pytest.fixture
def key(kms: Any) -> str:
    return make_signing_key(kms)


@pytest.fixture
def artifact(put_object: Any) -> str:
    return put_object("sign/model.bin", b"weights v1")


def push(source: str, repo: str, **kwargs: Any) -> dict[str, Any]:
    operator = PushArtifactOperator(task_id="push", source=source, repository_name=repo, tags=["v1"], **kwargs)
    result: dict[str, Any] = operator.execute({})
    return result


def verify(reference: str, keys: Any, **kwargs: Any) -> dict[str, Any]:
    operator = VerifyImageSignatureOperator(task_id="verify", reference=reference, keys=keys, **kwargs)
    result: dict[str, Any] = operator.execute({})
    return result


def test_push_with_sign_with_then_verify(artifact: str, repo: str, key: str) -> None:
    pushed = push(artifact, repo, sign_with=key, signature_annotations={"dag": "release", "run": 7})
    signed = pushed["signature"]["signed"][0]
    assert signed["image_digest"] == pushed["image_digest"]
    assert signed["signature_tag"] == "sha256-" + pushed["image_digest"][7:] + ".sig"
    json.dumps(pushed)
    result = verify(f"{repo}:v1", key, required_annotations={"dag": "release", "run": "7"})
    assert result["verified"] and result["image_digest"] == pushed["image_digest"]
    assert result["signatures"][0]["optional"] == {"dag": "release", "run": "7"}


def test_the_signing_arguments_are_templated() -> None:
    for operator in (PushArtifactOperator, CopyImageOperator):
        assert {"sign_with", "signature_annotations"} <= set(operator.template_fields)
    assert {"key", "annotations"} <= set(SignImageOperator.template_fields)
    assert {"keys", "required_annotations"} <= set(VerifyImageSignatureOperator.template_fields)


def test_a_signing_failure_fails_the_task_and_leaves_the_pushed_image(artifact: str, repo: str, ecr: Any) -> None:
    with pytest.raises(EcrServiceError, match="NotFoundException"):
        push(artifact, repo, sign_with="awskms:///alias/missing")
    assert [i.get("imageTags") for i in ecr.describe_images(repositoryName=repo)["imageDetails"]] == [["v1"]]


def test_sign_an_existing_image_and_verify_fails_for_the_unsigned_one(
    artifact: str, put_object: Any, repo: str, key: str, kms: Any, tmp_path: Any
) -> None:
    push(artifact, repo)
    other = PushArtifactOperator(
        task_id="p2", source=put_object("sign/other.bin", b"other"), repository_name=repo, tags=["v2"]
    ).execute({})
    with pytest.raises(SignatureVerificationError, match="has no cosign signature"):
        verify(f"{repo}:v1", key)
    SignImageOperator(task_id="sign", reference=f"{repo}:v1", key=key, annotations={"by": "ci"}).execute({})
    pem = serialization.load_der_public_key(kms.get_public_key(KeyId="alias/release")["PublicKey"]).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert verify(f"{repo}:v1", pem.decode())["verified"]
    with pytest.raises(SignatureVerificationError, match=r"'by' is 'ci', not 'release'"):
        verify(f"{repo}:v1", key, required_annotations={"by": "release"})
    with pytest.raises(SignatureVerificationError, match="has no cosign signature"):
        verify(f"{repo}@{other['image_digest']}", key)


def run(capsys: Any, *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else out), err


def test_cli_sign_and_verify(capsys: Any, artifact: str, repo: str, key: str) -> None:
    push(artifact, repo)
    code, unsigned, err = run(capsys, "verify", f"{repo}:v1", "--key", key, "--conn-id", "aws_default")
    assert code == 1 and "has no cosign signature" in err
    code, signed, err = run(
        capsys, "sign", f"{repo}:v1", "--key", key, "--annotation", "dag=cli", "--conn-id", "aws_default"
    )
    assert code == 0, err
    assert signed["algorithm"] == "ECDSA_SHA_256"
    code, verified, err = run(
        capsys, "verify", f"{repo}:v1", "--key", key, "--require", "dag=cli", "--conn-id", "aws_default"
    )
    assert code == 0 and verified["verified"], err
    code, _, err = run(
        capsys, "verify", f"{repo}:v1", "--key", key, "--require", "dag=other", "--conn-id", "aws_default"
    )
    assert code == 1 and "'dag' is 'cli', not 'other'" in err
    code, _, err = run(
        capsys, "sign", f"{repo}:v1", "--key", "awskms://kms.example/alias/x", "--conn-id", "aws_default"
    )
    assert code == 2 and "names a KMS endpoint" in err


def test_cli_on_the_plain_aws_chain(
    capsys: Any, artifact: str, repo: str, key: str, aws: EmbeddedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    push(artifact, repo)
    capsys.readouterr()  # the push's log lines
    for name, value in aws.env().items():
        monkeypatch.setenv(name, value)
    code, _, err = run(capsys, "sign", f"{repo}:v1", "--key", key)
    assert code == 0, err
    code, verified, err = run(capsys, "verify", f"{repo}:v1", "--key", key)
    assert code == 0 and verified["verified"], err


def test_copy_with_sign_with_signs_the_digest_in_the_destination(artifact: str, repo: str, key: str, ecr: Any) -> None:
    pushed = push(artifact, repo)
    ecr.create_repository(repositoryName="team/released")
    copied = CopyImageOperator(
        task_id="copy",
        source=f"{repo}:v1",
        repository_name="team/released",
        sign_with=key,
        signature_mode="referrers",
    ).execute({})
    (signed,) = copied["signature"]["signed"]
    assert signed["image_digest"] == pushed["image_digest"] and signed["signature_tag"] is None
    assert copied["signature"]["docker_reference"].endswith("/team/released")
    assert verify("team/released:v1", key)["signatures"][0]["where"].startswith("referrer ")
    with pytest.raises(SignatureVerificationError, match="has no cosign signature"):
        verify(f"{repo}:v1", key)  # the source stays unsigned
