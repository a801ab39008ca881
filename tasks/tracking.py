"""Prefect tasks that log monitor and retrain runs to MLflow.

Every run is tagged with the Prefect flow run id (``prefect_flow_run_id``) and its kind
(``sentinel_kind``). A task that finds a run of its kind for the same flow run (a
retried flow run) logs into that run instead of opening another, so retries leave one
MLflow run per flow run. Two retries, five seconds apart: a remote tracking server can
be briefly unreachable; no cache: each call records a different run.

MLflow is driven through ``MlflowClient`` with explicit run ids, not the fluent
active-run stack, so tasks in threads or Dask workers cannot log into each other's runs.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from sentinel_core.charts import estimate_vs_truth_chart, reliability_chart, slice_chart
from sentinel_core.drift import DriftAlert
from sentinel_core.estimator import ServableEstimator, cut_share
from sentinel_core.features import FEATURE_SET_VERSION
from sentinel_core.monitoring import Scored
from sentinel_core.promotion import Decision, HeldOutScores
from sentinel_core.recipe import Recipe
from sentinel_core.schema import Watermark
from sentinel_core.settings import Settings
from sentinel_core.slices import SliceEstimate
from tasks.registry import Tracking, log_estimator, tracking_for

FLOW_RUN_TAG = "prefect_flow_run_id"
KIND_TAG = "sentinel_kind"
MLFLOW_RETRIES = {"retries": 2, "retry_delay_seconds": 5.0, "cache_policy": NO_CACHE}


def _open_run(tracking: Tracking, *, flow_run_id: str, kind: str, tags: Mapping[str, str]) -> str:
    """The MLflow run of this flow run and kind: the existing one, or a new one."""
    client = tracking.client
    found = client.search_runs(
        [tracking.experiment_id],
        filter_string=f"tags.{FLOW_RUN_TAG} = '{flow_run_id}' and tags.{KIND_TAG} = '{kind}'",
        max_results=1,
    )
    if found:
        return str(found[0].info.run_id)
    run = client.create_run(
        tracking.experiment_id,
        run_name=f"{kind}-{flow_run_id[:8]}",
        tags={FLOW_RUN_TAG: flow_run_id, KIND_TAG: kind, **tags},
    )
    return str(run.info.run_id)


def _metric_key(text: str) -> str:
    # MLflow keys allow alphanumerics, _ - . space / ; slice names may hold anything.
    return re.sub(r"[^0-9A-Za-z_\-. /]", "_", text)


def _log(client: Any, run_id: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[
            Metric(_metric_key(k), float(v), now, 0) for k, v in metrics.items() if np.isfinite(v)
        ],
        params=[Param(k, str(v)) for k, v in params.items()],
    )


def _log_figure(client: Any, run_id: str, figure: Any, path: str) -> None:
    client.log_figure(run_id, figure, path)


@task(**MLFLOW_RETRIES)
def log_monitor_run(
    settings: Settings,
    *,
    flow_run_id: str,
    by: str,
    model_version: str,
    watermark: Watermark | None,
    slices: list[SliceEstimate],
    alerts: list[DriftAlert],
    scored: list[Scored],
) -> str:
    """One MLflow run per monitor run: params, metrics, slice table, charts; its run id."""
    tracking = tracking_for(settings)
    client = tracking.client
    run_id = _open_run(tracking, flow_run_id=flow_run_id, kind="monitor", tags={"slice_key": by})
    every = Scored.concat(scored)
    p, y, keys = every.p, every.label, every.slice
    labelled = ~np.isnan(y)
    observed = pd.Series(y[labelled]).groupby(keys[labelled]).mean().to_dict()
    metrics: dict[str, float] = {
        "n_traces": float(p.size),
        "n_slices": float(len(slices)),
        "n_alerts": float(len(alerts)),
        "n_labelled": float(labelled.sum()),
        "mean_p_correct": float(p.mean()) if p.size else float("nan"),
    }
    for s in slices:
        metrics[f"slice/{s.slice}/accuracy"] = s.accuracy
        metrics[f"slice/{s.slice}/low"] = s.low
        metrics[f"slice/{s.slice}/high"] = s.high
    params = {
        "slice_key": by,
        "model_version": model_version,
        "watermark_at": None if watermark is None else watermark.ingested_at.isoformat(),
        "watermark_id": None if watermark is None else watermark.trace_id,
        "confidence": settings.monitor.confidence,
        "min_slice_n": settings.monitor.min_slice_n,
    }
    _log(client, run_id, params, metrics)
    rows = [s.to_dict() for s in slices]
    table = pd.DataFrame(rows)
    if rows:
        table["observed"] = table["slice"].map(observed)
    client.log_text(run_id, table.to_csv(index=False), "slices.csv")
    client.log_dict(run_id, {"alerts": [a.to_dict() for a in alerts]}, "alerts.json")
    if not rows:  # a night without new traffic: the run says so, with no table to draw
        client.set_tag(run_id, "sentinel_note", "no new traces since the last run")
    else:
        _log_figure(
            client,
            run_id,
            slice_chart(rows, observed, title=f"accuracy by {by} (model v{model_version})"),
            "charts/slices.png",
        )
    if labelled.any():
        _log_figure(
            client, run_id, reliability_chart(p[labelled], y[labelled]), "charts/reliability.png"
        )
    client.set_terminated(run_id)
    return run_id


@task(**MLFLOW_RETRIES)
def log_retrain_run(
    settings: Settings,
    *,
    flow_run_id: str,
    by: str,
    recipe: Recipe,
    supervision: dict[str, Any],
    challenger: HeldOutScores | None,
    champion: HeldOutScores | None,
    champion_version: str | None,
    decision: Decision,
    model: tuple[ServableEstimator, float] | None,
) -> dict[str, str | None]:
    """Challenger and champion side by side in one run, with the challenger's model.

    ``model`` is None when the registry already holds a version for this supervision
    set (a rerun): the run then records the evaluation only. ``challenger`` is None when
    its held-out error could not be measured (labels in one slice, ``--force``).
    Returns the run id and the logged model's URI (None without a model).
    """
    tracking = tracking_for(settings)
    client = tracking.client
    run_id = _open_run(
        tracking,
        flow_run_id=flow_run_id,
        kind="retrain",
        tags={"idempotency_key": supervision["key"], "decision": _decision(decision)},
    )
    metrics = {} if challenger is None else challenger.metrics("challenger_")
    if champion is not None:
        metrics.update(champion.metrics("champion_"))
    metrics["n_supervision"] = float(len(supervision["trace_ids"]))
    metrics["n_labelled"] = float(supervision["n_labelled"])
    metrics["tier_threshold"] = float(supervision["threshold"])
    # The default's P(correct) for responses cut at max_tokens (NaN: none pinned).
    cut_p = cut_share(model[0]) if model else float("nan")
    if not math.isnan(cut_p):
        metrics["cut_p"] = cut_p
    params = {
        "method": recipe.method,
        "calibration": recipe.calibration,
        "balanced": recipe.balanced,
        "slice_key": by,
        "sampling": supervision["strategy"],
        "feature_set": FEATURE_SET_VERSION,
        "seed": settings.seed,
        "retrain_folds": settings.training.retrain_folds,
        "promote_margin": settings.training.promote_margin,
        "champion_version": champion_version,
        "easy_slices": ",".join(supervision["easy"]),
        "hard_slices": ",".join(supervision["hard"]),
    }
    _log(client, run_id, params, metrics)
    client.set_tag(run_id, "decision_reason", decision.reason)
    client.log_text(run_id, _side_by_side(challenger, champion).to_csv(index=False), "held_out.csv")
    client.log_dict(
        run_id, supervision | {"trace_ids": sorted(supervision["trace_ids"])}, "supervision.json"
    )
    series = {} if challenger is None else {"challenger": challenger.per_slice}
    if champion is not None:
        series[f"champion v{champion_version}"] = champion.per_slice
    if series:
        _log_figure(client, run_id, estimate_vs_truth_chart(series), "charts/held_out.png")
    if challenger is not None and challenger.probs:
        # Out of slice: every response scored by a model that never saw its slice.
        figure = reliability_chart(challenger.probs, challenger.labels)
        figure.axes[0].set_title(
            f"held-out reliability, {recipe.name} (ECE {challenger.ece:.3f}, "
            f"{challenger.n_labels} responses)",
            fontsize="small",
        )
        _log_figure(client, run_id, figure, "charts/reliability_held_out.png")
    model_uri = None if model is None else log_estimator(tracking, run_id, *model)
    client.set_terminated(run_id)
    return {"run_id": run_id, "model_uri": model_uri}


def _decision(decision: Decision) -> str:
    return "promote" if decision.promote else "keep"


def _side_by_side(challenger: HeldOutScores | None, champion: HeldOutScores | None) -> pd.DataFrame:
    rows = []
    for name, (estimate, truth) in ({} if challenger is None else challenger.per_slice).items():
        row = {"slice": name, "truth": truth, "challenger": estimate}
        if champion is not None and name in champion.per_slice:
            row["champion"] = champion.per_slice[name][0]
        rows.append(row)
    return pd.DataFrame(rows)


@task(**MLFLOW_RETRIES)
def log_acquire_run(
    settings: Settings, *, flow_run_id: str, by: str, plan: dict[str, Any], run: dict[str, Any]
) -> str:
    """One MLflow run per acquire run: what was labelled per slice, what it cost; its id."""
    tracking = tracking_for(settings)
    client = tracking.client
    run_id = _open_run(
        tracking, flow_run_id=flow_run_id, kind="acquire", tags={"campaign_id": run["campaign_id"]}
    )
    budget = run["budget"]
    metrics: dict[str, float] = {
        "labelled": float(run["labelled"]),
        "failed": float(run["failed"]),
        "planned": float(plan["n_labels"]),
        "budget_spent": float(budget["spent"]),
        "budget_reserved": float(budget["reserved"]),
        "budget_total": float(budget["total"]),
    }
    for name, counts in run["per_slice"].items():
        metrics[f"slice/{name}/labelled"] = float(counts["labelled"])
        metrics[f"slice/{name}/correct"] = float(counts["correct"])
        metrics[f"slice/{name}/spent"] = float(counts["spent"])
    params = {
        "slice_key": by,
        "labeler": run["labeler"],
        "budget_name": budget["name"],
        "budget_unit": budget["unit"],
        "stopped": run["stopped"] or "",
    }
    _log(client, run_id, params, metrics)
    rows = [{"slice": name, **counts} for name, counts in run["per_slice"].items()]
    table = pd.DataFrame(rows)
    # What an ML lead reads first (MLflow's preview shows the leftmost columns).
    first = [c for c in ("slice", "labelled", "correct", "spent") if c in table.columns]
    table = table[first + [c for c in table.columns if c not in first]]
    client.log_text(run_id, table.to_csv(index=False), "labelled.csv")
    client.log_dict(run_id, {"plan": plan, "run": run}, "campaign.json")
    client.set_terminated(run_id)
    return run_id


def log_report(settings: Settings, run_id: str, page: str) -> None:
    """Attach the night's HTML report to an MLflow run (``report.html``)."""
    tracking_for(settings).client.log_text(run_id, page, "report.html")
