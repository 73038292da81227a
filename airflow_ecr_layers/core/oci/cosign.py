"""Where cosign keeps an image's signatures, and the media types it writes them with.

cosign's signature specification: the signatures of the image ``sha256:<hex>`` are the layers
of the manifest tagged ``sha256-<hex>.sig`` in the same repository (tag-based discovery), or,
with OCI 1.1 referrers, manifests of artifact type :data:`COSIGN_SIGNATURE_ARTIFACT_TYPE` whose
``subject`` is the image. Each layer is a "simple signing" payload of media type
:data:`SIMPLE_SIGNING_MEDIA_TYPE`, its base64 signature in the annotation
:data:`SIGNATURE_ANNOTATION`.
"""

from __future__ import annotations

from airflow_ecr_layers.core.limits import validate_digest

SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_SIGNATURE_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
"""The artifact type cosign's ``--registry-referrers-mode=oci-1-1`` gives a signature manifest."""
NOTARY_SIGNATURE_ARTIFACT_TYPE = "application/vnd.cncf.notary.signature"
"""What ECR managed signing (AWS Signer) stores as a referrer of the image it signed."""


def signature_tag(digest: str) -> str:
    """The tag cosign stores the signatures of the image ``digest`` under: ``sha256-<hex>.sig``."""
    algorithm, _, hex_digest = validate_digest(digest, "image digest").partition(":")
    return f"{algorithm}-{hex_digest}.sig"
