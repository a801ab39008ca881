"""Prefect tasks that put a run's results where the operator looks: the Prefect UI.

``publish_monitor_report`` logs the slice table through the run logger (so it shows
in the flow run's logs) and publishes it as a Prefect markdown artifact keyed by the
slice key (``monitor-<by>``: the Artifacts page keeps one history per key, a version
per night), with the alerts and where the MLflow run is. Publishing is a side channel:
a failure to publish is logged as a warning, never fails the night.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.utilities.context import get_task_and_flow_run_ids

from sentinel_core.drift import DriftAlert
from sentinel_core.slices import SliceEstimate

__all__ = ["artifact_key", "monitor_markdown", "publish_monitor_report"]


def artifact_key(kind: str, by: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes) for ``kind`` and ``by``."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{kind}-{by}".lower()).strip("-") or kind


def monitor_markdown(
    slices: Sequence[SliceEstimate],
    alerts: Sequence[DriftAlert],
    *,
    by: str,
    model_version: str,
    n_traces: int,
    mlflow: str,
    confidence: float,
) -> str:
    """The night's slice table, alerts and links as markdown, lowest accuracy first."""
    lines = [
        f"# Accuracy by {by}",
        "",
        f"{n_traces} new traces, estimator version {model_version}, intervals at "
        f"confidence {confidence:g}. MLflow: {mlflow}",
        "",
    ]
    if alerts:
        lines += ["## Alerts", ""]
        lines += [
            f"- **{a.slice}** dropped {a.previous:.3f} -> {a.current:.3f} "
            f"(interval {a.current_low:.3f}-{a.current_high:.3f})"
            for a in alerts
        ]
        lines.append("")
    lines += [
        "| slice | n | estimate | low | high | method | labels | flag |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    lines += [
        f"| {s.slice} | {s.n} | {s.accuracy:.3f} | {s.low:.3f} | {s.high:.3f} | {s.method} | "
        f"{s.n_labelled} | {'too few' if s.too_few else ''} |"
        for s in slices
    ]
    lines += [
        "",
        "method: bootstrap = label-free (widened by the estimator's held-out error); ppi = "
        "prediction-powered with the slice's labels; active = the same, weighted by an active "
        "campaign's inclusion probabilities; wilson = every trace labelled; ppi_recent = "
        "label-free corrected by the slice's recent labels. too few: below min_slice_n.",
    ]
    return "\n".join(lines)


@task(cache_policy=NO_CACHE)
def publish_monitor_report(
    slices: list[SliceEstimate],
    alerts: list[DriftAlert],
    *,
    by: str,
    model_version: str,
    n_traces: int,
    mlflow: str,
    confidence: float,
) -> str | None:
    """Log the slice table and publish it as the ``monitor-<by>`` artifact; its id."""
    logger = get_run_logger()
    logger.info("%d new traces by %s, estimator version %s", n_traces, by, model_version)
    for s in slices:
        logger.info(
            "%s: %.3f [%.3f, %.3f] n=%d %s%s",
            s.slice, s.accuracy, s.low, s.high, s.n, s.method, " (too few)" if s.too_few else "",
        )  # fmt: skip
    for a in alerts:
        logger.warning(
            "ALERT %s: %.3f -> %.3f (interval %.3f-%.3f)",
            a.slice, a.previous, a.current, a.current_low, a.current_high,
        )  # fmt: skip
    markdown = monitor_markdown(
        slices,
        alerts,
        by=by,
        model_version=model_version,
        n_traces=n_traces,
        mlflow=mlflow,
        confidence=confidence,
    )
    task_run_id, flow_run_id = get_task_and_flow_run_ids()
    try:
        # Prefect's create_markdown_artifact() opens a client it never closes (a socket
        # left to the garbage collector); this one is closed on the way out.
        with get_client(sync_client=True) as client:
            artifact = client.create_artifact(
                artifact=ArtifactCreate(
                    type="markdown",
                    key=artifact_key("monitor", by),
                    description=f"slice accuracy by {by} with intervals and alerts",
                    data=markdown,
                    task_run_id=task_run_id,
                    flow_run_id=flow_run_id,
                )
            )
    except Exception as exc:  # a side channel: the night's results are already stored
        logger.warning("could not publish the monitor artifact: %s", exc)
        return None
    return str(artifact.id)
