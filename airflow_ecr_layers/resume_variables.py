"""Resume records of one task instance in one Airflow Variable: they survive a task retry.

XCom is cleared between tries, so the operators keep their :class:`~airflow_ecr_layers.core.engine.resume.ResumeRecord`
in a Variable named ``airflow_ecr_layers.resume.<dag_id>.<task_id>.<run_id>.<map_index>``:
every deployment has one (the metadata database, through the task's execution API), the
records are a few hundred bytes per layer in progress, and the Variable is deleted once
the last of them is. A record is saved when an upload starts and then at most every
:data:`SAVE_INTERVAL` seconds: the retry's first part tells it exactly where ECR stopped
(``lastValidByteReceived``), so a record a few parts behind costs a few re-read parts,
never a re-sent layer.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

from airflow.sdk import Variable

from airflow_ecr_layers.core.engine.resume import ResumeRecord

SAVE_INTERVAL = 5.0
"""Seconds between saves of one upload's progress (each save is one Variable write)."""


MAX_NAME = 250
"""The longest Variable key Airflow stores."""
PREFIX = "airflow_ecr_layers.resume."


def variable_name(dag_id: str, task_id: str, run_id: str, map_index: int) -> str:
    """``airflow_ecr_layers.resume.<dag_id>.<task_id>.<run_id>.<map_index>``; a name longer than
    Airflow takes (long ids, a long run id) is the prefix and the sha256 of that name instead."""
    name = f"{PREFIX}{dag_id}.{task_id}.{run_id}.{map_index}"
    if len(name) <= MAX_NAME:
        return name
    return PREFIX + hashlib.sha256(name.encode()).hexdigest()


class VariableResumeStore:
    """All the records of one task instance, as JSON in one Variable."""

    min_interval = SAVE_INTERVAL

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()

    @classmethod
    def for_task(cls, context: Any) -> VariableResumeStore | None:
        """The store of the running task instance; None outside a task (no ``ti`` in the context)."""
        ti = context.get("ti") if hasattr(context, "get") else None
        if ti is None:
            return None
        return cls(variable_name(ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1)))

    def _records(self) -> dict[str, Any]:
        stored = Variable.get(self.name, default=None)
        if not stored:
            return {}
        try:
            found = json.loads(stored)
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    def load(self, key: str) -> ResumeRecord | None:
        with self._lock:
            return ResumeRecord.from_json(self._records().get(key))

    def save(self, key: str, record: ResumeRecord) -> None:
        with self._lock:
            records = {k: v for k, v in self._records().items() if not _expired(v)}
            records[key] = record.to_json()
            Variable.set(self.name, json.dumps(records), description="airflow-ecr-layers: uploads to resume")

    def delete(self, key: str) -> None:
        with self._lock:
            records = self._records()
            if records.pop(key, None) is None:
                return
            if records:
                Variable.set(self.name, json.dumps(records), description="airflow-ecr-layers: uploads to resume")
            else:
                Variable.delete(self.name)


def _expired(stored: object) -> bool:
    """Whether a stored record is unusable: malformed, or older than a record lives."""
    record = ResumeRecord.from_json(stored)
    return record is None or record.expired(time.time())
