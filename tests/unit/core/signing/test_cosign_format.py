"""cosign's signature format, checked against its specification with ``cryptography`` alone.

The expected bytes here are written out from cosign's SIGNATURE_SPEC and containers-signature(5)
(the payload as Go's encoding/json writes it), not computed with the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.oci.cosign import signature_tag
from airflow_ecr_layers.core.signing.keys import PublicKeyVerifier
from airflow_ecr_layers.core.signing.payload import parse_payload, simple_signing_payload
from airflow_ecr_layers.core.signing.sign import signature_layer, signature_manifest

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app"


def test_the_payload_is_the_simple_signing_format_byte_for_byte() -> None:
    expected = (
        b'{"critical":{"identity":{"docker-reference":"123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app"},'
        b'"image":{"docker-manifest-digest":"sha256:' + b"ab" * 32 + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    assert simple_signing_payload(REPO, DIGEST) == expected


def test_optional_annotations_are_sorted_and_escaped_as_go_writes_them() -> None:
    payload = simple_signing_payload(REPO, DIGEST, {"run": "a&b", "dag": "<x>", "é": "ü"})
    assert payload.endswith(b',"optional":{"dag":"\\u003cx\\u003e","run":"a\\u0026b","\xc3\xa9":"\xc3\xbc"}}')
    assert json.loads(payload)["optional"] == {"dag": "<x>", "run": "a&b", "é": "ü"}


def test_annotations_must_be_strings() -> None:
    with pytest.raises(InvalidInputError, match="strings"):
        simple_signing_payload(REPO, DIGEST, {"n": 1})  # type: ignore[dict-item]


def test_the_signature_tag_is_the_digest_with_a_dash_and_sig() -> None:
    assert signature_tag(DIGEST) == "sha256-" + "ab" * 32 + ".sig"


def test_a_signature_layer_verifies_with_cryptography_alone() -> None:
    """Sign as cosign does (ECDSA P-256 over SHA-256 of the payload), store it as the spec says,
    then verify it from the manifest's JSON with nothing but ``cryptography``."""
    key = ec.generate_private_key(ec.SECP256R1())
    payload = simple_signing_payload(REPO, DIGEST)
    signature = key.sign(hashlib.sha256(payload).digest(), ec.ECDSA(Prehashed(hashes.SHA256())))
    manifest, config = signature_manifest([signature_layer(payload, signature)])

    body = json.loads(manifest.data)
    assert body["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert body["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert body["config"]["digest"] == "sha256:" + hashlib.sha256(config).hexdigest()
    assert json.loads(config)["rootfs"]["diff_ids"] == [layer["digest"] for layer in body["layers"]]
    (layer,) = body["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert layer["digest"] == "sha256:" + hashlib.sha256(payload).hexdigest()
    assert layer["size"] == len(payload)
    stored = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    key.public_key().verify(stored, payload, ec.ECDSA(hashes.SHA256()))  # raises if it does not
    claims = json.loads(payload)["critical"]
    assert claims["image"]["docker-manifest-digest"] == DIGEST
    assert claims["type"] == "cosign container image signature"


@pytest.mark.parametrize(
    ("algorithms", "pad"),
    [
        (("RSASSA_PKCS1_V1_5_SHA_256",), padding.PKCS1v15()),
        (("RSASSA_PSS_SHA_256",), padding.PSS(padding.MGF1(hashes.SHA256()), 32)),
        (None, padding.PSS(padding.MGF1(hashes.SHA256()), 32)),
    ],
)
def test_rsa_signatures_verify(algorithms: tuple[str, ...] | None, pad: padding.AsymmetricPadding) -> None:
    key = rsa.generate_private_key(65537, 2048)
    payload = simple_signing_payload(REPO, DIGEST)
    signature = key.sign(payload, pad, hashes.SHA256())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    verifier = PublicKeyVerifier.load(pem, algorithms=algorithms)
    assert verifier.verify(payload, signature)
    assert not verifier.verify(payload + b" ", signature)


def test_a_p384_key_verifies_ecdsa_sha_384() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    payload = simple_signing_payload(REPO, DIGEST)
    signature = key.sign(payload, ec.ECDSA(hashes.SHA384()))
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    verifier = PublicKeyVerifier.load(der)
    assert verifier.algorithms == ("ECDSA_SHA_384",)
    assert verifier.verify(payload, signature)


def test_not_a_key_is_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="not a PEM or DER public key"):
        PublicKeyVerifier.load(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")


def test_parse_reads_cosigns_early_capitalised_digest_key() -> None:
    old = b'{"critical":{"identity":{"docker-reference":""},"image":{"Docker-manifest-digest":"sha256:x"},"type":""}}'
    assert parse_payload(old).digest == "sha256:x"
    with pytest.raises(InvalidInputError, match="critical"):
        parse_payload(b"[]")
