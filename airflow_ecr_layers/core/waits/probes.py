"""One check of a wait on ECR, written once for both the sync and the async client.

A :class:`Probe` describes a check as the ECR calls it makes (:meth:`Probe.steps`, a
generator that yields ``(operation, params)`` and receives each answer, or has the
translated :class:`~airflow_ecr_layers.core.errors.EcrServiceError` thrown into it)
and what it concludes: a :class:`Poll`. :meth:`Probe.check` runs it with a botocore
client (the sensors' poke), :meth:`Probe.check_async` with an aiobotocore client
(the triggers). No Airflow imports here.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from botocore.exceptions import ClientError

from airflow_ecr_layers.core.ecr.calls import translate_client_error
from airflow_ecr_layers.core.ecr.references import ImageReference
from airflow_ecr_layers.core.errors import EcrServiceError, InvalidInputError, QuotaExceededError
from airflow_ecr_layers.core.waits.scan import ScanFailedError, ScanPhase, ScanReport

log = logging.getLogger("airflow_ecr_layers")

Call = tuple[str, dict[str, Any]]
"""An ECR call: the botocore method name and its keyword arguments."""


@dataclass(frozen=True)
class Poll:
    """What one check found: ``value`` (the JSON-safe result) when done, else what it waits for."""

    value: dict[str, Any] | None = None
    waiting_for: str = ""


Steps = Generator[Call, dict[str, Any], Poll]


def require_image_selector(image_tag: object, image_digest: object, *, allow_both: bool = True) -> None:
    """Refuse a wait that names no image (or, unless ``allow_both``, names it twice)."""
    if image_tag is None and image_digest is None:
        raise InvalidInputError("Give image_tag or image_digest: which image to wait for")
    if not allow_both and image_tag is not None and image_digest is not None:
        raise InvalidInputError("Give image_tag or image_digest, not both")


@dataclass(frozen=True)
class ImageRef(ImageReference):
    """An image to wait for: a reference that must name a tag or a digest."""

    def __post_init__(self) -> None:
        require_image_selector(self.tag, self.digest)
        super().__post_init__()

    def params(self) -> dict[str, Any]:
        """``repositoryName``, ``imageId`` (by digest when there is one) and ``registryId`` if set."""
        params: dict[str, Any] = {"repositoryName": self.repository_name, "imageId": self.image_id()}
        if self.registry_id:
            params["registryId"] = self.registry_id
        return params


class Probe(ABC):
    """One check of a wait, as the ECR calls it makes; see the module docstring."""

    def __init__(self, image: ImageRef) -> None:
        self.image = image

    @abstractmethod
    def steps(self) -> Steps:
        """Yield each call, receive its answer; return the :class:`Poll`. Raise to fail the wait."""

    def check(self, client: Any) -> Poll:
        """Run the check with a botocore ECR client."""
        run = _Run(self)
        while run.call is not None:
            operation, params = run.call
            try:
                response = getattr(client, operation)(**params)
            except ClientError as exc:
                run.fail(exc, operation)
            else:
                run.answer(response)
        return run.result

    async def check_async(self, client: Any) -> Poll:
        """Run the check with an aiobotocore ECR client."""
        run = _Run(self)
        while run.call is not None:
            operation, params = run.call
            try:
                response = await getattr(client, operation)(**params)
            except ClientError as exc:
                run.fail(exc, operation)
            else:
                run.answer(response)
        return run.result


class _Run:
    """Feeds each answer (or translated error) back into a probe's steps until they return."""

    def __init__(self, probe: Probe) -> None:
        self._image = probe.image
        self._steps = probe.steps()
        self.result = Poll()
        self.call: Call | None = None
        self._advance(lambda: next(self._steps))

    def answer(self, response: dict[str, Any]) -> None:
        self._advance(lambda: self._steps.send(response))

    def fail(self, exc: ClientError, operation: str) -> None:
        error = translate_client_error(exc, operation, self._image.repository_name, self._image.registry_id)
        error.__cause__ = exc
        self._advance(lambda: self._steps.throw(error))

    def _advance(self, step: Callable[[], Call]) -> None:
        try:
            self.call = step()
        except StopIteration as stop:
            self.call = None
            self.result = stop.value


def image_summary(detail: Mapping[str, Any], repository_name: str) -> dict[str, Any]:
    """An ``imageDetails`` entry as the JSON-safe ``EcrImageSensor`` result."""
    pushed_at = detail.get("imagePushedAt")
    return {
        "registry_id": str(detail.get("registryId") or ""),
        "repository_name": str(detail.get("repositoryName") or repository_name),
        "image_digest": str(detail["imageDigest"]),
        "tags": list(detail.get("imageTags") or []),
        "pushed_at": pushed_at.isoformat() if isinstance(pushed_at, date) else pushed_at,
    }


class ImageProbe(Probe):
    """Does the image exist? ``DescribeImages``; ``ImageNotFoundException`` means not yet.

    With both a tag and a digest, the image is looked up by digest and is there once
    it carries the tag.
    """

    def steps(self) -> Steps:
        params = self.image.params()
        params["imageIds"] = [params.pop("imageId")]
        try:
            response = yield "describe_images", params
        except EcrServiceError as exc:
            if exc.code != "ImageNotFoundException":
                raise
            return Poll(waiting_for=f"image {self.image} (not in the repository yet)")
        for detail in response.get("imageDetails") or []:
            if self.image.tag is None or self.image.tag in (detail.get("imageTags") or []):
                return Poll(image_summary(detail, self.image.repository_name))
        return Poll(waiting_for=f"image {self.image} (the digest does not carry the tag yet)")


class ScanProbe(Probe):
    """Is the image's scan complete? ``DescribeImageScanFindings``.

    ``IN_PROGRESS``/``PENDING``, no scan yet (``ScanNotFoundException``) and no image yet
    (``ImageNotFoundException``) mean not yet; with ``start_scan``, a missing scan is
    started (``StartImageScan``). A scan that ended without findings
    (``FAILED``, ``UNSUPPORTED_IMAGE``...), or one ECR refuses to start
    (``LimitExceededException``, the daily scan quota: not retried), raises
    :class:`ScanFailedError`. The result is
    :meth:`ScanReport.as_dict`; the severity gate is the caller's.
    """

    def __init__(self, image: ImageRef, *, start_scan: bool = False) -> None:
        require_image_selector(image.tag, image.digest, allow_both=False)
        super().__init__(image)
        self.start_scan = start_scan

    def steps(self) -> Steps:
        params = self.image.params()
        try:
            response = yield "describe_image_scan_findings", params
        except EcrServiceError as exc:
            if exc.code == "ImageNotFoundException":
                return Poll(waiting_for=f"image {self.image} (not in the repository yet)")
            if exc.code != "ScanNotFoundException":
                raise
            if not self.start_scan:
                return Poll(waiting_for=f"a scan of {self.image} (none started; start_scan is off)")
            try:
                yield "start_image_scan", params
            except QuotaExceededError as refused:
                # not throttling here: basic scanning allows one scan per image per 24 hours
                raise ScanFailedError(
                    str(self.image),
                    "LIMIT_EXCEEDED",
                    "ECR refused to start a scan (LimitExceededException: basic scanning allows one scan "
                    f"per image every 24 hours; waiting would not help): {refused}",
                ) from refused
            log.info("Started an image scan of %s", self.image)
            return Poll(waiting_for=f"the scan of {self.image} (just started)")
        report = ScanReport.from_response(response, self.image.repository_name)
        if report.phase is ScanPhase.WAITING:
            return Poll(waiting_for=f"the scan of {self.image} ({report.scan_status})")
        if report.phase is ScanPhase.FAILED:
            raise ScanFailedError(str(self.image), report.scan_status, report.description)
        return Poll(report.as_dict())
