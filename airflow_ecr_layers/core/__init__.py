"""Pure core of airflow-ecr-layers: no Airflow imports live below this package.

Everything here can be used from plain Python (the CLI, benchmarks, tests) with a
botocore ECR client and any seekable binary source.
"""
