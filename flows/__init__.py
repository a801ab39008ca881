"""Prefect flows of the nightly loop and the ``sentinel`` command line.

Prefect's ephemeral mode (the single-command default) gives its temporary server
20 s to start. On a loaded 2-core machine it has needed more (a CI run and two
simulated months at once timed out), so unless the environment says otherwise it
gets 120 s here, before Prefect reads its settings.

Importing ``tasks`` first switches Prefect's and MLflow's telemetry off, before
anything imports either of them, unless ``SENTINEL_TELEMETRY`` is true
(``tasks/__init__.py``; README, "Telemetry").
"""

import os

import tasks  # noqa: F401 (telemetry off before prefect and mlflow are imported)

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
