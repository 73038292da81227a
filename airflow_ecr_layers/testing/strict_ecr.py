"""Make moto's ECR enforce the layer-upload contract of the real service.

moto 5.2.5 implements the layer-upload calls but lets a lot slide that the ECR
service contract enforces: part sizes, the client's layer digest,
``LayerAlreadyExists``/``EmptyUpload``, the image digest of ``PutImage`` and the
existence of the blobs an image references. :func:`install` patches
:class:`moto.ecr.models.ECRBackend` in-process so that every backend (a
``ThreadedMotoServer`` in this process as well as ``mock_aws``) behaves like ECR.

It also makes moto's ECR serve downloads: a completed layer's bytes are kept in the
process's :mod:`.blob_store` (moto keeps only its size), GetDownloadUrlForLayer
(moto: NotImplementedError) answers a signed URL of the :mod:`.blob_server`, and
ListImageReferrers (absent from moto) lists the images whose ``subject`` is a given
image; for those two, :func:`install` patches :class:`moto.ecr.responses.ECRResponse`.
Repository settings (tag mutability with exclusion filters, KMS keys, lifecycle policies)
are made ECR's by :mod:`.strict_repositories`, which :func:`install` installs too.

:data:`STATS` counts the layer-upload traffic each repository received, so a
test can assert that a re-push uploaded nothing.

This module must not import Airflow.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.ecr.exceptions import InvalidLayerPartException as _MotoInvalidLayerPartException
from moto.ecr.exceptions import InvalidParameterException, RepositoryNotFoundException
from moto.ecr.models import ECRBackend, LayerUpload, Repository, ecr_backends
from moto.ecr.responses import ECRResponse

from airflow_ecr_layers.testing import blob_server, strict_repositories
from airflow_ecr_layers.testing.blob_store import blob_store
from airflow_ecr_layers.testing.ecr_images import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    IMAGE_MANIFEST_TYPES,
    INDEX_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    image_referrers,
    referenced_blobs,
)
from airflow_ecr_layers.testing.strict_repositories import tag_is_immutable

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "STATS",
    "EcrStats",
    "RepositoryStats",
    "download_url_for_layer",
    "forget_layer",
    "install",
    "is_installed",
    "reset_stats",
    "sweep_blob_store",
    "uninstall",
]

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB
"""Every part but the last must be at least this long."""
MAX_PART_SIZE = 20_971_520
"""The API's maximum ``layerPartBlob`` length (botocore does not check it client-side)."""
MAX_PARTS = 4200
MAX_MANIFEST_CHARS = 4_194_304
MAX_LAYERS_PER_IMAGE = 500
"""Layers real ECR takes in one image (undocumented; PutImage answers LimitExceededException past it)."""
MAX_DIGESTS_PER_CHECK = 100
MAX_REFERRERS_PER_PAGE = 50
"""ListImageReferrers' largest ``maxResults``."""
DEFAULT_REFERRERS_PER_PAGE = 100
"""Referrers per page when ``maxResults`` is not given (what ECR's other list calls return)."""
MAX_ARTIFACT_TYPES = 5


# --- Exceptions -------------------------------------------------------------
# moto serialises any ServiceException whose ``code`` names an error shape of the
# ECR service model; botocore then raises ClientError with Error.Code == code.
# All codes below are shapes of ECR's model, so they reach clients unchanged.


class EmptyUploadException(ServiceException):
    code = "EmptyUploadException"


class LayerPartTooSmallException(ServiceException):
    code = "LayerPartTooSmallException"
    message = "All layer parts except the last part should be at least 5MB"


class InvalidLayerException(ServiceException):
    code = "InvalidLayerException"


class LayerAlreadyExistsException(ServiceException):
    code = "LayerAlreadyExistsException"


class ImageDigestDoesNotMatchException(ServiceException):
    code = "ImageDigestDoesNotMatchException"


class LayersNotFoundException(ServiceException):
    code = "LayersNotFoundException"


class ReferencedImagesNotFoundException(ServiceException):
    code = "ReferencedImagesNotFoundException"


class ImageTagAlreadyExistsException(ServiceException):
    code = "ImageTagAlreadyExistsException"


class LayerInaccessibleException(ServiceException):
    code = "LayerInaccessibleException"


class ServerException(ServiceException):
    code = "ServerException"


class LimitExceededException(ServiceException):
    code = "LimitExceededException"


class InvalidLayerPartException(_MotoInvalidLayerPartException):
    """moto's exception (which carries ``lastValidByteReceived``) with a specific message."""

    def __init__(
        self,
        registry_id: str,
        repository_name: str,
        upload_id: str,
        last_valid_byte_received: int,
        message: str,
    ) -> None:
        super().__init__(registry_id, repository_name, upload_id, last_valid_byte_received)
        self.message = message
        self.args = (message,)


# --- Statistics -------------------------------------------------------------


@dataclass
class RepositoryStats:
    """What one repository received. Rejected calls are counted too."""

    initiate_layer_upload_calls: int = 0
    upload_layer_part_calls: int = 0
    bytes_received: int = 0
    """Sum of the ``layerPartBlob`` lengths of all UploadLayerPart calls."""
    complete_layer_upload_calls: int = 0
    layers_completed: int = 0
    """Successful CompleteLayerUpload calls (a new layer stored)."""
    put_image_calls: int = 0
    get_download_url_for_layer_calls: int = 0
    list_image_referrers_calls: int = 0
    batch_check_layer_availability_calls: int = 0
    digests_checked: int = 0
    """Sum of the ``layerDigests`` lengths of all BatchCheckLayerAvailability calls."""


class EcrStats:
    """Thread-safe per-repository counters of the calls the patched backend served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._repositories: dict[str, RepositoryStats] = {}

    def add(self, repository_name: str, **increments: int) -> None:
        with self._lock:
            stats = self._repositories.setdefault(repository_name, RepositoryStats())
            for name, amount in increments.items():
                setattr(stats, name, getattr(stats, name) + amount)

    def repository(self, repository_name: str) -> RepositoryStats:
        """A copy of one repository's counters (all zero if it saw no calls)."""
        with self._lock:
            return replace(self._repositories.get(repository_name, RepositoryStats()))

    def snapshot(self) -> dict[str, RepositoryStats]:
        with self._lock:
            return {name: replace(stats) for name, stats in self._repositories.items()}

    def total(self) -> RepositoryStats:
        """The counters summed over all repositories."""
        total = RepositoryStats()
        for stats in self.snapshot().values():
            for f in fields(RepositoryStats):
                setattr(total, f.name, getattr(total, f.name) + getattr(stats, f.name))
        return total

    @property
    def upload_layer_part_calls(self) -> int:
        return self.total().upload_layer_part_calls

    @property
    def bytes_received(self) -> int:
        return self.total().bytes_received

    def reset(self) -> None:
        with self._lock:
            self._repositories.clear()


STATS = EcrStats()


def reset_stats() -> None:
    STATS.reset()


# --- Helpers ----------------------------------------------------------------

_PART_SIZES = "strict_ecr_part_sizes"
_blobs_lock = threading.Lock()
"""Held while a layer's bytes are stored and the layer recorded, and while the store is swept."""


def _part_sizes(upload: LayerUpload) -> list[int]:
    """The lengths of the parts an upload accepted, kept on the upload object itself
    so that they vanish with it (and with a moto reset)."""
    sizes: list[int] | None = getattr(upload, _PART_SIZES, None)
    if sizes is None:
        # An upload that received bytes before install(): its parts are unknown, so
        # treat what it has as one part (no minimum applies to a last part).
        sizes = [len(upload.layer_parts)] if upload.layer_parts else []
        setattr(upload, _PART_SIZES, sizes)
    return sizes


def _sha256(data: bytes | bytearray | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    # hashlib reads a bytearray in place: no copy of a possibly huge layer.
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptors(value: object, where: str) -> list[dict[str, Any]]:
    """Validate a list of descriptors: each one an object with a string digest."""
    if not isinstance(value, list):
        raise _invalid_manifest(f"{where} must be a list of descriptors")
    for i, descriptor in enumerate(value):
        if not isinstance(descriptor, dict) or not isinstance(descriptor.get("digest"), str):
            raise _invalid_manifest(f"{where}[{i}] must be a descriptor with a digest")
    return value


def _invalid_manifest(reason: str) -> InvalidParameterException:
    return InvalidParameterException(f"Invalid parameter at 'ImageManifest' failed to satisfy constraint: '{reason}'")


def _check_blobs_exist(repository: Repository, manifest: dict[str, Any]) -> None:
    """An image manifest may only reference blobs (config and layers) already in the
    repository. Real ECR does not exempt the OCI empty descriptor: the 2-byte ``{}``
    blob has to be uploaded like any other."""
    descriptors = _descriptors([manifest.get("config")], "config") + _descriptors(manifest.get("layers", []), "layers")
    missing = [d for d in dict.fromkeys(d["digest"] for d in descriptors) if d not in repository.layers]
    if missing:
        raise LayersNotFoundException(
            f"Layers with digests '{', '.join(missing)}' required for pushing image into repository "
            f"with name '{repository.name}' in the registry with id '{repository.registry_id}' do not exist"
        )
    # A descriptor whose size disagrees with the stored blob is always a client bug.
    # Real ECR's error for it is undocumented; InvalidParameterException is the
    # closest modelled error of PutImage.
    for descriptor in descriptors:
        stored = repository.layers[descriptor["digest"]]
        if descriptor.get("size") != stored:
            raise _invalid_manifest(
                f"descriptor {descriptor['digest']} has size {descriptor.get('size')!r} "
                f"but the layer in the repository has {stored} bytes"
            )


def _check_referenced_images_exist(repository: Repository, index: dict[str, Any]) -> None:
    """An index / manifest list may only name manifests already pushed to the repository."""
    digests = [d["digest"] for d in _descriptors(index.get("manifests", []), "manifests")]
    present = {image.get_image_digest() for image in repository.images}
    missing = [d for d in dict.fromkeys(digests) if d not in present]
    if missing:
        raise ReferencedImagesNotFoundException(
            f"The manifest list references images with digests '{', '.join(missing)}' that do not exist "
            f"in the repository with name '{repository.name}' in the registry with id '{repository.registry_id}'"
        )


def _check_tag_immutability(repository: Repository, image_tag: str | None, image_manifest: str) -> None:
    """moto answers ImageAlreadyExistsException when an immutable tag would move to
    another image; real ECR answers ImageTagAlreadyExistsException. Which tags are immutable
    (exclusion filters included) is ECR's rule, :func:`.strict_repositories.tag_is_immutable`."""
    if image_tag is None or not tag_is_immutable(repository, image_tag):
        return
    for image in repository.images:
        if image_tag in image.image_tags and image.image_manifest != image_manifest:
            raise ImageTagAlreadyExistsException(
                f"The image tag '{image_tag}' already exists in the '{repository.name}' repository "
                "and cannot be overwritten because the repository is immutable."
            )


# --- The patched ECRBackend methods -----------------------------------------

_PATCHED_METHODS = (
    "initiate_layer_upload",
    "upload_layer_part",
    "complete_layer_upload",
    "put_image",
    "batch_check_layer_availability",
)
_ORIGINALS: dict[str, Callable[..., Any]] = {name: getattr(ECRBackend, name) for name in _PATCHED_METHODS}


def _initiate_layer_upload(self: ECRBackend, repository_name: str, registry_id: str | None = None) -> dict[str, Any]:
    STATS.add(repository_name, initiate_layer_upload_calls=1)
    result: dict[str, Any] = _ORIGINALS["initiate_layer_upload"](self, repository_name, registry_id=registry_id)
    return result


def _upload_layer_part(
    self: ECRBackend,
    repository_name: str,
    upload_id: str,
    part_first_byte: int,
    part_last_byte: int,
    layer_part_blob: bytes,
    registry_id: str | None = None,
) -> dict[str, Any]:
    blob = layer_part_blob or b""
    STATS.add(repository_name, upload_layer_part_calls=1, bytes_received=len(blob))

    def call_moto() -> dict[str, Any]:
        result: dict[str, Any] = _ORIGINALS["upload_layer_part"](
            self, repository_name, upload_id, part_first_byte, part_last_byte, blob, registry_id=registry_id
        )
        return result

    repository = self._get_repository(repository_name, registry_id)
    upload = repository.uploads.get(upload_id)
    if upload is None:
        return call_moto()  # raises UploadNotFoundException

    # A wrong offset, a wrong last byte and an oversized part all answer
    # InvalidLayerPartException: the service model documents it as "The layer part
    # size is not valid, or the first byte specified is not consecutive ...", and it
    # tells the client where to resume (lastValidByteReceived), while
    # InvalidParameterException is a generic validation error. Nothing of a
    # rejected part is kept.
    def reject(message: str) -> InvalidLayerPartException:
        return InvalidLayerPartException(
            repository.registry_id, repository_name, upload_id, upload.last_byte_received, message
        )

    expected_first = upload.last_byte_received + 1
    if part_first_byte != expected_first:
        raise reject(f"First byte of the layer part is {part_first_byte} instead of {expected_first}")
    if len(blob) > MAX_PART_SIZE:
        raise reject(f"The layer part is {len(blob)} bytes long; a layer part can be at most {MAX_PART_SIZE} bytes")
    expected_last = part_first_byte + len(blob) - 1
    if part_last_byte != expected_last:
        raise reject(f"Last byte of the layer part is {part_last_byte} instead of {expected_last}")
    sizes = _part_sizes(upload)
    if len(sizes) >= MAX_PARTS:
        raise reject(f"A layer can have at most {MAX_PARTS} parts")

    result = call_moto()  # keeps moto's own consecutive-offset check
    sizes.append(len(blob))
    return result


def _complete_layer_upload(
    self: ECRBackend,
    repository_name: str,
    upload_id: str,
    layer_digests: list[str],
    registry_id: str | None = None,
) -> dict[str, Any]:
    """Re-implements moto's method (which hashes a copy of the bytes and skips all checks).

    What happens to the upload id on an error:
    - EmptyUploadException: kept. Nothing was received, the client may still send parts.
    - LayerPartTooSmallException: consumed. The short part can never be replaced
      (parts are consecutive), so the upload can never complete: start over.
    - InvalidLayerException: consumed, as on real ECR: a retry must start over.
    - LayerAlreadyExistsException: consumed; the bytes are dropped and the layer
      in the repository stays as it was.
    """
    STATS.add(repository_name, complete_layer_upload_calls=1)
    repository = self._get_repository(repository_name, registry_id)
    upload = repository.uploads.get(upload_id)
    if upload is None:
        result: dict[str, Any] = _ORIGINALS["complete_layer_upload"](
            self, repository_name, upload_id, layer_digests, registry_id=registry_id
        )
        return result  # not reached: moto raises UploadNotFoundException

    if not upload.layer_parts:
        raise EmptyUploadException(
            f"The layer upload with id '{upload_id}' in the repository with name '{repository_name}' "
            f"in the registry with id '{repository.registry_id}' does not contain any layer parts"
        )
    if not layer_digests:
        raise InvalidParameterException(
            "Invalid parameter at 'layerDigests' failed to satisfy constraint: "
            "'Member must have length greater than or equal to 1'"
        )

    if any(size < MIN_PART_SIZE for size in _part_sizes(upload)[:-1]):
        del repository.uploads[upload_id]
        raise LayerPartTooSmallException()

    digest = _sha256(upload.layer_parts)
    size = len(upload.layer_parts)
    del repository.uploads[upload_id]
    if layer_digests[0] != digest:
        raise InvalidLayerException(
            f"The layer digest {layer_digests[0]} sent does not match the digest {digest} "
            f"Amazon ECR calculated for the {size} bytes of upload '{upload_id}'"
        )
    if digest in repository.layers:
        # The repository's layer stays as it was; its bytes are kept if they were not
        # (a layer completed before install()).
        with _blobs_lock:
            blob_store().put(digest, upload.layer_parts)
        raise LayerAlreadyExistsException(
            f"The layer with digest {digest} already exists in the repository with name "
            f"'{repository_name}' in the registry with id '{repository.registry_id}'"
        )
    with _blobs_lock:  # a sweep sees the bytes and the layer together, or neither
        blob_store().put(digest, upload.layer_parts)  # one write of the bytes moto holds
        repository.layers[digest] = size  # BatchCheckLayerAvailability reports this size
    STATS.add(repository_name, layers_completed=1)
    return {
        "registryId": repository.registry_id,
        "repositoryName": repository_name,
        "uploadId": upload_id,
        "layerDigest": digest,
    }


PUT_IMAGE_LISTENERS: list[Callable[[ECRBackend, str, Any, dict[str, Any]], None]] = []
"""Called after each manifest PutImage stored, with the backend, the repository's name, moto's
image and the parsed manifest (:mod:`.managed_signing` starts its signing there)."""


def _put_image(
    self: ECRBackend,
    repository_name: str,
    image_manifest: str,
    image_tag: str | None,
    image_manifest_mediatype: str | None = None,
    digest: str | None = None,
) -> Any:
    STATS.add(repository_name, put_image_calls=1)
    repository = self.repositories.get(repository_name)
    if repository is None:  # moto raises a bare Exception (HTTP 500)
        raise RepositoryNotFoundException(repository_name, self.account_id)

    if len(image_manifest) > MAX_MANIFEST_CHARS:
        raise InvalidParameterException(
            f"Invalid parameter at 'imageManifest' failed to satisfy constraint: "
            f"'Member must have length less than or equal to {MAX_MANIFEST_CHARS}'"
        )
    try:
        manifest = json.loads(image_manifest)
    except json.JSONDecodeError:  # moto raises a bare Exception (HTTP 500)
        raise _invalid_manifest("Invalid JSON syntax") from None
    if not isinstance(manifest, dict):
        raise _invalid_manifest("Invalid JSON syntax")
    layers = manifest.get("layers")
    if isinstance(layers, list) and len(layers) > MAX_LAYERS_PER_IMAGE:
        raise LimitExceededException("Limit on number of layers per image exceeded")

    manifest_media_type = manifest.get("mediaType")
    for media_type in (image_manifest_mediatype, manifest_media_type):
        if media_type is not None and (not isinstance(media_type, str) or ";" in media_type):
            raise InvalidParameterException(
                f"Invalid parameter at 'imageManifestMediaType' failed to satisfy constraint: "
                f"'Invalid media type {media_type!r}'"
            )
    # A manifest that says one media type while the request says another is a client
    # bug (the OCI distribution spec has registries reject it).
    if image_manifest_mediatype and manifest_media_type and image_manifest_mediatype != manifest_media_type:
        raise InvalidParameterException(
            f"Invalid parameter at 'imageManifestMediaType' failed to satisfy constraint: "
            f"'{image_manifest_mediatype}' does not match the manifest's mediaType '{manifest_media_type}'"
        )
    media_type = image_manifest_mediatype or manifest_media_type

    computed = _sha256(image_manifest)
    if digest is not None and digest != computed:
        raise ImageDigestDoesNotMatchException(
            f"The image digest {digest} sent does not match the digest {computed} "
            "Amazon ECR calculated for the image manifest"
        )
    if media_type in IMAGE_MANIFEST_TYPES:
        _check_blobs_exist(repository, manifest)
    elif media_type in INDEX_TYPES:
        _check_referenced_images_exist(repository, manifest)
    _check_tag_immutability(repository, image_tag, image_manifest)
    # A tag that moves leaves its old image untagged in ECR; moto deletes that image when the
    # tag was its last one. Keep such images, untagged, as ECR does.
    losing = [
        i for i in repository.images if image_tag and image_tag in i.image_tags and i.image_manifest != image_manifest
    ]
    # moto would otherwise store a digest of the concatenated layer digests.
    image = _ORIGINALS["put_image"](self, repository_name, image_manifest, image_tag, media_type, computed)
    for old in losing:
        if image_tag is not None and old not in repository.images:
            old.remove_tag(image_tag)
            if not old.image_tags:
                old.image_tag = None  # type: ignore[assignment]  # moto's own untagged images have None
            repository.images.append(old)
    for listener in list(PUT_IMAGE_LISTENERS):
        listener(self, repository_name, image, manifest)
    return image


def _batch_check_layer_availability(
    self: ECRBackend,
    repository_name: str,
    layer_digests: list[str],
    registry_id: str | None = None,
) -> dict[str, Any]:
    STATS.add(repository_name, batch_check_layer_availability_calls=1, digests_checked=len(layer_digests))
    # moto already reports the stored byte count as layerSize; only the list limit is missing.
    if len(layer_digests) > MAX_DIGESTS_PER_CHECK:
        raise InvalidParameterException(
            f"Invalid parameter at 'layerDigests' failed to satisfy constraint: "
            f"'Member must have length less than or equal to {MAX_DIGESTS_PER_CHECK}'"
        )
    result: dict[str, Any] = _ORIGINALS["batch_check_layer_availability"](
        self, repository_name, layer_digests, registry_id=registry_id
    )
    return result


# --- Downloads and referrers: the patched ECRResponse methods -------------------------


def download_url_for_layer(
    backend: ECRBackend, repository_name: str, layer_digest: str, registry_id: str | None = None
) -> dict[str, str]:
    """GetDownloadUrlForLayer's answer, as real ECR decides it: the layer must be in the
    repository (else LayersNotFoundException) and referenced by one of its image
    manifests (else LayerInaccessibleException). The URL is the blob server's."""
    repository = backend._get_repository(repository_name, registry_id)
    where = f"in the repository with name '{repository_name}' in the registry with id '{repository.registry_id}'"
    if layer_digest not in repository.layers:
        raise LayersNotFoundException(f"The layer with digest '{layer_digest}' does not exist {where}")
    if layer_digest not in referenced_blobs(repository):
        raise LayerInaccessibleException(
            f"The layer with digest '{layer_digest}' {where} is not available because it is not "
            "associated with an image. Unassociated image layers may be cleaned up at any time."
        )
    if not blob_store().has(layer_digest):
        raise LayerInaccessibleException(
            f"The embedded ECR holds no bytes of the layer with digest '{layer_digest}' {where}: "
            "it was completed while strict_ecr was not installed"
        )
    try:
        url = blob_server.presign(layer_digest)
    except RuntimeError as exc:
        raise ServerException(str(exc)) from None
    return {"downloadUrl": url, "layerDigest": layer_digest}


def _get_download_url_for_layer(self: ECRResponse) -> ActionResult:
    repository_name = self._get_param("repositoryName")
    STATS.add(repository_name, get_download_url_for_layer_calls=1)
    return ActionResult(
        download_url_for_layer(
            self.ecr_backend, repository_name, self._get_param("layerDigest"), self._get_param("registryId")
        )
    )


_REFERRERS_TOKEN = "referrers:"


def _list_image_referrers(self: ECRResponse) -> ActionResult:
    repository_name = self._get_param("repositoryName")
    STATS.add(repository_name, list_image_referrers_calls=1)
    repository = self.ecr_backend._get_repository(repository_name, self._get_param("registryId"))
    subject = (self._get_param("subjectId") or {}).get("imageDigest")
    if not isinstance(subject, str) or not subject:
        raise InvalidParameterException("Invalid parameter at 'subjectId.imageDigest': it is required")
    given_filter = self._get_param("filter") or {}
    artifact_types = given_filter.get("artifactTypes") or None
    if artifact_types is not None and len(artifact_types) > MAX_ARTIFACT_TYPES:
        raise InvalidParameterException(
            "Invalid parameter at 'filter.artifactTypes' failed to satisfy constraint: "
            f"'Member must have length less than or equal to {MAX_ARTIFACT_TYPES}'"
        )
    max_results = self._get_param("maxResults")
    if max_results is not None and not 1 <= int(max_results) <= MAX_REFERRERS_PER_PAGE:
        raise InvalidParameterException(
            "Invalid parameter at 'maxResults' failed to satisfy constraint: "
            f"'Member must have value less than or equal to {MAX_REFERRERS_PER_PAGE}'"
        )
    page_size = int(max_results) if max_results is not None else DEFAULT_REFERRERS_PER_PAGE
    token = self._get_param("nextToken")
    start = 0
    if token is not None:
        offset = token[len(_REFERRERS_TOKEN) :] if token.startswith(_REFERRERS_TOKEN) else ""
        if not offset.isdigit():
            raise InvalidParameterException("Invalid parameter at 'nextToken': not a token this call returned")
        start = int(offset)

    # Every referrer here is ACTIVE (no archiving): a filter on another status finds none.
    status = given_filter.get("artifactStatus") or "ACTIVE"
    found = image_referrers(repository, subject, artifact_types) if status in ("ACTIVE", "ANY") else []
    result: dict[str, Any] = {"referrers": found[start : start + page_size]}
    if start + page_size < len(found):
        result["nextToken"] = f"{_REFERRERS_TOKEN}{start + page_size}"
    return ActionResult(result)


def sweep_blob_store() -> list[str]:
    """Delete the stored bytes of every blob that no repository of any ECR backend of this
    process holds as a layer (after a moto reset: all of them); return their digests."""
    with _blobs_lock:
        keep: set[str] = set()
        for account in list(dict.values(ecr_backends)):
            for backend in list(dict.values(account)):
                for repository in list(backend.repositories.values()):
                    keep.update(repository.layers)
        return blob_store().retain(keep)


_REPLACEMENTS: dict[str, Callable[..., Any]] = {
    "initiate_layer_upload": _initiate_layer_upload,
    "upload_layer_part": _upload_layer_part,
    "complete_layer_upload": _complete_layer_upload,
    "put_image": _put_image,
    "batch_check_layer_availability": _batch_check_layer_availability,
}
_RESPONSE_REPLACEMENTS: dict[str, Callable[..., Any]] = {
    "get_download_url_for_layer": _get_download_url_for_layer,
    "list_image_referrers": _list_image_referrers,  # not a method of moto's: added, and deleted again
}
_RESPONSE_ORIGINALS: dict[str, Callable[..., Any]] = {
    name: ECRResponse.__dict__[name] for name in _RESPONSE_REPLACEMENTS if name in ECRResponse.__dict__
}
_install_lock = threading.Lock()


def forget_layer(
    repository_name: str, digest: str, *, account_id: str = "123456789012", region: str = "us-east-1"
) -> None:
    """Remove a completed layer from a repository of this process's moto, as ECR does when it
    collects a layer no image references: BatchCheckLayerAvailability then reports it missing."""
    backend = ecr_backends[account_id][region]
    repository = backend.repositories.get(repository_name)
    if repository is None or digest not in repository.layers:
        raise KeyError(f"{repository_name} holds no layer {digest}")
    del repository.layers[digest]


def install() -> None:
    """Patch ``ECRBackend`` and ``ECRResponse`` (idempotent). Affects every ECR backend in
    this process, including those of a ``ThreadedMotoServer`` and of ``mock_aws``; survives
    ``/moto-api/reset`` since the classes, not the instances, are patched.

    GetDownloadUrlForLayer answers URLs of the process's blob server: it needs one
    running (:class:`.server.EmbeddedAws` starts it; else :func:`.blob_server.acquire`)."""
    with _install_lock:
        for name, replacement in _REPLACEMENTS.items():
            setattr(ECRBackend, name, replacement)
        for name, response_method in _RESPONSE_REPLACEMENTS.items():
            setattr(ECRResponse, name, response_method)
    strict_repositories.install()


def uninstall() -> None:
    """Restore moto's own methods (idempotent)."""
    with _install_lock:
        for name, original in _ORIGINALS.items():
            setattr(ECRBackend, name, original)
        for name in _RESPONSE_REPLACEMENTS:
            if name in _RESPONSE_ORIGINALS:
                setattr(ECRResponse, name, _RESPONSE_ORIGINALS[name])
            elif name in ECRResponse.__dict__:
                delattr(ECRResponse, name)
    strict_repositories.uninstall()


def is_installed() -> bool:
    return (
        all(getattr(ECRBackend, name) is fn for name, fn in _REPLACEMENTS.items())
        and all(ECRResponse.__dict__.get(name) is fn for name, fn in _RESPONSE_REPLACEMENTS.items())
        and strict_repositories.is_installed()
    )
