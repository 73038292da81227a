"""The upload loop: stream parts in order, resume, restart, verify, complete, put.

``EcrTransfer`` adds to :class:`EcrCalls` everything between "here is a source" and
"here is a verified layer digest", so every operator, the CLI and the benchmarks
share one implementation of retry, resume and verification.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_ecr_layers.core.calls import EcrCalls, PutImageResult, UploadSession
from airflow_ecr_layers.core.errors import (
    DigestMismatchError,
    EcrServiceError,
    ImageAlreadyExistsError,
    InvalidLayerPartError,
    LayerAlreadyExistsError,
    UploadAbortedError,
    UploadNotFoundError,
)
from airflow_ecr_layers.core.limits import validate_digest
from airflow_ecr_layers.core.manifest import Manifest
from airflow_ecr_layers.core.planning import PartPlan, plan_parts
from airflow_ecr_layers.core.progress import ProgressLog
from airflow_ecr_layers.core.reader import Part, PartReader
from airflow_ecr_layers.core.retry import RetryBudget, RetryPolicy
from airflow_ecr_layers.core.sources import BlobSource

log = logging.getLogger("airflow_ecr_layers")


@dataclass(frozen=True)
class UploadedParts:
    """Every byte of a source is in an upload that is not yet completed."""

    session: UploadSession
    digest: str
    size: int
    parts: int
    part_size: int
    last_byte_received: int
    resumes: int = 0
    restarts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.session.as_dict(),
            "digest": self.digest,
            "size": self.size,
            "parts": self.parts,
            "part_size": self.part_size,
            "last_byte_received": self.last_byte_received,
            "resumes": self.resumes,
            "restarts": self.restarts,
        }


@dataclass(frozen=True)
class BlobResult:
    """A blob that is in the repository, verified."""

    registry_id: str
    repository_name: str
    digest: str
    size: int
    media_type: str
    skipped: bool = False
    """Already in the repository before this push: nothing was uploaded."""
    annotations: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Cursor:
    """Where the next part starts, and how stuck the loop is."""

    position: int = 0
    best: int = 0
    stalls: int = 0

    def advance(self, position: int, policy: RetryPolicy, why: str) -> None:
        if position > self.best:
            self.best, self.stalls = position, 0
        else:
            self.stalls += 1
            if self.stalls >= policy.max_attempts:
                raise UploadAbortedError(f"No progress past byte {self.best} after {self.stalls} resumes ({why})")
        self.position = position


class EcrTransfer(EcrCalls):
    """Upload loops with retry, resume and digest verification, on top of the calls."""

    retry_policy: RetryPolicy = RetryPolicy()
    read_depth: int = 2

    # -- uploading parts ---------------------------------------------------------------
    def upload_parts(
        self,
        session: UploadSession,
        source: BlobSource,
        *,
        part_size: int | None = None,
        plan: PartPlan | None = None,
        expected_digest: str | None = None,
    ) -> UploadedParts:
        """Stream ``source`` into ``session`` in order, hashing as it goes.

        Resumes from ``lastValidByteReceived`` (also when the upload already holds
        bytes from an earlier attempt), re-reading the source from exactly that byte;
        starts a fresh upload when the upload id has expired. Never completes the
        upload: a digest that disagrees with ``expected_digest`` raises first.
        """
        if plan is None:
            plan = plan_parts(source.size, part_size, session.part_size)
        budget = RetryBudget(self.retry_policy)
        cursor = _Cursor()
        resumes = restarts = sent = 0
        progress = ProgressLog(f"upload {source.name}", plan.size, log)
        log.info(
            "Uploading %s to %s: %d bytes in %d parts of %d bytes (upload %s)",
            source.name, session.repository_name, plan.size, plan.parts, plan.part_size, session.upload_id,
        )
        with PartReader(source, plan.part_size, depth=self.read_depth) as reader:
            reader.seek(0)
            while cursor.position < plan.size:
                part = reader.next_part()
                if part is None:  # pragma: no cover - the reader ends only at plan.size
                    raise UploadAbortedError(f"{source.name} ended at byte {cursor.position} of {plan.size}")
                try:
                    last = self._send_part(session, part, budget)
                except InvalidLayerPartError as exc:
                    resume = self._resume_point(exc, plan.size)
                    resumes += 1
                    log.warning(
                        "%s: ECR holds bytes up to %d (we sent %d-%d); continuing from byte %d",
                        session.upload_id, resume - 1, part.first_byte, part.last_byte, resume,
                    )
                    cursor.advance(resume, self.retry_policy, str(exc))
                    if resume != part.end:
                        reader.seek(resume)
                    continue
                except UploadNotFoundError as exc:
                    restarts += 1
                    session = self._restart(session, source, exc, restarts, "while parts were uploading")
                    cursor = _Cursor()
                    reader.seek(0)
                    continue
                sent += 1
                if last != part.last_byte:
                    log.warning("ECR reports byte %d received after part %d-%d", last, part.first_byte, part.last_byte)
                    cursor.advance(last + 1, self.retry_policy, "lastByteReceived mismatch")
                    reader.seek(last + 1)
                    continue
                cursor.advance(part.end, self.retry_policy, "part sent")
                progress.update(part.end)
            reader.hash_remaining()  # ECR may hold bytes the reader never returned (a resume to the end)
            digest = reader.digest()
        if expected_digest is not None and digest != expected_digest:
            raise DigestMismatchError(
                f"{source.name} streamed to {digest}, not the expected {expected_digest}; "
                f"upload {session.upload_id} was not completed and nothing was tagged"
            )
        log.info(
            "Uploaded %s: %s, %d bytes, %d part requests at %.1f MiB/s",
            source.name, digest, plan.size, sent, progress.rate(plan.size),
        )
        return UploadedParts(
            session, digest, plan.size, plan.parts, plan.part_size, plan.size - 1, resumes, restarts
        )

    def _send_part(self, session: UploadSession, part: Part, budget: RetryBudget) -> int:
        return budget.call(
            f"UploadLayerPart {part.first_byte}-{part.last_byte} of upload {session.upload_id}",
            lambda: self.upload_layer_part(session, part.first_byte, part.data),
        )

    def _restart(
        self, session: UploadSession, source: BlobSource, exc: UploadNotFoundError, restarts: int, when: str
    ) -> UploadSession:
        """A fresh upload for one that expired or vanished, at most ``max_restarts`` times."""
        if restarts > self.retry_policy.max_restarts:
            raise UploadAbortedError(
                f"Upload of {source.name} vanished {when} {restarts} times; giving up: {exc}"
            ) from exc
        fresh = self.initiate_layer_upload(session.repository_name, session.registry_id or None)
        log.warning(
            "Upload %s expired or vanished %s (%s); restarting from byte 0 as upload %s (restart %d/%d)",
            session.upload_id, when, exc.code, fresh.upload_id, restarts, self.retry_policy.max_restarts,
        )
        return fresh

    @staticmethod
    def _resume_point(exc: InvalidLayerPartError, size: int) -> int:
        last_valid = exc.last_valid_byte_received
        if last_valid is None or not -1 <= last_valid < size:
            raise exc
        return last_valid + 1

    # -- completing --------------------------------------------------------------------
    def complete_upload(self, session: UploadSession, digest: str, size: int) -> bool:
        """Complete and verify; returns True when the layer was already in the repository."""
        budget = RetryBudget(self.retry_policy)
        try:
            reported = budget.call(
                f"CompleteLayerUpload of upload {session.upload_id}",
                lambda: self.complete_layer_upload(session, digest),
            )
        except LayerAlreadyExistsError:
            log.info("Layer %s was already in %s", digest, session.repository_name)
            return True
        except UploadNotFoundError:
            # A completion whose answer was lost looks like this on the retry.
            if self._is_available(session.repository_name, digest, size, session.registry_id or None):
                log.info("Upload %s is gone but %s is in the repository: completed", session.upload_id, digest)
                return False
            raise
        except EcrServiceError as exc:
            if exc.code == "InvalidLayerException":
                raise DigestMismatchError(
                    f"ECR rejected {digest} for upload {session.upload_id}: {exc.service_message}"
                ) from exc
            raise
        if reported != digest:
            raise DigestMismatchError(f"ECR computed {reported} for upload {session.upload_id}; we streamed {digest}")
        return False

    def _is_available(self, repository_name: str, digest: str, size: int | None, registry_id: str | None) -> bool:
        found = self.batch_check_layer_availability(repository_name, [digest], registry_id).get(digest)
        return bool(found and found.available and (size is None or found.size in (None, size)))

    # -- whole blobs ---------------------------------------------------------------
    def push_blob(
        self,
        repository_name: str,
        source: BlobSource,
        *,
        media_type: str,
        registry_id: str | None = None,
        part_size: int | None = None,
        expected_digest: str | None = None,
        annotations: dict[str, str] | None = None,
        check_first: bool = True,
    ) -> BlobResult:
        """Put one blob into the repository: skip it if present, else upload, verify, complete."""
        size = source.size
        plan_parts(size, part_size)  # refuse bad sizes before any write
        if expected_digest is not None:
            validate_digest(expected_digest, "expected_digest")
            if check_first and self._is_available(repository_name, expected_digest, size, registry_id):
                log.info("%s is already in %s as %s: skipping the upload", source.name, repository_name, expected_digest)
                return BlobResult(
                    registry_id or "", repository_name, expected_digest, size, media_type, True, annotations or {}
                )
        uploaded, existed = self._upload_and_complete(
            repository_name, source, registry_id, part_size, expected_digest
        )
        return BlobResult(
            uploaded.session.registry_id, repository_name, uploaded.digest, size, media_type, existed, annotations or {}
        )

    def _upload_and_complete(
        self,
        repository_name: str,
        source: BlobSource,
        registry_id: str | None,
        part_size: int | None,
        expected_digest: str | None,
    ) -> tuple[UploadedParts, bool]:
        """Upload and complete; an upload that vanished before completion starts over (bounded)."""
        session = self.initiate_layer_upload(repository_name, registry_id)
        restarts = 0
        while True:
            uploaded = self.upload_parts(session, source, part_size=part_size, expected_digest=expected_digest)
            try:
                return uploaded, self.complete_upload(uploaded.session, uploaded.digest, uploaded.size)
            except UploadNotFoundError as exc:
                restarts += 1
                session = self._restart(uploaded.session, source, exc, restarts, "before completion")

    # -- manifests ---------------------------------------------------------------------
    def put_manifest(
        self, repository_name: str, manifest: Manifest, tags: Sequence[str], registry_id: str | None = None
    ) -> list[PutImageResult]:
        """One PutImage per tag (or one untagged); a re-push of the same tag succeeds."""
        budget = RetryBudget(self.retry_policy)
        results = []
        for tag in list(tags) or [None]:
            try:
                result = budget.call(
                    f"PutImage {repository_name}:{tag or manifest.digest}",
                    lambda tag=tag: self.put_image(repository_name, manifest, tag, registry_id),
                )
            except ImageAlreadyExistsError:
                log.info("%s:%s already points at %s", repository_name, tag, manifest.digest)
                result = PutImageResult(registry_id or "", repository_name, manifest.digest, tag, True)
            if result.image_digest != manifest.digest:
                raise DigestMismatchError(
                    f"ECR stored the manifest as {result.image_digest}; its bytes hash to {manifest.digest}"
                )
            log.info("Put %s:%s -> %s", repository_name, tag or "<untagged>", manifest.digest)
            results.append(result)
        return results
