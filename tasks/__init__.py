"""Thin Prefect tasks and the MLflow glue of the nightly loop.

This package is where Prefect and MLflow come in (``flows`` imports it first), so
importing it switches their telemetry off before either of them is imported, unless
``SENTINEL_TELEMETRY`` is true (README, "Telemetry"). Both read these variables from
the environment: Prefect when it builds its settings on import (and its ephemeral
server, a subprocess, inherits them), MLflow when it starts its telemetry client on
import. A variable already set in the environment is left as it is.
"""

import os

from pydantic import ValidationError

from sentinel_core.settings import Settings

TELEMETRY_OFF = {
    # Prefect server's heartbeat to sens-o-matic.prefect.io (prefect/server/services/
    # telemetry.py); also the server-side switch of Prefect's SDK analytics.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # MLflow's usage telemetry (mlflow/telemetry/utils.py: is_telemetry_disabled).
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # The common opt-out: Prefect's SDK analytics (prefect/_internal/analytics/enabled.py)
    # and MLflow read it too ("true" is the one spelling both accept).
    "DO_NOT_TRACK": "true",
}


def telemetry_enabled() -> bool:
    """``Settings().telemetry``; false where the settings do not validate.

    A bad ``SENTINEL_*`` value is reported by the command that builds its settings;
    until then nothing is sent.
    """
    try:
        return Settings().telemetry
    except ValidationError:
        return False


def switch_telemetry_off() -> None:
    """Set each variable of ``TELEMETRY_OFF`` the environment does not set, unless enabled."""
    if telemetry_enabled():
        return
    for name, value in TELEMETRY_OFF.items():
        os.environ.setdefault(name, value)


switch_telemetry_off()
