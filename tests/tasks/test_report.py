"""The night's report as the Prefect UI shows it."""

from __future__ import annotations

from sentinel_core.drift import DriftAlert
from sentinel_core.slices import SliceEstimate
from tasks.report import artifact_key, monitor_markdown


def test_an_artifact_key_is_made_of_what_prefect_accepts() -> None:
    assert artifact_key("monitor", "benchmark") == "monitor-benchmark"
    assert artifact_key("monitor", "Customer ID/EU") == "monitor-customer-id-eu"


def test_the_markdown_lists_alerts_first_then_every_slice_with_its_interval() -> None:
    slices = [
        SliceEstimate("r1", 40, 0.21, 0.05, 0.37, "ppi_recent", False, 12),
        SliceEstimate("r2", 12, 0.80, 0.60, 0.95, "bootstrap", True),
    ]
    alert = DriftAlert("r1", 0.62, 0.21, 0.05, 0.37, 0.41, 32, 40, "ppi_recent")
    text = monitor_markdown(
        slices, [alert], by="route", model_version="7", n_traces=52,
        mlflow="sqlite:///m.db (run abc)", confidence=0.9,
    )  # fmt: skip
    assert text.index("## Alerts") < text.index("| slice |")
    assert "**r1** dropped 0.620 -> 0.210 (interval 0.050-0.370)" in text
    assert "| r1 | 40 | 0.210 | 0.050 | 0.370 | ppi_recent | 12 |  |" in text
    assert "| r2 | 12 | 0.800 | 0.600 | 0.950 | bootstrap | 0 | too few |" in text
    assert "52 new traces, estimator version 7, intervals at confidence 0.9" in text
    assert "ppi_recent = " in text  # the legend


def test_the_night_report_is_one_page_with_alerts_labels_and_the_promotion_decision() -> None:
    from datetime import datetime

    from tasks.report import night_report_html

    slices = [
        SliceEstimate("r1", 40, 0.21, 0.05, 0.37, "ppi_recent", False, 12),
        SliceEstimate("r2", 12, 0.80, 0.60, 0.95, "bootstrap", True),
    ]
    alert = DriftAlert("r1", 0.62, 0.21, 0.05, 0.37, 0.41, 32, 40, "ppi_recent")
    page = night_report_html(
        by="route",
        night="2026-12-03",
        monitored={
            "n_traces": 52, "model_version": "7", "mlflow_run_id": "abc",
            "slices": [s.to_dict() for s in slices], "alerts": [alert.to_dict()],
        },
        acquired={
            "campaign_id": "acquire-2026-12-03-route-exact", "unit": "labels",
            "run": {"labelled": 12, "budget": {"spent": 12.0, "total": 12.0}, "stopped": None},
        },
        retrained={
            "version": "8", "verdict": "kept-challenger", "reason": "does not beat v7",
            "challenger": {"median_abs_error": 0.2, "ece": 0.1},
            "champion": {"median_abs_error": 0.15, "ece": 0.2},
        },
        history=[(datetime(2026, 12, 2, 2), slices), (datetime(2026, 12, 3, 2), slices)],
    )  # fmt: skip
    assert page.startswith("<!doctype html>")
    assert "r1: 0.620 &rarr; 0.210" in page
    assert "acquire-2026-12-03-route-exact: 12 labelled, spent 12.0 of 12.0 (labels)" in page
    assert "Version 8 (kept-challenger): does not beat v7" in page
    assert "<td>median_abs_error</td><td class='n'>0.200</td><td class='n'>0.150</td>" in page
    assert page.count("data:image/png;base64,") == 2
    quiet = night_report_html(
        by="route", night="n", monitored={"n_traces": 0}, acquired=None, retrained=None,
        history=[],
    )  # fmt: skip
    assert "No new traffic tonight." in quiet
