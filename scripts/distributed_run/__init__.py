"""The distributed run: the mapped fan-out example DAG under a real scheduler, checked.

``scripts/distributed-run.sh`` runs ``python -m distributed_run`` (with ``scripts/`` on the
path); ``cli`` says what the run does and parses its arguments. The driver's modules:
``constants`` (names and paths), ``progress`` (output lines, ``RunFailed``), ``processes``
(the processes it starts and stops), ``servers`` (PostgreSQL, Redis, the embedded ECR+S3),
``airflow_services`` (Airflow's components and the Celery workers), ``run`` (the steps and the
DAG runs) and ``report`` (timeline, overlap, spread, image checks, the last line). Loaded by
Airflow in the Celery workers: ``celery_node_name`` (``[core] hostname_callable``) and
``spread_barrier`` (a listener, through ``worker_plugins/``, their ``[core] plugins_folder``).
"""
