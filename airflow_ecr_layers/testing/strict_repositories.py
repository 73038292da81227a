"""Make moto's ECR repositories behave like the real service's: settings and tag mutability.

Checked against moto 5.2.5 and ECR's API model (botocore ``ecr/2015-09-21``) and user guide:

- **Exclusion filters are wildcards.** ECR's ``imageTagMutabilityExclusionFilters`` are
  ``WILDCARD`` filters (``*`` for any characters, the whole tag matched). moto runs them as
  regular expressions anchored at the start only: ``release-*`` would exempt ``release``,
  ``a*b`` would exempt ``ab-c``, and ``*-dev`` (a valid filter) makes PutImage fail with a
  500. moto also answers ``ImageAlreadyExistsException`` where ECR answers
  ``ImageTagAlreadyExistsException``. Here a tag is immutable when the mode is IMMUTABLE, or
  IMMUTABLE_WITH_EXCLUSION and no filter matches it, or MUTABLE_WITH_EXCLUSION and one does;
  :func:`tag_is_immutable` decides it for :mod:`.strict_ecr`'s PutImage.
- **Filter values** must match the model's ``^[0-9a-zA-Z._*-]{1,128}$``, 1 to 5 of them;
  moto takes any string, and its PutImageTagMutability takes filters with plain
  MUTABLE/IMMUTABLE (silently turning the mode into ``*_WITH_EXCLUSION``), which
  CreateRepository refuses. Both refuse them here.
- **KMS keys.** ECR reports the ARN of the key a repository uses, whatever form (key id,
  alias, alias ARN) it was given in, and refuses a key that does not exist
  (``KmsException``); moto stores the string as given and checks nothing. Here the key is
  looked up in moto's KMS of the same account and region. A KMS key with ``AES256`` is
  refused (moto stores it).
- **CreateRepository is atomic.** moto checks that the name is free, stores the repository
  and then tags it, so two concurrent calls could both succeed, and a ListTagsForResource
  in between sees no tags. Here creation and tag reads hold one lock.
- **Lifecycle policies** of the archive storage class (2025): ``storageClass`` in a selection,
  the ``sinceImagePulled`` and ``sinceImageTransitioned`` count types and the ``transition``
  action with ``targetStorageClass`` are accepted, as ECR accepts them; moto 5.2.5 refuses them.

This module must not import Airflow.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import moto.ecr.policy_validation as policy_validation
from moto.core.exceptions import ServiceException
from moto.ecr.exceptions import InvalidParameterException
from moto.ecr.models import ECRBackend, Image, Repository
from moto.kms.models import kms_backends

__all__ = ["install", "is_installed", "tag_is_immutable", "uninstall", "wildcard_matches"]

EXCLUSION_FILTER = re.compile(r"[0-9a-zA-Z._*-]{1,128}")
MAX_EXCLUSION_FILTERS = 5


class KmsException(ServiceException):
    code = "KmsException"


def wildcard_matches(pattern: str, tag: str) -> bool:
    """Whether ``tag`` matches the WILDCARD filter ``pattern`` (``*``: any characters, the whole tag)."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), tag) is not None


def tag_is_immutable(repository: Repository, tag: str) -> bool:
    """Whether ``tag`` may not move to another image in ``repository``, as ECR decides it."""
    mode = repository.image_tag_mutability
    excluded = any(wildcard_matches(f["filter"], tag) for f in repository.image_tag_mutability_exclusion_filters or [])
    return (
        mode == "IMMUTABLE"
        or (mode == "IMMUTABLE_WITH_EXCLUSION" and not excluded)
        or (mode == "MUTABLE_WITH_EXCLUSION" and excluded)
    )


def _invalid(where: str, constraint: str) -> InvalidParameterException:
    return InvalidParameterException(f"Invalid parameter at '{where}' failed to satisfy constraint: '{constraint}'")


def _check_filters(mode: str | None, filters: list[dict[str, str]] | None) -> None:
    if filters is None:
        return
    if len(filters) > MAX_EXCLUSION_FILTERS:
        raise _invalid(
            "imageTagMutabilityExclusionFilters",
            f"Member must have length less than or equal to {MAX_EXCLUSION_FILTERS}",
        )
    for f in filters:
        if not EXCLUSION_FILTER.fullmatch(str(f.get("filter", ""))):
            raise _invalid(
                "imageTagMutabilityExclusionFilters.filter",
                "Member must satisfy regular expression pattern: ^[0-9a-zA-Z._*-]{1,128}$",
            )
    ECRBackend.validate_image_tag_mutability_params_compatibility(mode, filters)  # type: ignore[arg-type]


def _kms_key_arn(backend: ECRBackend, key: str) -> str:
    kms = kms_backends[backend.account_id][backend.region_name]
    try:
        return str(kms.describe_key(key).arn)
    except (KeyError, TypeError, AttributeError, ServiceException):  # moto's ways of not finding it
        raise KmsException(
            f"The KMS key '{key}' does not exist in the region {backend.region_name} of account "
            f"{backend.account_id}, or Amazon ECR is not allowed to use it"
        ) from None


def _encryption(backend: ECRBackend, config: dict[str, str] | None) -> dict[str, str] | None:
    if not config:
        return config
    kind, key = config.get("encryptionType"), config.get("kmsKey")
    if key and kind == "AES256":
        raise _invalid("encryptionConfiguration.kmsKey", "A KMS key can only be given with the KMS or KMS_DSSE type")
    return {**config, "kmsKey": _kms_key_arn(backend, key)} if key else config


# --- The patched ECRBackend methods ------------------------------------------------------

_PATCHED = ("create_repository", "list_tags_for_resource", "put_image_tag_mutability", "_resolve_image_tag_mutability")
_creating = threading.Lock()
"""Held while a repository is created and tagged, and while tags are read."""
_ORIGINALS: dict[str, Callable[..., Any]] = {name: getattr(ECRBackend, name) for name in _PATCHED}


def _create_repository(
    self: ECRBackend,
    repository_name: str,
    registry_id: str | None,
    encryption_config: dict[str, str] | None,
    image_scan_config: Any,
    image_tag_mutability: str,
    tags: list[dict[str, str]],
    image_tag_mutability_exclusion_filters: list[dict[str, str]] | None = None,
) -> Repository:
    _check_filters(image_tag_mutability, image_tag_mutability_exclusion_filters)
    encryption = _encryption(self, encryption_config)
    with _creating:
        repository: Repository = _ORIGINALS["create_repository"](
            self,
            repository_name,
            registry_id,
            encryption,
            image_scan_config,
            image_tag_mutability,
            tags,
            image_tag_mutability_exclusion_filters=image_tag_mutability_exclusion_filters,
        )
    return repository


def _list_tags_for_resource(self: ECRBackend, arn: str) -> dict[str, list[dict[str, str]]]:
    with _creating:
        tags: dict[str, list[dict[str, str]]] = _ORIGINALS["list_tags_for_resource"](self, arn)
    return tags


def _put_image_tag_mutability(
    self: ECRBackend,
    registry_id: str,
    repository_name: str,
    image_tag_mutability: str,
    image_tag_mutability_exclusion_filters: list[dict[str, str]] | None = None,
) -> dict[str, str]:
    _check_filters(image_tag_mutability, image_tag_mutability_exclusion_filters)
    result: dict[str, str] = _ORIGINALS["put_image_tag_mutability"](
        self, registry_id, repository_name, image_tag_mutability, image_tag_mutability_exclusion_filters
    )
    return result


def _resolve_image_tag_mutability(self: ECRBackend, repository: Repository, proposed_image_tag: str) -> list[Image]:
    """The images that carry the tag. Whether it may move is decided before (by
    :mod:`.strict_ecr`'s PutImage, with :func:`tag_is_immutable`), not by moto's regexes."""
    return [image for image in repository.images if proposed_image_tag in image.image_tags]


_REPLACEMENTS: dict[str, Callable[..., Any]] = {
    "create_repository": _create_repository,
    "list_tags_for_resource": _list_tags_for_resource,
    "put_image_tag_mutability": _put_image_tag_mutability,
    "_resolve_image_tag_mutability": _resolve_image_tag_mutability,
}

# What ECR's lifecycle policies take since the archive storage class (moto 5.2.5 knows only expire).
_POLICY_VOCABULARY: dict[str, set[str]] = {
    "VALID_ACTION_PROPERTIES": {"type", "targetStorageClass"},
    "VALID_ACTION_TYPE_VALUES": {"expire", "transition"},
    "VALID_SELECTION_PROPERTIES": {*policy_validation.VALID_SELECTION_PROPERTIES, "storageClass"},
    "VALID_SELECTION_COUNT_TYPE_VALUES": {
        *policy_validation.VALID_SELECTION_COUNT_TYPE_VALUES,
        "sinceImagePulled",
        "sinceImageTransitioned",
    },
}
_POLICY_ORIGINALS: dict[str, set[str]] = {name: getattr(policy_validation, name) for name in _POLICY_VOCABULARY}
_lock = threading.Lock()


def install() -> None:
    """Patch ``ECRBackend`` and moto's lifecycle policy vocabulary (idempotent, process-wide)."""
    with _lock:
        for name, replacement in _REPLACEMENTS.items():
            setattr(ECRBackend, name, replacement)
        for name, values in _POLICY_VOCABULARY.items():
            setattr(policy_validation, name, values)


def uninstall() -> None:
    with _lock:
        for name, original in _ORIGINALS.items():
            setattr(ECRBackend, name, original)
        for name, values in _POLICY_ORIGINALS.items():
            setattr(policy_validation, name, values)


def is_installed() -> bool:
    return all(getattr(ECRBackend, name) is fn for name, fn in _REPLACEMENTS.items())
