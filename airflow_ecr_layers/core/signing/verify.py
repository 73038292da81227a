"""Verify an image's cosign signatures: at least one must pass every check.

The signatures are gathered where cosign writes them: the layers of the manifest tagged
``sha256-<hex>.sig``, and (``include_referrers``) the cosign signature artifacts whose
``subject`` is the image. Each one is checked on its own (:func:`check_signature`): its
signature verifies over the payload bytes with one of the keys; the payload is a cosign
simple signing payload naming this exact digest; its reference names an accepted repository;
each required optional annotation is there (with the value asked for, when one is). The image
passes when one signature has no problem; otherwise :class:`SignatureVerificationError` names,
for each signature found, what did not match.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_ecr_layers.core.ecr.references import ImageReference
from airflow_ecr_layers.core.engine.transfer import EcrTransfer
from airflow_ecr_layers.core.errors import EcrLayersError, InvalidInputError
from airflow_ecr_layers.core.oci.cosign import (
    COSIGN_SIGNATURE_ARTIFACT_TYPE,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
    signature_tag,
)
from airflow_ecr_layers.core.oci.manifest import MANIFEST_TYPES, sha256_digest
from airflow_ecr_layers.core.readback.download import LayerDownload
from airflow_ecr_layers.core.readback.pull import fetch_manifest
from airflow_ecr_layers.core.signing.keys import PublicKeyVerifier
from airflow_ecr_layers.core.signing.payload import COSIGN_SIGNATURE_TYPE, MAX_PAYLOAD_SIZE, parse_payload
from airflow_ecr_layers.core.signing.sign import docker_reference

log = logging.getLogger("airflow_ecr_layers")


class SignatureVerificationError(EcrLayersError):
    """No signature of the image passed; :attr:`checks` says what each one found."""

    def __init__(self, message: str, checks: Sequence[SignatureCheck] = ()) -> None:
        self.checks = list(checks)
        super().__init__(message)


@dataclass(frozen=True)
class FoundSignature:
    """One signature as stored: where it was found, its payload's descriptor and the annotation."""

    where: str
    payload_digest: str
    payload_size: int
    signature: str | None


@dataclass(frozen=True)
class SignatureCheck:
    where: str
    payload_digest: str
    problems: list[str]
    verified_by: str | None = None
    docker_reference: str = ""
    optional: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "payload_digest": self.payload_digest,
            "passed": self.passed,
            "problems": list(self.problems),
            "verified_by": self.verified_by,
            "docker_reference": self.docker_reference,
            "optional": {
                str(k): v if isinstance(v, str | int | float | bool) else str(v) for k, v in self.optional.items()
            },
        }


@dataclass(frozen=True)
class VerifyResult:
    registry_id: str
    repository_name: str
    image_digest: str
    checks: list[SignatureCheck]

    @property
    def passed(self) -> bool:
        return any(check.passed for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "registry_id": self.registry_id,
            "repository_name": self.repository_name,
            "image_digest": self.image_digest,
            "verified": self.passed,
            "signatures": [check.as_dict() for check in self.checks],
        }


def _repository_path(reference: str) -> str:
    """``host/a/b`` -> ``a/b``; a reference whose first part is not a host is a path already."""
    first, slash, rest = reference.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return rest
    return reference


def reference_accepted(payload_reference: str, accepted: Sequence[str]) -> bool:
    """Whether the payload's ``docker-reference`` is one of ``accepted``: an entry with a registry
    host must match in full; a bare repository matches that repository in any registry."""
    for entry in accepted:
        if entry == payload_reference:
            return True
        if _repository_path(entry) == entry and _repository_path(payload_reference) == entry:
            return True
    return False


def check_signature(
    payload: bytes,
    signature: str | None,
    keys: Sequence[PublicKeyVerifier],
    *,
    digest: str,
    accepted_references: Sequence[str],
    required_annotations: Mapping[str, str | None] | None = None,
    where: str = "signature",
    payload_digest: str | None = None,
) -> SignatureCheck:
    """Every way the signature ``signature`` (base64) over ``payload`` fails to sign the image ``digest``."""
    problems: list[str] = []
    actual = sha256_digest(payload)
    if payload_digest is not None and actual != payload_digest:
        problems.append(f"the payload's bytes hash to {actual}, not to the layer's digest {payload_digest}")
    verified_by = None
    if not signature:
        problems.append(f"no signature: the layer has no {SIGNATURE_ANNOTATION} annotation")
    else:
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            problems.append("the signature annotation is not base64")
        else:
            verified_by = next((key.name for key in keys if key.verify(payload, raw)), None)
            if verified_by is None:
                names = ", ".join(key.name for key in keys)
                problems.append(
                    f"the signature does not verify with {names} (signed by another key, or the payload was changed)"
                )
    try:
        claims = parse_payload(payload)
    except InvalidInputError as exc:
        problems.append(f"not a simple signing payload: {exc}")
        return SignatureCheck(where, actual, problems, verified_by)
    if claims.type != COSIGN_SIGNATURE_TYPE:
        problems.append(f"the payload's type is {claims.type!r}, not {COSIGN_SIGNATURE_TYPE!r}")
    if claims.digest != digest:
        problems.append(f"the payload signs the image {claims.digest or '<none>'}, not {digest}")
    if not reference_accepted(claims.docker_reference, accepted_references):
        problems.append(
            f"the payload names the repository {claims.docker_reference or '<none>'!r}, "
            f"not {' or '.join(repr(r) for r in accepted_references)}"
        )
    for name, wanted in (required_annotations or {}).items():
        if name not in claims.optional:
            problems.append(f"the optional annotation {name!r} is missing")
        elif wanted is not None and str(claims.optional[name]) != str(wanted):
            problems.append(f"the optional annotation {name!r} is {claims.optional[name]!r}, not {wanted!r}")
    return SignatureCheck(where, actual, problems, verified_by, claims.docker_reference, claims.optional)


def _signature_layers(manifest: bytes, where: str) -> list[FoundSignature]:
    body = json.loads(manifest)
    found = []
    for number, layer in enumerate(body.get("layers") or [], start=1):
        if layer.get("mediaType") != SIMPLE_SIGNING_MEDIA_TYPE:
            continue
        found.append(
            FoundSignature(
                f"{where}, layer {number}",
                str(layer.get("digest")),
                int(layer.get("size") or 0),
                (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION),
            )
        )
    return found


def find_signatures(
    engine: EcrTransfer, repository_name: str, digest: str, registry_id: str, *, include_referrers: bool = True
) -> list[FoundSignature]:
    """The signatures stored for the image ``digest``: the ``.sig`` tag's layers, then the referrers'."""
    tag = signature_tag(digest)
    found: list[FoundSignature] = []
    for record in engine.calls.batch_get_image(repository_name, [{"imageTag": tag}], registry_id, MANIFEST_TYPES):
        found += _signature_layers(record.manifest, f"tag {tag}")
    if include_referrers:
        for referrer in engine.calls.list_image_referrers(
            repository_name, digest, registry_id, [COSIGN_SIGNATURE_ARTIFACT_TYPE]
        ):
            image = fetch_manifest(
                engine, ImageReference(repository_name, digest=referrer.digest, registry_id=registry_id)
            )
            found += _signature_layers(image.manifest, f"referrer {referrer.digest}")
    return found


def read_payload(engine: EcrTransfer, repository_name: str, found: FoundSignature, registry_id: str) -> bytes:
    if found.payload_size > MAX_PAYLOAD_SIZE:
        raise InvalidInputError(f"{found.where}: a payload of {found.payload_size} bytes is not a signature's")
    source = LayerDownload(
        engine.calls, repository_name, found.payload_digest, found.payload_size, registry_id=registry_id
    )
    with source.open_at(0, found.payload_size) as handle:
        return handle.read()


def verify_image(
    engine: EcrTransfer,
    reference: ImageReference,
    keys: Sequence[PublicKeyVerifier],
    *,
    required_annotations: Mapping[str, str | None] | None = None,
    accepted_references: Sequence[str] | None = None,
    include_referrers: bool = True,
) -> VerifyResult:
    """Check the signatures of the image ``reference`` names; raise unless one passes.

    :param accepted_references: the repositories a payload may name (``REGISTRY.dkr.ecr.REGION
        .amazonaws.com/REPO`` to pin the registry, or a bare ``REPO`` for that repository in any
        registry); by default the image's own repository name, in any registry (so an image copied
        to another account keeps verifying).
    """
    if not keys:
        raise InvalidInputError("Verification needs at least one public key")
    registry_id = engine.calls.repository_registry_id(reference.repository_name, reference.registry_id)
    image = fetch_manifest(engine, reference.with_defaults(registry_id, None))
    digest = image.image_digest
    accepted = list(accepted_references or [reference.repository_name])
    found = find_signatures(engine, reference.repository_name, digest, registry_id, include_referrers=include_referrers)
    shown = docker_reference(registry_id, engine.calls.region, reference.repository_name) + "@" + digest
    if not found:
        raise SignatureVerificationError(
            f"{shown} has no cosign signature: no tag {signature_tag(digest)}"
            + (" and no signature referrers" if include_referrers else "")
        )
    checks = []
    for signature in found:
        payload = read_payload(engine, reference.repository_name, signature, registry_id)
        checks.append(
            check_signature(
                payload,
                signature.signature,
                keys,
                digest=digest,
                accepted_references=accepted,
                required_annotations=required_annotations,
                where=signature.where,
                payload_digest=signature.payload_digest,
            )
        )
    result = VerifyResult(registry_id, reference.repository_name, digest, checks)
    if not result.passed:
        lines = "".join(f"\n  - {c.where}: {'; '.join(c.problems)}" for c in checks)
        raise SignatureVerificationError(f"No signature of {shown} verifies ({len(checks)} found):{lines}", checks)
    passed = next(c for c in checks if c.passed)
    log.info("%s: signature %s verifies with %s", shown, passed.where, passed.verified_by)
    return result
