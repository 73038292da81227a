"""One method per ECR call, over a botocore ECR client, with small typed results.

:class:`EcrCalls` wraps one boto3/botocore ECR client: the Airflow hook builds it on
its connection's client, :func:`~airflow_ecr_layers.core.engine.client.build_engine` on a
plain boto3 client (CLI, benchmarks). Service errors come out as the project's own
exceptions (:mod:`~airflow_ecr_layers.core.errors`), carrying the service's words. Every
call is retried under the :class:`~airflow_ecr_layers.core.ecr.retry.RetryPolicy` on
throttling, 5xx answers and connection errors (quotas and other refusals are not), unless
its caller retries it within a budget of its own (one blob's, in the engine).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from airflow_ecr_layers.core.ecr.retry import RetryBudget, RetryPolicy
from airflow_ecr_layers.core.errors import (
    CredentialsExpiredError,
    EcrServiceError,
    InvalidLayerPartError,
    LifecyclePolicyNotFoundError,
    QuotaExceededError,
    error_class_for,
    quota_of,
)
from airflow_ecr_layers.core.limits import MAX_DIGESTS_PER_CHECK
from airflow_ecr_layers.core.oci.manifest import Manifest

log = logging.getLogger("airflow_ecr_layers")


@dataclass(frozen=True)
class UploadSession:
    registry_id: str
    repository_name: str
    upload_id: str
    part_size: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LayerAvailability:
    digest: str
    available: bool
    status: str
    """AVAILABLE, UNAVAILABLE, ARCHIVED, or the failure code (MissingLayerDigest...)."""
    size: int | None = None
    media_type: str | None = None


@dataclass(frozen=True)
class PutImageResult:
    registry_id: str
    repository_name: str
    image_digest: str
    tag: str | None
    already_existed: bool


@dataclass(frozen=True)
class DownloadUrl:
    """Where a layer can be read (GetDownloadUrlForLayer). The URL is presigned: a credential
    for as long as it lives, so it is never logged, nor written to XCom."""

    url: str
    digest: str

    def __repr__(self) -> str:
        return f"DownloadUrl(digest={self.digest!r}, url=<presigned>)"


@dataclass(frozen=True)
class Referrer:
    """An artifact whose ``subject`` is an image (ListImageReferrers)."""

    digest: str
    media_type: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageRecord:
    """A manifest as ECR stores it (BatchGetImage)."""

    image_digest: str
    manifest: bytes
    media_type: str | None
    tag: str | None


def _drop_none(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def api_name(operation: str) -> str:
    """The API's name of a botocore method: ``batch_get_image`` -> ``BatchGetImage``."""
    return "".join(word.capitalize() for word in operation.split("_"))


def translate_client_error(
    exc: ClientError, operation: str, repository_name: str | None, registry_id: str | None
) -> EcrServiceError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    cls = error_class_for(code, status, operation)
    quota = quota_of(operation, code)
    translated = cls(
        code,
        str(error.get("Message", "")),
        operation=operation,
        repository_name=repository_name,
        registry_id=registry_id,
        hint=f" (the quota on {quota}; retrying will not help)" if quota else "",
    )
    if isinstance(translated, QuotaExceededError):
        translated.quota = quota
    if isinstance(translated, InvalidLayerPartError):
        last = exc.response.get("lastValidByteReceived")
        translated.last_valid_byte_received = int(last) if last is not None else None
    return translated


class EcrCalls:
    """The ECR API on one botocore ECR ``client``, one method a call.

    :param refresh: makes a new client with fresh credentials (from the connection's
        credential provider: an assumed role's session, the environment's chain). When a
        call answers that its credentials expired (``ExpiredTokenException``), the client is
        replaced with a fresh one and the call is made again, once; a long upload then
        continues from the part it was sending. Without it, the error is raised.
    :param retry_policy: our retries of each call (on top of botocore's); ``RetryPolicy()`` if unset.
    """

    def __init__(
        self, client: Any, *, refresh: Callable[[], Any] | None = None, retry_policy: RetryPolicy | None = None
    ) -> None:
        self.client = client
        self._refresh = refresh
        self.retry_policy = retry_policy or RetryPolicy()
        self._lock = threading.Lock()
        self.refreshes = 0
        """Clients replaced after expired credentials."""

    @property
    def region(self) -> str:
        """The region the client talks to (a repository's name is unique only within one)."""
        return str(getattr(getattr(self.client, "meta", None), "region_name", None) or "")

    def _invoke(self, operation: str, repository_name: str, registry_id: str | None, **params: Any) -> dict[str, Any]:
        """Call ``operation`` with ``params``, translating service errors; transient failures are
        retried under :attr:`retry_policy` (by the caller's budget instead, when it has one)."""
        return RetryBudget(self.retry_policy).call(
            api_name(operation), lambda: self._invoke_once(operation, repository_name, registry_id, **params)
        )

    def _invoke_once(
        self, operation: str, repository_name: str, registry_id: str | None, **params: Any
    ) -> dict[str, Any]:
        """One try of ``operation`` (made again once with fresh credentials when they expired)."""
        for attempt in (1, 2):
            client = self.client
            try:
                response: dict[str, Any] = getattr(client, operation)(**_drop_none(**params))
                return response
            except ClientError as exc:
                error = translate_client_error(exc, operation, repository_name, registry_id)
                if not isinstance(error, CredentialsExpiredError) or self._refresh is None or attempt == 2:
                    raise error from exc
                self._renew(client, error)
        raise AssertionError("unreachable")  # pragma: no cover

    def _renew(self, stale: Any, error: EcrServiceError) -> None:
        """Replace ``stale`` with a fresh client (once, however many threads saw it expire)."""
        assert self._refresh is not None
        with self._lock:
            if self.client is stale:
                log.warning("%s: %s; refreshing the credentials and trying again", error.operation, error.code)
                self.client = self._refresh()
                self.refreshes += 1

    def _call(self, operation: str, repository_name: str, registry_id: str | None, **params: Any) -> dict[str, Any]:
        return self._invoke(
            operation, repository_name, registry_id, repositoryName=repository_name, registryId=registry_id, **params
        )

    def batch_check_layer_availability(
        self, repository_name: str, digests: Sequence[str], registry_id: str | None = None
    ) -> dict[str, LayerAvailability]:
        """Availability of each digest, batched 100 at a time."""
        found: dict[str, LayerAvailability] = {}
        for start in range(0, len(digests), MAX_DIGESTS_PER_CHECK):
            batch = list(digests[start : start + MAX_DIGESTS_PER_CHECK])
            response = self._call("batch_check_layer_availability", repository_name, registry_id, layerDigests=batch)
            for layer in response.get("layers", []):
                status = layer.get("layerAvailability", "UNAVAILABLE")
                found[layer["layerDigest"]] = LayerAvailability(
                    layer["layerDigest"], status == "AVAILABLE", status, layer.get("layerSize"), layer.get("mediaType")
                )
            for failure in response.get("failures", []):
                digest = failure.get("layerDigest", "")
                found[digest] = LayerAvailability(digest, False, failure.get("failureCode", "Unknown"))
        return found

    def describe_repository(self, repository_name: str, registry_id: str | None = None) -> dict[str, Any]:
        """The repository as DescribeRepositories reports it; raises RepositoryNotFoundError."""
        response = self._invoke(
            "describe_repositories",
            repository_name,
            registry_id,
            repositoryNames=[repository_name],
            registryId=registry_id,
        )
        repository: dict[str, Any] = response["repositories"][0]
        return repository

    def repository_registry_id(self, repository_name: str, registry_id: str | None = None) -> str:
        """The registry (account) id that holds the repository; raises if it does not exist."""
        return str(self.describe_repository(repository_name, registry_id)["registryId"])

    def create_repository(
        self, repository_name: str, registry_id: str | None = None, **settings: Any
    ) -> dict[str, Any]:
        """CreateRepository with ``settings`` (its API parameters: ``tags``, ``imageTagMutability``,
        ...); returns the repository. Raises RepositoryAlreadyExistsError when it exists."""
        response = self._call("create_repository", repository_name, registry_id, **settings)
        repository: dict[str, Any] = response["repository"]
        return repository

    def put_lifecycle_policy(self, repository_name: str, policy_text: str, registry_id: str | None = None) -> None:
        self._call("put_lifecycle_policy", repository_name, registry_id, lifecyclePolicyText=policy_text)

    def get_lifecycle_policy(self, repository_name: str, registry_id: str | None = None) -> str | None:
        """The repository's lifecycle policy text, or None when it has none."""
        try:
            response = self._call("get_lifecycle_policy", repository_name, registry_id)
        except LifecyclePolicyNotFoundError:
            return None
        return str(response["lifecyclePolicyText"])

    def list_tags_for_resource(self, repository_name: str, arn: str) -> dict[str, str]:
        """The resource tags of the repository ``arn`` (``repository_name`` names it in errors)."""
        response = self._invoke("list_tags_for_resource", repository_name, None, resourceArn=arn)
        return {str(tag["Key"]): str(tag.get("Value", "")) for tag in response.get("tags", [])}

    def initiate_layer_upload(self, repository_name: str, registry_id: str | None = None) -> UploadSession:
        registry_id = registry_id or self.repository_registry_id(repository_name)
        response = self._call("initiate_layer_upload", repository_name, registry_id)
        return UploadSession(
            registry_id=response.get("registryId") or registry_id,
            repository_name=repository_name,
            upload_id=response["uploadId"],
            part_size=int(response.get("partSize") or 0),
        )

    def upload_layer_part(self, session: UploadSession, first_byte: int, data: bytes | bytearray) -> int:
        """Send one part; returns ECR's ``lastByteReceived``."""
        response = self._call(
            "upload_layer_part",
            session.repository_name,
            session.registry_id or None,
            uploadId=session.upload_id,
            partFirstByte=first_byte,
            partLastByte=first_byte + len(data) - 1,
            layerPartBlob=data,
        )
        return int(response["lastByteReceived"])

    def complete_layer_upload(self, session: UploadSession, digest: str) -> str:
        """Complete the upload; returns the digest ECR computed."""
        response = self._call(
            "complete_layer_upload",
            session.repository_name,
            session.registry_id or None,
            uploadId=session.upload_id,
            layerDigests=[digest],
        )
        return str(response["layerDigest"])

    def put_image(
        self, repository_name: str, manifest: Manifest, tag: str | None = None, registry_id: str | None = None
    ) -> PutImageResult:
        response = self._call(
            "put_image",
            repository_name,
            registry_id,
            imageManifest=manifest.text(),
            imageManifestMediaType=manifest.media_type,
            imageTag=tag,
            imageDigest=manifest.digest,
        )
        image = response["image"]
        return PutImageResult(
            registry_id=image.get("registryId", registry_id or ""),
            repository_name=repository_name,
            image_digest=image["imageId"]["imageDigest"],
            tag=tag,
            already_existed=False,
        )

    def batch_get_image(
        self,
        repository_name: str,
        image_ids: Iterable[dict[str, str]],
        registry_id: str | None = None,
        accepted_media_types: Sequence[str] | None = None,
    ) -> list[ImageRecord]:
        response = self._call(
            "batch_get_image",
            repository_name,
            registry_id,
            imageIds=list(image_ids),
            acceptedMediaTypes=list(accepted_media_types) if accepted_media_types else None,
        )
        return [
            ImageRecord(
                image_digest=image["imageId"].get("imageDigest", ""),
                manifest=image["imageManifest"].encode("utf-8"),
                media_type=image.get("imageManifestMediaType"),
                tag=image["imageId"].get("imageTag"),
            )
            for image in response.get("images", [])
        ]

    def describe_images(
        self, repository_name: str, image_ids: Iterable[dict[str, str]] | None = None, registry_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Image details, JSON-safe (timestamps as ISO strings)."""
        ids = list(image_ids) if image_ids is not None else None
        response = self._call("describe_images", repository_name, registry_id, imageIds=ids)
        return [
            {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in detail.items()}
            for detail in response.get("imageDetails", [])
        ]

    def get_download_url_for_layer(
        self, repository_name: str, digest: str, registry_id: str | None = None
    ) -> DownloadUrl:
        """A presigned URL the layer's bytes can be read from (ECR serves layers an image references)."""
        response = self._call("get_download_url_for_layer", repository_name, registry_id, layerDigest=digest)
        return DownloadUrl(str(response["downloadUrl"]), str(response.get("layerDigest") or digest))

    def list_image_referrers(
        self,
        repository_name: str,
        subject_digest: str,
        registry_id: str | None = None,
        artifact_types: Sequence[str] | None = None,
    ) -> list[Referrer]:
        """Every artifact whose ``subject`` is the image ``subject_digest``, all pages."""
        found: list[Referrer] = []
        token: str | None = None
        while True:
            response = self._call(
                "list_image_referrers",
                repository_name,
                registry_id,
                subjectId={"imageDigest": subject_digest},
                filter={"artifactTypes": list(artifact_types)} if artifact_types else None,
                nextToken=token,
            )
            for referrer in response.get("referrers", []):
                found.append(
                    Referrer(
                        digest=str(referrer["digest"]),
                        media_type=str(referrer.get("mediaType") or ""),
                        size=int(referrer.get("size") or 0),
                        artifact_type=referrer.get("artifactType"),
                        annotations=dict(referrer.get("annotations") or {}),
                    )
                )
            token = response.get("nextToken")
            if not token:
                return found
