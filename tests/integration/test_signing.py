"""cosign signatures with a KMS key, against the embedded ECR and KMS.

The spec-side checks read what was stored with plain boto3 calls and verify it with
``cryptography`` alone, following cosign's SIGNATURE_SPEC (the tag ``sha256-<hex>.sig``, the
simple signing layer, the base64 signature annotation).
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.request
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from airflow_ecr_layers.core.ecr.references import ImageReference
from airflow_ecr_layers.core.engine.client import build_engine
from airflow_ecr_layers.core.engine.transfer import EcrTransfer
from airflow_ecr_layers.core.oci.image_plan import BlobRef, ImagePlan
from airflow_ecr_layers.core.oci.manifest import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    encode_manifest,
    sha256_digest,
)
from airflow_ecr_layers.core.push.image import push_image
from airflow_ecr_layers.core.signing.sign import sign_image
from airflow_ecr_layers.core.signing.verify import SignatureVerificationError, verify_image
from airflow_ecr_layers.core.sources.blobs import BytesSource
from airflow_ecr_layers.kms_signing import KmsSigner, kms_key_id, kms_verifier, load_verifier
from helpers import make_signing_key


def make_key(kms: Any, spec: str = "ECC_NIST_P256", alias: str = "alias/release") -> str:
    return make_signing_key(kms, alias, spec)


def public_key(kms: Any, key: str) -> Any:
    return serialization.load_der_public_key(kms.get_public_key(KeyId=kms_key_id(key))["PublicKey"])


def image_plan(seed: bytes) -> ImagePlan:
    layer = b"layer " + seed
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]}}).encode()
    manifest = encode_manifest(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER_TAR, "digest": sha256_digest(layer), "size": len(layer)}],
        },
        OCI_MANIFEST,
    )
    plan = ImagePlan("test", [manifest])
    for data, media_type in ((config, OCI_CONFIG), (layer, OCI_LAYER_TAR)):
        plan.add_blob(BlobRef(sha256_digest(data), len(data), media_type, BytesSource(data)))
    return plan


def push_test_image(engine: EcrTransfer, repo: str, tag: str = "v1", seed: bytes = b"a") -> str:
    return push_image(engine, repo, image_plan(seed), tags=[tag]).image_digest


def push_test_index(engine: EcrTransfer, repo: str, tag: str = "multi") -> tuple[str, list[str]]:
    children = [image_plan(b"amd64"), image_plan(b"arm64")]
    plan = ImagePlan("test")
    for child in children:
        for blob in child.blobs.values():
            plan.add_blob(blob)
        plan.add_manifest(child.top)
    index = encode_manifest(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": c.top.digest, "size": c.top.size} for c in children],
        },
        OCI_INDEX,
    )
    plan.add_manifest(index)
    return push_image(engine, repo, plan, tags=[tag]).image_digest, [c.top.digest for c in children]


@pytest.fixture
def engine(ecr: Any) -> EcrTransfer:
    return build_engine(ecr)


# -- the embedded KMS --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "algorithm"),
    [
        ("ECC_NIST_P256", "ECDSA_SHA_256"),
        ("ECC_NIST_P384", "ECDSA_SHA_384"),
        ("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_256"),
        ("RSA_2048", "RSASSA_PSS_SHA_256"),
    ],
)
def test_a_digest_signature_of_the_embedded_kms_verifies_with_cryptography(kms: Any, spec: str, algorithm: str) -> None:
    key_id = kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    message = b"the payload"
    chosen = hashes.SHA384() if algorithm.endswith("384") else hashes.SHA256()
    digest = hashlib.new(chosen.name, message).digest()
    signature = kms.sign(KeyId=key_id, Message=digest, MessageType="DIGEST", SigningAlgorithm=algorithm)["Signature"]
    key = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
    if spec.startswith("ECC"):
        key.verify(signature, message, ec.ECDSA(chosen))  # type: ignore[call-arg, union-attr]
    else:
        pad = padding.PSS(padding.MGF1(chosen), 32) if "PSS" in algorithm else padding.PKCS1v15()
        key.verify(signature, message, pad, chosen)  # type: ignore[call-arg, union-attr]
    verified = kms.verify(
        KeyId=key_id, Message=digest, MessageType="DIGEST", Signature=signature, SigningAlgorithm=algorithm
    )
    assert verified["SignatureValid"] is True
    raw = kms.sign(KeyId=key_id, Message=message, MessageType="RAW", SigningAlgorithm=algorithm)["Signature"]
    assert kms.verify(KeyId=key_id, Message=message, Signature=raw, SigningAlgorithm=algorithm)["SignatureValid"]


def test_a_digest_of_the_wrong_length_is_refused_as_kms_does(kms: Any) -> None:
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    with pytest.raises(kms.exceptions.ClientError, match="invalid length"):
        kms.sign(KeyId=key_id, Message=b"x" * 20, MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256")


# -- sign, read back as the spec says ----------------------------------------------------------


def test_a_signature_is_stored_where_cosign_looks_and_verifies_with_cryptography_alone(
    engine: EcrTransfer, ecr: Any, kms: Any, repo: str
) -> None:
    key = make_key(kms)
    digest = push_test_image(engine, repo)
    result = sign_image(engine, ImageReference(repo, tag="v1"), KmsSigner(kms, key), annotations={"dag": "release"})
    assert result.algorithm == "ECDSA_SHA_256" and result.key_id.startswith("arn:aws:kms:")

    tag = "sha256-" + digest.removeprefix("sha256:") + ".sig"
    (image,) = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": tag}])["images"]
    (layer,) = json.loads(image["imageManifest"])["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=layer["digest"])["downloadUrl"]
    with urllib.request.urlopen(url) as response:
        payload = response.read()
    assert layer["digest"] == "sha256:" + hashlib.sha256(payload).hexdigest()
    expected = (
        b'{"critical":{"identity":{"docker-reference":"123456789012.dkr.ecr.us-east-1.amazonaws.com/team/models"},'
        b'"image":{"docker-manifest-digest":"' + digest.encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":{"dag":"release"}}'
    )
    assert payload == expected
    signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    public_key(kms, key).verify(signature, payload, ec.ECDSA(hashes.SHA256()))


def test_signing_again_appends_and_both_verify(engine: EcrTransfer, kms: Any, repo: str) -> None:
    first, second = make_key(kms), make_key(kms, alias="alias/second")
    push_test_image(engine, repo)
    sign_image(engine, ImageReference(repo, tag="v1"), KmsSigner(kms, first))
    again = sign_image(engine, ImageReference(repo, tag="v1"), KmsSigner(kms, second))
    assert again.signed[0].signatures == 2
    for key in (first, second):
        result = verify_image(engine, ImageReference(repo, tag="v1"), [kms_verifier(kms, key)])
        assert [c.passed for c in result.checks].count(True) == 1


def test_an_index_is_signed_and_recursive_signs_each_child(engine: EcrTransfer, kms: Any, repo: str) -> None:
    key = make_key(kms)
    index, children = push_test_index(engine, repo)
    signed = sign_image(engine, ImageReference(repo, tag="multi"), KmsSigner(kms, key), recursive=True)
    assert [s.image_digest for s in signed.signed] == [index, *children]
    verifier = kms_verifier(kms, key)
    for digest in (index, *children):
        assert verify_image(engine, ImageReference(repo, digest=digest), [verifier]).passed


def test_referrers_mode_stores_a_subject_artifact_that_verifies(
    engine: EcrTransfer, ecr: Any, kms: Any, repo: str
) -> None:
    key = make_key(kms)
    digest = push_test_image(engine, repo)
    signed = sign_image(engine, ImageReference(repo, tag="v1"), KmsSigner(kms, key), mode="referrers")
    assert signed.signed[0].signature_tag is None
    tags = {t for i in ecr.describe_images(repositoryName=repo)["imageDetails"] for t in i.get("imageTags", [])}
    assert tags == {"v1"}
    result = verify_image(engine, ImageReference(repo, digest=digest), [kms_verifier(kms, key)])
    assert result.checks[0].where.startswith("referrer sha256:")


# -- verification failures ---------------------------------------------------------------------


def test_an_unsigned_image_fails_saying_no_signature(engine: EcrTransfer, kms: Any, repo: str) -> None:
    key = make_key(kms)
    push_test_image(engine, repo)
    with pytest.raises(SignatureVerificationError, match="has no cosign signature: no tag sha256-"):
        verify_image(engine, ImageReference(repo, tag="v1"), [kms_verifier(kms, key)])


def test_another_key_and_required_annotations_fail_naming_each(engine: EcrTransfer, kms: Any, repo: str) -> None:
    key, other = make_key(kms), make_key(kms, alias="alias/other")
    push_test_image(engine, repo)
    sign_image(engine, ImageReference(repo, tag="v1"), KmsSigner(kms, key))
    with pytest.raises(SignatureVerificationError, match="does not verify with KMS key") as failed:
        verify_image(engine, ImageReference(repo, tag="v1"), [kms_verifier(kms, other)])
    assert len(failed.value.checks) == 1
    with pytest.raises(SignatureVerificationError, match="the optional annotation 'run' is missing"):
        verify_image(
            engine, ImageReference(repo, tag="v1"), [kms_verifier(kms, key)], required_annotations={"run": None}
        )


def test_a_signature_copied_onto_another_digest_fails(engine: EcrTransfer, ecr: Any, kms: Any, repo: str) -> None:
    """An attacker tags the .sig manifest of image A as the .sig of image B: the payload names A."""
    key = make_key(kms)
    first = push_test_image(engine, repo, "v1", b"a")
    second = push_test_image(engine, repo, "v2", b"b")
    sign_image(engine, ImageReference(repo, tag="v1"), KmsSigner(kms, key))
    (sig,) = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "sha256-" + first[7:] + ".sig"}])["images"]
    ecr.put_image(repositoryName=repo, imageManifest=sig["imageManifest"], imageTag="sha256-" + second[7:] + ".sig")
    with pytest.raises(SignatureVerificationError, match=f"the payload signs the image {first}, not {second}"):
        verify_image(engine, ImageReference(repo, tag="v2"), [kms_verifier(kms, key)])


def test_a_pem_public_key_verifies_too(engine: EcrTransfer, kms: Any, repo: str, tmp_path: Any) -> None:
    key = make_key(kms)
    push_test_image(engine, repo)
    sign_image(engine, ImageReference(repo, tag="v1"), KmsSigner(kms, key))
    pem = public_key(kms, key).public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "cosign.pub").write_bytes(pem)
    verifier = load_verifier(str(tmp_path / "cosign.pub"), lambda: pytest.fail("no KMS call for a PEM"))
    assert verify_image(engine, ImageReference(repo, tag="v1"), [verifier]).passed
