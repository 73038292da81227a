"""Each way a signature can fail to sign an image is named in the check's problems."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from airflow_ecr_layers.core.signing.keys import PublicKeyVerifier
from airflow_ecr_layers.core.signing.payload import simple_signing_payload
from airflow_ecr_layers.core.signing.verify import check_signature, reference_accepted

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app"


def _key() -> tuple[ec.EllipticCurvePrivateKey, PublicKeyVerifier]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, PublicKeyVerifier.load(pem, name="the release key")


def _sign(key: ec.EllipticCurvePrivateKey, payload: bytes) -> str:
    raw = key.sign(hashlib.sha256(payload).digest(), ec.ECDSA(Prehashed(hashes.SHA256())))
    return base64.b64encode(raw).decode()


KEY, VERIFIER = _key()


def check(payload: bytes, signature: str | None, **kwargs: object) -> list[str]:
    options: dict = {"digest": DIGEST, "accepted_references": ["team/app"], **kwargs}
    keys = options.pop("keys", [VERIFIER])
    return check_signature(payload, signature, keys, **options).problems


def test_a_good_signature_has_no_problem() -> None:
    payload = simple_signing_payload(REPO, DIGEST, {"dag": "release"})
    result = check_signature(
        payload,
        _sign(KEY, payload),
        [VERIFIER],
        digest=DIGEST,
        accepted_references=["team/app"],
        required_annotations={"dag": "release"},
    )
    assert result.passed and result.verified_by == "the release key"


def test_a_tampered_payload_does_not_verify() -> None:
    payload = simple_signing_payload(REPO, DIGEST)
    signature = _sign(KEY, payload)
    tampered = payload.replace(b"team/app", b"team/apq")
    problems = check(tampered, signature, accepted_references=["team/apq"])
    assert problems == [
        "the signature does not verify with the release key (signed by another key, or the payload was changed)"
    ]


def test_a_payload_whose_bytes_are_not_the_layers_is_named() -> None:
    payload = simple_signing_payload(REPO, DIGEST)
    problems = check(payload, _sign(KEY, payload), payload_digest=OTHER)
    assert problems == [
        f"the payload's bytes hash to sha256:{hashlib.sha256(payload).hexdigest()}, not to the layer's digest {OTHER}"
    ]


def test_a_signature_of_another_digest_is_named() -> None:
    payload = simple_signing_payload(REPO, OTHER)
    assert check(payload, _sign(KEY, payload)) == [f"the payload signs the image {OTHER}, not {DIGEST}"]


def test_another_key_is_named() -> None:
    payload = simple_signing_payload(REPO, DIGEST)
    other_key, _ = _key()
    assert check(payload, _sign(other_key, payload)) == [
        "the signature does not verify with the release key (signed by another key, or the payload was changed)"
    ]


def test_a_missing_signature_is_named() -> None:
    payload = simple_signing_payload(REPO, DIGEST)
    assert check(payload, None) == ["no signature: the layer has no dev.cosignproject.cosign/signature annotation"]
    assert check(payload, "not base64!") == ["the signature annotation is not base64"]


def test_another_repository_is_named() -> None:
    payload = simple_signing_payload("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/other", DIGEST)
    assert check(payload, _sign(KEY, payload)) == [
        "the payload names the repository '123456789012.dkr.ecr.us-east-1.amazonaws.com/team/other', not 'team/app'"
    ]


def test_required_annotations_are_checked() -> None:
    payload = simple_signing_payload(REPO, DIGEST, {"dag": "nightly"})
    problems = check(payload, _sign(KEY, payload), required_annotations={"dag": "release", "run": None})
    assert problems == [
        "the optional annotation 'dag' is 'nightly', not 'release'",
        "the optional annotation 'run' is missing",
    ]


@pytest.mark.parametrize(
    ("reference", "accepted", "ok"),
    [
        (REPO, ["team/app"], True),
        ("team/app", ["team/app"], True),
        (REPO, [REPO], True),
        (REPO, ["210987654321.dkr.ecr.us-east-1.amazonaws.com/team/app"], False),
        (REPO, ["app"], False),
        ("localhost:5000/team/app", ["team/app"], True),
    ],
)
def test_reference_matching(reference: str, accepted: list[str], ok: bool) -> None:
    assert reference_accepted(reference, accepted) is ok
