"""``python -m distributed_run``: what ``scripts/distributed-run.sh`` runs."""

from __future__ import annotations

import sys

from distributed_run.cli import main

sys.exit(main())
