"""Image scan results and the severity gate over them: pure, no Airflow, no I/O.

ECR reports a scan through ``DescribeImageScanFindings``: a status
(``imageScanStatus.status``) and, once the scan is done, the number of findings per
severity (``imageScanFindings.findingSeverityCounts``). This module reads that
answer (:class:`ScanReport`), says whether to keep waiting (:func:`scan_phase`),
and judges the counts against a threshold (:class:`SeverityThreshold`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from airflow_ecr_layers.core.errors import EcrLayersError, InvalidInputError

RANKED_SEVERITIES: tuple[str, ...] = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
"""ECR's ranked severities, least severe first."""

UNRANKED_SEVERITIES: tuple[str, ...] = ("UNDEFINED", "UNTRIAGED")
"""Severities without a rank (basic and enhanced scanning): ``fail_on_severity`` never
counts them, ``max_findings`` can cap them."""

SEVERITIES: tuple[str, ...] = RANKED_SEVERITIES + UNRANKED_SEVERITIES

COMPLETE_STATUSES = frozenset({"COMPLETE", "ACTIVE"})
"""Findings are available (``ACTIVE``: enhanced scanning, continuously monitored)."""

WAITING_STATUSES = frozenset({"IN_PROGRESS", "PENDING"})
"""The scan is under way. Any other status (``FAILED``, ``UNSUPPORTED_IMAGE``,
``SCAN_ELIGIBILITY_EXPIRED``, ``FINDINGS_UNAVAILABLE``, ``LIMIT_EXCEEDED``,
``IMAGE_ARCHIVED`` or one unknown to this module) ends the wait as a failure."""


class ScanPhase(Enum):
    """Where a scan stands, as far as a wait is concerned."""

    WAITING = "waiting"
    COMPLETE = "complete"
    FAILED = "failed"


def scan_phase(status: str) -> ScanPhase:
    """The phase of an ``imageScanStatus.status`` value."""
    if status in COMPLETE_STATUSES:
        return ScanPhase.COMPLETE
    if status in WAITING_STATUSES:
        return ScanPhase.WAITING
    return ScanPhase.FAILED


class ScanVerdictError(EcrLayersError):
    """A scan outcome that fails the wait for good: waiting or retrying cannot change it."""


class ScanFailedError(ScanVerdictError):
    """ECR could not scan the image (``FAILED``, ``UNSUPPORTED_IMAGE``...)."""

    def __init__(self, image: str, status: str, description: str) -> None:
        self.image = image
        self.status = status
        self.description = description
        super().__init__(f"Image scan of {image} ended with status {status}: {description or 'no description'}")


class ScanThresholdExceededError(ScanVerdictError):
    """The findings reach the severity threshold; carries the counts and each violation."""

    def __init__(self, image: str, counts: Mapping[str, int], violations: list[str]) -> None:
        self.image = image
        self.counts = dict(counts)
        self.violations = list(violations)
        super().__init__(
            f"Image scan of {image} fails the severity threshold: {'; '.join(violations)}. "
            f"Severity counts: {format_counts(counts)}"
        )


def _severity(value: object, what: str) -> str:
    if not isinstance(value, str) or value.upper() not in SEVERITIES:
        raise InvalidInputError(f"Invalid {what} {value!r}: expected one of {', '.join(SEVERITIES)}")
    return value.upper()


def _rank(severity: str) -> int:
    """Sort key: most severe first, unranked severities after the ranked ones, unknown ones last."""
    if severity in RANKED_SEVERITIES:
        return -RANKED_SEVERITIES.index(severity)
    if severity in UNRANKED_SEVERITIES:
        return 1 + UNRANKED_SEVERITIES.index(severity)
    return len(SEVERITIES)


def severity_counts(raw: Mapping[str, Any] | None) -> dict[str, int]:
    """``findingSeverityCounts`` as ``{SEVERITY: count}``, most severe first."""
    counts = {str(severity).upper(): int(count) for severity, count in (raw or {}).items()}
    return dict(sorted(counts.items(), key=lambda item: (_rank(item[0]), item[0])))


def format_counts(counts: Mapping[str, int]) -> str:
    """``CRITICAL: 1, HIGH: 7`` (``no findings`` when there are none)."""
    shown = [f"{severity}: {count}" for severity, count in severity_counts(counts).items() if count]
    return ", ".join(shown) or "no findings"


def _plural(count: int, word: str = "finding") -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class SeverityThreshold:
    """When an image's findings fail the gate.

    :param fail_on_severity: any finding at or above this ranked severity fails
        (``"CRITICAL"``, ``"HIGH"``...; case-insensitive); ``None`` disables this check.
    :param max_findings: per severity, the most findings allowed *of exactly that
        severity*: ``{"HIGH": 5}`` fails on 6 HIGH findings. Works for the unranked
        severities too.
    """

    fail_on_severity: str | None = "CRITICAL"
    max_findings: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        severity = self.fail_on_severity
        if severity is not None:
            severity = _severity(severity, "fail_on_severity")
            if severity not in RANKED_SEVERITIES:
                raise InvalidInputError(
                    f"fail_on_severity {severity!r} has no rank; cap it with max_findings={{{severity!r}: N}} instead"
                )
        if not isinstance(self.max_findings, Mapping):
            raise InvalidInputError(f"max_findings must be a dict of severity to count, got {self.max_findings!r}")
        limits: dict[str, int] = {}
        for key, limit in self.max_findings.items():
            name = _severity(key, "max_findings severity")
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
                raise InvalidInputError(f"max_findings[{key!r}] must be a non-negative integer, got {limit!r}")
            limits[name] = limit
        object.__setattr__(self, "fail_on_severity", severity)
        object.__setattr__(self, "max_findings", limits)

    def violations(self, counts: Mapping[str, int]) -> list[str]:
        """Why ``counts`` fail this threshold, one sentence each; empty when they pass."""
        counts = severity_counts(counts)
        found: list[str] = []
        if self.fail_on_severity is not None:
            floor = RANKED_SEVERITIES.index(self.fail_on_severity)
            over = {s: n for s, n in counts.items() if s in RANKED_SEVERITIES[floor:] and n > 0}
            if over:
                found.append(
                    f"{_plural(sum(over.values()))} at or above {self.fail_on_severity} ({format_counts(over)})"
                )
        for severity, limit in self.max_findings.items():
            count = counts.get(severity, 0)
            if count > limit:
                found.append(f"{_plural(count, severity + ' finding')}, more than the {limit} allowed")
        return found

    def check(self, counts: Mapping[str, int], image: str) -> None:
        """Raise :class:`ScanThresholdExceededError` when ``counts`` fail this threshold."""
        violations = self.violations(counts)
        if violations:
            raise ScanThresholdExceededError(image, severity_counts(counts), violations)


@dataclass(frozen=True)
class ScanReport:
    """The parts of a ``DescribeImageScanFindings`` answer a wait needs (JSON-safe)."""

    registry_id: str
    repository_name: str
    image_digest: str
    scan_status: str
    description: str
    severity_counts: dict[str, int]

    @classmethod
    def from_response(cls, response: Mapping[str, Any], repository_name: str) -> ScanReport:
        status = response.get("imageScanStatus") or {}
        findings = response.get("imageScanFindings") or {}
        return cls(
            registry_id=str(response.get("registryId") or ""),
            repository_name=str(response.get("repositoryName") or repository_name),
            image_digest=str((response.get("imageId") or {}).get("imageDigest") or ""),
            scan_status=str(status.get("status") or "UNKNOWN"),
            description=str(status.get("description") or ""),
            severity_counts=severity_counts(findings.get("findingSeverityCounts")),
        )

    @property
    def phase(self) -> ScanPhase:
        return scan_phase(self.scan_status)

    def as_dict(self) -> dict[str, Any]:
        """The XCom result: ``registry_id``, ``repository_name``, ``image_digest``, ``scan_status``,
        ``severity_counts``."""
        return {
            "registry_id": self.registry_id,
            "repository_name": self.repository_name,
            "image_digest": self.image_digest,
            "scan_status": self.scan_status,
            "severity_counts": dict(self.severity_counts),
        }
