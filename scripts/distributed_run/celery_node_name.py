"""``[core] hostname_callable`` of the distributed run's Celery workers.

A task instance records the host that ran it (the ``hostname`` column): the supervisor
that Airflow's Celery task starts calls this callable in the Celery pool process. On
separate machines the machine name tells the workers apart; the distributed run starts
both workers on one machine, so it records the Celery node name (``worker-a@host``,
from ``--celery-hostname``) of the task being executed instead, and the machine name
outside a Celery task. The supervisor asks again on every heartbeat, and the API server
refuses a heartbeat whose host differs from the one the task started on: the answer is
the same for the whole task, as it must be.
"""

from __future__ import annotations

import socket


def celery_node_name() -> str:
    """The Celery node name of the task this process is executing, else the machine name."""
    from celery import current_task

    hostname = getattr(getattr(current_task, "request", None), "hostname", None)
    return str(hostname) if hostname else socket.getfqdn()
