"""An embedded AWS (moto's ECR and S3, with strict ECR) on a loopback port.

moto's in-process ``mock_aws`` does not intercept aiobotocore (used by s3fs), so
tests and benchmarks talk HTTP to a ``ThreadedMotoServer`` instead::

    with EmbeddedAws() as aws:
        ecr = boto3.client("ecr", endpoint_url=aws.endpoint_url, region_name=aws.region, ...)
        # or: subprocess / monkeypatch.setenv with aws.env()

In strict mode it also serves downloads: GetDownloadUrlForLayer answers URLs of a
blob server on another loopback port (:attr:`EmbeddedAws.blob_url`, see
:mod:`.blob_server`), and :meth:`EmbeddedAws.credentials_for` gives access keys of
other accounts.

Run it in a separate process (strict ECR on) with::

    python -m airflow_ecr_layers.testing.server [--port N]

which prints ``ENDPOINT http://127.0.0.1:PORT`` as its first stdout line and serves
until SIGTERM or SIGINT.

This module must not import Airflow.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import urllib.request
from types import FrameType, TracebackType

from moto.server import ThreadedMotoServer

from airflow_ecr_layers.testing import accounts, blob_server, managed_signing, s3_reads, strict_ecr, strict_kms

__all__ = ["DEFAULT_REGION", "EmbeddedAws", "aws_env", "main", "reset_server"]

DEFAULT_REGION = "us-east-1"
HOST = "127.0.0.1"


def aws_env(endpoint_url: str, region: str = DEFAULT_REGION) -> dict[str, str]:
    """Environment variables that point boto3, botocore and aiobotocore at the
    embedded server with dummy credentials. Nothing is set: apply them yourself
    (``monkeypatch.setenv``, ``subprocess.run(env=...)``)."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": endpoint_url,
    }


def reset_server(endpoint_url: str, timeout: float = 10.0) -> None:
    """Drop all of moto's state (repositories, images, buckets...) of a running server."""
    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()


def _not_a_request_line(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def quiet_request_log() -> None:
    """Drop werkzeug's line-per-request log (it survives later logging reconfiguration)."""
    werkzeug_log = logging.getLogger("werkzeug")
    werkzeug_log.setLevel(logging.WARNING)
    if _not_a_request_line not in werkzeug_log.filters:
        werkzeug_log.addFilter(_not_a_request_line)


class EmbeddedAws:
    """moto's server on ``127.0.0.1`` in a daemon thread of this process.

    ``port=0`` (the default) lets the OS pick a free port. With ``strict=True`` (the
    default) :func:`strict_ecr.install` is called on start; it is process-wide and
    deliberately not undone by :meth:`stop`, since other servers may share it. Strict
    mode also starts (or shares) the process's blob server, which serves the download
    URLs; :meth:`stop` releases it.

    moto's state is process-wide: two servers of one process serve the same
    repositories, and :meth:`reset` of either drops them all.
    """

    def __init__(self, port: int = 0, region: str = DEFAULT_REGION, strict: bool = True, verbose: bool = False) -> None:
        self.region = region
        self._verbose = verbose
        self._requested_port = port
        self._strict = strict
        self._server: ThreadedMotoServer | None = None
        self._port: int | None = None
        self._blob_server: blob_server.BlobServer | None = None
        self._credentials: dict[str, tuple[str, str]] = {}
        self._credentials_lock = threading.Lock()

    def start(self) -> EmbeddedAws:
        if self._server is not None:
            return self
        if self._strict:
            strict_ecr.install()
            strict_kms.install()
            managed_signing.install()
        s3_reads.install()
        if not self._verbose:
            quiet_request_log()
        server = ThreadedMotoServer(ip_address=HOST, port=self._requested_port, verbose=False)
        server.start()
        self._server = server
        self._port = server.get_host_and_port()[1]
        if self._strict:
            self._blob_server = blob_server.acquire()
        return self

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("EmbeddedAws is not started")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def blob_url(self) -> str:
        """The base URL of the blob server the download URLs point at (strict mode only)."""
        if self._blob_server is None:
            raise RuntimeError("EmbeddedAws serves downloads only when started in strict mode")
        return self._blob_server.base_url

    @property
    def url_lifetime(self) -> float:
        """Seconds a download URL minted now stays valid (process-wide, see :mod:`.blob_server`).
        Set it to expire URLs in a test (zero or less: already expired); :meth:`reset`
        restores :data:`.blob_server.DEFAULT_URL_LIFETIME`."""
        return blob_server.url_lifetime()

    @url_lifetime.setter
    def url_lifetime(self, seconds: float) -> None:
        blob_server.set_url_lifetime(seconds)

    def env(self) -> dict[str, str]:
        return aws_env(self.endpoint_url, self.region)

    def credentials_for(self, account_id: str) -> tuple[str, str]:
        """An access key id and secret that this server maps to ``account_id``: a client
        signed with them sees that account's ECR (``registryId``), S3, ... Created once
        per account (an IAM user in it) and cached; a reset drops the cache with moto's IAM."""
        with self._credentials_lock:
            cached = self._credentials.get(account_id)
            if cached is not None and accounts.is_account_of(cached[0], account_id):
                return cached
            # Not cached, or dropped by a reset this server did not see (moto's state is process-wide).
            credentials = accounts.create_credentials(self.endpoint_url, account_id)
            self._credentials[account_id] = credentials
            return credentials

    def reset(self) -> None:
        """Drop moto's state through the server's reset endpoint (every account and region),
        and what the tools around it remember: zero strict_ecr.STATS, the S3 read counts
        and blob_server.BLOB_READS, restore the URL lifetime, forget the cached
        credentials of other accounts and delete the stored bytes of every layer."""
        reset_server(self.endpoint_url)
        strict_ecr.reset_stats()
        s3_reads.S3_READS.reset()
        blob_server.BLOB_READS.reset()
        blob_server.set_url_lifetime(blob_server.DEFAULT_URL_LIFETIME)
        with self._credentials_lock:
            self._credentials.clear()
        strict_ecr.sweep_blob_store()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._port = None
        if self._blob_server is not None:
            blob_server.release()
            self._blob_server = None

    def __enter__(self) -> EmbeddedAws:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--region", default=DEFAULT_REGION)
    parser.add_argument("--lax", action="store_true", help="plain moto: do not install strict ECR")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with EmbeddedAws(port=args.port, region=args.region, strict=not args.lax, verbose=args.verbose) as aws:
        print(f"ENDPOINT {aws.endpoint_url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
