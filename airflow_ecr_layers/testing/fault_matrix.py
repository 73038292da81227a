"""The fault matrix: every fault kind at every position of a push, each cell judged.

Each cell pushes a multi-part artifact (its size not a multiple of the part size)
with :func:`~airflow_ecr_layers.core.push.artifact.push_artifact` through a
:class:`~airflow_ecr_layers.testing.fault_proxy.FaultProxy` that injects one fault,
into a fresh repository of the embedded moto server. A cell passes when either

- the push succeeded, the layer digest is the sha256 of the source, the image
  digest is the sha256 of the manifest bytes ECR returns (read back without the
  proxy) and the tag points at that image; or
- the push raised one of the project's exceptions, with a message, and no tag in
  the repository points anywhere new;

and the fault actually fired (a cell whose fault never happened tested nothing).

The upload positions (the parts, ``CompleteLayerUpload``, ``PutImage``) take every fault
kind. The call positions (:func:`call_positions`: the calls around the upload, and those
a copy makes to read its source) take throttling, 5xx and a connection reset, each
repeated on as many consecutive calls as botocore makes (:attr:`Position.outlast_botocore`):
only our own retries can get past them. A ``copy`` cell copies an image and its referrer
(:func:`~airflow_ecr_layers.core.readback.copy.copy_image`) instead of pushing, and passes
when the destination's tag points at the source's manifest, byte for byte, with its layer
and its referrer.

Run it as a command (it starts its own embedded server)::

    python -m airflow_ecr_layers.testing.fault_matrix [--kinds drop_response,delay] [--verbose]

It prints the matrix and ends with ``fault matrix: N/N cells passed``; the exit
status is non-zero when a cell failed.

This module must not import Airflow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3
from botocore.config import Config

from airflow_ecr_layers.core.ecr.references import ImageReference
from airflow_ecr_layers.core.ecr.retry import RetryPolicy
from airflow_ecr_layers.core.engine.client import build_engine
from airflow_ecr_layers.core.errors import EcrLayersError, UploadAbortedError
from airflow_ecr_layers.core.limits import MiB
from airflow_ecr_layers.core.oci.layers import LayerSpec
from airflow_ecr_layers.core.oci.manifest import OCI_LAYER_TAR, OCI_MANIFEST
from airflow_ecr_layers.core.push.artifact import push_artifact
from airflow_ecr_layers.core.readback.copy import copy_image
from airflow_ecr_layers.core.sources.blobs import BytesSource
from airflow_ecr_layers.testing.fault_proxy import FAULT_KINDS, FaultKind, FaultProxy, FaultRule
from airflow_ecr_layers.testing.server import DEFAULT_REGION, EmbeddedAws, aws_env

__all__ = [
    "CellResult",
    "MatrixConfig",
    "Position",
    "artifact_bytes",
    "call_positions",
    "ecr_client",
    "format_table",
    "main",
    "positions_for",
    "run_cell",
    "run_matrix",
    "summary_line",
]

TAG = "v1"
FAST_RETRY_POLICY = RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.25, max_total_seconds=30.0, max_restarts=2)
"""Our retries in the matrix: the same bounds as in production, with short waits."""

Outcome = Literal["pushed", "failed clean", "FAIL"]


Scenario = Literal["push", "copy"]

CALL_FAULTS: tuple[FaultKind, ...] = ("throttling", "http_500", "http_503", "reset_before_body")
"""The faults of the call positions: throttled, 5xx, a connection error."""


@dataclass(frozen=True)
class Position:
    """Where in a push (or a copy) a fault is injected: the ``occurrence``-th call of ``operation``."""

    name: str
    operation: str
    occurrence: int
    kinds: tuple[FaultKind, ...] | None = None
    """The fault kinds this position is run with (None: every kind)."""
    scenario: Scenario = "push"
    outlast_botocore: bool = False
    """The fault hits as many consecutive calls as botocore makes: our retries must carry it."""
    preceded_by: FaultRule | None = None
    """Another fault injected too, that leads the push to this call."""

    def takes(self, kind: FaultKind) -> bool:
        return self.kinds is None or kind in self.kinds


@dataclass(frozen=True)
class MatrixConfig:
    """The artifact, the client's timeouts and retries, and our retry policy."""

    part_size: int = 5 * MiB
    artifact_size: int = 3 * 5 * MiB + 1_234_567
    """Three full parts and a tail: several parts, not a multiple of the part size."""
    read_timeout: float = 2.0
    connect_timeout: float = 2.0
    botocore_attempts: int = 3
    """botocore's ``total_max_attempts`` (standard retry mode) for the client under test."""
    retry_policy: RetryPolicy = FAST_RETRY_POLICY
    region: str = DEFAULT_REGION

    @property
    def parts(self) -> int:
        return -(-self.artifact_size // self.part_size)

    @property
    def delay_seconds(self) -> float:
        """How long a ``delay`` fault holds a request: past the client's read timeout."""
        return self.read_timeout + 1.0


@dataclass(frozen=True)
class CellResult:
    """How one cell ended: ``pushed`` or ``failed clean`` pass, ``FAIL`` does not."""

    kind: FaultKind
    position: str
    outcome: Outcome
    detail: str = ""
    """Why a cell failed, or the error of a clean failure."""
    fired: int = 0
    seconds: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    """Calls of each ECR operation through the proxy, faulted ones included."""
    repository_name: str = ""

    @property
    def passed(self) -> bool:
        return self.outcome != "FAIL"

    @property
    def label(self) -> str:
        if self.outcome == "FAIL":
            return f"FAIL: {self.detail}"
        return f"ok: {self.outcome}"


def call_positions() -> tuple[Position, ...]:
    """The calls around an upload, and those a copy makes to read its source, each faulted past
    botocore's retries with throttling, 5xx and a connection reset."""

    def at(name: str, operation: str, scenario: Scenario = "push", **more: Any) -> Position:
        return Position(name, operation, 1, CALL_FAULTS, scenario, outlast_botocore=True, **more)

    return (
        at("DescribeRepositories", "DescribeRepositories"),
        at("BatchGetImage", "BatchGetImage"),  # the previous image's layers, to reuse
        at("InitiateLayerUpload", "InitiateLayerUpload"),
        at("BatchCheckLayerAvailability", "BatchCheckLayerAvailability"),  # the empty config's, before its upload
        at(
            "completion check",
            "BatchCheckLayerAvailability",
            preceded_by=FaultRule("CompleteLayerUpload", 1, "drop_response"),
        ),  # is the layer there, now that the completion's answer was lost?
        at("copy: GetDownloadUrlForLayer", "GetDownloadUrlForLayer", "copy"),
        at("copy: ListImageReferrers", "ListImageReferrers", "copy"),
    )


def positions_for(parts: int) -> tuple[Position, ...]:
    """The five positions of the matrix for an artifact of ``parts`` parts."""
    if parts < 3:
        raise ValueError(f"The matrix needs at least 3 parts (first, middle, last), got {parts}")
    return (
        Position("first part", "UploadLayerPart", 1),
        Position("middle part", "UploadLayerPart", (parts + 1) // 2),
        Position("last part", "UploadLayerPart", parts),
        Position("CompleteLayerUpload", "CompleteLayerUpload", 1),
        Position("PutImage", "PutImage", 1),
    )


def artifact_bytes(size: int, seed: int = 3) -> bytes:
    """Deterministic bytes that differ per position, so a misplaced part changes the digest."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    return (block * -(-size // len(block)))[:size]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def ecr_client(endpoint_url: str, config: MatrixConfig | None = None) -> Any:
    """A boto3 ECR client; with ``config``, its short timeouts and standard retries."""
    botocore_config = None
    if config is not None:
        botocore_config = Config(
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            retries={"mode": "standard", "total_max_attempts": config.botocore_attempts},
        )
    return boto3.client(
        "ecr",
        endpoint_url=endpoint_url,
        region_name=config.region if config else DEFAULT_REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=botocore_config,
    )


def rule_for(kind: FaultKind, position: Position, config: MatrixConfig) -> FaultRule:
    times = config.botocore_attempts if position.outlast_botocore else 1
    # A killed process's request is held until the proxy stops: the kill lands while it is held
    # however late the harness gets to it.
    hold = None if kind == "process_killed" else config.delay_seconds
    return FaultRule(position.operation, position.occurrence, kind, times=times, delay_seconds=hold)


def tag_map(direct: Any, repository_name: str) -> dict[str, str]:
    """Every tag of the repository and the image digest it points at."""
    tags: dict[str, str] = {}
    for page in direct.get_paginator("list_images").paginate(
        repositoryName=repository_name, filter={"tagStatus": "TAGGED"}
    ):
        for image_id in page["imageIds"]:
            tags[image_id["imageTag"]] = image_id["imageDigest"]
    return tags


# -- judging a cell --------------------------------------------------------------------


def check_pushed(direct: Any, repository_name: str, result: dict[str, Any], data: bytes) -> str | None:
    """None when ECR holds exactly the pushed artifact under :data:`TAG`; else what is wrong."""
    expected = sha256(data)
    layer_digest = result["layers"][0]["digest"]
    if layer_digest != expected:
        return f"layer digest {layer_digest} is not the source's {expected}"
    response = direct.batch_get_image(
        repositoryName=repository_name, imageIds=[{"imageTag": TAG}], acceptedMediaTypes=[OCI_MANIFEST]
    )
    if not response["images"]:
        return f"tag {TAG} not found after a successful push: {response['failures']}"
    image = response["images"][0]
    manifest = image["imageManifest"].encode("utf-8")
    if sha256(manifest) != result["image_digest"]:
        return f"image digest {result['image_digest']} is not the sha256 of the stored manifest {sha256(manifest)}"
    if image["imageId"]["imageDigest"] != result["image_digest"]:
        return f"tag {TAG} points at {image['imageId']['imageDigest']}, not {result['image_digest']}"
    layers = json.loads(manifest)["layers"]
    if [(d["digest"], d["size"]) for d in layers] != [(expected, len(data))]:
        return f"the manifest's layers are {layers}, not one of {expected} with {len(data)} bytes"
    stored = direct.batch_check_layer_availability(repositoryName=repository_name, layerDigests=[expected])["layers"]
    if not stored or stored[0]["layerAvailability"] != "AVAILABLE" or stored[0]["layerSize"] != len(data):
        return f"the layer is not stored with {len(data)} bytes: {stored}"
    tags = tag_map(direct, repository_name)
    if tags != {TAG: result["image_digest"]}:
        return f"the repository's tags are {tags}"
    return None


def check_copied(direct: Any, source_repository: str, repository_name: str, result: dict[str, Any]) -> str | None:
    """None when the destination holds the source's image under :data:`TAG`, byte for byte, with its
    layers and its referrer; else what is wrong."""

    def image(repository: str, image_id: dict[str, str]) -> dict[str, Any] | None:
        images = direct.batch_get_image(
            repositoryName=repository, imageIds=[image_id], acceptedMediaTypes=[OCI_MANIFEST]
        )["images"]
        return images[0] if images else None

    source = image(source_repository, {"imageTag": TAG})
    copied = image(repository_name, {"imageTag": TAG})
    if source is None or copied is None:
        return f"tag {TAG} not found after a successful copy (source: {source is not None})"
    if copied["imageManifest"] != source["imageManifest"] or result["image_digest"] != source["imageId"]["imageDigest"]:
        return f"{repository_name}:{TAG} is not the source's manifest"
    layers = [(d["digest"], d["size"]) for d in json.loads(copied["imageManifest"])["layers"]]
    stored = direct.batch_check_layer_availability(repositoryName=repository_name, layerDigests=[layers[0][0]])
    if [(s["layerDigest"], s["layerSize"], s["layerAvailability"]) for s in stored["layers"]] != [
        (*layers[0], "AVAILABLE")
    ]:
        return f"the layer is not stored as {layers[0]}: {stored}"
    subject = {"imageDigest": result["image_digest"]}
    wanted = [
        r["digest"]
        for r in direct.list_image_referrers(repositoryName=source_repository, subjectId=subject)["referrers"]
    ]
    got = [
        r["digest"] for r in direct.list_image_referrers(repositoryName=repository_name, subjectId=subject)["referrers"]
    ]
    if not wanted or got != wanted:
        return f"the referrers copied are {got}, not the source's {wanted}"
    tags = tag_map(direct, repository_name)
    if tags != {TAG: result["image_digest"]}:
        return f"the repository's tags are {tags}"
    return None


def check_failed_clean(
    direct: Any, repository_name: str, error: BaseException, tags_before: dict[str, str]
) -> str | None:
    """None when ``error`` is one of ours with a message and no tag moved; else what is wrong."""
    if not isinstance(error, EcrLayersError):
        return f"unclear error {type(error).__name__}: {error}"
    if not str(error).strip():
        return f"{type(error).__name__} without a message"
    moved = {tag: digest for tag, digest in tag_map(direct, repository_name).items() if tags_before.get(tag) != digest}
    if moved:
        return f"{type(error).__name__} raised but tags point somewhere new: {moved}"
    return None


# -- running cells -----------------------------------------------------------------------


def _push(endpoint_url: str, repository_name: str, data: bytes, config: MatrixConfig) -> dict[str, Any]:
    """Push the artifact through ``endpoint_url`` the way a user would: with a client that can be
    made again with fresh credentials, as the hook and the CLI make theirs."""
    clients = [ecr_client(endpoint_url, config)]

    def fresh() -> Any:
        clients.append(ecr_client(endpoint_url, config))
        return clients[-1]

    try:
        api = build_engine(clients[0], retry_policy=config.retry_policy, refresh=fresh)
        layer = LayerSpec(BytesSource(data, "fault-matrix-artifact"), OCI_LAYER_TAR, title="artifact.bin")
        return push_artifact(
            api, repository_name, [layer], tags=[TAG], part_size=config.part_size, max_concurrency=1
        ).as_dict()
    finally:
        for client in clients:
            client.close()


def _seed_copy_source(endpoint_url: str, repository_name: str, data: bytes, config: MatrixConfig) -> None:
    """The image a copy cell copies (the artifact, tagged :data:`TAG`) and an SBOM-like referrer of it,
    pushed without the proxy."""
    client = ecr_client(endpoint_url)
    try:
        client.create_repository(repositoryName=repository_name)
        api = build_engine(client)
        image = push_artifact(
            api,
            repository_name,
            [LayerSpec(BytesSource(data, "fault-matrix-artifact"), OCI_LAYER_TAR, title="artifact.bin")],
            tags=[TAG],
            part_size=config.part_size,
        )
        sbom = LayerSpec(BytesSource(b'{"sbom": true}', "fault-matrix-sbom"), "application/vnd.example.sbom.v1+json")
        push_artifact(
            api,
            repository_name,
            [sbom],
            subject=image.image_digest,
            artifact_type="application/vnd.example.sbom.v1+json",
            part_size=config.part_size,
        )
    finally:
        client.close()


def _copy(endpoint_url: str, source_repository: str, repository_name: str, config: MatrixConfig) -> dict[str, Any]:
    """Copy the source's image and its referrer through ``endpoint_url``, as the copy operator does."""
    client = ecr_client(endpoint_url, config)
    try:
        api = build_engine(client, retry_policy=config.retry_policy)
        return copy_image(
            api,
            ImageReference(source_repository, tag=TAG),
            api,
            repository_name,
            tags=[TAG],
            include_referrers=True,
            part_size=config.part_size,
            max_concurrency=1,
        ).as_dict()
    finally:
        client.close()


def _killed_then_rerun(
    proxy: FaultProxy, endpoint_url: str, repository_name: str, data: bytes, config: MatrixConfig
) -> dict[str, Any]:
    """A CLI push SIGKILLed while its request at the cell's position is in flight, then run
    again (without the proxy) as a retry would: the rerun continues from what the first kept."""
    with tempfile.TemporaryDirectory(prefix="fault-matrix-killed-") as folder:
        artifact = Path(folder) / "artifact.bin"
        artifact.write_bytes(data)
        env = {**os.environ, **aws_env(endpoint_url, config.region), "XDG_CACHE_HOME": str(Path(folder) / "cache")}
        command = [
            sys.executable,
            "-m",
            "airflow_ecr_layers.cli",
            "push",
            f"file://{artifact}",
            f"{repository_name}:{TAG}",
            "--part-size",
            str(config.part_size),
            "--max-concurrency",
            "1",
        ]
        first = subprocess.Popen(
            [*command, "--endpoint-url", proxy.endpoint_url],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while not proxy.fired and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        first.kill()
        first.wait()
        if first.returncode != -signal.SIGKILL:
            raise RuntimeError(f"harness: the push ended by itself (exit {first.returncode}) before the kill")
        again = subprocess.run(
            [*command, "--endpoint-url", endpoint_url], env=env, capture_output=True, text=True, timeout=300
        )
        if again.returncode != 0:
            raise UploadAbortedError(f"the rerun after the kill failed: {again.stderr.strip()[-500:]}")
        found: dict[str, Any] = json.loads(again.stdout)
        return found


def _repository_name(kind: FaultKind, position: Position) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", position.name.lower()).strip("-")
    return f"fault-matrix/{kind.replace('_', '-')}-{slug}-{uuid.uuid4().hex[:8]}"


def run_cell(
    endpoint_url: str,
    kind: FaultKind,
    position: Position,
    *,
    config: MatrixConfig | None = None,
    data: bytes | None = None,
) -> CellResult:
    """Push once with one fault injected at ``position``, into a fresh repository, and judge it."""
    config = config or MatrixConfig()
    data = artifact_bytes(config.artifact_size) if data is None else data
    if not position.takes(kind):
        raise ValueError(f"Position {position.name!r} is not run with {kind!r}; it takes {position.kinds}")
    direct = ecr_client(endpoint_url)
    repository_name = _repository_name(kind, position)
    source_repository = repository_name + "-source"
    if position.scenario == "copy":
        _seed_copy_source(endpoint_url, source_repository, data, config)
    direct.create_repository(repositoryName=repository_name)
    tags_before = tag_map(direct, repository_name)
    started = time.monotonic()
    result: dict[str, Any] | None = None
    error: BaseException | None = None
    rule = rule_for(kind, position, config)
    rules = [rule] if position.preceded_by is None else [position.preceded_by, rule]
    with FaultProxy(endpoint_url, rules) as proxy:
        try:
            if kind == "process_killed":
                result = _killed_then_rerun(proxy, endpoint_url, repository_name, data, config)
            elif position.scenario == "copy":
                result = _copy(proxy.endpoint_url, source_repository, repository_name, config)
            else:
                result = _push(proxy.endpoint_url, repository_name, data, config)
        except Exception as exc:  # judged below: ours and clean, or a failure of the cell
            error = exc
    # Leaving the proxy waited for requests still in flight (a delayed one): what ECR
    # holds now is final.
    seconds = time.monotonic() - started
    operations = ("UploadLayerPart", "CompleteLayerUpload", "PutImage")
    calls = {op: proxy.calls(op) for op in dict.fromkeys((*operations, position.operation))}
    fired = sum(fault.rule == rule for fault in proxy.fired)

    def cell(outcome: Outcome, detail: str) -> CellResult:
        return CellResult(kind, position.name, outcome, detail, fired, seconds, calls, repository_name)

    if proxy.unfired():
        return cell("FAIL", f"harness: the {kind} fault never fired")
    if result is not None:
        if position.scenario == "copy":
            problem = check_copied(direct, source_repository, repository_name, result)
        else:
            problem = check_pushed(direct, repository_name, result, data)
        return cell("FAIL", problem) if problem else cell("pushed", "")
    assert error is not None
    problem = check_failed_clean(direct, repository_name, error, tags_before)
    return cell("FAIL", problem) if problem else cell("failed clean", f"{type(error).__name__}: {error}")


def run_matrix(
    endpoint_url: str,
    *,
    kinds: Sequence[FaultKind] = FAULT_KINDS,
    positions: Sequence[str] | None = None,
    config: MatrixConfig | None = None,
    on_cell: Callable[[CellResult], None] | None = None,
) -> list[CellResult]:
    """Every kind at every position that takes it (or at the ``positions`` named), in row order:
    the upload positions first, then the call positions."""
    config = config or MatrixConfig()
    every = (*positions_for(config.parts), *call_positions())
    chosen = [p for p in every if positions is None or p.name in positions]
    data = artifact_bytes(config.artifact_size)
    results = []
    for group in (False, True):
        for kind in kinds:
            for position in chosen:
                if position.outlast_botocore != group or not position.takes(kind):
                    continue
                cell = run_cell(endpoint_url, kind, position, config=config, data=data)
                if on_cell is not None:
                    on_cell(cell)
                results.append(cell)
    return results


# -- reporting --------------------------------------------------------------------------


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def format_table(results: Sequence[CellResult]) -> str:
    """Rows are fault kinds, columns positions, cells ``ok: pushed``/``ok: failed clean``/``FAIL: why``."""
    kinds = list(dict.fromkeys(r.kind for r in results))
    positions = list(dict.fromkeys(r.position for r in results))
    by_cell = {(r.kind, r.position): _short(r.label) for r in results}
    header = ["fault \\ position", *positions]
    rows = [[kind, *(by_cell.get((kind, p), "-") for p in positions)] for kind in kinds]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def summary_line(results: Sequence[CellResult]) -> str:
    return f"fault matrix: {sum(r.passed for r in results)}/{len(results)} cells passed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the fault-injection matrix against an embedded ECR.")
    parser.add_argument("--kinds", help=f"comma-separated fault kinds (default: all of {', '.join(FAULT_KINDS)})")
    parser.add_argument(
        "--positions", help="comma-separated position names (default: the five upload positions and the call positions)"
    )
    parser.add_argument(
        "--botocore-attempts",
        type=int,
        default=MatrixConfig.botocore_attempts,
        help="botocore's total_max_attempts; 1 leaves every retry to the upload loop",
    )
    parser.add_argument("--verbose", action="store_true", help="log every retry and resume to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, stream=sys.stderr)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    kinds: list[FaultKind] = [k for k in FAULT_KINDS if not args.kinds or k in args.kinds.split(",")]
    positions = args.positions.split(",") if args.positions else None

    def progress(cell: CellResult) -> None:
        print(f"{cell.kind} @ {cell.position}: {cell.label} ({cell.seconds:.1f}s)", file=sys.stderr, flush=True)

    started = time.monotonic()
    with EmbeddedAws() as aws:
        config = MatrixConfig(botocore_attempts=args.botocore_attempts)
        results = run_matrix(aws.endpoint_url, kinds=kinds, positions=positions, config=config, on_cell=progress)
    calls = {p.name for p in call_positions()}
    tables = [[r for r in results if r.position not in calls], [r for r in results if r.position in calls]]
    print("\n\n".join(format_table(table) for table in tables if table))
    for cell in results:
        if not cell.passed:
            print(f"FAIL {cell.kind} @ {cell.position}: {cell.detail}")
    print(f"({time.monotonic() - started:.0f}s)")
    print(summary_line(results))
    return 0 if results and all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
