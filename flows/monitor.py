"""The ``monitor`` flow: estimate every slice on the traffic since the last run (METHOD §8.1).

Steps: find the champion (when the registry has none and ``bootstrap_champion`` is
set, the ``retrain`` flow trains and promotes one from the stored labels, and fails
with a clear message when there are none: a monitor without a model has nothing to
say); read the previous successful run and its watermark; pull the ids of the traces
ingested after it; featurise the chunks that lack the champion's feature set (ingest
already featurised them, so this is usually a no-op) and score them, chunk by chunk, on
the flow's task runner (threads, or Dask from the ``nightly`` flow); estimate every
slice with its interval (PPI where labelled; a slice without labels in the new
traffic is corrected by the residual of its recent labelled traces, bought on earlier
nights, when it has enough of them: ``Settings.rectify_window``); compare with the
previous run; emit one Prefect event per alert; log an MLflow run tagged with the flow
run id; and only then store the run with its new watermark, so a run that fails
anywhere is redone whole.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows.retrain import retrain
from flows.settings import TIMEOUT_S
from sentinel_core.drift import DriftAlert
from sentinel_core.settings import RunnerSettings, Settings
from sentinel_core.slices import SliceEstimate
from tasks.alerts import compare_estimates, emit_alert
from tasks.estimate import estimate_slices, score_chunk
from tasks.models import describe_champion
from tasks.report import publish_monitor_report
from tasks.store import (
    featurise_chunk,
    pull_recent_labelled,
    pull_trace_ids,
    read_previous_run,
    record_monitor_run,
)
from tasks.tracking import log_monitor_run

THREADS = RunnerSettings.model_fields["thread_workers"].default
#: Most recent labelled traces read to correct the slices (rectify_window counts per slice).
RECENT_LABELS_LIMIT = 20_000


# A bounded pool when the monitor runs alone (its deployment); nightly picks the runner
# from the settings (flows.settings.runner.task_runner).
@flow(
    name="monitor",
    task_runner=ThreadPoolTaskRunner(max_workers=THREADS),
    timeout_seconds=TIMEOUT_S["monitor"],
)
def monitor(
    by: str = "benchmark",
    max_traces: int | None = None,
    bootstrap_champion: bool = True,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Estimate every slice of ``by`` on the new traces; alert on drops; a JSON-ready report.

    Args:
        by: metadata key whose values are the slices.
        settings: the run's settings (default: from the environment, ``Settings()``),
            handed down to every task and subflow.
        max_traces: cover at most this many new traces (the next run takes the rest).
        bootstrap_champion: train a champion with the default method when none exists.
    """
    settings = settings or Settings()
    run_id = str(flow_run.id)
    champion = describe_champion(settings)
    if champion is None and bootstrap_champion:
        retrain(by=by, settings=settings)
        champion = describe_champion(settings)
    if champion is None:
        raise RuntimeError(
            f"expected a champion estimator in the registry at {settings.tracking_uri}, got "
            "none: run the retrain flow (or `sentinel train`), or pass bootstrap_champion=True"
        )
    previous = read_previous_run(settings.store_url, by)
    after = None if previous is None else previous.watermark
    ids, watermark = pull_trace_ids(settings.store_url, after, max_traces)
    if not ids:
        # A silent night is logged too (n_traces 0), so it cannot pass for a missing one;
        # no monitor run is recorded in the store, so the watermark and the estimates the
        # next night compares against stay those of the last night with traffic.
        mlflow_run_id = log_monitor_run(
            settings,
            flow_run_id=run_id,
            by=by,
            model_version=champion["version"],
            watermark=after,
            slices=[],
            alerts=[],
            scored=[],
        )
        return {
            "flow_run_id": run_id,
            "mlflow_run_id": mlflow_run_id,
            "model_version": champion["version"],
            "n_traces": 0,
            "slices": [],
            "alerts": [],
            "report": ["no new traces since the last run"],
        }
    size = settings.monitor.monitor_chunk_size
    chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
    featurised = featurise_chunk.map(settings.store_url, chunks, unmapped(champion["feature_set"]))
    scored = score_chunk.map(
        unmapped(settings),
        unmapped(champion["version"]),
        chunks,
        unmapped(by),
        wait_for=[featurised],
    ).result()
    # The slices' recent labels (bought on earlier traffic) correct the label-free
    # estimates of the new traffic; scored by the same champion.
    recent = None
    if after is not None and settings.monitor.rectify_window > 0:
        recent_ids = pull_recent_labelled(settings.store_url, after, RECENT_LABELS_LIMIT)
        if recent_ids:
            featurise_chunk(settings.store_url, recent_ids, champion["feature_set"])
            recent = score_chunk(settings, champion["version"], recent_ids, by)
    slices = estimate_slices(settings, scored, champion["calibration_error"], recent)
    alerts = compare_estimates(
        () if previous is None else previous.slices, slices, settings.monitor.drift_min_drop
    )
    events = [emit_alert(alert, flow_run_id=run_id, by=by) for alert in alerts]
    mlflow_run_id = log_monitor_run(
        settings,
        flow_run_id=run_id,
        by=by,
        model_version=champion["version"],
        watermark=watermark,
        slices=slices,
        alerts=alerts,
        scored=scored,
    )
    artifact = publish_monitor_report(
        slices,
        alerts,
        by=by,
        model_version=champion["version"],
        n_traces=len(ids),
        mlflow=f"{settings.tracking_uri} (run {mlflow_run_id})",
        confidence=settings.monitor.confidence,
    )
    record_monitor_run(
        settings.store_url,
        flow_run_id=run_id,
        by=by,
        watermark=watermark,
        n_traces=len(ids),
        model_version=champion["version"],
        slices=slices,
        alerts=alerts,
    )
    return {
        "flow_run_id": run_id,
        "mlflow_run_id": mlflow_run_id,
        "model_version": champion["version"],
        "n_traces": len(ids),
        "slices": [s.to_dict() for s in slices],
        "alerts": [a.to_dict() for a in alerts],
        "events": events,
        "artifact_id": artifact,
        "report": _report_lines(slices, alerts),
    }


def _report_lines(slices: list[SliceEstimate], alerts: list[DriftAlert]) -> list[str]:
    lines = [
        f"{s.slice}: {s.accuracy:.3f} [{s.low:.3f}, {s.high:.3f}] n={s.n} "
        f"{s.method}{' (too few)' if s.too_few else ''}"
        for s in slices
    ]
    lines += [
        f"ALERT {a.slice}: {a.previous:.3f} -> {a.current:.3f} "
        f"(interval {a.current_low:.3f}-{a.current_high:.3f})"
        for a in alerts
    ]
    return lines
