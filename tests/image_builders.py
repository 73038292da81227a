"""Build real container images with umoci and skopeo (no daemon), and craft hostile archives.

The real tools make the archives the tests push: ``umoci`` builds OCI image layouts
from files made on the fly, ``skopeo copy`` turns them into docker-archive and
oci-archive tarballs. The hostile archives are crafted with :mod:`tarfile`, since no
well-behaved tool would write them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"
MiB = 1024 * 1024


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def require_tools() -> None:
    """Fail (never skip) when the image tools are missing: CI installs them (scripts/test-tools.sh)."""
    missing = [tool for tool in ("umoci", "skopeo") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found on PATH: the image-archive tests build real images with "
            "umoci and skopeo (Debian packages 'umoci' and 'skopeo'; run scripts/test-tools.sh)",
            pytrace=False,
        )


def run(*args: str | Path) -> str:
    command = [str(a) for a in args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def random_bytes(size: int, seed: int) -> bytes:
    """Incompressible, deterministic bytes (gzip must not shrink the layer below a part)."""
    return random.Random(seed).randbytes(size)


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


# --- OCI layouts with umoci ---------------------------------------------------------


def umoci_image(layout: Path, tag: str, layers: list[tuple[Path, str]], *, arch: str, cmd: str) -> None:
    """``umoci new`` + one ``umoci insert`` per (directory, path in image) + ``umoci config``."""
    if not (layout / "oci-layout").exists():
        run("umoci", "init", "--layout", layout)
    image = f"{layout}:{tag}"
    run("umoci", "new", "--image", image)
    for directory, target in layers:
        run("umoci", "insert", "--image", image, directory, target)
    run("umoci", "config", "--image", image, "--config.cmd", cmd, "--architecture", arch, "--os", "linux")


def layout_index(layout: Path) -> dict[str, Any]:
    return json.loads((layout / "index.json").read_bytes())


def layout_blob(layout: Path, digest: str) -> bytes:
    algorithm, _, hex_digest = digest.partition(":")
    return (layout / "blobs" / algorithm / hex_digest).read_bytes()


def layout_ref(layout: Path, ref: str) -> dict[str, Any]:
    """The index.json descriptor with ``org.opencontainers.image.ref.name == ref``."""
    for entry in layout_index(layout)["manifests"]:
        if (entry.get("annotations") or {}).get(REF_NAME) == ref:
            return dict(entry)
    raise KeyError(f"{layout} has no ref {ref!r}")


def write_blob(layout: Path, data: bytes) -> str:
    digest = sha256(data)
    (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
    return digest


def add_platform_index(layout: Path, ref: str, platforms: dict[str, str]) -> dict[str, Any]:
    """Write an OCI image index over ``{existing ref: architecture}`` and name it ``ref`` in index.json.

    Returns the new index.json descriptor. The existing refs stay in index.json too.
    """
    children = []
    for child_ref, arch in platforms.items():
        entry = layout_ref(layout, child_ref)
        children.append(
            {
                "mediaType": entry["mediaType"],
                "digest": entry["digest"],
                "size": entry["size"],
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}, indent=2).encode()
    descriptor = {
        "mediaType": OCI_INDEX,
        "digest": write_blob(layout, data),
        "size": len(data),
        "annotations": {REF_NAME: ref},
    }
    index = layout_index(layout)
    index["manifests"].append(descriptor)
    (layout / "index.json").write_text(json.dumps(index))
    return descriptor


def skopeo_copy(source: str, destination: str, *, all_images: bool = False) -> None:
    run("skopeo", "copy", "--quiet", *(["--all"] if all_images else []), source, destination)


def gzip_copy(path: Path) -> Path:
    """``gzip -k``: keep the tar, write ``path.gz`` next to it."""
    run("gzip", "-k", "-f", path)
    return path.with_name(path.name + ".gz")


# --- reading archives back, for the assertions ------------------------------------------


def tar_members(path: Path) -> dict[str, bytes]:
    """Every regular file of a (possibly gzipped) tar, small archives only."""
    found = {}
    with tarfile.open(path, "r:*") as tar:
        for info in tar:
            if info.isreg():
                handle = tar.extractfile(info)
                assert handle is not None
                found[info.name] = handle.read()
    return found


# --- hostile archives, crafted with tarfile ---------------------------------------------


@dataclass
class TarEntry:
    name: str
    data: bytes = b""
    kind: str = "file"
    """``file``, ``dir``, ``symlink``, ``hardlink``, ``device`` (a character device) or ``fifo``."""
    target: str = ""


@dataclass
class CraftedLayout:
    """A minimal, valid OCI layout (one image, two layers) whose members a test can twist."""

    config: bytes
    layers: list[bytes]
    layer_sizes: list[int] | None = None
    manifest_media_type: str = OCI_MANIFEST
    """The media type index.json's descriptor gives the manifest."""
    body_media_type: str = OCI_MANIFEST
    """The media type the manifest itself says it is."""
    manifest_size: int | None = None
    extra: list[TarEntry] = field(default_factory=list)

    def config_descriptor(self) -> dict[str, Any]:
        return {"mediaType": OCI_CONFIG, "digest": sha256(self.config), "size": len(self.config)}

    def layer_descriptors(self) -> list[dict[str, Any]]:
        sizes = self.layer_sizes or [len(layer) for layer in self.layers]
        return [
            {"mediaType": OCI_LAYER, "digest": sha256(layer), "size": size}
            for layer, size in zip(self.layers, sizes, strict=True)
        ]

    def manifest(self) -> bytes:
        body = {
            "schemaVersion": 2,
            "mediaType": self.body_media_type,
            "config": self.config_descriptor(),
            "layers": self.layer_descriptors(),
        }
        return json.dumps(body).encode()

    def index(self) -> bytes:
        manifest = self.manifest()
        entry = {
            "mediaType": self.manifest_media_type,
            "digest": sha256(manifest),
            "size": len(manifest) if self.manifest_size is None else self.manifest_size,
            "annotations": {REF_NAME: "v1"},
        }
        return json.dumps({"schemaVersion": 2, "manifests": [entry]}).encode()

    def blob_names(self) -> dict[str, bytes]:
        """``blobs/sha256/<hex>`` -> bytes for the manifest, the config and each layer."""
        blobs = {}
        for data in [self.manifest(), self.config, *self.layers]:
            blobs[f"blobs/sha256/{sha256(data).split(':', 1)[1]}"] = data
        return blobs

    def entries(self, blobs: dict[str, bytes] | None = None) -> list[TarEntry]:
        blobs = self.blob_names() if blobs is None else blobs
        return [
            TarEntry("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            TarEntry("index.json", self.index()),
            TarEntry("blobs", kind="dir"),
            TarEntry("blobs/sha256", kind="dir"),
            *(TarEntry(name, data) for name, data in blobs.items()),
            *self.extra,
        ]


def layer_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed layer tarball."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_tar(path: Path, entries: list[TarEntry], *, compress: bool = False) -> Path:
    """A tar of exactly these entries (names as given: ``../`` and ``/`` are kept)."""
    path.write_bytes(tar_bytes(entries, compress=compress))
    return path


def tar_bytes(entries: list[TarEntry], *, compress: bool = False) -> bytes:
    """The bytes of a tar of exactly these entries (gzip-compressed with ``compress``)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.mtime = 0
            if entry.kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif entry.kind in ("symlink", "hardlink"):
                info.type = tarfile.SYMTYPE if entry.kind == "symlink" else tarfile.LNKTYPE
                info.linkname = entry.target
                tar.addfile(info)
            elif entry.kind in ("device", "fifo"):
                info.type = tarfile.CHRTYPE if entry.kind == "device" else tarfile.FIFOTYPE
                info.devmajor, info.devminor = (1, 3) if entry.kind == "device" else (0, 0)
                tar.addfile(info)
            else:
                info.size, info.mode = len(entry.data), 0o644
                tar.addfile(info, io.BytesIO(entry.data))
    data = buffer.getvalue()
    return gzip.compress(data, mtime=0) if compress else data


# --- base images put straight into ECR (for builds on a base) ------------------------

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
BASE_CONFIG = {
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"],
    "Entrypoint": ["/bin/sh", "-c"],
    "Cmd": ["sleep infinity"],
    "WorkingDir": "/work",
    "User": "1000",
    "Labels": {"vendor": "a tiny base", "team": "base"},
}


def base_layer(files: dict[str, bytes]) -> bytes:
    """A busybox-like layer: its folders, then its files; ``bin/*`` executable; mtime 0."""
    buffer = io.BytesIO()
    folders = sorted({"/".join(n.split("/")[:i]) for n in files for i in range(1, n.count("/") + 1)})
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755 if name.startswith("bin/") else 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def put_base_image(
    engine: Any,
    repository: str,
    layers: list[dict[str, bytes]],
    *,
    platform: str = "linux/amd64",
    tags: tuple[str, ...] = (),
    docker: bool = False,
) -> dict[str, Any]:
    """Put a small runnable image into ECR: one tar layer per dict of files (gzip with Docker
    schema 2 media types when ``docker``), a config with Env, Entrypoint, Cmd, WorkingDir,
    User, Labels and history. Returns its descriptor as an index names it."""
    from airflow_ecr_layers.core.oci.manifest import encode_manifest
    from airflow_ecr_layers.core.sources.blobs import BytesSource

    os_name, arch, *variant = platform.split("/")
    descriptors, diff_ids = [], []
    for files in layers:
        tar = base_layer(files)
        data = gzip.compress(tar, mtime=0) if docker else tar
        media_type = DOCKER_LAYER_GZIP if docker else OCI_LAYER
        engine.push_blob(repository, BytesSource(data), media_type=media_type)
        descriptors.append({"mediaType": media_type, "digest": sha256(data), "size": len(data)})
        diff_ids.append(sha256(tar))
    config = {
        "created": "2024-01-01T00:00:00Z",
        "architecture": arch,
        **({"variant": variant[0]} if variant else {}),
        "os": os_name,
        "config": BASE_CONFIG,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"/bin/sh -c #(nop) ADD layer {n}"} for n in range(len(layers))]
        + [{"created_by": '/bin/sh -c #(nop) CMD ["sleep infinity"]', "empty_layer": True}],
    }
    config_bytes = json.dumps(config).encode()
    config_type = DOCKER_CONFIG if docker else OCI_CONFIG
    engine.push_blob(repository, BytesSource(config_bytes), media_type=config_type)
    manifest_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    body = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": sha256(config_bytes), "size": len(config_bytes)},
        "layers": descriptors,
    }
    manifest = encode_manifest(body, manifest_type)
    engine.put_manifest(repository, manifest, list(tags))
    platform_body = {"architecture": arch, "os": os_name, **({"variant": variant[0]} if variant else {})}
    return {"mediaType": manifest_type, "digest": manifest.digest, "size": manifest.size, "platform": platform_body}


def put_base_index(
    engine: Any, repository: str, children: list[dict[str, Any]], tags: tuple[str, ...] = (), *, docker: bool = False
) -> str:
    """Put an index (a Docker manifest list when ``docker``) over ``children``; its digest."""
    from airflow_ecr_layers.core.oci.manifest import encode_manifest

    media_type = DOCKER_MANIFEST_LIST if docker else OCI_INDEX
    index = encode_manifest({"schemaVersion": 2, "mediaType": media_type, "manifests": children}, media_type)
    engine.put_manifest(repository, index, list(tags))
    return str(index.digest)
