"""``EcrLayersHook``: the ECR layer-upload engine on an Airflow AWS connection."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.exceptions import ClientError

from airflow_ecr_layers.core.ecr.calls import EcrCalls
from airflow_ecr_layers.core.ecr.references import ImageReference
from airflow_ecr_layers.core.ecr.repository_settings import RepositoryResult, RepositorySettings, ensure_repository
from airflow_ecr_layers.core.ecr.retry import RetryPolicy
from airflow_ecr_layers.core.engine.client import build_engine
from airflow_ecr_layers.core.engine.transfer import DEFAULT_READ_DEPTH, EcrTransfer
from airflow_ecr_layers.core.errors import EcrLayersError, InvalidInputError
from airflow_ecr_layers.core.signing.keys import PublicKeyVerifier
from airflow_ecr_layers.core.signing.sign import SignResult, sign_image
from airflow_ecr_layers.kms_signing import KmsSigner, load_verifier


class EcrLayersHook(AwsBaseHook):
    """Interact with Amazon ECR's layer-upload API.

    A thin hook over ``boto3.client("ecr")``, like the amazon provider's own: it builds
    the upload engine (:attr:`engine`, an
    :class:`~airflow_ecr_layers.core.engine.transfer.EcrTransfer`) on its connection's client.
    The engine holds the ECR calls (:attr:`calls`: ``batch_check_layer_availability``,
    ``initiate_layer_upload``, ``upload_layer_part``, ``complete_layer_upload``,
    ``put_image``, ``batch_get_image``, ``describe_images``, each returning a small typed
    result) and owns the streaming upload loop (``upload_parts``, ``complete_upload``,
    ``push_blob``, ``put_manifest``) with retry, resume and digest verification.

    Service errors are raised as :mod:`airflow_ecr_layers.core.errors` exceptions.

    :param retry_policy: our retries on top of botocore's (set botocore's with
        the connection's or operator's ``botocore_config``).
    :param read_depth: parts alive at once per layer (the one being sent included).
    :param fast_upload: send UploadLayerPart through :mod:`~airflow_ecr_layers.core.ecr.fast_request`
        (the same request body, built without botocore's JSON pass over the blob);
        False keeps botocore's stock serialisation.
    """

    hook_name = "Amazon ECR layers"

    def __init__(
        self,
        *args: Any,
        retry_policy: RetryPolicy | None = None,
        read_depth: int = DEFAULT_READ_DEPTH,
        fast_upload: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs["client_type"] = "ecr"
        super().__init__(*args, **kwargs)
        self.retry_policy = retry_policy or RetryPolicy()
        self.read_depth = read_depth
        self.fast_upload = fast_upload
        self._engine: EcrTransfer | None = None
        self._engine_built_on: Any = None
        self._kms: Any = None

    @property
    def engine(self) -> EcrTransfer:
        """The transfer engine on this connection's ECR client (built once per client)."""
        client = self.conn
        if self._engine is None or self._engine_built_on is not client:
            self._engine_built_on = client  # the engine may swap in a fresh client when credentials expire
            self._engine = build_engine(
                client,
                retry_policy=self.retry_policy,
                read_depth=self.read_depth,
                fast_upload=self.fast_upload,
                refresh=self.get_client_type,  # a new session: the connection's credential provider again
            )
        return self._engine

    @property
    def calls(self) -> EcrCalls:
        """The ECR calls on this connection's client."""
        return self.engine.calls

    def ensure_repository(
        self,
        repository_name: str,
        settings: RepositorySettings | Mapping[str, Any] | None = None,
        registry_id: str | None = None,
    ) -> RepositoryResult:
        """Create the repository with ``settings`` when it is missing; otherwise check that it has
        them (see :mod:`~airflow_ecr_layers.core.ecr.repository_settings`). A KMS key alias in the
        settings is resolved with KMS ``DescribeKey`` on this connection."""
        return ensure_repository(
            self.calls,
            self.retry_policy,
            repository_name,
            RepositorySettings.from_dict(settings),
            registry_id=registry_id,
            resolve_kms_key=functools.cache(self.kms_key_arn),  # an alias is looked up once a call
        )

    @property
    def kms_client(self) -> Any:
        """A boto3 ``kms`` client on this hook's connection and region (built once)."""
        if self._kms is None:
            self._kms = AwsBaseHook(
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                config=self.config,
                client_type="kms",
            ).conn
        return self._kms

    def signer(self, key: str) -> KmsSigner:
        """A cosign signer on the KMS key ``key`` (``awskms:///alias/NAME``, an ARN or a key id)."""
        return KmsSigner(self.kms_client, key)

    def verifier(self, key: str) -> PublicKeyVerifier:
        """A verification key: ``awskms:///...`` (its public key, read with kms:GetPublicKey on this
        connection), a PEM file's path or PEM text."""
        return load_verifier(key, lambda: self.kms_client)

    def sign_image(
        self,
        reference: ImageReference,
        key: str,
        *,
        annotations: Mapping[str, Any] | None = None,
        recursive: bool = False,
        mode: str = "tag",
    ) -> SignResult:
        """Sign ``reference`` cosign-compatibly with the KMS key ``key`` (see core/signing/sign.py)."""
        if mode not in ("tag", "referrers"):
            raise InvalidInputError(f"signature_mode must be 'tag' or 'referrers', not {mode!r}")
        optional = {str(k): str(v) for k, v in annotations.items()} if annotations else None
        return sign_image(
            self.engine,
            reference,
            self.signer(key),
            annotations=optional,
            recursive=recursive,
            mode=mode,  # type: ignore[arg-type]
        )

    def kms_key_arn(self, key: str) -> str:
        """The ARN of the KMS key that ``key`` (an alias, an id or an ARN) names."""
        try:
            return str(self.kms_client.describe_key(KeyId=key)["KeyMetadata"]["Arn"])
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise EcrLayersError(
                f"Cannot tell which key the KMS key {key!r} names (kms:DescribeKey answered "
                f"{error.get('Code')}: {error.get('Message')}); give the key's ARN as kms_key"
            ) from exc
