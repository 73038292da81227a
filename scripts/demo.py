"""The main job, end to end: an example DAG pushes an artifact from S3 into ECR.

By default everything runs here: an embedded ECR+S3 (moto, strict about ECR's real
contract) on 127.0.0.1, a throwaway Airflow home with a sqlite metadata DB, and a
seeded artifact whose size is not a multiple of the part size. The DAG runs through
``dag.test()``; what was pushed is then read back from ECR and printed.

    .venv/bin/python scripts/demo.py [--dag example_ecr_layers_lifecycle] [--size BYTES]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from airflow_ecr_layers.core.limits import MiB

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "example_dags"
BUCKET, KEY, REPOSITORY, TAG = "artifacts", "models/model.bin", "demo/models", "v1"


def _prepare_airflow_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="ecr-layers-demo-"))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        }
    )
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL)
    return home


def _seed(s3: Any, size: int) -> str:
    """The demo artifact in S3; returns its digest."""
    from airflow_ecr_layers.testing.seeding import seed_object

    s3.create_bucket(Bucket=BUCKET)
    return seed_object(s3, BUCKET, KEY, size)


def _run_dag(dag_id: str, conf: dict[str, Any]) -> str:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    if bag.import_errors:
        raise SystemExit(f"example DAGs failed to import: {bag.import_errors}")
    dag = bag.get_dag(dag_id)
    if dag is None:
        raise SystemExit(f"no DAG {dag_id!r} in {DAGS}; have {sorted(bag.dags)}")
    run = dag.test(run_conf=conf)
    return str(getattr(run, "state", "unknown"))


def _read_back(ecr: Any) -> dict[str, Any]:
    """What ECR holds under the tag: manifest digest, and each layer's digest and stored size."""
    image = ecr.batch_get_image(repositoryName=REPOSITORY, imageIds=[{"imageTag": TAG}])["images"][0]
    manifest_bytes = image["imageManifest"].encode("utf-8")
    manifest = json.loads(manifest_bytes)
    digests = [layer["digest"] for layer in manifest["layers"]]
    found = ecr.batch_check_layer_availability(repositoryName=REPOSITORY, layerDigests=digests)["layers"]
    sizes = {layer["layerDigest"]: (layer["layerAvailability"], layer["layerSize"]) for layer in found}
    return {
        "repository": REPOSITORY,
        "registry_id": image["registryId"],
        "tags": [TAG],
        "image_digest": image["imageId"]["imageDigest"],
        "manifest_sha256": "sha256:" + hashlib.sha256(manifest_bytes).hexdigest(),
        "artifact_type": manifest.get("artifactType"),
        "layers": [
            {
                "digest": layer["digest"],
                "size_in_manifest": layer["size"],
                "availability": sizes.get(layer["digest"], ("MISSING", None))[0],
                "size_in_ecr": sizes.get(layer["digest"], ("MISSING", None))[1],
                "title": layer.get("annotations", {}).get("org.opencontainers.image.title"),
            }
            for layer in manifest["layers"]
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dag", default="example_ecr_layers_lifecycle", help="example DAG id to run")
    parser.add_argument("--size", type=int, default=23 * MiB + 12_345, help="artifact size in bytes")
    args = parser.parse_args(argv)

    _prepare_airflow_home()
    import boto3

    from airflow_ecr_layers.testing.server import EmbeddedAws

    with EmbeddedAws() as aws:
        os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
            {
                "conn_type": "aws",
                "login": "demo",
                "password": "demo",
                "extra": {"endpoint_url": aws.endpoint_url, "region_name": aws.region},
            }
        )
        clients = {
            "endpoint_url": aws.endpoint_url,
            "region_name": aws.region,
            "aws_access_key_id": "demo",
            "aws_secret_access_key": "demo",
        }
        s3, ecr = boto3.client("s3", **clients), boto3.client("ecr", **clients)
        source_digest = _seed(s3, args.size)
        ecr.create_repository(repositoryName=REPOSITORY)
        print(
            f"demo: embedded ECR+S3 at {aws.endpoint_url}; seeded s3://{BUCKET}/{KEY} "
            f"({args.size} bytes, {source_digest})",
            flush=True,
        )
        state = _run_dag(args.dag, {"source": f"s3://{BUCKET}/{KEY}", "repository": REPOSITORY, "tag": TAG})
        if state != "success":
            print(f"demo: DAG run ended {state}", file=sys.stderr)
            return 1
        pushed = _read_back(ecr)

    checks = {
        "image digest is sha256 of the stored manifest": pushed["image_digest"] == pushed["manifest_sha256"],
        "layer digest is sha256 of the source": pushed["layers"][0]["digest"] == source_digest,
        "layer stored with the source's size": pushed["layers"][0]["size_in_ecr"] == args.size,
    }
    print("\n=== Pushed (read back from ECR) ===")
    print(json.dumps(pushed, indent=2))
    for what, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
