"""The wait on ECR managed signing (AWS Signer): signed on push, a Notary signature as a referrer.

One check: ``DescribeImageSigningStatus`` (one status per signing rule that matched the
repository). ``IN_PROGRESS``, no status yet and no image yet mean not yet; ``FAILED`` ends the
wait at once (:class:`SigningFailedError`, naming the profile, ECR's failure code and reason).
Once every status is ``COMPLETE``, ``ListImageReferrers`` must show the image's signature
(artifact type ``application/vnd.cncf.notary.signature``); until it does, not yet.
"""

from __future__ import annotations

from typing import Any

from airflow_ecr_layers.core.errors import EcrServiceError
from airflow_ecr_layers.core.oci.cosign import NOTARY_SIGNATURE_ARTIFACT_TYPE
from airflow_ecr_layers.core.waits.probes import ImageRef, Poll, Probe, Steps
from airflow_ecr_layers.core.waits.scan import ScanVerdictError


class SigningFailedError(ScanVerdictError):
    """Managed signing of the image failed: waiting or retrying cannot change it."""

    def __init__(self, image: str, failures: list[dict[str, Any]]) -> None:
        self.image = image
        self.failures = failures
        said = "; ".join(
            f"{f.get('signingProfileArn')}: {f.get('failureCode') or 'FAILED'} "
            f"({f.get('failureReason') or 'no reason given'})"
            for f in failures
        )
        super().__init__(f"Managed signing of {image} failed: {said}")


class SigningProbe(Probe):
    """Is the image signed by ECR managed signing, and its signature there? See the module docstring."""

    def __init__(self, image: ImageRef, *, artifact_type: str = NOTARY_SIGNATURE_ARTIFACT_TYPE) -> None:
        super().__init__(image)
        self.artifact_type = artifact_type

    def steps(self) -> Steps:
        params = self.image.params()
        try:
            response = yield "describe_image_signing_status", params
        except EcrServiceError as exc:
            if exc.code != "ImageNotFoundException":
                raise
            return Poll(waiting_for=f"image {self.image} (not in the repository yet)")
        statuses = [dict(s) for s in response.get("signingStatuses") or []]
        if not statuses:
            return Poll(
                waiting_for=f"a signing status of {self.image} (none yet: does a signing rule match the repository?)"
            )
        failed = [s for s in statuses if s.get("status") == "FAILED"]
        if failed:
            raise SigningFailedError(str(self.image), failed)
        pending = [s for s in statuses if s.get("status") != "COMPLETE"]
        if pending:
            return Poll(waiting_for=f"managed signing of {self.image} ({len(pending)} of {len(statuses)} in progress)")
        digest = (response.get("imageId") or {}).get("imageDigest") or self.image.digest
        referrers_params: dict[str, Any] = {
            "repositoryName": self.image.repository_name,
            "subjectId": {"imageDigest": digest},
            "filter": {"artifactTypes": [self.artifact_type]},
        }
        if self.image.registry_id:
            referrers_params["registryId"] = self.image.registry_id
        found = yield "list_image_referrers", referrers_params
        signatures = [
            {
                "digest": str(r["digest"]),
                "artifact_type": str(r.get("artifactType") or ""),
                "size": int(r.get("size") or 0),
            }
            for r in found.get("referrers") or []
        ]
        if not signatures:
            return Poll(waiting_for=f"the {self.artifact_type} referrer of {self.image} (signing is COMPLETE)")
        return Poll(
            {
                "registry_id": str(response.get("registryId") or self.image.registry_id or ""),
                "repository_name": self.image.repository_name,
                "image_digest": str(digest),
                "signing_statuses": [
                    {"signing_profile_arn": str(s.get("signingProfileArn") or ""), "status": str(s["status"])}
                    for s in statuses
                ],
                "signatures": signatures,
            }
        )
