"""cosign's KMS key references, and the KMS signer's choices, on a stand-in KMS client."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from airflow_ecr_layers.core.errors import EcrServiceError, InvalidInputError, ThrottledError
from airflow_ecr_layers.kms_signing import KmsSigner, kms_key_id

ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.mark.parametrize(
    ("reference", "key_id"),
    [
        ("awskms:///alias/release", "alias/release"),
        (f"awskms:///{ARN}", ARN),
        ("awskms:///1234abcd-12ab-34cd-56ef-1234567890ab", "1234abcd-12ab-34cd-56ef-1234567890ab"),
        ("alias/release", "alias/release"),
    ],
)
def test_cosign_key_references(reference: str, key_id: str) -> None:
    assert kms_key_id(reference) == key_id


@pytest.mark.parametrize("reference", ["", "awskms:///", "awskms://kms.example:443/alias/x"])
def test_bad_key_references_are_bad_input(reference: str) -> None:
    with pytest.raises(InvalidInputError):
        kms_key_id(reference)


class Kms:
    def __init__(self, usage: str = "SIGN_VERIFY", algorithms: tuple[str, ...] = ("ECDSA_SHA_256",)) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.usage, self.algorithms = usage, list(algorithms)
        self.signed: list[dict[str, Any]] = []

    def describe_key(self, KeyId: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        return {"KeyMetadata": {"Arn": ARN, "KeyUsage": self.usage, "SigningAlgorithms": self.algorithms}}

    def sign(self, **params: Any) -> dict[str, Any]:
        self.signed.append(params)
        if params["KeyId"] == "throttled":
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "Sign")
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

        return {"Signature": self.key.sign(params["Message"], ec.ECDSA(Prehashed(hashes.SHA256())))}


def test_the_signer_sends_the_digest_with_the_first_algorithm() -> None:
    kms = Kms(algorithms=("ECDSA_SHA_256",))
    signer = KmsSigner(kms, "awskms:///alias/release")
    digest = hashlib.sha256(b"payload").digest()
    signature = signer.sign_digest(digest)
    assert kms.signed == [
        {"KeyId": ARN, "Message": digest, "MessageType": "DIGEST", "SigningAlgorithm": "ECDSA_SHA_256"}
    ]
    assert (signer.key_id, signer.algorithm) == (ARN, "ECDSA_SHA_256")
    kms.key.public_key().verify(signature, b"payload", ec.ECDSA(hashes.SHA256()))


def test_an_encryption_key_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="SIGN_VERIFY"):
        KmsSigner(Kms(usage="ENCRYPT_DECRYPT"), "alias/data")


def test_kms_errors_keep_their_code_and_throttling_is_retryable() -> None:
    class Missing(Kms):
        def describe_key(self, KeyId: str) -> dict[str, Any]:  # noqa: N803
            raise ClientError({"Error": {"Code": "NotFoundException", "Message": "no alias"}}, "DescribeKey")

    with pytest.raises(EcrServiceError, match="NotFoundException.*no alias \\(KMS key 'alias/x'\\)"):
        KmsSigner(Missing(), "awskms:///alias/x")
    signer = KmsSigner(Kms(), "alias/release")
    signer._arn = "throttled"
    with pytest.raises(ThrottledError):
        signer.sign_digest(b"x" * 32)
