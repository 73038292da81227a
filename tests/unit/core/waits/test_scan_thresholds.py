"""The severity gate and scan-status reading of ``core.scan``: pure, no server, no Airflow."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_ecr_layers.core.errors import EcrLayersError, InvalidInputError
from airflow_ecr_layers.core.waits.scan import (
    RANKED_SEVERITIES,
    SEVERITIES,
    ScanFailedError,
    ScanPhase,
    ScanReport,
    ScanThresholdExceededError,
    ScanVerdictError,
    SeverityThreshold,
    format_counts,
    scan_phase,
    severity_counts,
)

IMAGE = "team/models@sha256:" + "a" * 64


def _ecr_enum(shape: str) -> list[str]:
    import botocore.session

    return list(botocore.session.get_session().get_service_model("ecr").shape_for(shape).enum)


# -- statuses ----------------------------------------------------------------------------


def test_every_ecr_scan_status_has_a_deliberate_phase() -> None:
    phases = {status: scan_phase(status) for status in _ecr_enum("ScanStatus")}
    assert {s for s, p in phases.items() if p is ScanPhase.COMPLETE} == {"COMPLETE", "ACTIVE"}
    assert {s for s, p in phases.items() if p is ScanPhase.WAITING} == {"IN_PROGRESS", "PENDING"}
    assert {"FAILED", "UNSUPPORTED_IMAGE", "FINDINGS_UNAVAILABLE"} <= {
        s for s, p in phases.items() if p is ScanPhase.FAILED
    }


def test_an_unknown_status_ends_the_wait_rather_than_waiting_forever() -> None:
    assert scan_phase("SOMETHING_NEW") is ScanPhase.FAILED


def test_every_ecr_severity_is_known() -> None:
    assert set(_ecr_enum("FindingSeverity")) <= set(SEVERITIES)
    assert RANKED_SEVERITIES[-1] == "CRITICAL" and RANKED_SEVERITIES[0] == "INFORMATIONAL"


# -- counts ------------------------------------------------------------------------------


def test_severity_counts_are_normalised_and_ordered_most_severe_first() -> None:
    counts = severity_counts({"low": 2, "UNDEFINED": 1, "CRITICAL": 1, "MEDIUM": "3", "INFORMATIONAL": 9})
    assert counts == {"CRITICAL": 1, "MEDIUM": 3, "LOW": 2, "INFORMATIONAL": 9, "UNDEFINED": 1}
    assert list(counts) == ["CRITICAL", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED"]
    assert severity_counts(None) == {}


def test_format_counts_skips_zeros() -> None:
    assert format_counts({"HIGH": 7, "CRITICAL": 1, "LOW": 0}) == "CRITICAL: 1, HIGH: 7"
    assert format_counts({"CRITICAL": 0}) == "no findings"


# -- thresholds --------------------------------------------------------------------------


def test_default_threshold_fails_on_any_critical_only() -> None:
    threshold = SeverityThreshold()
    assert threshold.fail_on_severity == "CRITICAL"
    assert threshold.violations({"HIGH": 40, "MEDIUM": 100}) == []
    assert threshold.violations({"CRITICAL": 0}) == []
    assert threshold.violations({"CRITICAL": 1}) == ["1 finding at or above CRITICAL (CRITICAL: 1)"]


def test_fail_on_severity_counts_everything_at_or_above_it() -> None:
    threshold = SeverityThreshold("medium")
    assert threshold.fail_on_severity == "MEDIUM"
    assert threshold.violations({"LOW": 50, "INFORMATIONAL": 3}) == []
    assert threshold.violations({"CRITICAL": 1, "HIGH": 2, "MEDIUM": 3, "LOW": 4}) == [
        "6 findings at or above MEDIUM (CRITICAL: 1, HIGH: 2, MEDIUM: 3)"
    ]


def test_unranked_severities_never_reach_fail_on_severity() -> None:
    assert SeverityThreshold("INFORMATIONAL").violations({"UNDEFINED": 5, "UNTRIAGED": 2}) == []


def test_max_findings_caps_exactly_that_severity() -> None:
    threshold = SeverityThreshold(None, {"high": 5, "UNDEFINED": 0})
    assert threshold.max_findings == {"HIGH": 5, "UNDEFINED": 0}
    assert threshold.violations({"HIGH": 5, "CRITICAL": 3}) == []  # CRITICAL is not HIGH, and the gate is off
    assert threshold.violations({"HIGH": 6}) == ["6 HIGH findings, more than the 5 allowed"]
    assert threshold.violations({"UNDEFINED": 1}) == ["1 UNDEFINED finding, more than the 0 allowed"]


def test_both_checks_report_every_violation() -> None:
    threshold = SeverityThreshold("CRITICAL", {"HIGH": 2})
    assert threshold.violations({"CRITICAL": 2, "HIGH": 3}) == [
        "2 findings at or above CRITICAL (CRITICAL: 2)",
        "3 HIGH findings, more than the 2 allowed",
    ]


def test_check_raises_a_verdict_naming_image_violations_and_counts() -> None:
    threshold = SeverityThreshold("HIGH")
    threshold.check({"MEDIUM": 9}, IMAGE)  # passes: no exception
    with pytest.raises(ScanThresholdExceededError) as raised:
        threshold.check({"MEDIUM": 9, "HIGH": 1}, IMAGE)
    error = raised.value
    assert isinstance(error, ScanVerdictError) and isinstance(error, EcrLayersError)
    assert error.counts == {"HIGH": 1, "MEDIUM": 9}
    assert error.violations == ["1 finding at or above HIGH (HIGH: 1)"]
    assert str(error) == (
        f"Image scan of {IMAGE} fails the severity threshold: 1 finding at or above HIGH (HIGH: 1). "
        "Severity counts: HIGH: 1, MEDIUM: 9"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fail_on_severity": "SEVERE"}, "Invalid fail_on_severity 'SEVERE'"),
        ({"fail_on_severity": 3}, "Invalid fail_on_severity 3"),
        ({"fail_on_severity": "UNDEFINED"}, "has no rank"),
        ({"max_findings": {"BAD": 1}}, "Invalid max_findings severity 'BAD'"),
        ({"max_findings": {"HIGH": -1}}, "non-negative integer"),
        ({"max_findings": {"HIGH": 1.5}}, "non-negative integer"),
        ({"max_findings": {"HIGH": True}}, "non-negative integer"),
        ({"max_findings": [("HIGH", 1)]}, "must be a dict"),
    ],
)
def test_bad_thresholds_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(")):
        SeverityThreshold(**kwargs)


# -- reports ---------------------------------------------------------------------------


def test_scan_report_from_a_describe_image_scan_findings_answer() -> None:
    report = ScanReport.from_response(
        {
            "registryId": "123456789012",
            "repositoryName": "team/models",
            "imageId": {"imageDigest": "sha256:" + "a" * 64, "imageTag": "v1"},
            "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed successfully."},
            "imageScanFindings": {"findingSeverityCounts": {"HIGH": 1, "CRITICAL": 2}, "findings": [{}]},
        },
        "ignored/when-the-answer-names-it",
    )
    assert report.phase is ScanPhase.COMPLETE
    assert report.as_dict() == {
        "registry_id": "123456789012",
        "repository_name": "team/models",
        "image_digest": "sha256:" + "a" * 64,
        "scan_status": "COMPLETE",
        "severity_counts": {"CRITICAL": 2, "HIGH": 1},
    }


def test_scan_report_of_an_unfinished_scan() -> None:
    report = ScanReport.from_response({"imageScanStatus": {"status": "IN_PROGRESS"}}, "team/models")
    assert report.phase is ScanPhase.WAITING
    assert (report.repository_name, report.severity_counts, report.description) == ("team/models", {}, "")
    assert ScanReport.from_response({}, "team/models").scan_status == "UNKNOWN"


def test_scan_failed_error_carries_ecr_description() -> None:
    error = ScanFailedError(IMAGE, "UNSUPPORTED_IMAGE", "UnsupportedImageError: not supported")
    assert isinstance(error, ScanVerdictError)
    assert str(error) == (
        f"Image scan of {IMAGE} ended with status UNSUPPORTED_IMAGE: UnsupportedImageError: not supported"
    )
    assert "no description" in str(ScanFailedError(IMAGE, "FAILED", ""))
