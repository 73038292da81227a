"""A presigned download URL never reaches a log line or an error, whatever breaks the download.

ECR's download URLs are presigned S3 URLs: their query string (``X-Amz-Credential``,
``X-Amz-Security-Token``, ``X-Amz-Signature``) is a credential for as long as it lives. The
embedded ECR mints URLs of its own shape, so here every URL it gives is pointed at a server that
breaks the download in one way, with a real presigned query string added; then a real pull and a
real copy run against the embedded ECR, and every log record and every error text (each
exception of the chain, and the traceback as a task log would print it) is searched for it.
"""

from __future__ import annotations

import logging
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import urllib3

from airflow_ecr_layers.core.ecr.calls import DownloadUrl, EcrCalls
from airflow_ecr_layers.core.errors import TransferError
from airflow_ecr_layers.core.readback import download
from airflow_ecr_layers.operators import CopyImageOperator, PullArtifactOperator, PushArtifactOperator
from airflow_ecr_layers.testing.server import EmbeddedAws
from helpers import pattern_bytes

PRESIGNED = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=ASIAEXAMPLEEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600"
    "&X-Amz-Security-Token=IQoJb3JpZ2luX2VjEXAMPLETOKEN%2F%2F%2F"
    "&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "5f" * 32
)
"""The query string of a presigned S3 GET, as ECR's GetDownloadUrlForLayer answers it."""
SECRETS = ("X-Amz-", "Signature=")
POLICY = {"max_attempts": 3, "base_delay": 0.01, "max_delay": 0.02, "max_total_seconds": 10.0}
DATA = pattern_bytes(700_000, seed=11)

FAULTS = ["refused", "reset before answer", "reset mid-body", "timeout", "403", "500", "503", "broken body"]


class BrokenBlobServer:
    """Answers every GET of a layer in one broken way (``fault``); never with the bytes."""

    def __init__(self, fault: str) -> None:
        self.fault = fault
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        if fault != "refused":  # bound but not listening: every connection is refused
            self._socket.listen()
            self._socket.settimeout(0.1)
            threading.Thread(target=self._serve, daemon=True).start()

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self._socket.getsockname()[1]}"

    def close(self) -> None:
        self._stop.set()
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                head += chunk
            with self._lock:
                self.requests += 1
            lines = head.decode("latin-1").split("\r\n")
            ranges = [line.split("=", 1)[1] for line in lines if line.lower().startswith("range:")]
            first, last = (int(n) for n in ranges[0].split("-")) if ranges else (0, len(DATA) - 1)
            if self.fault == "timeout":
                self._stop.wait(30)  # never answers
            elif self.fault == "reset before answer":
                self._reset(connection)
            elif self.fault in ("403", "500", "503"):
                # S3's error bodies name the query's fields (an expired URL's names X-Amz-Expires)
                body = (
                    f"<Error><Code>{self.fault}</Code><Message>no</Message>"
                    f"<X-Amz-Expires>3600</X-Amz-Expires><StringToSign>{PRESIGNED}</StringToSign></Error>"
                ).encode()
                connection.sendall(
                    f"HTTP/1.1 {self.fault} No\r\nContent-Type: application/xml\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
            else:  # the head and a little of the body, then a reset or a clean close
                connection.sendall(
                    f"HTTP/1.1 206 Partial Content\r\nContent-Length: {last - first + 1}\r\n"
                    f"Content-Range: bytes {first}-{last}/{len(DATA)}\r\n\r\n".encode()
                    + DATA[first : first + min(1000, last - first)]  # never the whole range
                )
                if self.fault == "reset mid-body":
                    self._reset(connection)

    @staticmethod
    def _reset(connection: socket.socket) -> None:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


@pytest.fixture
def broken_downloads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], BrokenBlobServer]]:
    """``broken_downloads(fault)``: every download URL ECR gives leads to a server with that fault,
    and carries a presigned query string."""
    servers: list[BrokenBlobServer] = []
    real = EcrCalls.get_download_url_for_layer

    def install(fault: str) -> BrokenBlobServer:
        server = BrokenBlobServer(fault)
        servers.append(server)

        def presigned(self: EcrCalls, *args: Any, **kwargs: Any) -> DownloadUrl:
            found = real(self, *args, **kwargs)
            parts = urlsplit(found.url)
            url = urlunsplit(parts._replace(netloc=server.netloc, query=f"{parts.query}&{PRESIGNED}"))
            return DownloadUrl(url, found.digest)

        monkeypatch.setattr(EcrCalls, "get_download_url_for_layer", presigned)
        monkeypatch.setattr(download, "TIMEOUT", urllib3.Timeout(connect=2.0, read=0.3))
        return server

    yield install
    for server in servers:
        server.close()


@pytest.fixture
def pushed(clean_aws: EmbeddedAws, repo: str, put_object: Callable[[str, bytes], str], ecr: Any) -> str:
    PushArtifactOperator(
        task_id="push", source=put_object("model/weights.bin", DATA), repository_name=repo, tags=["v1"]
    ).execute({})
    ecr.create_repository(repositoryName="team/copies")
    return f"{repo}:v1"


def chain(error: BaseException) -> list[BaseException]:
    """The error and every exception it was raised from or while handling, however deep."""
    found: list[BaseException] = []
    waiting: list[BaseException | None] = [error]
    while waiting:
        exc = waiting.pop()
        if exc is not None and all(exc is not seen for seen in found):
            found.append(exc)
            waiting += [exc.__cause__, exc.__context__]
    return found


def leaks(texts: list[str]) -> list[str]:
    return [text for text in texts if any(secret in text for secret in SECRETS)]


@pytest.mark.parametrize("how", ["pull", "copy"])
@pytest.mark.parametrize("fault", FAULTS)
def test_no_download_fault_puts_the_presigned_url_in_a_log_or_an_error(
    pushed: str,
    broken_downloads: Callable[[str], BrokenBlobServer],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Any,
    fault: str,
    how: str,
) -> None:
    server = broken_downloads(fault)
    common: dict[str, Any] = {"aws_conn_id": "aws_default", "upload_retry_policy": POLICY}
    if how == "pull":
        operator: Any = PullArtifactOperator(
            task_id="pull", reference=pushed, destination=f"file://{tmp_path}/", **common
        )
    else:
        operator = CopyImageOperator(task_id="copy", source=pushed, repository_name="team/copies", **common)
    caplog.set_level(logging.INFO)  # every logger, at the level a task log shows
    caplog.set_level(logging.DEBUG, logger="airflow_ecr_layers")
    with pytest.raises(TransferError) as raised:
        operator.execute({})
    errors = chain(raised.value)
    texts = [record.getMessage() for record in caplog.records]
    texts += [caplog.text, *(str(e) for e in errors), *(repr(e) for e in errors)]
    texts.append("".join(traceback.format_exception(raised.value)))
    assert leaks(texts) == [], f"{fault} during a {how} leaked the presigned URL"
    assert server.requests or fault == "refused"  # the fault was met
    assert raised.value.args[0].startswith("team/models@sha256:"), "the error names the layer"
    if fault != "403":  # the retries and resumes were logged, without the URL
        assert any("attempt 1/3 failed" in record.getMessage() for record in caplog.records)
