"""The ``acquire`` flow: spend a labeling budget on the weakest slices (METHOD §8, steps 2-3).

Composes three tasks: plan a campaign on a monitor run's slice estimates, run it
with the chosen labeler, and log what was labelled and what it cost as an MLflow
run (kind ``acquire``, tagged with the flow run id). ``key`` makes it rerunnable:
the campaign id and the budget name derive from it (default: today's UTC date), so a rerun after a
crash resumes the same campaign against the same budget instead of buying the
night's labels twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from prefect import flow
from prefect.runtime import flow_run

from flows.settings import TIMEOUT_S
from sentinel_core.settings import Settings
from tasks.campaign import plan_labeling, run_labeling
from tasks.models import describe_champion
from tasks.store import pull_last_run_trace_ids
from tasks.tracking import log_acquire_run


@flow(name="acquire", timeout_seconds=TIMEOUT_S["acquire"])
def acquire(
    slices: list[dict[str, Any]],
    by: str = "benchmark",
    labeler: str = "exact",
    budget: float = 20.0,
    unit: str = "labels",
    key: str | None = None,
    max_slices: int | None = None,
    min_per_slice: int | None = None,
    wait_s: float = 0.0,
    traffic: Literal["latest", "all"] = "latest",
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Plan and run a campaign on the weakest of ``slices``; the plan and the run's report.

    Args:
        slices: slice estimates (``SliceEstimate.to_dict()`` rows, e.g. a monitor run's).
        labeler: exact, judge or label-studio.
        budget, unit: the night's budget, in labels or usd.
        key: idempotency key of the night (default: the UTC date).
        wait_s: label-studio only: how long to poll for annotations.
        traffic: which responses may be labelled: ``"latest"``, the traffic the last
            monitor run of ``by`` covered (the traffic ``slices`` describe; every
            stored trace before the first run), or ``"all"``, every stored trace.
            Labels on the latest traffic are the ones that tell the next runs about
            the slice as it is now (``Settings.rectify_window``).
    """
    settings = settings or Settings()
    night = key or f"{datetime.now(UTC):%Y-%m-%d}"
    campaign_id = f"acquire-{night}-{by}-{labeler}"
    champion = describe_champion(settings)
    if champion is None:
        raise RuntimeError(
            "expected a champion estimator to rank slices and score responses, got none: "
            "run the monitor or retrain flow first"
        )
    candidates = pull_last_run_trace_ids(settings.store_url, by) if traffic == "latest" else None
    plan = plan_labeling(
        settings,
        campaign_id=campaign_id,
        budget_name=f"acquire-{night}-{unit}",
        model_version=champion["version"],
        slices=slices,
        by=by,
        labeler=labeler,
        budget=budget,
        unit=unit,
        max_slices=max_slices,
        min_per_slice=min_per_slice,
        trace_ids=candidates,
    )
    report = run_labeling(settings, campaign_id=campaign_id, labeler=labeler, wait_s=wait_s)
    mlflow_run_id = log_acquire_run(
        settings, flow_run_id=str(flow_run.id), by=by, plan=plan, run=report
    )
    return {"campaign_id": campaign_id, "plan": plan, "run": report, "mlflow_run_id": mlflow_run_id}
