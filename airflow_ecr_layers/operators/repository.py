"""Make sure a repository exists with its settings, as a step of its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_ecr_layers.operators.base import CreatesRepository

Context = Any


class EnsureEcrRepositoryOperator(CreatesRepository):
    """Create an ECR repository with its settings when it is missing; check them when it exists.

    Idempotent: a repository that is there with the settings asked for succeeds (``created``
    false); one whose settings differ fails the task, naming each difference; it is never
    changed. Two tasks creating the same repository at once both succeed. See
    ``docs/repositories.md`` for what counts as a difference.

    Unlike the amazon provider's ``EcrCreateRepositoryOperator`` (one CreateRepository call,
    which fails when the repository exists), it also puts a lifecycle policy and can run again.

    :param repository_name: the repository.
    :param repository_settings: a JSON-safe dict (templated): ``image_tag_mutability``,
        ``image_tag_mutability_exclusion_filters``, ``scan_on_push``, ``encryption_type``,
        ``kms_key``, ``lifecycle_policy`` and ``tags``.
    :return: ``registry_id``, ``repository_name``, ``repository_uri``, ``repository_arn``, ``created``.
    """

    template_fields: Sequence[str] = (*CreatesRepository.template_fields, "repository_name")

    def __init__(
        self, *, repository_name: str, repository_settings: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        kwargs.pop("create_repository", None)  # what this operator does, whatever is passed
        super().__init__(create_repository=True, repository_settings=repository_settings, **kwargs)
        self.repository_name = repository_name

    def execute(self, context: Context) -> dict[str, Any]:
        result = self.prepare_repository(self.repository_name)
        assert result is not None  # create_repository is always on here
        return result
