"""Read image archives without unpacking them: the entry point, :func:`load_image`.

It detects the format and hands the archive to its reader: an OCI image layout
(:mod:`.oci_layout`) or a docker-save tarball (:mod:`.docker_save`). Whatever the
format, the result is an :class:`~airflow_ecr_layers.core.oci.image_plan.ImagePlan`: the blobs to push
(each a BlobSource sliced out of the archive, with its digest, size and media type),
the manifests to put children first, and the top-level manifest that gets the tags.
Everything a push needs is checked before anything is written: paths, links,
missing blobs, declared sizes, media types, and the digests of the metadata read.
"""

from __future__ import annotations

from airflow_ecr_layers.core.archives.docker_save import load_docker_save
from airflow_ecr_layers.core.archives.oci_layout import load_oci_layout
from airflow_ecr_layers.core.archives.reading import ArchiveReader
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.oci.image_plan import ImagePlan


def load_image(reader: ArchiveReader, image_ref: str | None = None, *, gzip_layers: bool = False) -> ImagePlan:
    """Detect the format (OCI layout first, then docker-save) and plan the push.

    ``gzip_layers`` (docker-save only) compresses uncompressed layers on the fly into a
    Docker v2 schema 2 image instead of the default OCI manifest over the layers as they are.
    """
    if "oci-layout" in reader and "index.json" in reader:
        if gzip_layers:
            raise InvalidInputError(
                f"{reader.name} is an OCI image layout, pushed byte for byte; gzip_layers applies to "
                "docker-save tarballs only"
            )
        return load_oci_layout(reader, image_ref)
    if "manifest.json" in reader:
        return load_docker_save(reader, image_ref, gzip_layers=gzip_layers)
    raise InvalidInputError(
        f"{reader.name} is neither an OCI image layout (oci-layout + index.json) nor a docker-save "
        "tarball (manifest.json)"
    )
