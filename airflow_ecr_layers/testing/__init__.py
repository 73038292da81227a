"""Test tools for DAGs that use airflow-ecr-layers: the ``[testing]`` extra.

An embedded ECR+S3 on loopback (:mod:`.server`) whose ECR enforces the real
service's layer-upload contract (:mod:`.strict_ecr`) and serves downloads: layer bytes
kept on disk (:mod:`.blob_store`), served by signed loopback URLs (:mod:`.blob_server`),
what images reference and refer to (:mod:`.ecr_images`), keys of other accounts
(:mod:`.accounts`). Also a fault-injecting proxy (:mod:`.fault_proxy`), the fault
matrix (:mod:`.fault_matrix`), S3 read counts (:mod:`.s3_reads`) and a seeding helper
(:mod:`.seeding`). They patch moto's internal classes, so they need the moto
versions the extra pins::

    pip install 'airflow-ecr-layers[testing]'

Nothing here imports Airflow, and nothing outside this package imports it: the
provider itself runs without moto.
"""

from __future__ import annotations

SUPPORTED_MOTO = ((5, 2, 5), (5, 3, 0))
"""The moto versions whose internals :mod:`.strict_ecr` patches: from the first, below the second."""


def _moto_version() -> tuple[int, ...]:
    try:
        import moto
    except ImportError as exc:
        raise ImportError(
            "airflow_ecr_layers.testing needs moto: install the extra, pip install 'airflow-ecr-layers[testing]'"
        ) from exc
    return tuple(int(part) for part in moto.__version__.split(".")[:3] if part.isdigit())


def check_moto(version: tuple[int, ...]) -> None:
    """Refuse a moto whose internals the strict ECR was not written against."""
    low, high = SUPPORTED_MOTO
    if not low <= version < high:
        shown = ".".join(map(str, version))
        raise ImportError(
            f"airflow_ecr_layers.testing patches moto's ECR internals and supports moto "
            f">={'.'.join(map(str, low))},<{'.'.join(map(str, high))}; this is moto {shown}. "
            "Install the extra's pin: pip install 'airflow-ecr-layers[testing]'"
        )


check_moto(_moto_version())
