"""A loopback ECR that discards layer bytes: the benchmark's upload target.

It speaks just enough of ECR's JSON protocol (``X-Amz-Target`` dispatch) for
botocore and for this project's upload loop: ``DescribeRepositories``,
``BatchCheckLayerAvailability``, ``InitiateLayerUpload``, ``UploadLayerPart``,
``CompleteLayerUpload``, ``PutImage`` and ``BatchGetImage`` (never finds an image).
``UploadLayerPart`` bodies are read in
chunks into one reused buffer and thrown away; ``partLastByte`` is found in the
first or last few hundred bytes of the body, so the sink never decodes the JSON
of a 28 MB request. It checks nothing (not the signature, not the offsets): it
measures what a client can send, not what a server does with it.

Run it in its own process so it does not compete for the client's GIL::

    python benchmarks/sink.py [--port N] [--part-size BYTES] [--part-delay-ms MS]

``--part-delay-ms`` holds each UploadLayerPart answer that long after the body is
read (a sleep, no CPU): a stand-in for the round trip and processing time a real
registry adds to every part, for measuring what parallel layers gain when a part
waits on the server rather than on the client's cores.

prints ``ENDPOINT http://127.0.0.1:PORT`` as its first stdout line and serves until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

HOST = "127.0.0.1"
ACCOUNT = "123456789012"
REGION = "us-east-1"
TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
DEFAULT_PART_SIZE = 20 * 1024 * 1024
CHUNK = 1024 * 1024
"""Bytes read from the socket at a time."""
EDGE = 512
"""Bytes kept from each end of a part body: the small JSON fields live there."""
_LAST_BYTE = re.compile(rb'"partLastByte"\s*:\s*(\d+)')


def part_last_byte(head: bytes, tail: bytes) -> int:
    """``partLastByte`` from the edges of an UploadLayerPart body (botocore puts the
    fields in the caller's keyword order, so it is before or after the blob)."""
    found = _LAST_BYTE.search(head) or _LAST_BYTE.search(tail)
    if found is None:
        raise ValueError("partLastByte is not within the first or last bytes of the body")
    return int(found.group(1))


class EcrSinkHandler(BaseHTTPRequestHandler):
    """One connection; botocore keeps it alive across requests (HTTP/1.1)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    """TCP_NODELAY: the status line and headers go out in one write and the JSON body in
    another; with Nagle's algorithm on, the body waits for the client's delayed ACK of the
    headers, about 40 ms per request on Linux loopback, which the client would be charged for."""
    server: EcrSinkServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a log line per request would cost more than the request."""

    def do_POST(self) -> None:
        operation = self.headers.get("X-Amz-Target", "").removeprefix(TARGET_PREFIX)
        self.server.arrived(operation)
        length = int(self.headers.get("Content-Length") or 0)
        try:
            if operation == "UploadLayerPart":
                answer = self.upload_layer_part(length)
            else:
                handler = getattr(self, _snake(operation), None)
                body = json.loads(self.rfile.read(length) or b"{}")
                if handler is None:
                    self.reply(400, {"__type": "InvalidParameterException", "message": f"sink: no {operation}"})
                    return
                answer = handler(body)
        except ValueError as exc:
            self.reply(400, {"__type": "InvalidParameterException", "message": f"sink: {exc}"})
            return
        self.reply(200, answer)

    def reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    # -- operations ------------------------------------------------------------------
    def upload_layer_part(self, length: int) -> dict[str, Any]:
        """Read and discard the body, keeping only its edges."""
        buffer = bytearray(min(CHUNK, max(length, 1)))
        view = memoryview(buffer)
        head = b""
        tail = bytearray()
        left = length
        while left:
            got = self.rfile.readinto(view[: min(left, len(buffer))])
            if not got:
                raise ValueError(f"body ended {left} bytes short")
            if not head:
                head = bytes(view[: min(got, EDGE)])
            tail += view[max(0, got - EDGE) : got]
            del tail[:-EDGE]
            left -= got
        self.server.count(length)
        if self.server.part_delay:
            time.sleep(self.server.part_delay)
        return {
            "registryId": ACCOUNT,
            "repositoryName": _edge_field(head, tail, "repositoryName"),
            "uploadId": _edge_field(head, tail, "uploadId"),
            "lastByteReceived": part_last_byte(head, bytes(tail)),
        }

    def batch_get_image(self, body: dict[str, Any]) -> dict[str, Any]:
        """Nothing is kept, so no image is ever found (a push's reuse check asks)."""
        failures = [
            {"imageId": image_id, "failureCode": "ImageNotFound", "failureReason": "Requested image not found"}
            for image_id in body.get("imageIds", [])
        ]
        return {"images": [], "failures": failures}

    def describe_repositories(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"repositories": [_repository(name) for name in body.get("repositoryNames") or ["sink"]]}

    def batch_check_layer_availability(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "layers": [],
            "failures": [
                {"layerDigest": digest, "failureCode": "MissingLayerDigest", "failureReason": "sink keeps nothing"}
                for digest in body.get("layerDigests", [])
            ],
        }

    def initiate_layer_upload(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"uploadId": str(uuid.uuid4()), "partSize": self.server.part_size}

    def complete_layer_upload(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "registryId": ACCOUNT,
            "repositoryName": body["repositoryName"],
            "uploadId": body["uploadId"],
            "layerDigest": body["layerDigests"][0],
        }

    def put_image(self, body: dict[str, Any]) -> dict[str, Any]:
        manifest = body["imageManifest"]
        digest = body.get("imageDigest") or "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        image_id = {"imageDigest": digest, **({"imageTag": body["imageTag"]} if body.get("imageTag") else {})}
        return {
            "image": {
                "registryId": ACCOUNT,
                "repositoryName": body["repositoryName"],
                "imageId": image_id,
                "imageManifest": manifest,
                "imageManifestMediaType": body.get("imageManifestMediaType", ""),
            }
        }


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", operation).lower()


def _edge_field(head: bytes, tail: bytearray, name: str) -> str:
    pattern = re.compile(rb'"' + name.encode() + rb'"\s*:\s*"([^"]*)"')
    found = pattern.search(head) or pattern.search(tail)
    return found.group(1).decode() if found else ""


def _repository(name: str) -> dict[str, Any]:
    return {
        "registryId": ACCOUNT,
        "repositoryName": name,
        "repositoryArn": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{name}",
        "repositoryUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{name}",
    }


class EcrSinkServer(ThreadingHTTPServer):
    """A thread per connection; counts the part bytes it threw away."""

    daemon_threads = True

    def __init__(self, port: int = 0, part_size: int = DEFAULT_PART_SIZE, part_delay: float = 0.0) -> None:
        super().__init__((HOST, port), EcrSinkHandler)
        self.part_size = part_size
        self.part_delay = part_delay
        self.received = 0
        self.arrivals: list[tuple[float, str]] = []
        """(time.monotonic() when the request's headers were read, operation), in order: the
        clock is the machine's, so a client process can be timed against it."""
        self._lock = threading.Lock()

    def count(self, length: int) -> None:
        with self._lock:
            self.received += length

    def arrived(self, operation: str) -> None:
        with self._lock:
            self.arrivals.append((time.monotonic(), operation))

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--part-size", type=int, default=DEFAULT_PART_SIZE, help="partSize InitiateLayerUpload returns")
    parser.add_argument(
        "--part-delay-ms", type=float, default=0.0, help="hold each UploadLayerPart answer this long (default 0)"
    )
    args = parser.parse_args(argv)
    server = EcrSinkServer(args.port, args.part_size, args.part_delay_ms / 1000)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"ENDPOINT {server.endpoint_url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
