"""What every operator of this provider shares: the AWS arguments and the hook."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

from airflow_ecr_layers.core.ecr.references import ImageReference
from airflow_ecr_layers.core.ecr.repository_settings import RepositorySettings
from airflow_ecr_layers.core.ecr.retry import RetryPolicy, retry_policy_from
from airflow_ecr_layers.core.engine.planning import validate_part_size
from airflow_ecr_layers.core.engine.results import ImageResult
from airflow_ecr_layers.core.engine.transfer import EcrTransfer
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import DEFAULT_MAX_CONCURRENCY, validate_registry_id, validate_tags
from airflow_ecr_layers.core.push.artifact import check_max_concurrency
from airflow_ecr_layers.hooks.ecr_layers import EcrLayersHook
from airflow_ecr_layers.operators.xcom import optional_int

SIGNING_TEMPLATE_FIELDS = ("sign_with", "signature_annotations")


class EcrLayersBaseOperator(AwsBaseOperator[EcrLayersHook]):
    """Base of the ECR layer operators.

    :param registry_id: the AWS account id of the registry; the connection's account if unset.
    :param aws_conn_id: the Airflow connection for AWS credentials (``aws_default``).
    :param region_name: the AWS region; the connection's or boto3's default if unset.
    :param verify: whether to verify SSL certificates, or a CA bundle path.
    :param botocore_config: botocore client configuration (retries, timeouts...); botocore's
        own retries run inside each of ours.
    :param upload_retry_policy: our retries around each ECR call and upload: a
        :class:`~airflow_ecr_layers.core.ecr.retry.RetryPolicy` or a dict of its fields
        (``max_attempts``, ``base_delay``, ``max_delay``, ``max_total_seconds``, ``max_restarts``).
    :param retry_policy: Airflow's own task retry policy (Airflow 3.3+), passed on to
        ``BaseOperator``. Given one of ours (a dict or our ``RetryPolicy``), it is taken as
        ``upload_retry_policy``, with a deprecation warning: that was its meaning before
        Airflow had a ``retry_policy`` of its own.
    :param fast_upload: build UploadLayerPart requests without botocore's JSON pass over the
        blob (same bytes on the wire); False for botocore's stock serialisation.

    Each operator returns one small JSON-safe dict (the ``return_value`` XCom, which the
    next operator takes whole through ``.output``). ``multiple_outputs`` defaults to True,
    so each key is also its own XCom and ``op.output["image_digest"]`` reads one value.
    """

    aws_hook_class = EcrLayersHook
    template_fields: Sequence[str] = aws_template_fields("registry_id")
    ui_color = "#ff9900"

    def __init__(
        self,
        *,
        registry_id: str | None = None,
        upload_retry_policy: RetryPolicy | Mapping[str, Any] | None = None,
        fast_upload: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("multiple_outputs", True)  # op.output["key"] reads one key of the result
        theirs = kwargs.get("retry_policy")
        if isinstance(theirs, (RetryPolicy, Mapping)):
            warnings.warn(
                "retry_policy is Airflow's task retry policy since Airflow 3.3; pass this provider's "
                "ECR retry settings as upload_retry_policy",
                DeprecationWarning,
                stacklevel=2,
            )
            if upload_retry_policy is None:
                upload_retry_policy = theirs
            del kwargs["retry_policy"]
        elif theirs is None:
            kwargs.pop("retry_policy", None)  # Airflow before 3.3 has no such argument
        super().__init__(**kwargs)
        self.registry_id = registry_id
        self.upload_retry_policy = retry_policy_from(upload_retry_policy)
        self.fast_upload = fast_upload

    @property
    def _hook_parameters(self) -> dict[str, Any]:
        return {
            **super()._hook_parameters,
            "retry_policy": self.upload_retry_policy,
            "fast_upload": self.fast_upload,
        }

    @property
    def engine(self) -> EcrTransfer:
        """The hook's transfer engine, on this operator's connection."""
        return self.hook.engine

    def checked_registry_id(self) -> str | None:
        return validate_registry_id(self.registry_id)

    def engine_on(self, aws_conn_id: str | None, region_name: str | None) -> EcrTransfer:
        """An engine on another connection (``aws_conn_id`` if None) and region (that connection's
        own if None), with this operator's settings: a copy's source, a build's base."""
        parameters = {**self._hook_parameters, "aws_conn_id": aws_conn_id or self.aws_conn_id}
        return EcrLayersHook(**{**parameters, "region_name": region_name}).engine


class CreatesRepository(EcrLayersBaseOperator):
    """An operator that writes into a repository and can create it first (see docs/repositories.md).

    :param create_repository: create the repository when it is missing, with
        ``repository_settings``; a repository that exists is checked against them and the task
        fails, naming each difference, when they differ. An existing repository is never changed.
    :param repository_settings: a JSON-safe dict (templated): ``image_tag_mutability``,
        ``image_tag_mutability_exclusion_filters``, ``scan_on_push``, ``encryption_type``,
        ``kms_key``, ``lifecycle_policy`` (a dict or its JSON text) and ``tags`` (a dict).
        Settings left out are ECR's defaults at creation and not compared.
    """

    template_fields: Sequence[str] = (*EcrLayersBaseOperator.template_fields, "repository_settings")
    template_fields_renderers: ClassVar[dict[str, str]] = {"repository_settings": "json"}

    def __init__(
        self,
        *,
        create_repository: bool = False,
        repository_settings: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if repository_settings is not None and not create_repository:
            raise InvalidInputError(
                "repository_settings is used only with create_repository=True (the repository is "
                "created with them when missing, and checked against them when it exists)"
            )
        self.create_repository = create_repository
        self.repository_settings = repository_settings

    def prepare_repository(self, repository_name: str) -> dict[str, Any] | None:
        """With ``create_repository``: create the repository, or check the one there; its result dict."""
        if not self.create_repository:
            return None
        result = self.hook.ensure_repository(
            repository_name, RepositorySettings.from_dict(self.repository_settings), self.checked_registry_id()
        )
        self.log.info(
            "%s repository %s", "Created" if result.created else "Checked the settings of", result.repository_uri
        )
        return result.as_dict()


class PublishesImage(EcrLayersBaseOperator):
    """A push operator: fills its ``ecr://`` outlet assets' events and reports OpenLineage.

    :param sign_with: a KMS key (``awskms:///alias/NAME``, cosign's form) to sign the pushed
        digest with, cosign-compatibly, once the push is done (see docs/signing.md); the result
        gains ``signature``. A signing failure fails the task; the pushed image stays.
    :param signature_annotations: the payload's ``optional`` annotations (templated).
    :param sign_recursive: signing an index also signs each child manifest.
    :param signature_mode: ``tag`` (cosign's ``sha256-<hex>.sig``) or ``referrers`` (OCI 1.1 ``subject``).

    Declare ``outlets=[ecr_image_asset("repo", registry_id=..., region=...)]``; each
    outlet naming the pushed repository gets ``image_digest``, ``tags`` and
    ``manifest_media_type`` in its asset event's ``extra``.
    """

    _lineage_inputs: list[str]
    _lineage_result: dict[str, Any] | None = None
    template_fields: Sequence[str] = (*EcrLayersBaseOperator.template_fields, *SIGNING_TEMPLATE_FIELDS)

    def __init__(
        self,
        *,
        sign_with: str | None = None,
        signature_annotations: Mapping[str, Any] | None = None,
        sign_recursive: bool = False,
        signature_mode: str = "tag",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sign_with = sign_with
        self.signature_annotations = signature_annotations
        self.sign_recursive = sign_recursive
        self.signature_mode = signature_mode

    def sign_pushed(self, result: ImageResult) -> dict[str, Any]:
        """Sign the pushed digest with ``sign_with`` (docs/signing.md). A failure here fails the task
        and leaves the pushed image as it is: a retry pushes nothing again and signs."""
        self.log.info("Pushed %s@%s; signing it with %s", result.repository_name, result.image_digest, self.sign_with)
        reference = ImageReference(result.repository_name, digest=result.image_digest, registry_id=result.registry_id)
        signed = self.hook.sign_image(
            reference,
            str(self.sign_with),
            annotations=self.signature_annotations,
            recursive=bool(self.sign_recursive),
            mode=self.signature_mode,
        )
        return signed.as_dict()

    def publish(self, context: Any, result: ImageResult, inputs: Sequence[str]) -> dict[str, Any]:
        """The XCom dict of ``result``, after filling the events of the outlets it is the image of.

        An ``ecr://`` outlet gets the event only when it names the pushed repository in the
        registry (account) and region pushed to.
        """
        from airflow_ecr_layers.assets import SCHEME, parse_asset_uri

        xcom = result.as_dict()
        if self.sign_with:
            xcom["signature"] = self.sign_pushed(result)
        self._lineage_inputs = [str(i) for i in inputs if i]
        self._lineage_result = xcom
        events = context.get("outlet_events") if hasattr(context, "get") else None
        pushed_to = (result.registry_id, self.engine.calls.client.meta.region_name, result.repository_name)
        for outlet in getattr(self, "outlets", None) or []:
            uri = getattr(outlet, "uri", "")
            if events is None or not uri.startswith(f"{SCHEME}://"):
                continue
            if parse_asset_uri(uri) == pushed_to:
                events[outlet].extra.update(
                    {
                        "image_digest": result.image_digest,
                        "tags": list(result.tags),
                        "manifest_media_type": result.manifest_media_type,
                        "registry_id": result.registry_id,
                    }
                )
        return xcom

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Inputs: the object storage sources; output: the ECR repository."""
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage

        if self._lineage_result is None:
            return OperatorLineage()
        result = self._lineage_result
        region = self.hook.conn_region_name or "unknown"
        return OperatorLineage(
            inputs=[
                Dataset(namespace=namespace, name=name) for namespace, name in map(_split_url, self._lineage_inputs)
            ],
            outputs=[Dataset(namespace=f"ecr://{result['registry_id']}/{region}", name=result["repository_name"])],
        )


def _split_url(url: str) -> tuple[str, str]:
    """OpenLineage naming: ``s3://bucket/key`` -> (``s3://bucket``, ``key``); ``file:///p`` -> (``file``, ``/p``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "file", url
    if scheme == "file":
        return "file", rest
    netloc, _, path = rest.partition("/")
    netloc = netloc.rpartition("@")[2]  # drop a conn id in user info
    return f"{scheme}://{netloc}", path or "/"


class StoragePushOperator(PublishesImage, CreatesRepository):
    """The arguments shared by the one-step pushes from object storage.

    :param source: an ``ObjectStoragePath`` URL.
    :param repository_name: the ECR repository.
    :param tags: tags for the top-level manifest (one PutImage each).
    :param source_conn_id: the connection used to read the source; ``aws_conn_id`` for s3:// if unset.
    :param part_size: bytes per part (5 MiB to 20971520); ECR's ``partSize`` if unset.
    :param max_concurrency: blobs uploaded at once.
    :param create_repository: create the repository first when it is missing (see :class:`CreatesRepository`).
    :param repository_settings: its settings (see :class:`CreatesRepository`).
    :param resume: keep each upload's progress in an Airflow Variable while it runs, so a
        retry after a killed worker continues it instead of starting over (see "Crash-safe
        pushes" in the README); deleted once the push is done.
    """

    template_fields: Sequence[str] = (
        *CreatesRepository.template_fields,
        *SIGNING_TEMPLATE_FIELDS,
        "source",
        "repository_name",
        "tags",
        "source_conn_id",
        "part_size",
    )

    def __init__(
        self,
        *,
        source: Any,
        repository_name: str,
        tags: Sequence[str] | str | None = None,
        source_conn_id: str | None = None,
        part_size: int | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        resume: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.resume = resume
        self.source = source
        self.repository_name = repository_name
        self.tags = tags
        self.source_conn_id = source_conn_id
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self._repository: dict[str, Any] | None = None

    def prepare_repository(self, repository_name: str) -> dict[str, Any] | None:
        self._repository = super().prepare_repository(repository_name)
        return self._repository

    def publish(self, context: Any, result: ImageResult, inputs: Sequence[str]) -> dict[str, Any]:
        """The push's XCom dict; with ``create_repository``, ``repository`` says whether it was created."""
        xcom = super().publish(context, result, inputs)
        if self._repository is not None:
            xcom["repository"] = self._repository
        return xcom

    def push_settings(self, context: Any) -> dict[str, Any]:
        """The checked keyword arguments every push function takes, before any write."""
        from airflow_ecr_layers.resume_variables import VariableResumeStore

        part_size = optional_int(self.part_size, "part_size")
        if part_size is not None:
            validate_part_size(part_size)
        return {
            "tags": validate_tags(self.tags),
            "registry_id": self.checked_registry_id(),
            "part_size": part_size,
            "max_concurrency": check_max_concurrency(optional_int(self.max_concurrency, "max_concurrency")),
            "resume": VariableResumeStore.for_task(context) if self.resume else None,
        }
