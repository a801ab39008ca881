"""The store tasks of the nightly loop, called through ``task.fn``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlmodel import Session, delete, select

from sentinel_core.corpus import iter_sample_records
from sentinel_core.features import ALL_SCORE_NAMES, FEATURE_SET_VERSION
from sentinel_core.ingest import ingest_records
from sentinel_core.schema import FeatureRow
from sentinel_core.slices import SliceEstimate
from sentinel_core.store import open_store
from tasks.store import (
    engine_for,
    featurise_chunk,
    pull_trace_ids,
    read_previous_run,
    record_monitor_run,
)


def _store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'sentinel.db'}"
    ingest_records(open_store(url), (r for r, _ in iter_sample_records()), source="dev")
    return url


def test_pulling_after_a_watermark_returns_only_later_traces(tmp_path: Path) -> None:
    url = _store(tmp_path)
    ids, mark = pull_trace_ids.fn(url, None, 100)
    rest, end = pull_trace_ids.fn(url, mark, None)
    assert len(ids) == 100
    assert len(rest) == 34
    assert not set(ids) & set(rest)
    assert pull_trace_ids.fn(url, end, None) == ([], end)


def test_a_recorded_run_is_the_previous_run_and_recording_it_again_changes_nothing(
    tmp_path: Path,
) -> None:
    url = _store(tmp_path)
    assert read_previous_run.fn(url, "benchmark") is None
    ids, mark = pull_trace_ids.fn(url, None, None)
    slices = [SliceEstimate("a", 3, 0.5, 0.1, 0.9, "bootstrap", True)]
    kwargs = {
        "flow_run_id": "run-1",
        "by": "benchmark",
        "watermark": mark,
        "n_traces": len(ids),
        "model_version": "1",
        "slices": slices,
        "alerts": [],
    }
    first = record_monitor_run.fn(url, **kwargs)
    again = record_monitor_run.fn(url, **kwargs)
    previous = read_previous_run.fn(url, "benchmark")
    assert first == again
    assert previous is not None
    assert previous.watermark == mark
    assert previous.slices == tuple(slices)
    assert previous.flow_run_id == "run-1"
    assert read_previous_run.fn(url, "topic") is None


@pytest.mark.parametrize("batch", [500, 3])  # one batch; four batches, the last one short
def test_traces_that_lost_their_features_are_featurised_again_identically(
    tmp_path: Path, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sentinel_core.runs.FEATURISE_BATCH", batch)
    url = _store(tmp_path)
    ids, _ = pull_trace_ids.fn(url, None, 10)
    engine = engine_for(url)
    with Session(engine) as session:
        before = {
            r.trace_id: np.frombuffer(r.values)
            for r in session.exec(select(FeatureRow).where(FeatureRow.trace_id.in_(ids)))  # type: ignore[attr-defined]
        }
        session.exec(delete(FeatureRow).where(FeatureRow.trace_id.in_(ids)))  # type: ignore[attr-defined,call-overload]
        session.commit()
    assert featurise_chunk.fn(url, ids, FEATURE_SET_VERSION) == 10
    assert featurise_chunk.fn(url, ids, FEATURE_SET_VERSION) == 0
    with Session(engine) as session:
        rows = session.exec(select(FeatureRow).where(FeatureRow.trace_id.in_(ids))).all()  # type: ignore[attr-defined]
    assert sorted(r.trace_id for r in rows) == sorted(ids)
    with Session(engine) as session:
        for row in session.exec(select(FeatureRow).where(FeatureRow.trace_id.in_(ids))):  # type: ignore[attr-defined]
            after = np.frombuffer(row.values)
            assert after.shape == (len(ALL_SCORE_NAMES),)
            np.testing.assert_allclose(after, before[row.trace_id], rtol=1e-6, atol=1e-9)
