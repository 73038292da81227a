"""Sign an image in ECR the way cosign does, with a :class:`~.keys.Signer` (a KMS key).

For each image signed (an index, and with ``recursive`` each of its children too), the simple
signing payload naming the image's repository and digest is signed, and stored as cosign's
specification says: a layer of media type ``application/vnd.dev.cosign.simplesigning.v1+json``
holding the payload, the base64 signature in its ``dev.cosignproject.cosign/signature``
annotation, in the manifest tagged ``sha256-<hex>.sig`` (where ``cosign verify`` looks). A
manifest already there keeps its signatures: the new one is appended as one more layer (cosign
does the same; two signers racing on one tag: the last write wins, as with cosign). With
``mode="referrers"`` the signature is instead an untagged OCI 1.1 artifact whose ``subject``
is the image (cosign's ``--registry-referrers-mode=oci-1-1``).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_ecr_layers.core.ecr.references import ImageReference
from airflow_ecr_layers.core.engine.transfer import EcrTransfer
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import validate_digest
from airflow_ecr_layers.core.oci.cosign import (
    COSIGN_SIGNATURE_ARTIFACT_TYPE,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
    signature_tag,
)
from airflow_ecr_layers.core.oci.image_plan import BlobRef, ImagePlan
from airflow_ecr_layers.core.oci.manifest import (
    INDEX_TYPES,
    OCI_CONFIG,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    build_image_manifest,
    encode_manifest,
    sha256_digest,
)
from airflow_ecr_layers.core.push.image import push_image
from airflow_ecr_layers.core.readback.pull import fetch_manifest
from airflow_ecr_layers.core.signing.keys import Signer, payload_digest
from airflow_ecr_layers.core.signing.payload import simple_signing_payload
from airflow_ecr_layers.core.sources.blobs import BytesSource

log = logging.getLogger("airflow_ecr_layers")

SignatureMode = Literal["tag", "referrers"]
ZERO_TIME = "0001-01-01T00:00:00Z"
"""The time cosign's signature images carry (Go's zero time): their bytes depend on the layers only."""


def docker_reference(registry_id: str, region: str, repository_name: str) -> str:
    """The repository as cosign names it in a payload: ``REGISTRY.dkr.ecr.REGION.amazonaws.com/REPOSITORY``."""
    if not region:
        return repository_name
    return f"{registry_id}.dkr.ecr.{region}.amazonaws.com/{repository_name}"


@dataclass(frozen=True)
class SignedImage:
    """One image signed: its digest, where the signature went and what was signed."""

    image_digest: str
    signature_digest: str
    """The digest of the signature manifest (the ``.sig`` manifest, or the referrer)."""
    signature_tag: str | None
    payload_digest: str
    signatures: int
    """How many signatures the signature manifest now holds (earlier ones kept)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "image_digest": self.image_digest,
            "signature_digest": self.signature_digest,
            "signature_tag": self.signature_tag,
            "payload_digest": self.payload_digest,
            "signatures": self.signatures,
        }


@dataclass(frozen=True)
class SignResult:
    registry_id: str
    repository_name: str
    docker_reference: str
    key_id: str
    algorithm: str
    mode: str
    signed: list[SignedImage] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "registry_id": self.registry_id,
            "repository_name": self.repository_name,
            "docker_reference": self.docker_reference,
            "key_id": self.key_id,
            "algorithm": self.algorithm,
            "mode": self.mode,
            "signed": [s.as_dict() for s in self.signed],
        }


def signature_layer(payload: bytes, signature: bytes) -> Descriptor:
    """The layer descriptor of one signature: the payload blob, the signature in its annotation."""
    return Descriptor(
        SIMPLE_SIGNING_MEDIA_TYPE,
        sha256_digest(payload),
        len(payload),
        {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode("ascii")},
    )


def signature_config(layers: list[Descriptor]) -> bytes:
    """An image config whose ``rootfs`` lists the layers (uncompressed: diff_ids are their digests)."""
    return json.dumps(
        {
            "architecture": "",
            "config": {},
            "created": ZERO_TIME,
            "history": [{"created": ZERO_TIME} for _ in layers],
            "os": "",
            "rootfs": {"diff_ids": [layer.digest for layer in layers], "type": "layers"},
        },
        separators=(",", ":"),
    ).encode("ascii")


def signature_manifest(layers: list[Descriptor]) -> tuple[Manifest, bytes]:
    """The ``.sig`` manifest of ``layers`` (one a signature) and its config blob."""
    config = signature_config(layers)
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor(OCI_CONFIG, sha256_digest(config), len(config)).to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    return encode_manifest(body, OCI_MANIFEST), config


def existing_signature_layers(manifest: bytes) -> list[Descriptor]:
    """The layers of a ``.sig`` manifest already in the repository (every one kept as it is)."""
    body = json.loads(manifest)
    found = []
    for layer in body.get("layers") or []:
        found.append(
            Descriptor(
                str(layer.get("mediaType")),
                validate_digest(layer.get("digest"), "signature layer digest"),
                int(layer.get("size", 0)),
                dict(layer.get("annotations") or {}),
            )
        )
    return found


def _targets(engine: EcrTransfer, reference: ImageReference, recursive: bool) -> list[tuple[str, str, int]]:
    """(digest, media type, size) of the image ``reference`` names and, with ``recursive``, of its children."""
    top = fetch_manifest(engine, reference)
    body = json.loads(top.manifest)
    media_type = top.media_type or body.get("mediaType") or OCI_MANIFEST
    found = [(top.image_digest, media_type, len(top.manifest))]
    if recursive and media_type in INDEX_TYPES:
        for child in body.get("manifests") or []:
            found.append(
                (validate_digest(child.get("digest"), "child digest"), str(child.get("mediaType")), int(child["size"]))
            )
    return found


def _existing_sig(engine: EcrTransfer, repository_name: str, tag: str, registry_id: str) -> list[Descriptor]:
    records = engine.calls.batch_get_image(repository_name, [{"imageTag": tag}], registry_id, [OCI_MANIFEST])
    return existing_signature_layers(records[0].manifest) if records else []


def sign_image(
    engine: EcrTransfer,
    reference: ImageReference,
    signer: Signer,
    *,
    annotations: Mapping[str, str] | None = None,
    recursive: bool = False,
    mode: SignatureMode = "tag",
) -> SignResult:
    """Sign the image ``reference`` names (by tag or digest: the digest it resolves to is signed)."""
    if mode not in ("tag", "referrers"):
        raise InvalidInputError(f"Unknown signature mode {mode!r}: 'tag' (cosign's .sig tag) or 'referrers'")
    repository_name = reference.repository_name
    registry_id = engine.calls.repository_registry_id(repository_name, reference.registry_id)
    where = docker_reference(registry_id, engine.calls.region, repository_name)
    signed = []
    for digest, media_type, size in _targets(engine, reference.with_defaults(registry_id, None), recursive):
        payload = simple_signing_payload(where, digest, annotations)
        signature = signer.sign_digest(payload_digest(payload, signer.algorithm))
        layer = signature_layer(payload, signature)
        blobs = [BlobRef(layer.digest, layer.size, layer.media_type, BytesSource(payload, "<signature payload>"))]
        if mode == "tag":
            tag: str | None = signature_tag(digest)
            layers = [old for old in _existing_sig(engine, repository_name, tag or "", registry_id) if old != layer]
            layers.append(layer)
            manifest, config = signature_manifest(layers)
            blobs.append(BlobRef(sha256_digest(config), len(config), OCI_CONFIG, BytesSource(config, "<config>")))
        else:
            tag, layers = None, [layer]
            manifest = build_image_manifest(
                layers, artifact_type=COSIGN_SIGNATURE_ARTIFACT_TYPE, subject=Descriptor(media_type, digest, size)
            )
            blobs.append(BlobRef(sha256_digest(b"{}"), 2, "application/vnd.oci.empty.v1+json", BytesSource(b"{}")))
        plan = ImagePlan("cosign signature", [manifest])
        for blob in blobs:
            plan.add_blob(blob)
        push_image(engine, repository_name, plan, tags=[tag] if tag else [], registry_id=registry_id)
        log.info(
            "Signed %s@%s with %s (%s): signature %s%s",
            repository_name,
            digest,
            signer.key_id,
            signer.algorithm,
            manifest.digest,
            f" tagged {tag}" if tag else " (a referrer)",
        )
        signed.append(SignedImage(digest, manifest.digest, tag, layer.digest, len(layers)))
    return SignResult(registry_id, repository_name, where, signer.key_id, signer.algorithm, mode, signed)
