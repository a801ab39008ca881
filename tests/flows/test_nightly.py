"""The nightly flow: monitor then retrain as subflows, on threads or on a Dask cluster."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flows.nightly import nightly
from tests.flows.conftest import Env, corpus_records

pytestmark = [
    # See tests/flows/test_retrain.py: Prefect's server ORM type under SQLAlchemy 2.1.
    pytest.mark.filterwarnings(
        "ignore:Type object <class 'prefect\\.server\\.:sqlalchemy.exc.SADeprecationWarning"
    ),
]

MODEL = "entropy-sentinel-estimator"


def test_nightly_monitors_then_retrains_and_a_second_night_adds_no_version(
    corpus_env: Env,
) -> None:
    first = nightly(**corpus_env.kwargs(), acquire=False)
    assert first["monitor"]["n_traces"] == len(corpus_records())
    assert first["acquire"] is None
    # The monitor bootstrapped the champion through retrain; the nightly retrain drew
    # the same supervision set, hence the same idempotency key: no second version.
    assert first["retrain"]["new_version"] is False
    assert first["retrain"]["version"] == first["monitor"]["model_version"] == "1"
    # The night's report: one self-contained HTML file, also in the monitor's MLflow run.
    page = Path(first["report"]).read_text(encoding="utf-8")
    assert "<h1>Night " in page
    assert "olympiadbench" in page
    assert page.count("data:image/png;base64,") == 2  # the slices, the trend
    assert "Challenger and champion" in page
    assert "http" not in page.replace("https://", "").replace("http://", "")  # no links out
    logged = corpus_env.client().download_artifacts(
        first["monitor"]["mlflow_run_id"], "report.html"
    )
    assert Path(logged).read_text(encoding="utf-8") == page
    second = nightly(**corpus_env.kwargs(), acquire=False)
    assert second["monitor"]["n_traces"] == 0
    assert second["retrain"]["version"] == "1"
    assert len(corpus_env.client().search_model_versions(f"name='{MODEL}'")) == 1


def test_the_acquire_step_labels_the_weakest_slices_once_per_night(
    corpus_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The priority design (the weakest slices first); the active design, the default,
    # is tested in tests/flows/test_acquire.py.
    monkeypatch.setenv("SENTINEL_CAMPAIGN_DESIGN", "priority")
    options = {"acquire": True, "labeler": "exact", "budget": 12, "key": "2026-11-01"}
    first = nightly(**corpus_env.kwargs(), **options, min_per_slice=4, retrain_after=False)
    acquired = first["acquire"]
    assert acquired["campaign_id"] == "acquire-2026-11-01-benchmark-exact"
    assert acquired["run"]["labelled"] == 12
    assert acquired["run"]["budget"]["spent"] == 12
    accuracies = sorted(s["accuracy"] for s in first["monitor"]["slices"])
    median = accuracies[len(accuracies) // 2]
    assert all(s["accuracy"] <= median for s in acquired["plan"]["slices"])
    logged = corpus_env.client().get_run(acquired["mlflow_run_id"])
    assert logged.data.metrics["labelled"] == 12
    assert logged.data.metrics["budget_spent"] == 12
    assert logged.data.params["labeler"] == "exact"
    client = corpus_env.client()
    table = pd.read_csv(
        client.download_artifacts(logged.info.run_id, "labelled.csv", str(tmp_path))
    )
    assert list(table.columns[:4]) == ["slice", "labelled", "correct", "spent"]
    assert table["labelled"].sum() == 12
    assert set(table.loc[table["labelled"] > 0, "slice"]) == {
        s["slice"] for s in acquired["plan"]["slices"] if s["labels"] > 0
    }
    # The same night again (a rerun after a crash, say): the campaign resumes, buys nothing.
    again = nightly(**corpus_env.kwargs(), **options, min_per_slice=4, retrain_after=False)
    assert again["acquire"]["plan"]["replanned"] is False
    assert again["acquire"]["run"]["labelled"] == 0
    assert again["acquire"]["run"]["budget"]["spent"] == 12


def _monitor_a_copy(corpus_template: Path, home: Path) -> dict[str, Any]:
    """The nightly's monitor report over a fresh copy of the labelled corpus in ``home``."""
    home.mkdir()
    shutil.copy(corpus_template, home / "sentinel.db")
    env = Env(home, f"sqlite:///{home / 'sentinel.db'}", f"sqlite:///{home / 'mlflow.db'}")
    return dict(nightly(**env.kwargs(), acquire=False, retrain_after=False)["monitor"])


def test_the_dask_task_runner_gives_the_same_estimates_as_threads(
    corpus_env: Env, corpus_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = nightly(**corpus_env.kwargs(), acquire=False, retrain_after=False)["monitor"]
    monkeypatch.setenv("SENTINEL_TASK_RUNNER", "dask")
    monkeypatch.setenv("SENTINEL_DASK_WORKERS", "2")
    monkeypatch.setenv("SENTINEL_MONITOR_CHUNK_SIZE", "50")  # 4 chunks over 2 workers
    dask = _monitor_a_copy(corpus_template, tmp_path / "dask-home")
    assert dask["n_traces"] == threads["n_traces"] == len(corpus_records())
    assert dask["slices"] == threads["slices"]


def test_a_running_dask_cluster_takes_the_work_when_given_its_address(
    corpus_env: Env, corpus_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import LocalCluster

    threads = nightly(**corpus_env.kwargs(), acquire=False, retrain_after=False)["monitor"]
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        before = cluster.scheduler.transition_counter
        monkeypatch.setenv("SENTINEL_TASK_RUNNER", "dask")
        monkeypatch.setenv("SENTINEL_DASK_ADDRESS", cluster.scheduler_address)
        monkeypatch.setenv("SENTINEL_MONITOR_CHUNK_SIZE", "100")  # 3 chunks
        remote = _monitor_a_copy(corpus_template, tmp_path / "cluster-home")
        assert cluster.scheduler.transition_counter > before  # the cluster ran the tasks
        assert len(cluster.workers) == 1  # no cluster of its own was started in there
    assert remote["n_traces"] == len(corpus_records())
    assert remote["slices"] == threads["slices"]
