"""Bounded retry with exponential backoff and full jitter, for transient ECR failures.

:class:`RetryBudget` is the one retry loop: :class:`~airflow_ecr_layers.core.ecr.calls.EcrCalls`
runs every ECR call through one, and the engine wraps the calls of one blob (its parts, its
completion, a restart) in the blob's own, so that the policy's bounds hold per blob. Budgets
nest without multiplying: a call made inside another budget's :meth:`RetryBudget.call` is
retried by that outer budget only.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError

from airflow_ecr_layers.core.errors import (
    EcrLayersError,
    InvalidInputError,
    ServiceUnavailableError,
    ThrottledError,
    UploadAbortedError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ThrottledError,
    ServiceUnavailableError,
    BotoConnectionError,
    HTTPClientError,
)
"""Failures worth another try: throttling, 5xx, resets and timeouts (after botocore's own retries)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Our retries on top of botocore's (whose ``retries`` config is left as the user set it)."""

    max_attempts: int = 5
    """Attempts per call, or per byte position for resumes."""
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_total_seconds: float = 900.0
    """Time one blob may spend waiting on retries before the push is abandoned."""
    max_restarts: int = 2
    """Fresh uploads after UploadNotFoundException (expired upload id)."""

    def __post_init__(self) -> None:
        """Refuse values no retry could use, naming the field: when the policy is made, not at the first retry."""
        _whole(self.max_attempts, "max_attempts", least=1)
        _seconds(self.base_delay, "base_delay")
        _seconds(self.max_delay, "max_delay")
        if self.max_delay < self.base_delay:
            raise InvalidInputError(
                f"RetryPolicy.max_delay must be at least base_delay ({self.base_delay!r}), got {self.max_delay!r}"
            )
        _seconds(self.max_total_seconds, "max_total_seconds", infinite=True)
        _whole(self.max_restarts, "max_restarts", least=0)

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


def _whole(value: object, name: str, *, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InvalidInputError(f"RetryPolicy.{name} must be a whole number of at least {least}, got {value!r}")


def _seconds(value: object, name: str, *, infinite: bool = False) -> None:
    """A number of seconds: not negative, not NaN; infinite only where ``infinite`` (no bound)."""
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or math.isnan(number) or number < 0 or (math.isinf(number) and not infinite):
        bound = " (math.inf for no bound)" if infinite else ""
        raise InvalidInputError(f"RetryPolicy.{name} must be a number of seconds of at least 0{bound}, got {value!r}")


def retry_policy_from(value: RetryPolicy | Mapping[str, Any] | None) -> RetryPolicy | None:
    """A policy from a policy, a dict of its fields (as a DAG author writes it), or None."""
    if value is None or isinstance(value, RetryPolicy):
        return value
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"retry_policy must be a RetryPolicy or a dict, got {type(value).__name__}")
    unknown = sorted(set(value) - {f.name for f in fields(RetryPolicy)})
    if unknown:
        raise InvalidInputError(
            f"Unknown retry_policy fields {unknown}; known: {[f.name for f in fields(RetryPolicy)]}"
        )
    return RetryPolicy(**value)


_retrying: ContextVar[bool] = ContextVar("airflow_ecr_layers_retrying", default=False)
"""Whether a :meth:`RetryBudget.call` is running in this thread (or task): it owns the retries."""


class RetryBudget:
    """Tracks the time spent waiting under one policy.

    :param gives_up: the error raised once the attempts or the time are spent (its ``__cause__``
        is the last failure).
    """

    def __init__(self, policy: RetryPolicy, *, gives_up: type[EcrLayersError] = UploadAbortedError) -> None:
        self.policy = policy
        self.gives_up = gives_up
        self.waited = 0.0

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()``, again after each transient failure (:data:`TRANSIENT_ERRORS`) while the budget lasts.

        Inside another budget's ``call`` (same thread or task), ``fn`` runs once: its failure goes
        to the outer loop, which retries and counts it. One policy, one count of attempts.
        """
        if _retrying.get():
            return fn()
        token = _retrying.set(True)
        try:
            attempt = 1
            while True:
                try:
                    return fn()
                except TRANSIENT_ERRORS as exc:
                    self.backoff(what, attempt, exc)
                    attempt += 1
        finally:
            _retrying.reset(token)

    def backoff(self, what: str, attempt: int, exc: BaseException) -> None:
        """Sleep before attempt ``attempt + 1``, or raise when the budget is spent."""
        if attempt >= self.policy.max_attempts or self.waited >= self.policy.max_total_seconds:
            raise self.gives_up(
                f"{what} failed after {attempt} attempts ({self.waited:.1f}s of retry waits): {exc}"
            ) from exc
        pause = self.policy.delay(attempt)
        self.waited += pause
        log.warning(
            "%s: attempt %d/%d failed (%s: %s); retrying in %.2fs",
            what,
            attempt,
            self.policy.max_attempts,
            type(exc).__name__,
            exc,
            pause,
        )
        time.sleep(pause)
