"""One blob's way into ECR: what an attempt owns, and where the next part starts.

:class:`BlobAttempt` owns everything one blob's upload carries across its phases
(parts, then completion): the upload session, the cursor, the retry budget (time
waited on retries) and the restarts. A blob gets one attempt, so the limits of its
:class:`~airflow_ecr_layers.core.ecr.retry.RetryPolicy` hold per blob, whichever phase
spends them.

:func:`next_byte` is the one rule that maps what happened to a part
(:data:`PartOutcome`) to the byte to send next.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from airflow_ecr_layers.core.ecr.calls import EcrCalls, UploadSession
from airflow_ecr_layers.core.ecr.retry import RetryBudget, RetryPolicy
from airflow_ecr_layers.core.engine.reader import Part
from airflow_ecr_layers.core.errors import (
    InvalidLayerPartError,
    UploadAbortedError,
    UploadNotFoundError,
)

log = logging.getLogger("airflow_ecr_layers")


@dataclass(frozen=True)
class Sent:
    """ECR took the part and reports ``last_byte_received``."""

    last_byte_received: int


@dataclass(frozen=True)
class Rejected:
    """The part did not start where ECR expected (``InvalidLayerPartException``)."""

    error: InvalidLayerPartError


@dataclass(frozen=True)
class Gone:
    """The upload expired or vanished (``UploadNotFoundException``)."""

    error: UploadNotFoundError


PartOutcome = Sent | Rejected | Gone

Move = Literal["sent", "short acknowledgement", "resume", "restart"]


@dataclass(frozen=True)
class NextByte:
    """Where the next part starts, and why."""

    position: int
    move: Move


def next_byte(part: Part, outcome: PartOutcome, size: int) -> NextByte:
    """The byte to send next after ``outcome`` of ``part``, for a blob of ``size`` bytes.

    - sent and acknowledged to its last byte: the byte after the part;
    - sent, but ECR acknowledges another byte (a short acknowledgement): the byte after it;
    - rejected: the byte after ``lastValidByteReceived`` (the lost answer of an earlier
      request had landed, or ECR holds less than we thought);
    - gone: byte 0 of a fresh upload.

    An acknowledgement or a resume point outside the blob raises: no byte can follow it.
    """
    if isinstance(outcome, Sent):
        last = outcome.last_byte_received
        if last == part.last_byte:
            return NextByte(part.end, "sent")
        if not -1 <= last < size:
            raise UploadAbortedError(
                f"ECR acknowledged byte {last} after part {part.first_byte}-{part.last_byte} of a {size}-byte blob"
            )
        return NextByte(last + 1, "short acknowledgement")
    if isinstance(outcome, Rejected):
        last_valid = outcome.error.last_valid_byte_received
        if last_valid is None or not -1 <= last_valid < size:
            raise outcome.error
        return NextByte(last_valid + 1, "resume")
    return NextByte(0, "restart")


@dataclass
class Cursor:
    """Where the next part starts, and how long it has not moved past its best."""

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


class BlobAttempt:
    """One blob's upload: its session, cursor, retry budget and restarts.

    :param calls: the ECR calls to make.
    :param name: the blob's display name (a URL or a path, never credentials).
    :param session: the upload to send parts into (replaced on a restart).
    :param policy: the bounds: attempts per call, time waited per blob, restarts per blob.
    """

    def __init__(self, calls: EcrCalls, name: str, session: UploadSession, policy: RetryPolicy) -> None:
        self.calls = calls
        self.name = name
        self.session = session
        self.policy = policy
        self.budget = RetryBudget(policy)
        self.cursor = Cursor()
        self.restarts = 0
        self.resumes = 0
        self.sent = 0
        """Part requests ECR took."""
        self.bytes_sent = 0
        """Bytes of every part request made, refused and lost ones included."""
        self.bytes_read = 0
        """Bytes read from the source for this blob, re-reads included."""

    def send(self, part: Part) -> PartOutcome:
        """Send ``part`` (transient failures retried within the budget); what ECR made of it."""
        session = self.session
        self.bytes_sent += len(part.data)
        try:
            last = self.budget.call(
                f"UploadLayerPart {part.first_byte}-{part.last_byte} of upload {session.upload_id}",
                lambda: self.calls.upload_layer_part(session, part.first_byte, part.data),
            )
        except InvalidLayerPartError as exc:
            return Rejected(exc)
        except UploadNotFoundError as exc:
            return Gone(exc)
        self.sent += 1
        return Sent(last)

    def follow(self, part: Part, outcome: PartOutcome, size: int) -> NextByte:
        """Apply :func:`next_byte` to the cursor (restarting the upload when it is gone)."""
        step = next_byte(part, outcome, size)
        if isinstance(outcome, Gone):
            self.restart(outcome.error, "while parts were uploading")
            return step
        if isinstance(outcome, Rejected):
            self.resumes += 1
            log.warning(
                "%s: ECR holds bytes up to %d (we sent %d-%d); continuing from byte %d",
                self.session.upload_id,
                step.position - 1,
                part.first_byte,
                part.last_byte,
                step.position,
            )
            why = str(outcome.error)
        elif step.move == "short acknowledgement":
            log.warning(
                "ECR reports byte %d received after part %d-%d",
                step.position - 1,
                part.first_byte,
                part.last_byte,
            )
            why = "lastByteReceived mismatch"
        else:
            why = "part sent"
        self.cursor.advance(step.position, self.policy, why)
        return step

    def restart(self, exc: UploadNotFoundError, when: str) -> None:
        """A fresh upload for one that expired or vanished, at most ``max_restarts`` times per blob."""
        self.restarts += 1
        if self.restarts > self.policy.max_restarts:
            raise UploadAbortedError(
                f"Upload of {self.name} vanished {when} {self.restarts} times (all phases of the blob "
                f"count; max_restarts={self.policy.max_restarts}); giving up: {exc}"
            ) from exc
        old = self.session
        self.session = self.budget.call(
            f"InitiateLayerUpload for {self.name}",
            lambda: self.calls.initiate_layer_upload(old.repository_name, old.registry_id or None),
        )
        self.cursor = Cursor()
        log.warning(
            "Upload %s expired or vanished %s (%s); restarting from byte 0 as upload %s (restart %d/%d)",
            old.upload_id,
            when,
            exc.code,
            self.session.upload_id,
            self.restarts,
            self.policy.max_restarts,
        )
