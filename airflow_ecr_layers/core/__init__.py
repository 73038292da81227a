"""Pure core of airflow-ecr-layers: no Airflow imports live below this package.

Everything here can be used from plain Python (the CLI, benchmarks, tests) with a
botocore ECR client and any seekable binary source. Its rooms, each importing only
the ones listed before it:

* ``errors``, ``limits``: the floor, the project's exceptions and ECR's limits;
* ``sources``: what a blob is read from, and its identity;
* ``oci``: descriptors, manifests, artifact layers, image plans;
* ``archives``: image archives (OCI layout, docker-save) read in place;
* ``ecr``: the ECR calls, references, retries, repositories;
* ``engine``: the upload engine that streams one blob into ECR;
* ``push``: whole artifacts and images, reusing what ECR has;
* ``build``: images built from files, as reproducible tar layers;
* ``readback``: downloads, pulls and copies out of ECR;
* ``waits``: the checks behind the sensors and triggers.
"""
