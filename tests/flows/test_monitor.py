"""The monitor flow on the real corpus: watermark, drift alerts, MLflow run."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import tasks.tracking
from flows.monitor import monitor
from sentinel_core.runs import last_run
from sentinel_core.store import open_store
from tests.flows.conftest import Env, corpus_records, seed_store

pytestmark = [
    # See tests/flows/test_retrain.py: Prefect's server ORM type under SQLAlchemy 2.1.
    pytest.mark.filterwarnings(
        "ignore:Type object <class 'prefect\\.server\\.:sqlalchemy.exc.SADeprecationWarning"
    ),
]


def _run(env: Env) -> Any:
    engine = open_store(env.db_url)
    try:
        return last_run(engine, slice_key="benchmark")
    finally:
        engine.dispose()


def test_a_first_run_estimates_every_slice_and_logs_a_tagged_mlflow_run(corpus_env: Env) -> None:
    total = len(corpus_records())
    report = monitor(**corpus_env.kwargs())
    assert report["n_traces"] == total
    assert len(report["slices"]) == 14
    assert report["alerts"] == []
    stored = _run(corpus_env)
    assert stored.flow_run_id == report["flow_run_id"]
    assert stored.n_traces == total
    assert stored.watermark() is not None
    client = corpus_env.client()
    run = client.get_run(report["mlflow_run_id"])
    assert run.data.tags["prefect_flow_run_id"] == report["flow_run_id"]
    assert run.data.metrics["n_traces"] == total
    assert run.data.metrics["n_labelled"] == total
    paths = {a.path for a in client.list_artifacts(run.info.run_id, "charts")}
    assert paths == {"charts/slices.png", "charts/reliability.png"}
    table = pd.read_csv(client.download_artifacts(run.info.run_id, "slices.csv"))
    assert len(table) == 14
    assert table["observed"].notna().all()
    # Where the operator looks (issue 17): the slice table as a Prefect artifact.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as prefect:
        found = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["monitor-benchmark"]))
        )
    artifact = next(a for a in found if str(a.id) == report["artifact_id"])
    assert str(artifact.id) == report["artifact_id"]
    assert artifact.type == "markdown"
    assert "| olympiadbench |" in str(artifact.data)
    assert f"{total} new traces" in str(artifact.data)
    assert report["mlflow_run_id"] in str(artifact.data)


def test_a_rerun_without_new_traces_covers_nothing_and_keeps_the_watermark(
    corpus_env: Env,
) -> None:
    monitor(**corpus_env.kwargs())
    before = _run(corpus_env)
    again = monitor(**corpus_env.kwargs())
    assert again["n_traces"] == 0
    # The silent night is logged in MLflow all the same (issue 17), with what it saw.
    silent = corpus_env.client().get_run(again["mlflow_run_id"])
    assert silent.data.metrics["n_traces"] == 0
    assert silent.data.tags["sentinel_note"] == "no new traces since the last run"
    assert again["report"] == ["no new traces since the last run"]
    after = _run(corpus_env)
    assert after.id == before.id
    assert after.watermark() == before.watermark()


def test_the_watermark_advances_only_after_a_run_succeeds(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = corpus_records()[:134], corpus_records()[134:]  # dev, then collected
    seed_store(env.db_url, first, source="batch-1")
    monitor(**env.kwargs())
    after_first = _run(env)
    seed_store(env.db_url, second, source="batch-2")

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected: the tracking server is down")

    monkeypatch.setattr(tasks.tracking, "_open_run", crash)
    with pytest.raises(RuntimeError, match="injected"):
        monitor(**env.kwargs())
    assert _run(env).id == after_first.id  # the failed run left no trace in the store
    monkeypatch.undo()
    redone = monitor(**env.kwargs())
    assert redone["n_traces"] == len(second)
    assert _run(env).watermark() != after_first.watermark()


def test_a_slice_whose_traffic_turns_hard_raises_an_alert_and_an_event(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTINEL_MIN_SLICE_N", "5")  # the corpus has ~12 responses a slice
    records = corpus_records()
    seed_store(env.db_url, records, source="normal")
    monitor(**env.kwargs())
    accuracy = (
        pd.Series({r["id"]: y for r, y in records}, dtype=float)
        .groupby([r["metadata"]["benchmark"] for r, _ in records])
        .mean()
        .sort_values()
    )
    easiest, hard = accuracy.index[-1], list(accuracy.index[:3])
    # Tomorrow, the easiest slice's traffic is made of the three hardest benchmarks' responses.
    shifted = []
    for record, _ in records:
        if record["metadata"]["benchmark"] in hard:
            moved = {**record, "id": f"shifted/{record['id']}"}
            moved["metadata"] = {**record["metadata"], "benchmark": easiest}
            shifted.append(moved)
    engine = open_store(env.db_url)
    from sentinel_core.ingest import ingest_records

    ingest_records(engine, shifted, source="shifted")  # unlabelled: label-free estimate
    engine.dispose()
    report = monitor(**env.kwargs())
    assert [a["slice"] for a in report["alerts"]] == [easiest]
    alert = report["alerts"][0]
    assert alert["current_high"] < alert["previous"]
    assert len(report["events"]) == 1
    assert any(line.startswith(f"ALERT {easiest}") for line in report["report"])
    assert _run(env).alerts == report["alerts"]


def test_new_traffic_borrows_each_slices_recent_labels(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTINEL_RECTIFY_MIN_LABELS", "5")
    monkeypatch.setenv("SENTINEL_RECTIFY_GATE", "0")  # every slice, biased or not
    dev, collected = corpus_records()[:134], corpus_records()[134:]
    seed_store(env.db_url, dev, source="labelled")
    monitor(**env.kwargs())
    engine = open_store(env.db_url)
    from sentinel_core.ingest import ingest_records

    ingest_records(engine, (r for r, _ in collected), source="new")  # no labels
    engine.dispose()
    report = monitor(**env.kwargs())
    assert report["n_traces"] == len(collected)
    per_benchmark = pd.Series([r["metadata"]["benchmark"] for r, _ in dev]).value_counts()
    for s in report["slices"]:
        assert s["method"] == "ppi_recent", s
        assert s["n_labelled"] == min(30, per_benchmark[s["slice"]])
        assert s["low"] <= s["accuracy"] <= s["high"]


def test_rectifying_can_be_switched_off(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_RECTIFY_WINDOW", "0")
    dev, collected = corpus_records()[:134], corpus_records()[134:]
    seed_store(env.db_url, dev, source="labelled")
    monitor(**env.kwargs())
    engine = open_store(env.db_url)
    from sentinel_core.ingest import ingest_records

    ingest_records(engine, (r for r, _ in collected), source="new")
    engine.dispose()
    report = monitor(**env.kwargs())
    assert {s["method"] for s in report["slices"]} == {"bootstrap"}
