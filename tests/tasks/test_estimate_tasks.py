"""The monitor's scoring and estimation tasks, called through ``task.fn``.

A real estimator (ATC on H_max, fitted on the labelled dev corpus) is registered in a
SQLite MLflow store under ``tmp_path``; ``score_chunk`` loads it by version.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sentinel_core.corpus import iter_sample_records
from sentinel_core.ingest import ingest_records
from sentinel_core.monitoring import Scored
from sentinel_core.recipe import Recipe
from sentinel_core.settings import Settings
from sentinel_core.store import add_labels, open_store
from tasks.estimate import estimate_slices, score_chunk
from tasks.training import fit_challenger, sample_supervision
from tests.factories import plant_champion


@pytest.fixture
def served(tmp_path: Path) -> tuple[Settings, str, list[str]]:
    url = f"sqlite:///{tmp_path / 'sentinel.db'}"
    records = list(iter_sample_records())
    engine = open_store(url)
    ingest_records(engine, (r for r, _ in records), source="dev")
    add_labels(engine, ((r["id"], bool(y), None) for r, y in records), labeler="import")
    settings = Settings(
        home=tmp_path, db_url=url, mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"
    )
    recipe = Recipe()
    supervision = sample_supervision.fn(settings, "benchmark", recipe)
    estimator, error = fit_challenger.fn(settings, "benchmark", recipe, supervision["trace_ids"])
    version = plant_champion(settings, estimator, calibration_error=error)
    return settings, version, [r["id"] for r, _ in records]


def test_a_chunk_is_scored_in_its_own_order_as_arrays(
    served: tuple[Settings, str, list[str]],
) -> None:
    settings, version, ids = served
    chunk = ids[10:40][::-1]
    scored = score_chunk.fn(settings, version, chunk, "benchmark")
    assert isinstance(scored.p, np.ndarray)
    assert scored.p.shape == (30,)
    assert ((scored.p >= 0.0) & (scored.p <= 1.0)).all()
    labels = {r["id"]: float(y) for r, y in iter_sample_records()}
    assert scored.label.tolist() == [labels[i] for i in chunk]
    benchmarks = {r["id"]: r["metadata"]["benchmark"] for r, _ in iter_sample_records()}
    assert scored.slice.tolist() == [benchmarks[i] for i in chunk]
    # The same traces in two chunks give the same scores as in one.
    halves = [score_chunk.fn(settings, version, c, "benchmark") for c in (chunk[:7], chunk[7:])]
    joined = Scored.concat(halves)
    np.testing.assert_allclose(joined.p, scored.p, rtol=0, atol=1e-12)
    # The default's ATC votes ride along, and a slice is anchored only once it is whole:
    # the joined chunks anchor exactly as the one chunk does.
    assert scored.votes is not None
    assert joined.votes is not None
    assert np.array_equal(joined.votes, scored.votes)
    np.testing.assert_allclose(joined.anchored().p, scored.anchored().p, rtol=0, atol=1e-9)
    # Responses cut at max_tokens are pinned at the model's cut_p_ (the sample has
    # enough cut labels to learn it); the others carry the rest of ATC's share.
    assert scored.pinned is not None
    assert joined.pinned is not None
    np.testing.assert_array_equal(joined.pinned, scored.pinned)
    anchored = scored.anchored().p
    held = ~np.isnan(scored.pinned)
    assert held.any()
    np.testing.assert_array_equal(anchored[held], scored.pinned[held])
    for key in set(scored.slice.tolist()):
        rows = scored.slice == key
        n, margin = rows.sum(), 0.5 / rows.sum()
        share = min(max(scored.votes[rows].mean(), margin), 1 - margin)
        free = rows & ~held
        if free.any():
            rest = (share * n - scored.pinned[rows & held].sum()) / free.sum()
            expected = min(max(rest, margin), 1 - margin)
            assert anchored[free].mean() == pytest.approx(expected, abs=1e-9)


def test_slices_are_estimated_over_every_chunk(served: tuple[Settings, str, list[str]]) -> None:
    settings, version, ids = served
    chunks = [score_chunk.fn(settings, version, ids[i : i + 50], "benchmark") for i in (0, 50, 100)]
    slices = estimate_slices.fn(settings, chunks, 0.05)
    assert sum(s.n for s in slices) == len(ids[:150])
    assert {s.slice for s in slices} == set(Scored.concat(chunks).slice.tolist())
    accuracies = [s.accuracy for s in slices]
    assert accuracies == sorted(accuracies)  # lowest first
    assert all(s.low <= s.accuracy <= s.high for s in slices)
    assert estimate_slices.fn(settings, [], 0.05) == []


def test_recent_labels_correct_only_the_slices_they_disagree_with(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    p_new = np.r_[rng.uniform(0.6, 0.8, 100), rng.uniform(0.6, 0.8, 100)]
    keys = np.repeat(["biased", "right"], 100)
    new = Scored(p_new, keys, np.full(200, np.nan))
    recent_p = rng.uniform(0.6, 0.8, 60)
    recent_keys = np.repeat(["biased", "right"], 30)
    # "biased": the estimator says 0.7, a fifth are right; "right": labels follow P.
    recent_y = np.r_[rng.random(30) < 0.2, rng.random(30) < recent_p[30:]].astype(float)
    recent = Scored(recent_p, recent_keys, recent_y)

    def methods(**options: float) -> dict[str, str]:
        settings = Settings(home=tmp_path, n_bootstrap=100, **options)
        rows = estimate_slices.fn(settings, [new], 0.0, recent=recent)
        return {row.slice: row.method for row in rows}

    assert methods(rectify_gate=0.95) == {"biased": "ppi_recent", "right": "bootstrap"}
    assert methods() == {"biased": "ppi_recent", "right": "ppi_recent"}  # no gate by default
    assert methods(rectify_window=0) == {"biased": "bootstrap", "right": "bootstrap"}
