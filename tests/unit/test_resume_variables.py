"""The Variable that keeps a task instance's resume records: a name Airflow always takes."""

from __future__ import annotations

import time

from airflow_ecr_layers.core.engine.resume import RECORD_LIFETIME, ResumeRecord
from airflow_ecr_layers.resume_variables import MAX_NAME, PREFIX, _expired, variable_name


def test_a_short_name_says_which_task_instance_it_is_of() -> None:
    assert variable_name("dag", "group.task", "manual__2026-01-01", 3) == (
        "airflow_ecr_layers.resume.dag.group.task.manual__2026-01-01.3"
    )


def test_a_name_over_airflows_limit_is_shortened_stably_and_distinctly() -> None:
    """Before: the 250-character limit made Variable.set fail, and with it the push."""
    long_dag, long_run = "d" * 200, "scheduled__" + "r" * 100
    name = variable_name(long_dag, "task", long_run, -1)
    assert len(name) <= MAX_NAME and name.startswith(PREFIX)
    assert name == variable_name(long_dag, "task", long_run, -1)
    assert name != variable_name(long_dag, "task", long_run, 0)


def test_only_fresh_well_formed_records_are_kept() -> None:
    record = ResumeRecord("1", "r", "u", 5, 10, 5, {"url": "s3://b/k"}, updated=time.time())
    assert not _expired(record.to_json())
    assert _expired({**record.to_json(), "updated": time.time() - RECORD_LIFETIME - 1})
    assert _expired({"not": "a record"})
