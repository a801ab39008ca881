"""Prefect tasks that put a run's results where the operator looks: the Prefect UI.

``publish_monitor_report`` logs the slice table through the run logger (so it shows
in the flow run's logs) and publishes it as a Prefect markdown artifact keyed by the
slice key (``monitor-<by>``: the Artifacts page keeps one history per key, a version
per night), with the alerts and where the MLflow run is. Publishing is a side channel:
a failure to publish is logged as a warning, never fails the night.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.utilities.context import get_task_and_flow_run_ids

from sentinel_core.charts import slice_chart, trend_chart
from sentinel_core.drift import DriftAlert
from sentinel_core.runs import run_history
from sentinel_core.settings import Settings
from sentinel_core.slices import SliceEstimate
from tasks.store import engine_for
from tasks.tracking import log_report

__all__ = [
    "artifact_key",
    "monitor_markdown",
    "night_report_html",
    "publish_monitor_report",
    "publish_night_report",
]


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


def _png(figure: Figure) -> str:
    """A matplotlib figure as an inline ``<img>`` (base64 PNG): the report needs no files."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="chart" src="data:image/png;base64,{encoded}">'


def night_report_html(
    *,
    by: str,
    night: str,
    monitored: Mapping[str, Any],
    acquired: Mapping[str, Any] | None,
    retrained: Mapping[str, Any] | None,
    history: Sequence[tuple[Any, Sequence[SliceEstimate]]],
) -> str:
    """One self-contained HTML page for the night: slices, trend, labels and spend, the
    challenger against the champion, readable without any server."""
    slices = [SliceEstimate(**row) for row in monitored.get("slices", [])]
    alerts = monitored.get("alerts", [])
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Entropy Sentinel: night {html.escape(night)} by {html.escape(by)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
        "td.n{text-align:right}.alert{color:#b00}</style></head><body>",
        f"<h1>Night {html.escape(night)}: accuracy by {html.escape(by)}</h1>",
        f"<p>{int(monitored.get('n_traces', 0))} new traces, estimator version "
        f"{html.escape(str(monitored.get('model_version', '?')))}; MLflow run "
        f"{html.escape(str(monitored.get('mlflow_run_id', '-')))}.</p>",
    ]
    if alerts:
        parts.append("<h2 class='alert'>Alerts</h2><ul>")
        parts += [
            f"<li class='alert'>{html.escape(str(a['slice']))}: {a['previous']:.3f} &rarr; "
            f"{a['current']:.3f} (interval {a['current_low']:.3f}-{a['current_high']:.3f})</li>"
            for a in alerts
        ]
        parts.append("</ul>")
    if slices:
        parts.append(
            "<h2>Slices</h2><table><tr><th>slice</th><th>n</th><th>estimate</th>"
            "<th>interval</th><th>method</th><th>labels</th></tr>"
        )
        parts += [
            f"<tr><td>{html.escape(s.slice)}</td><td class='n'>{s.n}</td>"
            f"<td class='n'>{s.accuracy:.3f}</td><td>[{s.low:.3f}, {s.high:.3f}]</td>"
            f"<td>{s.method}{' (too few)' if s.too_few else ''}</td>"
            f"<td class='n'>{s.n_labelled}</td></tr>"
            for s in slices
        ]
        parts.append("</table>")
        parts.append(_png(slice_chart([s.to_dict() for s in slices], {}, title=f"night {night}")))
    else:
        parts.append("<p>No new traffic tonight.</p>")
    if history:
        parts.append(f"<h2>Trend over the last {len(history)} runs</h2>")
        parts.append(_png(trend_chart(history, title=f"accuracy by {by}, run by run")))
    run = (acquired or {}).get("run") or {}
    if acquired:
        budget = run.get("budget") or {}
        parts.append(
            f"<h2>Labels</h2><p>Campaign {html.escape(str(acquired.get('campaign_id')))}: "
            f"{run.get('labelled', 0)} labelled, spent {budget.get('spent', 0)} of "
            f"{budget.get('total', '?')} ({html.escape(str(acquired.get('unit', '')))}"
            f"{'; stopped: ' + html.escape(str(run['stopped'])) if run.get('stopped') else ''})."
            "</p>"
        )
    if retrained:
        challenger = retrained.get("challenger") or {}
        champion = retrained.get("champion") or {}
        parts.append(
            "<h2>Challenger and champion</h2>"
            f"<p>Version {html.escape(str(retrained.get('version')))}"
            f" ({html.escape(str(retrained.get('verdict')))}): "
            f"{html.escape(str(retrained.get('reason')))}</p><table><tr><th>held out</th>"
            "<th>challenger</th><th>champion</th></tr>"
        )
        for metric in ("median_abs_error", "aee", "auroc", "ece", "brier"):
            if metric in challenger or metric in champion:
                parts.append(
                    f"<tr><td>{metric}</td><td class='n'>{_num(challenger.get(metric))}</td>"
                    f"<td class='n'>{_num(champion.get(metric))}</td></tr>"
                )
        parts.append("</table>")
    parts.append(
        "<p><small>bootstrap = label-free (widened by the estimator's held-out error); "
        "ppi = prediction-powered with the slice's labels; active = the same, weighted by "
        "an active campaign's inclusion probabilities; wilson = every trace labelled; "
        "ppi_recent = label-free corrected by the slice's recent labels.</small></p>"
        "</body></html>"
    )
    return "\n".join(parts)


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"


@task(cache_policy=NO_CACHE)
def publish_night_report(
    settings: Settings,
    *,
    by: str,
    night: str,
    monitored: dict[str, Any],
    acquired: dict[str, Any] | None,
    retrained: dict[str, Any] | None,
) -> str | None:
    """Write the night's HTML report under ``<home>/reports/`` and log it to the monitor's
    MLflow run; its path. A side channel: a failure is a warning, not a failed night."""
    logger = get_run_logger()
    try:
        history = run_history(engine_for(settings.store_url), slice_key=by)
        page = night_report_html(
            by=by,
            night=night,
            monitored=monitored,
            acquired=acquired,
            retrained=retrained,
            history=history,
        )
        folder = settings.home / "reports"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"night-{artifact_key(night, by)}.html"
        path.write_text(page, encoding="utf-8")
        if monitored.get("mlflow_run_id"):
            log_report(settings, str(monitored["mlflow_run_id"]), page)
    except Exception as exc:  # the night's results are stored already
        logger.warning("could not write the night's report: %s", exc)
        return None
    logger.info("night report: %s", path)
    return str(path)
