"""The project's exceptions. Service errors keep the service's own words."""

from __future__ import annotations


class EcrLayersError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidInputError(EcrLayersError, ValueError):
    """Bad user input, detected before anything is written to ECR."""


class SourceError(InvalidInputError):
    """The source is bad input: not a URL, missing, a directory, empty, too large or unreadable.

    Found when the source is opened or planned, before anything is written to ECR."""


class SourceChangedError(EcrLayersError):
    """The source changed while it was read (another version, or fewer bytes than when it was
    opened). Nothing was completed from it; a new try reads the source as it is then."""


class TransferError(EcrLayersError):
    """Bytes could not be moved: reading a source or downloading a layer failed after its own
    retries (a body that kept breaking off, a connection refused or timed out, 5xx answers, a URL
    refused, another HTTP error). A new try may pass. A download's error never carries its
    presigned URL's query string, nor is it chained to an exception that does."""


class DigestMismatchError(EcrLayersError):
    """The bytes streamed do not hash to the digest that was expected or reported."""


class UploadAbortedError(EcrLayersError):
    """An upload, or any other ECR call, gave up after its bounded retries, restarts or time budget."""


class EcrServiceError(EcrLayersError):
    """An error answered by ECR, carrying its code, its message and the repository."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        operation: str,
        repository_name: str | None = None,
        registry_id: str | None = None,
        hint: str = "",
    ) -> None:
        self.code = code
        self.service_message = message
        self.operation = operation
        self.repository_name = repository_name
        self.registry_id = registry_id
        where = ""
        if repository_name:
            where = f" (repository {repository_name!r}"
            where += f" in registry {registry_id!r})" if registry_id else ")"
        super().__init__(f"{operation} failed with {code}{where}: {message}{hint}")


class RepositoryNotFoundError(EcrServiceError):
    """The repository does not exist in the registry."""


class UploadNotFoundError(EcrServiceError):
    """The upload id is unknown or expired; the upload must start over."""


class InvalidLayerPartError(EcrServiceError):
    """A part did not start where ECR expected; carries ``last_valid_byte_received``."""

    last_valid_byte_received: int | None = None


class LayerAlreadyExistsError(EcrServiceError):
    """The layer is already in the repository (success for sha256 digests)."""


class LayersNotFoundError(EcrServiceError):
    """PutImage referenced a blob that is not in the repository."""


class RepositoryAlreadyExistsError(EcrServiceError):
    """CreateRepository found the repository there already (perhaps created a moment ago by another task)."""


class LifecyclePolicyNotFoundError(EcrServiceError):
    """The repository has no lifecycle policy."""


class RepositorySettingsMismatchError(EcrLayersError):
    """An existing repository's settings differ from the ones asked for; ``differences`` names each."""

    def __init__(self, repository_name: str, registry_id: str, differences: list[str]) -> None:
        self.repository_name = repository_name
        self.registry_id = registry_id
        self.differences = list(differences)
        listed = "".join(f"\n  - {difference}" for difference in self.differences)
        super().__init__(
            f"Repository {repository_name!r} in registry {registry_id!r} exists with other settings than "
            f"repository_settings asks for ({len(self.differences)} difference"
            f"{'s' if len(self.differences) != 1 else ''}):{listed}\n"
            "An existing repository is never changed: change it (or the settings) so that they agree."
        )


class ImageAlreadyExistsError(EcrServiceError):
    """The same manifest already carries this tag (an idempotent re-push)."""


class ImageTagAlreadyExistsError(EcrServiceError):
    """The tag exists and the repository's tags are immutable."""


class ThrottledError(EcrServiceError):
    """ECR asked the client to slow down."""


class ServiceUnavailableError(EcrServiceError):
    """ECR answered with a server-side failure (5xx)."""


class QuotaExceededError(EcrServiceError):
    """A service quota of the account is used up: retrying cannot help; ``quota`` names it."""

    quota: str = ""


QUOTAS: dict[tuple[str, str], str] = {
    ("put_image", "LimitExceededException"): (
        "images per repository (an adjustable quota: delete or expire images with a lifecycle "
        "policy, or ask for more in Service Quotas), or layers per image (about 500, not adjustable)"
    ),
    ("start_image_scan", "LimitExceededException"): (
        "image scans (basic scanning allows one scan per image every 24 hours)"
    ),
    ("create_repository", "LimitExceededException"): (
        "repositories per registry (an adjustable quota: delete unused repositories, or ask for more in Service Quotas)"
    ),
    ("*", "TooManyTagsException"): "tags per resource (50 resource tags per repository)",
}
"""Where ECR answers ``(operation, code)`` for a quota rather than a rate (``*``: any operation): not retried."""


class CredentialsExpiredError(EcrServiceError):
    """The request's credentials expired (``ExpiredTokenException``), and a refresh did not help."""


EXPIRED_CREDENTIALS = frozenset({"ExpiredTokenException", "ExpiredToken", "RequestExpired"})
"""Codes that mean the credentials (or the signature's time) ran out: refresh, then try again."""


def quota_of(operation: str, code: str) -> str:
    """The quota ``code`` means for ``operation``, or ``""`` where it means none."""
    return QUOTAS.get((operation, code)) or QUOTAS.get(("*", code)) or ""


_BY_CODE: dict[str, type[EcrServiceError]] = {
    "RepositoryNotFoundException": RepositoryNotFoundError,
    "UploadNotFoundException": UploadNotFoundError,
    "InvalidLayerPartException": InvalidLayerPartError,
    "LayerAlreadyExistsException": LayerAlreadyExistsError,
    "LayersNotFoundException": LayersNotFoundError,
    "ImageAlreadyExistsException": ImageAlreadyExistsError,
    "RepositoryAlreadyExistsException": RepositoryAlreadyExistsError,
    "LifecyclePolicyNotFoundException": LifecyclePolicyNotFoundError,
    "ImageTagAlreadyExistsException": ImageTagAlreadyExistsError,
    "ThrottlingException": ThrottledError,
    "LimitExceededException": ThrottledError,
    "TooManyRequestsException": ThrottledError,
    "ServerException": ServiceUnavailableError,
    "ServiceUnavailable": ServiceUnavailableError,
    "InternalFailure": ServiceUnavailableError,
}


def error_class_for(code: str, http_status: int | None = None, operation: str = "") -> type[EcrServiceError]:
    """The exception class for an ECR error code of ``operation`` (a botocore method name).

    A code that means a quota for that operation (:data:`QUOTAS`) is never transient;
    5xx without a known code is.
    """
    if quota_of(operation, code):
        return QuotaExceededError
    if code in EXPIRED_CREDENTIALS:
        return CredentialsExpiredError
    if code in _BY_CODE:
        return _BY_CODE[code]
    if http_status is not None and http_status >= 500:
        return ServiceUnavailableError
    return EcrServiceError


RETRYABLE: tuple[type[EcrLayersError], ...] = (
    TransferError,
    SourceChangedError,
    UploadAbortedError,
    ThrottledError,
    ServiceUnavailableError,
    CredentialsExpiredError,
)
"""Failures that a new try of the same push may get past: the CLI exits with its own code for them."""
