"""The one place that papers over API differences between the Airflow 3.x versions this provider supports.

pyproject's floors (apache-airflow 3.0.0, the amazon provider 9.5.0) are tested by ``scripts/test-floor.sh``
against ``requirements/floor.lock``; the newest versions by the main lock. Import these names from here, not
from Airflow, wherever the two differ:

- Task exceptions (``AirflowException`` ... ``TaskDeferred``): ``airflow.sdk.exceptions`` from Airflow 3.1 on,
  where ``airflow.exceptions`` warns that they moved; Airflow 3.0 has them in ``airflow.exceptions`` only.
- ``conf``: ``airflow.sdk.conf`` from Airflow 3.1 on; ``airflow.configuration.conf`` on 3.0.
"""

from __future__ import annotations

try:
    from airflow.sdk import conf
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )
except ImportError:  # Airflow 3.0
    from airflow.configuration import conf  # type: ignore[assignment]
    from airflow.exceptions import (  # type: ignore[no-redef]
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "TaskDeferred",
    "conf",
]
