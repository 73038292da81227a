"""Sign an image in ECR with a KMS key (cosign's format), and verify an image's signatures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow_ecr_layers.core.ecr.references import reference_from
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.signing.verify import verify_image
from airflow_ecr_layers.hooks.ecr_layers import EcrLayersHook
from airflow_ecr_layers.operators.base import EcrLayersBaseOperator

Context = Any

_IMAGE_FIELDS = ("reference", "repository_name", "image_tag", "image_digest")


class _OnImage(EcrLayersBaseOperator):
    """An operator on one image, named by ``reference`` or by its parts."""

    def __init__(
        self,
        *,
        reference: str | None = None,
        repository_name: str | None = None,
        image_tag: str | None = None,
        image_digest: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reference = reference
        self.repository_name = repository_name
        self.image_tag = image_tag
        self.image_digest = image_digest

    def image(self) -> Any:
        found = reference_from(
            self.reference or None,
            repository_name=self.repository_name,
            image_tag=self.image_tag,
            image_digest=self.image_digest,
            registry_id=self.checked_registry_id(),
        )
        if found.region and not self.region_name:
            self.region_name = found.region  # the hook is built on first use
        return found


class SignImageOperator(_OnImage):
    """Sign an image already in ECR with a KMS key, as ``cosign sign --key awskms:///...`` does.

    The payload (cosign's simple signing format: the repository and the digest the image
    resolves to, plus ``annotations``) is signed by ``kms:Sign`` with the payload's digest
    (``MessageType="DIGEST"``); the signature is stored where ``cosign verify`` looks (the
    ``sha256-<hex>.sig`` tag, earlier signatures kept) or, with ``signature_mode="referrers"``,
    as an OCI 1.1 referrer. See docs/signing.md.

    :param reference: ``REPOSITORY:TAG``, ``REPOSITORY@DIGEST`` or the full ECR reference; or
        give ``repository_name`` with ``image_tag`` or ``image_digest``.
    :param key: ``awskms:///alias/NAME``, ``awskms:///arn:aws:kms:...`` or ``awskms:///KEY_ID``,
        on this operator's connection.
    :param annotations: the payload's ``optional`` claims (templated: the DAG, the run, the source).
    :param recursive: signing an index also signs each child manifest.
    :param signature_mode: ``tag`` (default) or ``referrers``.
    :return: ``registry_id``, ``repository_name``, ``docker_reference``, ``key_id`` (the key's
        ARN), ``algorithm``, ``mode`` and ``signed`` (per image: ``image_digest``,
        ``signature_digest``, ``signature_tag``, ``payload_digest``, ``signatures``).
    """

    template_fields: Sequence[str] = (*EcrLayersBaseOperator.template_fields, *_IMAGE_FIELDS, "key", "annotations")
    template_fields_renderers: ClassVar[dict[str, str]] = {"annotations": "json"}

    def __init__(
        self,
        *,
        key: str,
        annotations: Mapping[str, Any] | None = None,
        recursive: bool = False,
        signature_mode: str = "tag",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.key = key
        self.annotations = annotations
        self.recursive = recursive
        self.signature_mode = signature_mode

    def execute(self, context: Context) -> dict[str, Any]:
        result = self.hook.sign_image(
            self.image(),
            self.key,
            annotations=self.annotations,
            recursive=bool(self.recursive),
            mode=self.signature_mode,
        )
        return result.as_dict()


class VerifyImageSignatureOperator(_OnImage):
    """Fail unless an image carries a cosign signature that verifies.

    Passes when at least one signature of the image (its ``sha256-<hex>.sig`` tag's layers,
    and the cosign signature referrers) verifies with one of ``keys``, its payload names this
    exact digest and an accepted repository, and has each of ``required_annotations``.
    Otherwise it fails, naming for each signature found what did not match.

    :param keys: one key or a list: ``awskms:///...`` (its public key read with
        ``kms:GetPublicKey`` on this operator's connection), a PEM file's path or PEM text.
    :param required_annotations: ``{name: value}`` the payload's ``optional`` must hold; a value
        of ``None`` asks only that the name be there (templated).
    :param accepted_references: repositories a payload may name (``REPO`` in any registry, or
        ``REGISTRY.dkr.ecr.REGION.amazonaws.com/REPO``); by default the image's own repository name.
    :param include_referrers: also look at cosign signature referrers (OCI 1.1).
    :param kms_aws_conn_id: the connection ``awskms:///`` public keys are read with (the account
        that holds the key, when the image is verified in another one); ``aws_conn_id`` if unset.
    :return: ``registry_id``, ``repository_name``, ``image_digest``, ``verified`` and
        ``signatures`` (per signature: ``where``, ``passed``, ``problems``, ``verified_by``,
        ``docker_reference``, ``optional``).
    """

    template_fields: Sequence[str] = (
        *EcrLayersBaseOperator.template_fields,
        *_IMAGE_FIELDS,
        "keys",
        "required_annotations",
        "accepted_references",
        "kms_aws_conn_id",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"required_annotations": "json"}

    def __init__(
        self,
        *,
        keys: str | Sequence[str],
        required_annotations: Mapping[str, Any] | None = None,
        accepted_references: Sequence[str] | None = None,
        include_referrers: bool = True,
        kms_aws_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kms_aws_conn_id = kms_aws_conn_id
        self.keys = keys
        self.required_annotations = required_annotations
        self.accepted_references = accepted_references
        self.include_referrers = include_referrers

    def execute(self, context: Context) -> dict[str, Any]:
        keys = [self.keys] if isinstance(self.keys, str) else list(self.keys or [])
        if not keys:
            raise InvalidInputError("keys: give at least one verification key")
        required = {str(k): None if v is None else str(v) for k, v in (self.required_annotations or {}).items()}
        key_hook = self.hook
        if self.kms_aws_conn_id and self.kms_aws_conn_id != self.aws_conn_id:
            key_hook = EcrLayersHook(aws_conn_id=self.kms_aws_conn_id, region_name=self.region_name, verify=self.verify)
        accepted = [self.accepted_references] if isinstance(self.accepted_references, str) else self.accepted_references
        result = verify_image(
            self.engine,
            self.image(),
            [key_hook.verifier(key) for key in keys],
            required_annotations=required,
            accepted_references=list(accepted) if accepted else None,
            include_referrers=bool(self.include_referrers),
        )
        return result.as_dict()
