"""The transfer engine: stream parts in order, resume, restart, verify, complete, put.

:class:`EcrTransfer` is built from the ECR calls (:class:`~airflow_ecr_layers.core.ecr.calls.EcrCalls`),
a retry policy and the read depth, and owns everything between "here is a source"
and "here is a verified layer digest", so every operator, the CLI and the benchmarks
share one implementation of retry, resume and verification. The hook builds one on
its connection's client; :func:`~airflow_ecr_layers.core.engine.client.build_engine` on a
plain boto3 client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial

from airflow_ecr_layers.core.ecr.calls import EcrCalls, PutImageResult, UploadSession
from airflow_ecr_layers.core.ecr.retry import RetryBudget, RetryPolicy
from airflow_ecr_layers.core.engine.attempt import BlobAttempt, Cursor
from airflow_ecr_layers.core.engine.planning import PartPlan, plan_parts
from airflow_ecr_layers.core.engine.progress import ProgressListener, ProgressLog
from airflow_ecr_layers.core.engine.reader import PartReader
from airflow_ecr_layers.core.engine.results import BlobResult, UploadedParts
from airflow_ecr_layers.core.engine.resume import ResumePoint
from airflow_ecr_layers.core.errors import (
    DigestMismatchError,
    EcrServiceError,
    ImageAlreadyExistsError,
    LayerAlreadyExistsError,
    UploadAbortedError,
    UploadNotFoundError,
)
from airflow_ecr_layers.core.limits import validate_digest
from airflow_ecr_layers.core.oci.manifest import Manifest
from airflow_ecr_layers.core.sources.blobs import BlobSource, check_unchanged

log = logging.getLogger("airflow_ecr_layers")

DEFAULT_READ_DEPTH = 2
"""Parts alive at once per layer: the one being sent and the one being read."""


class EcrTransfer:
    """Upload loops with retry, resume and digest verification, over the ECR calls.

    :param calls: the ECR API on one client.
    :param retry_policy: our retries on top of botocore's; its limits hold per blob (the
        calls' own policy if unset).
    :param read_depth: parts alive at once per layer (the one being sent included).
    :param progress: hears of each blob's bytes as ECR confirms them (the CLI's progress bars).
    """

    def __init__(
        self,
        calls: EcrCalls,
        *,
        retry_policy: RetryPolicy | None = None,
        read_depth: int = DEFAULT_READ_DEPTH,
        progress: ProgressListener | None = None,
    ) -> None:
        if read_depth < 1:
            raise ValueError(f"read_depth must be at least 1, got {read_depth}")
        self.calls = calls
        self.retry_policy = retry_policy or calls.retry_policy
        self.read_depth = read_depth
        self.progress = progress

    def attempt(self, session: UploadSession, source: BlobSource) -> BlobAttempt:
        """A new attempt at putting ``source`` into ``session``, with this engine's policy."""
        return BlobAttempt(self.calls, source.name, session, self.retry_policy)

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
        return self.stream(
            self.attempt(session, source), source, part_size=part_size, plan=plan, expected_digest=expected_digest
        )

    def stream(
        self,
        attempt: BlobAttempt,
        source: BlobSource,
        *,
        part_size: int | None = None,
        plan: PartPlan | None = None,
        expected_digest: str | None = None,
        start: int = 0,
        on_confirmed: Callable[[int], None] | None = None,
    ) -> UploadedParts:
        """:meth:`upload_parts` within ``attempt``, whose budget and restarts it spends.

        ``start``: the bytes before it are already in the upload (a resumed one): they are
        read and hashed, not sent. ``on_confirmed`` hears each byte count ECR acknowledges.
        """
        if plan is None:
            plan = plan_parts(source.size, part_size, attempt.session.part_size)
        progress = ProgressLog(source.name, plan.size, log, listener=self.progress)
        sent_before = attempt.sent
        log.info(
            "Uploading %s to %s: %d bytes in %d parts of %d bytes (upload %s)",
            source.name,
            attempt.session.repository_name,
            plan.size,
            plan.parts,
            plan.part_size,
            attempt.session.upload_id,
        )
        if start:
            attempt.cursor = Cursor(position=start, best=start)
        progress.notify(start)
        with PartReader(source, plan.part_size, depth=self.read_depth) as reader:
            reader.seek(start)
            while attempt.cursor.position < plan.size:
                part = reader.next_part()
                if part is None:  # pragma: no cover - the reader ends only at plan.size
                    raise UploadAbortedError(f"{source.name} ended at byte {attempt.cursor.position} of {plan.size}")
                step = attempt.follow(part, attempt.send(part), plan.size)
                if step.position != part.end:
                    reader.seek(step.position)
                    progress.notify(step.position)
                else:
                    progress.update(part.end)
                if on_confirmed is not None and step.move in ("sent", "short acknowledgement", "resume"):
                    on_confirmed(step.position)
            reader.hash_remaining()  # ECR may hold bytes the reader never returned (a resume to the end)
            digest = reader.digest()
        attempt.bytes_read += reader.bytes_read
        check_unchanged(source)  # the bytes read are those of the source as it was opened
        session = attempt.session
        if expected_digest is not None and digest != expected_digest:
            raise DigestMismatchError(
                f"{source.name} streamed to {digest}, not the expected {expected_digest}; "
                f"upload {session.upload_id} was not completed and nothing was tagged"
            )
        log.info(
            "Uploaded %s: %s, %d bytes, %d part requests at %.1f MiB/s",
            source.name,
            digest,
            plan.size,
            attempt.sent - sent_before,
            progress.rate(plan.size),
        )
        return UploadedParts(
            session,
            digest,
            plan.size,
            plan.parts,
            plan.part_size,
            plan.size - 1,
            attempt.resumes,
            attempt.restarts,
            attempt.bytes_read,
            attempt.bytes_sent,
        )

    # -- completing --------------------------------------------------------------------
    def complete_upload(self, session: UploadSession, digest: str, size: int) -> bool:
        """Complete and verify; returns True when the layer was already in the repository."""
        return self.complete(session, digest, size, RetryBudget(self.retry_policy))

    def complete(self, session: UploadSession, digest: str, size: int, budget: RetryBudget) -> bool:
        """:meth:`complete_upload`, waiting on retries within ``budget``."""
        try:
            reported = budget.call(
                f"CompleteLayerUpload of upload {session.upload_id}",
                lambda: self.calls.complete_layer_upload(session, digest),
            )
        except LayerAlreadyExistsError:
            log.info("Layer %s was already in %s", digest, session.repository_name)
            return True
        except UploadNotFoundError:
            # A completion whose answer was lost looks like this on the retry: is the layer there?
            # (Its transient failures are waited on within the blob's budget too.)
            held = budget.call(
                f"BatchCheckLayerAvailability of {digest}",
                lambda: self.is_available(session.repository_name, digest, size, session.registry_id or None),
            )
            if held:
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

    def is_available(self, repository_name: str, digest: str, size: int | None, registry_id: str | None) -> bool:
        """Whether ECR holds ``digest`` (of ``size`` bytes, when given) in the repository."""
        found = self.calls.batch_check_layer_availability(repository_name, [digest], registry_id).get(digest)
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
        resume: ResumePoint | None = None,
    ) -> BlobResult:
        """Put one blob into the repository: skip it if present, else upload, verify, complete.

        One attempt covers the whole blob: its restarts and its time waited on retries
        are bounded by the retry policy across the upload and the completion. With
        ``resume``, an upload an earlier attempt left unfinished continues where ECR
        stopped (see :mod:`.resume`), and this one's progress is recorded until it completes.
        """
        size = source.size
        plan_parts(size, part_size)  # refuse bad sizes before any write
        if expected_digest is not None:
            validate_digest(expected_digest, "expected_digest")
            if check_first and self.is_available(repository_name, expected_digest, size, registry_id):
                log.info(
                    "%s is already in %s as %s: skipping the upload", source.name, repository_name, expected_digest
                )
                return BlobResult(
                    registry_id or "", repository_name, expected_digest, size, media_type, True, annotations or {}
                )
        session, start, part_size = self._resumed(resume, repository_name, registry_id, source, part_size)
        if session is None:
            session = self.calls.initiate_layer_upload(repository_name, registry_id)
        attempt = self.attempt(session, source)
        confirmed = self._recorder(resume, attempt, size, part_size)
        confirmed(start)
        while True:
            uploaded = self.stream(
                attempt,
                source,
                part_size=part_size,
                expected_digest=expected_digest,
                start=start,
                on_confirmed=confirmed,
            )
            start = 0
            try:
                existed = self.complete(uploaded.session, uploaded.digest, uploaded.size, attempt.budget)
            except UploadNotFoundError as exc:
                attempt.restart(exc, "before completion")
                continue
            if resume is not None:
                resume.delete()
            return BlobResult(
                uploaded.session.registry_id,
                repository_name,
                uploaded.digest,
                size,
                media_type,
                existed,
                annotations or {},
                bytes_read=attempt.bytes_read,
                bytes_sent=attempt.bytes_sent,
            )

    def _resumed(
        self,
        resume: ResumePoint | None,
        repository_name: str,
        registry_id: str | None,
        source: BlobSource,
        part_size: int | None,
    ) -> tuple[UploadSession | None, int, int | None]:
        """The upload an earlier attempt left for this blob, if it is of the same bytes: its
        session, the bytes ECR confirmed, and its part size."""
        record = resume.load() if resume is not None else None
        if resume is None or record is None:
            return None, 0, part_size
        same = (
            record.matches(resume.source, resume.offset, source.size)
            and record.repository_name == (repository_name)
            and record.registry_id == (registry_id or record.registry_id)
        )
        if not same:
            log.info(
                "%s: an interrupted upload (%s) was of other bytes (the source changed since): starting over",
                source.name,
                record.upload_id,
            )
            resume.delete()
            return None, 0, part_size
        log.info(
            "%s: continuing upload %s, which an earlier attempt left at byte %d of %d (reading that much to hash it)",
            source.name,
            record.upload_id,
            record.confirmed,
            source.size,
        )
        session = UploadSession(record.registry_id, record.repository_name, record.upload_id, record.part_size)
        return session, min(record.confirmed, source.size), part_size or record.part_size

    @staticmethod
    def _recorder(
        resume: ResumePoint | None, attempt: BlobAttempt, size: int, part_size: int | None
    ) -> Callable[[int], None]:
        """What records the bytes ECR confirmed, for a later attempt (nothing without ``resume``)."""

        def confirmed(position: int) -> None:
            if resume is not None:
                session = attempt.session
                record = resume.record(
                    session.registry_id,
                    session.repository_name,
                    session.upload_id,
                    part_size or session.part_size,
                    size,
                    position,
                )
                resume.save(record, force=position in (0, size))

        return confirmed

    # -- manifests ---------------------------------------------------------------------
    def put_manifest(
        self, repository_name: str, manifest: Manifest, tags: Sequence[str], registry_id: str | None = None
    ) -> list[PutImageResult]:
        """One PutImage per tag (or one untagged); a re-push of the same tag succeeds."""
        budget = RetryBudget(self.retry_policy)
        results = []
        each: list[str | None] = [*tags] or [None]
        for tag in each:
            try:
                result = budget.call(
                    f"PutImage {repository_name}:{tag or manifest.digest}",
                    partial(self.calls.put_image, repository_name, manifest, tag, registry_id),
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
