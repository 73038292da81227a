"""Learn a layer's digest before reading it, cheapest first, so a re-push pays only for what changed.

For each layer, in this order:

1. ``expected_digest``, when the caller gave one;
2. what the last push recorded: the layer of the previous manifest whose identity token
   (:mod:`~airflow_ecr_layers.core.sources.identity`) matches this source's, so the same
   object, unchanged, in the same registry, region and repository; with ``verify_reuse``
   the source is hashed and the record used only when the bytes hash to it;
3. the sha256 the store keeps of the whole object (S3's full-object checksum), when it
   keeps one (not asked of a small layer: its one read costs the same round trip);
4. a small layer (no bigger than ``one_part``: one part of the upload) is read whole into
   memory, many at a time, and hashed: its bytes are read once anyway, and each upload
   ECR already holds would cost three round trips for nothing. The bytes are kept for the
   upload, so up to :data:`KEEP_BYTES` of small layers in all are read this way (the rest
   are streamed as large ones are: never read twice);
5. with ``hash_first``, one read to hash each remaining layer.

Every digest learnt is then checked with one batched BatchCheckLayerAvailability: a
layer ECR holds as AVAILABLE with the same size is not uploaded (and, unless it was
hashed, not read). A recorded digest that ECR does not hold is forgotten, with a log
line saying why: the source is read and uploaded as if it were new. Any other digest
learnt becomes the upload's ``expected_digest``: the streamed bytes must hash to it.

Reading the previous manifest is a shortcut: when it fails (``ecr:BatchGetImage`` denied,
a throttle that outlasted the retries, any other refusal), the push goes on without it,
every layer read and checked as if new, after one warning saying why.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

from airflow_ecr_layers.core.ecr.calls import EcrCalls, LayerAvailability
from airflow_ecr_layers.core.engine.reader import readinto_exact
from airflow_ecr_layers.core.errors import EcrServiceError
from airflow_ecr_layers.core.limits import MiB, validate_digest
from airflow_ecr_layers.core.oci.layers import LayerSpec, NamedSource
from airflow_ecr_layers.core.oci.manifest import DOCKER_MANIFEST, OCI_MANIFEST
from airflow_ecr_layers.core.sources.blobs import BlobSource, check_unchanged, hash_and_count
from airflow_ecr_layers.core.sources.identity import RecordedLayer, Target, recorded_layers

log = logging.getLogger("airflow_ecr_layers")

Origin = Literal["expected", "recorded", "stored", "hashed"]
HASH_BLOCK = 8 * MiB
"""Bytes read at a time by a hash-first pass (one ranged GET each on S3)."""
KEEP_BYTES = 64 * MiB
"""Bytes of small layers read whole and kept in memory between their hashing and their upload, in
all (small layers past it are not hashed first, unless ``hash_first``)."""
READ_CONCURRENCY = 16
"""Small layers read at once to hash them (their cost is a round trip each)."""


@dataclass(frozen=True)
class Finding:
    """What was learnt of one layer before any upload."""

    present: bool
    """ECR holds the blob: nothing to upload."""
    digest: str | None = None
    """The digest learnt: the blob's when present, else the upload's expected digest (or None)."""
    origin: Origin | None = None
    bytes_read: int = 0
    """Bytes read to learn it (a hash-first pass)."""
    data: bytes | None = field(default=None, repr=False, compare=False)
    """The layer's bytes, read whole to hash them and kept for its upload (small layers)."""

    @property
    def reused(self) -> bool:
        """The digest came from the previous push's record: the source was not read."""
        return self.present and self.origin == "recorded"


def previous_layers(
    calls: EcrCalls, repository_name: str, registry_id: str, reference: str | None
) -> dict[str, RecordedLayer]:
    """The recorded layers of the image ``reference`` (a tag or a digest) names now, by token.

    Nothing when there is no such image, or when it is not an image manifest.
    """
    if not reference:
        return {}
    image_id = {"imageDigest": reference} if reference.startswith("sha256:") else {"imageTag": reference}
    try:
        found = calls.batch_get_image(
            repository_name, [image_id], registry_id, accepted_media_types=(OCI_MANIFEST, DOCKER_MANIFEST)
        )
    except EcrServiceError as exc:
        hint = " (grant ecr:BatchGetImage on the repository to reuse layers)" if "AccessDenied" in exc.code else ""
        log.warning(
            "Cannot read %s:%s to reuse its layers, so every layer is read and pushed in full: %s%s",
            repository_name,
            reference,
            exc,
            hint,
        )
        return {}
    if not found:
        log.info("No image %s in %s yet: nothing to reuse", reference, repository_name)
        return {}
    recorded = recorded_layers(found[0].manifest)
    log.info("%s:%s records %d layers that a source may reuse", repository_name, reference, len(recorded))
    return recorded


def learn_digests(
    calls: EcrCalls,
    repository_name: str,
    registry_id: str,
    layers: Sequence[LayerSpec],
    *,
    recorded: Mapping[str, RecordedLayer] | None = None,
    hash_first: bool = False,
    verify_reuse: bool = False,
    one_part: int = 0,
    read_concurrency: int = READ_CONCURRENCY,
) -> list[Finding]:
    """One :class:`Finding` per layer, in order (see the module docstring).

    ``one_part``: layers of at most this many bytes are small (0: none is).
    ``read_concurrency``: small layers read at once.
    """
    recorded = recorded or {}
    target = Target(registry_id, calls.region, repository_name)
    known: list[tuple[str, Origin, int] | None] = []
    for layer in layers:
        size = layer.source.size
        if layer.expected_digest is not None:
            known.append((validate_digest(layer.expected_digest, "expected_digest"), "expected", 0))
            continue
        token = layer.identity.token(target, layer.offset, size) if layer.identity else None
        previous = recorded.get(token) if token else None
        if previous is not None and previous.size == size:
            known.append(_verified(layer, previous) if verify_reuse else (previous.digest, "recorded", 0))
        elif (
            size > one_part
            and layer.whole_object
            and isinstance(layer.source, NamedSource)
            and (stored := layer.source.stored_sha256())
        ):
            known.append((stored, "stored", 0))
        else:
            known.append(None)
    held = _availability(calls, repository_name, registry_id, [k[0] for k in known if k])
    findings = [_judge(layer, k, held) for layer, k in zip(layers, known, strict=True)]
    return _hash_unknown(
        calls,
        repository_name,
        registry_id,
        layers,
        findings,
        every=hash_first,
        one_part=one_part,
        read_concurrency=read_concurrency,
    )


def _availability(
    calls: EcrCalls, repository_name: str, registry_id: str, digests: Sequence[str]
) -> dict[str, LayerAvailability]:
    if not digests:
        return {}
    return calls.batch_check_layer_availability(repository_name, sorted(set(digests)), registry_id)


def _is_held(found: LayerAvailability | None, size: int) -> bool:
    return found is not None and found.available and found.size in (None, size)


def _verified(layer: LayerSpec, previous: RecordedLayer) -> tuple[str, Origin, int]:
    """``verify_reuse``: the source hashed, and its record used only when the bytes hash to it."""
    size, digest = hash_and_count(layer.source, HASH_BLOCK)
    if digest == previous.digest:
        return digest, "recorded", size
    log.warning(
        "%s: the layer recorded for this source, %s, is not what it holds now (%s): not reusing it",
        layer.source.name,
        previous.digest,
        digest,
    )
    return digest, "hashed", size


def _judge(layer: LayerSpec, known: tuple[str, Origin, int] | None, held: Mapping[str, LayerAvailability]) -> Finding:
    if known is None:
        return Finding(False)
    digest, origin, bytes_read = known
    found = held.get(digest)
    if _is_held(found, layer.source.size):
        return Finding(True, digest, origin, bytes_read)
    if origin == "recorded":
        status = "missing" if found is None else found.status
        if found is not None and found.available:
            status = f"{found.size} bytes, not {layer.source.size}"
        log.info(
            "%s: the digest recorded last time, %s, is not usable in ECR (%s); reading and uploading it",
            layer.source.name,
            digest,
            status,
        )
        return Finding(False, bytes_read=bytes_read)
    return Finding(False, digest, origin, bytes_read)


def _hash_unknown(
    calls: EcrCalls,
    repository_name: str,
    registry_id: str,
    layers: Sequence[LayerSpec],
    findings: list[Finding],
    *,
    every: bool,
    one_part: int,
    read_concurrency: int,
) -> list[Finding]:
    """Hash the small layers nothing is known of yet (``every``: all such layers), then check
    them with one batched BatchCheckLayerAvailability; skip the upload of those ECR holds."""
    unknown = [i for i, found in enumerate(findings) if not found.present and found.digest is None]
    room = KEEP_BYTES
    small = []
    for index in unknown:
        size = layers[index].source.size
        if size <= min(one_part, room):
            small.append(index)
            room -= size
    hashed: dict[int, tuple[str, int, bytes | None]] = {}
    if small:

        def read(index: int) -> tuple[int, tuple[str, int, bytes | None]]:
            return index, _read_small(layers[index].source)

        workers = max(1, min(read_concurrency, len(small)))
        if workers == 1:
            hashed.update(map(read, small))
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ecr-hash") as pool:
                hashed.update(pool.map(read, small))
        log.info("Read and hashed %d small layers (of at most %d bytes) before any upload", len(small), one_part)
    if every:
        for index in unknown:
            if index not in hashed:
                size, digest = hash_and_count(layers[index].source, HASH_BLOCK)
                hashed[index] = (digest, size, None)
    held = _availability(calls, repository_name, registry_id, [digest for digest, _, _ in hashed.values()])
    result = list(findings)
    for index, (digest, size, data) in hashed.items():
        present = _is_held(held.get(digest), size)
        if present:
            log.info("%s hashes to %s, which ECR holds: not uploading it", layers[index].source.name, digest)
        result[index] = Finding(present, digest, "hashed", bytes_read=size, data=None if present else data)
    return result


def _read_small(source: BlobSource) -> tuple[str, int, bytes]:
    """One read of the whole source (one GET on S3): its digest, its size and its bytes. The source
    is checked after its last byte, as an upload does."""
    size = source.size
    buffer = bytearray(size)
    with source.open_at(0, size) as handle:
        readinto_exact(handle, memoryview(buffer), name=source.name, at=0)
    check_unchanged(source)
    digest = "sha256:" + hashlib.sha256(buffer).hexdigest()
    return digest, size, bytes(buffer)


@dataclass(frozen=True)
class HeldSource:
    """A layer's bytes read whole before its upload, served from memory under its source's name."""

    source: BlobSource
    data: bytes

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def size(self) -> int:
        return len(self.data)

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        handle = io.BytesIO(self.data)
        handle.seek(offset)
        return handle
