"""The spread barrier as an Airflow listener plugin: the distributed run's Celery workers (and
nothing else) have this folder as their ``[core] plugins_folder``. ``on_task_instance_running``
runs in the task process once the task instance is marked running; Airflow swallows a
listener's exceptions, so this one logs its own and lets the task go on."""

from __future__ import annotations

from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin
from distributed_run.spread_barrier import hold_until_every_worker_arrives, log


class SpreadBarrierListener:
    @hookimpl
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
        try:
            hold_until_every_worker_arrives(task_instance)
        except Exception:
            log.exception("spread barrier: failed; the task goes on without it")


class SpreadBarrierPlugin(AirflowPlugin):
    name = "distributed_run_spread_barrier"
    listeners = [SpreadBarrierListener()]
