"""An embedded AWS (moto's ECR and S3, with strict ECR) on a loopback port.

moto's in-process ``mock_aws`` does not intercept aiobotocore (used by s3fs), so
tests and benchmarks talk HTTP to a ``ThreadedMotoServer`` instead::

    with EmbeddedAws() as aws:
        ecr = boto3.client("ecr", endpoint_url=aws.endpoint_url, region_name=aws.region, ...)
        # or: subprocess / monkeypatch.setenv with aws.env()

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

from airflow_ecr_layers.testing import s3_reads, strict_ecr

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
    deliberately not undone by :meth:`stop`, since other servers may share it.
    """

    def __init__(self, port: int = 0, region: str = DEFAULT_REGION, strict: bool = True, verbose: bool = False) -> None:
        self.region = region
        self._verbose = verbose
        self._requested_port = port
        self._strict = strict
        self._server: ThreadedMotoServer | None = None
        self._port: int | None = None

    def start(self) -> EmbeddedAws:
        if self._server is not None:
            return self
        if self._strict:
            strict_ecr.install()
        s3_reads.install()
        if not self._verbose:
            quiet_request_log()
        server = ThreadedMotoServer(ip_address=HOST, port=self._requested_port, verbose=False)
        server.start()
        self._server = server
        self._port = server.get_host_and_port()[1]
        return self

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("EmbeddedAws is not started")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        return aws_env(self.endpoint_url, self.region)

    def reset(self) -> None:
        """Drop moto's state through the server's reset endpoint; zero strict_ecr.STATS and the S3 read counts."""
        reset_server(self.endpoint_url)
        strict_ecr.reset_stats()
        s3_reads.S3_READS.reset()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._port = None

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
