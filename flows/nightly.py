"""The ``nightly`` flow: the loop of METHOD §8 as subflows: monitor, acquire, retrain.

``Settings.task_runner`` picks the task runner of the monitor subflow, whose chunked
featurise and score tasks are the heavy part of a large pull (see
``flows.settings.runner.task_runner``: a bounded thread pool, or a local Dask cluster).
Retrain works on the labelled set, which is small, and keeps the default runner.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow

from flows.acquire import acquire as acquire_flow
from flows.monitor import monitor
from flows.retrain import retrain
from flows.settings import TIMEOUT_S, task_runner
from sentinel_core.settings import Settings
from tasks.report import publish_night_report
from tasks.store import read_previous_run


@flow(name="nightly", timeout_seconds=TIMEOUT_S["nightly"])
def nightly(
    by: str = "benchmark",
    method: str = "default",
    max_traces: int | None = None,
    acquire: bool = True,
    labeler: str = "exact",
    budget: float = 20.0,
    unit: str = "labels",
    key: str | None = None,
    max_slices: int | None = None,
    min_per_slice: int | None = None,
    retrain_after: bool = True,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Monitor every slice, acquire labels on the weakest, retrain; the subflows' reports.

    Args:
        by: metadata key whose values are the slices.
        method: estimator method of the retrain step.
        settings: the run's settings (default: from the environment, ``Settings()``),
            handed down to every task and subflow.
        max_traces: cover at most this many new traces in the monitor step.
        acquire: run a labeling campaign on the weakest slices between monitor and retrain.
        labeler, budget, unit: the campaign's labeler (exact, judge, label-studio) and the
            night's budget (in labels or usd).
        key: idempotency key of the night (default: the UTC date): a rerun of the same
            night resumes its campaign and budget instead of buying labels twice.
        max_slices, min_per_slice: priority design: how many slices to label, and the
            labels each gets (default: the settings' campaign_max_slices, 3, and
            campaign_min_per_slice, 5).
        retrain_after: run the retrain step.
    """
    settings = settings or Settings()
    monitored = monitor.with_options(task_runner=task_runner(settings))(
        by=by, settings=settings, max_traces=max_traces
    )
    acquired: dict[str, Any] | None = None
    # No new traffic tonight (or a rerun after the monitor step succeeded): rank the
    # slices by the last recorded run, so a crashed night's campaign still resumes.
    previous = None if monitored["slices"] else read_previous_run(settings.store_url, by)
    slices = monitored["slices"] or (
        [] if previous is None else [s.to_dict() for s in previous.slices]
    )
    if acquire and slices:
        acquired = acquire_flow(
            slices,
            by=by,
            labeler=labeler,
            budget=budget,
            unit=unit,
            key=key,
            max_slices=max_slices,
            min_per_slice=min_per_slice,
            settings=settings,
        )
    retrained = retrain(by=by, method=method, settings=settings) if retrain_after else None
    report = publish_night_report(
        settings,
        by=by,
        night=key or f"{datetime.now(UTC):%Y-%m-%d}",
        monitored=monitored,
        acquired=None if acquired is None else {**acquired, "unit": unit},
        retrained=retrained,
    )
    return {"monitor": monitored, "acquire": acquired, "retrain": retrained, "report": report}
