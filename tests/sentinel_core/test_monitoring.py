"""``estimate_scored``: the one path from scored traces to slice estimates."""

from __future__ import annotations

import numpy as np

from sentinel_core.monitoring import Scored, estimate_scored
from sentinel_core.settings import Settings
from sentinel_core.slices import estimate_slices


def _scored() -> Scored:
    rng = np.random.default_rng(3)
    p = rng.uniform(0.2, 0.9, 120)
    keys = np.repeat(np.array(["a", "b", "c"]), 40)
    labels = np.full(120, np.nan)
    labels[:10] = (rng.uniform(size=10) < p[:10]).astype(float)
    return Scored(p, keys, labels)


def test_label_free_is_the_labelled_recipe_without_labels() -> None:
    settings = Settings(n_bootstrap=300)
    scored = _scored()
    free = estimate_scored(scored.without_labels(), calibration_error=0.05, settings=settings)
    direct = estimate_slices(
        scored.p,
        scored.slice,
        calibration_error=0.05,
        confidence=settings.monitor.confidence,
        n_boot=300,
        min_n=settings.monitor.min_slice_n,
        seed=settings.seed,
    )
    assert free == direct
    with_labels = estimate_scored(scored, calibration_error=0.05, settings=settings)
    assert {e.slice: e.method for e in with_labels}["a"] == "ppi"
    assert {e.method for e in free} == {"bootstrap"}


def test_an_unmeasured_held_out_error_gives_the_widest_interval() -> None:
    scored = _scored().without_labels()
    estimates = estimate_scored(
        scored, calibration_error=float("nan"), settings=Settings(n_bootstrap=200)
    )
    assert [(e.low, e.high) for e in estimates] == [(0.0, 1.0)] * 3
