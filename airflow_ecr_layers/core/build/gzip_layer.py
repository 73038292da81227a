"""A tar layer gzip-compressed, deterministically: the same files give the same bytes, anywhere.

:class:`GzipLayer` is the gzip compression of a :class:`~.tar_stream.TarLayer`, as a source
the engine uploads like any other:

* **Deterministic stream.** A fixed gzip header (:data:`.FIXED_GZIP_HEADER`:
  no file name, mtime 0, no extra flags, OS byte 255 whatever the platform), raw deflate by
  zlib at :data:`GZIP_LEVEL` (window 32 KiB, memory level 8, default strategy), and the
  CRC-32/size trailer; one gzip member, no flush points.
* **One measuring pass.** ECR's upload calls need no total size, but the engine plans its parts
  (and a resume record its offsets) over a known size, and the manifest names the compressed
  digest and size. So :meth:`GzipLayer.measure` reads the files once, tar-ing and compressing
  them, and hashes both the tar bytes (the ``diff_id``) and the compressed bytes (the layer's
  digest) in that same pass; nothing is kept but zlib's state and one block. The upload then
  compresses again, streamed while the files stream, and the engine checks the compressed bytes
  against the measured digest before it completes the upload: a file that changed between the
  two passes fails the layer, nothing tagged.
* **Seeking** (a resume, a restart) re-makes the stream from byte 0 and drops what comes
  before the offset: correct for any offset, paid for in reading and compressing again.

The cost against an uncompressed layer: every file is read twice (measure, upload) and
compressed twice. What it buys: a known digest before the upload, so a layer ECR already holds
is not sent again (its availability is checked first), and smaller pulls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from airflow_ecr_layers.core.archives.gzip_streams import FixedGzip, GzipSource
from airflow_ecr_layers.core.build.tar_stream import TarLayer
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import MiB
from airflow_ecr_layers.core.sources.identity import SourceIdentity

GZIP_LEVEL = 6
"""zlib's level for gzip layers (gzip's and docker's default)."""
COMPRESSIONS = (None, "gzip")
"""What a build's ``compress`` takes: None (uncompressed tar layers) or ``"gzip"``."""
MEASURE_BLOCK = MiB


def check_compress(compress: object) -> str | None:
    if compress in ("", "none"):
        return None
    if compress not in COMPRESSIONS:
        raise InvalidInputError(f"compress must be None or 'gzip', got {compress!r}")
    return compress


@dataclass(frozen=True)
class Measured:
    size: int
    """Bytes of the compressed layer."""
    digest: str
    """The compressed layer's digest (the manifest's)."""
    diff_id: str
    """The tar's digest (the config's ``rootfs.diff_ids``)."""


class GzipLayer(GzipSource):
    """The deterministic gzip compression of ``tar``; ``size``, ``digest`` and ``diff_id`` cost
    one pass over the files (:meth:`measure`)."""

    def __init__(self, tar: TarLayer, level: int = GZIP_LEVEL) -> None:
        super().__init__(tar, level, fixed=True)
        self.tar = tar
        self._both: Measured | None = None

    @property
    def name(self) -> str:
        return f"{self.tar.name} (gzip)"

    @property
    def files(self) -> int:
        return self.tar.files

    def measured(self) -> Measured:
        """The compressed size and digest and the tar's digest, from one pass over the files."""
        if self._both is None:
            compressor = FixedGzip(self.level)
            tar_hash, gzip_hash, size = hashlib.sha256(), hashlib.sha256(), 0
            with self.tar.open_at(0, MEASURE_BLOCK) as handle:
                while chunk := handle.read(MEASURE_BLOCK):
                    tar_hash.update(chunk)
                    out = compressor.compress(chunk)
                    gzip_hash.update(out)
                    size += len(out)
            out = compressor.flush()
            gzip_hash.update(out)
            size += len(out)
            self.tar.check_unchanged()
            self._both = Measured(size, "sha256:" + gzip_hash.hexdigest(), "sha256:" + tar_hash.hexdigest())
            self._measured = (size, self._both.digest)
        return self._both

    def measure(self) -> tuple[int, str]:
        found = self.measured()
        return found.size, found.digest

    @property
    def diff_id(self) -> str:
        return self.measured().diff_id

    def identity(self) -> SourceIdentity | None:
        """The tar's identity with the compression in it, for a resume record (never in the image)."""
        tar = self.tar.identity()
        if tar is None:
            return None
        return SourceIdentity(f"gzip-{self.level}:{tar.url}", self.size)

    def check_unchanged(self) -> None:
        self.tar.check_unchanged()


def measure_layers(layers: Sequence[GzipLayer], max_concurrency: int) -> list[Measured]:
    """Measure every layer, ``max_concurrency`` at once (each a pass over its files)."""
    if max_concurrency <= 1 or len(layers) <= 1:
        return [layer.measured() for layer in layers]
    with ThreadPoolExecutor(max_workers=min(max_concurrency, len(layers)), thread_name_prefix="gzip-measure") as pool:
        return list(pool.map(GzipLayer.measured, layers))
