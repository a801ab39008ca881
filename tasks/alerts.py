"""Prefect tasks of drift detection: compare two runs, announce each drop as an event.

``compare_estimates`` is pure and cheap: no retries, no cache. ``emit_alert`` talks to
the Prefect API: three retries, because an event lost to a network blip is an alert
nobody sees; the event id is derived from the flow run and the slice (UUID 5), so a
retried emission carries the same id and the server keeps one event.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from sentinel_core.drift import DriftAlert, compare_runs
from sentinel_core.slices import SliceEstimate

#: Name of the Prefect event a drop raises; automations can match on it.
DROP_EVENT = "sentinel.slice.accuracy-dropped"
_NAMESPACE = uuid.UUID("6f1c1a52-2f3e-4d8e-9b1e-5e2b7d0c9a11")


@task(cache_policy=NO_CACHE)
def compare_estimates(
    previous: Sequence[SliceEstimate], current: Sequence[SliceEstimate], min_drop: float
) -> list[DriftAlert]:
    """Drift alerts (largest drop first) between two runs' slice estimates."""
    return list(compare_runs(previous, current, min_drop=min_drop).alerts)


@task(retries=3, retry_delay_seconds=2.0, cache_policy=NO_CACHE)
def emit_alert(alert: DriftAlert, *, flow_run_id: str, by: str) -> str:
    """Emit one drop as a Prefect event on resource ``sentinel.slice.<by>.<slice>``; its id."""
    event_id = uuid.uuid5(_NAMESPACE, f"{flow_run_id}/{by}/{alert.slice}")
    emit_event(
        event=DROP_EVENT,
        resource={
            "prefect.resource.id": f"sentinel.slice.{by}.{alert.slice}",
            "prefect.resource.name": alert.slice,
        },
        related=[
            {
                "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                "prefect.resource.role": "flow-run",
            }
        ],
        payload={**alert.to_dict(), "by": by},
        id=event_id,
    )
    return str(event_id)
