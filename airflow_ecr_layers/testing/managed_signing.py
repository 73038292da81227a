"""ECR managed signing (AWS Signer) in the embedded ECR, which moto 5.2.5 does not have.

``PutSigningConfiguration``/``GetSigningConfiguration``/``DeleteSigningConfiguration`` keep a
registry's rules (a signing profile ARN and ``WILDCARD_MATCH`` repository filters; no filter
matches every repository). Each manifest put into a matching repository afterwards gets one
signing status per matching rule, ``IN_PROGRESS``; ``DescribeImageSigningStatus`` answers the
statuses as they are and then moves each one step on, so a wait sees ``IN_PROGRESS`` on its
first look and the outcome on its next: ``COMPLETE``, with a Notary signature stored as a
referrer of the image (artifact type ``application/vnd.cncf.notary.signature``, its blobs real
so that copies and pulls of it work), or ``FAILED`` for a profile :func:`fail_signing` named.
Notary signatures are not signed again.

Whether real ECR signs a manifest put through ``PutImage`` after a layer-upload push as it
signs a ``docker push`` is assumed here (see docs/signing.md), not known.

This module must not import Airflow.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import threading
from collections.abc import Callable
from typing import Any

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.ecr.exceptions import ImageNotFoundException, InvalidParameterException
from moto.ecr.models import ECRBackend, Repository, ecr_backends
from moto.ecr.responses import ECRResponse

from airflow_ecr_layers.testing import strict_ecr
from airflow_ecr_layers.testing.blob_store import blob_store
from airflow_ecr_layers.testing.ecr_images import OCI_MANIFEST, media_type_of, parsed_manifest

__all__ = ["NOTARY_SIGNATURE", "fail_signing", "install", "is_installed", "uninstall"]

NOTARY_SIGNATURE = "application/vnd.cncf.notary.signature"
JWS_ENVELOPE = "application/jose+json"
MAX_RULES = 10
_STATE = "_ecr_layers_managed_signing"
_lock = threading.Lock()


def _state(backend: ECRBackend) -> dict[str, Any]:
    """The registry's signing state, kept on its moto backend (so a moto reset drops it)."""
    state = backend.__dict__.get(_STATE)
    if state is None:
        state = {"configuration": None, "statuses": {}, "failures": {}}
        setattr(backend, _STATE, state)
    return state


def fail_signing(
    profile_arn: str, code: str, reason: str, *, account_id: str = "123456789012", region: str = "us-east-1"
) -> None:
    """Make signing with ``profile_arn`` in that registry end ``FAILED`` with ``code`` and ``reason``."""
    with _lock:
        _state(ecr_backends[account_id][region])["failures"][profile_arn] = (code, reason)


def _matching_rules(configuration: dict[str, Any] | None, repository_name: str) -> list[str]:
    profiles = []
    for rule in (configuration or {}).get("rules") or []:
        filters = rule.get("repositoryFilters") or []
        if not filters or any(fnmatch.fnmatchcase(repository_name, f.get("filter", "")) for f in filters):
            profiles.append(str(rule["signingProfileArn"]))
    return profiles


def _on_put_image(backend: ECRBackend, repository_name: str, image: Any, manifest: dict[str, Any]) -> None:
    """A manifest was put: one ``IN_PROGRESS`` status per matching rule (Notary signatures excepted)."""
    if manifest.get("artifactType") == NOTARY_SIGNATURE:
        return
    with _lock:
        state = _state(backend)
        key = (repository_name, image.get_image_digest())
        if key not in state["statuses"]:
            profiles = _matching_rules(state["configuration"], repository_name)
            if profiles:
                state["statuses"][key] = [{"signingProfileArn": p, "status": "IN_PROGRESS"} for p in profiles]


def _store_notary_signature(backend: ECRBackend, repository: Repository, image: Any, profile_arn: str) -> None:
    """A Notary signature artifact whose subject is ``image``, with real blobs."""
    subject_manifest = image.image_manifest
    envelope = json.dumps(
        {"payload": image.get_image_digest(), "protected": profile_arn, "signature": "embedded-ecr"},
        separators=(",", ":"),
    ).encode()
    config = b"{}"
    for data in (envelope, config):
        blob_digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with strict_ecr._blobs_lock:
            blob_store().put(blob_digest, data)
            repository.layers[blob_digest] = len(data)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": NOTARY_SIGNATURE,
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": JWS_ENVELOPE,
                "digest": "sha256:" + hashlib.sha256(envelope).hexdigest(),
                "size": len(envelope),
            }
        ],
        "subject": {
            "mediaType": media_type_of(image, parsed_manifest(image)) or OCI_MANIFEST,
            "digest": image.get_image_digest(),
            "size": len(subject_manifest.encode("utf-8")),
        },
        "annotations": {"io.cncf.notary.x509chain.thumbprint#S256": "[]"},
    }
    text = json.dumps(manifest, separators=(",", ":"))
    backend.put_image(repository.name, text, None, OCI_MANIFEST, None)  # type: ignore[arg-type]


def _find_image(repository: Repository, image_id: dict[str, Any]) -> Any:
    for image in list(repository.images):
        if image_id.get("imageDigest") and image.get_image_digest() == image_id["imageDigest"]:
            return image
        if image_id.get("imageTag") and image_id["imageTag"] in image.image_tags:
            return image
    return None


def _describe_image_signing_status(self: ECRResponse) -> ActionResult:
    repository_name = self._get_param("repositoryName")
    registry_id = self._get_param("registryId")
    image_id = self._get_param("imageId") or {}
    repository = self.ecr_backend._get_repository(repository_name, registry_id)
    image = _find_image(repository, image_id)
    if image is None:
        raise ImageNotFoundException(str(image_id), repository_name, repository.registry_id)
    with _lock:
        state = _state(self.ecr_backend)
        statuses = state["statuses"].get((repository_name, image.get_image_digest()), [])
        answer = [dict(s) for s in statuses]
        for status in statuses:  # one step on, after this answer
            if status["status"] != "IN_PROGRESS":
                continue
            failure = state["failures"].get(status["signingProfileArn"])
            if failure:
                status.update(status="FAILED", failureCode=failure[0], failureReason=failure[1])
            else:
                status["status"] = "COMPLETE"
    for status, before in zip(statuses, answer, strict=True):
        if before["status"] == "IN_PROGRESS" and status["status"] == "COMPLETE":
            _store_notary_signature(self.ecr_backend, repository, image, status["signingProfileArn"])
    return ActionResult(
        {
            "repositoryName": repository_name,
            "registryId": repository.registry_id,
            "imageId": {
                "imageDigest": image.get_image_digest(),
                **({"imageTag": t} if (t := image_id.get("imageTag")) else {}),
            },
            "signingStatuses": answer,
        }
    )


def _put_signing_configuration(self: ECRResponse) -> ActionResult:
    configuration = self._get_param("signingConfiguration") or {}
    rules = configuration.get("rules")
    if not isinstance(rules, list) or len(rules) > MAX_RULES:
        raise InvalidParameterException(f"signingConfiguration.rules: between 0 and {MAX_RULES} rules")
    for rule in rules:
        if not str(rule.get("signingProfileArn", "")).startswith("arn:"):
            raise InvalidParameterException("signingConfiguration.rules.signingProfileArn: a signing profile ARN")
        for found in rule.get("repositoryFilters") or []:
            if found.get("filterType") != "WILDCARD_MATCH":
                raise InvalidParameterException("repositoryFilters.filterType: WILDCARD_MATCH")
    with _lock:
        _state(self.ecr_backend)["configuration"] = configuration
    return ActionResult({"signingConfiguration": configuration})


def _get_signing_configuration(self: ECRResponse) -> ActionResult:
    with _lock:
        configuration = _state(self.ecr_backend)["configuration"]
    if configuration is None:
        raise SigningConfigurationNotFoundException("No signing configuration is set for the registry")
    return ActionResult({"registryId": self.ecr_backend.account_id, "signingConfiguration": configuration})


def _delete_signing_configuration(self: ECRResponse) -> ActionResult:
    with _lock:
        state = _state(self.ecr_backend)
        configuration, state["configuration"] = state["configuration"], None
    if configuration is None:
        raise SigningConfigurationNotFoundException("No signing configuration is set for the registry")
    return ActionResult({"registryId": self.ecr_backend.account_id, "signingConfiguration": configuration})


class SigningConfigurationNotFoundException(ServiceException):
    code = "SigningConfigurationNotFoundException"


_RESPONSES: dict[str, Callable[..., Any]] = {
    "describe_image_signing_status": _describe_image_signing_status,
    "put_signing_configuration": _put_signing_configuration,
    "get_signing_configuration": _get_signing_configuration,
    "delete_signing_configuration": _delete_signing_configuration,
}


def install() -> None:
    """Listen to strict ECR's PutImage and add the signing calls to ``ECRResponse`` (idempotent).
    Pushes start signing only while :mod:`.strict_ecr` is installed."""
    with _lock:
        if _on_put_image not in strict_ecr.PUT_IMAGE_LISTENERS:
            strict_ecr.PUT_IMAGE_LISTENERS.append(_on_put_image)
        for name, method in _RESPONSES.items():
            setattr(ECRResponse, name, method)


def uninstall() -> None:
    with _lock:
        if _on_put_image in strict_ecr.PUT_IMAGE_LISTENERS:
            strict_ecr.PUT_IMAGE_LISTENERS.remove(_on_put_image)
        for name in _RESPONSES:
            if name in ECRResponse.__dict__:
                delattr(ECRResponse, name)


def is_installed() -> bool:
    return _on_put_image in strict_ecr.PUT_IMAGE_LISTENERS and all(
        ECRResponse.__dict__.get(n) is f for n, f in _RESPONSES.items()
    )
