"""The managed-signing wait, one check at a time, on canned ECR answers."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_ecr_layers.core.waits.probes import ImageRef
from airflow_ecr_layers.core.waits.signing import SigningFailedError, SigningProbe

DIGEST = "sha256:" + "ab" * 32
PROFILE = "arn:aws:signer:us-east-1:123456789012:/signing-profiles/release"


class Client:
    def __init__(self, statuses: list[dict[str, Any]], referrers: list[dict[str, Any]] | None = None) -> None:
        self.statuses = statuses
        self.referrers = referrers or []
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def describe_image_signing_status(self, **params: Any) -> dict[str, Any]:
        self.calls.append(("describe_image_signing_status", params))
        return {"imageId": {"imageDigest": DIGEST}, "registryId": "123456789012", "signingStatuses": self.statuses}

    def list_image_referrers(self, **params: Any) -> dict[str, Any]:
        self.calls.append(("list_image_referrers", params))
        return {"referrers": self.referrers}


def check(client: Client) -> Any:
    return SigningProbe(ImageRef("team/app", tag="v1")).check(client)


def test_no_status_and_in_progress_mean_not_yet() -> None:
    assert "none yet" in check(Client([])).waiting_for
    poll = check(Client([{"signingProfileArn": PROFILE, "status": "IN_PROGRESS"}]))
    assert poll.value is None and "1 of 1 in progress" in poll.waiting_for


def test_failed_fails_at_once_naming_profile_code_and_reason() -> None:
    failed = {"signingProfileArn": PROFILE, "status": "FAILED", "failureCode": "X", "failureReason": "revoked"}
    with pytest.raises(SigningFailedError, match=f"{PROFILE}: X \\(revoked\\)"):
        check(Client([failed, {"signingProfileArn": "other", "status": "IN_PROGRESS"}]))


def test_complete_waits_for_the_notary_referrer_then_returns_it() -> None:
    complete = [{"signingProfileArn": PROFILE, "status": "COMPLETE"}]
    client = Client(complete)
    assert "referrer" in check(client).waiting_for
    assert client.calls[1][1]["filter"] == {"artifactTypes": ["application/vnd.cncf.notary.signature"]}
    assert client.calls[1][1]["subjectId"] == {"imageDigest": DIGEST}
    signature = {"digest": "sha256:" + "cd" * 32, "artifactType": "application/vnd.cncf.notary.signature", "size": 9}
    value = check(Client(complete, [signature])).value
    assert value == {
        "registry_id": "123456789012",
        "repository_name": "team/app",
        "image_digest": DIGEST,
        "signing_statuses": [{"signing_profile_arn": PROFILE, "status": "COMPLETE"}],
        "signatures": [{"digest": signature["digest"], "artifact_type": signature["artifactType"], "size": 9}],
    }
