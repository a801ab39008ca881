"""``estimate_scored``: the one path from scored traces to slice estimates."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_the_defaults_votes_anchor_the_estimate_and_drive_its_recent_correction() -> None:
    """With ATC votes (the default), the slice estimate is the votes' share and the recent
    residual is ATC's (votes against labels), not that of P anchored among a few labels."""
    rng = np.random.default_rng(5)
    settings = Settings(n_bootstrap=300, rectify_window=20, rectify_min_labels=5)
    p = rng.uniform(0.2, 0.9, 80)
    votes = (rng.uniform(size=80) < 0.6).astype(float)
    keys = np.array(["a"] * 80)
    new = Scored(p, keys, np.full(80, np.nan), votes=votes)
    estimate = estimate_scored(new, calibration_error=0.05, settings=settings)[0]
    assert estimate.method == "bootstrap"
    assert estimate.accuracy == pytest.approx(votes.mean(), abs=1e-9)
    # Recent labels say ATC is wrong where it voted: residual mean(y - votes) = -1/3.
    recent_votes = np.array([1.0] * 8 + [0.0] * 4)
    recent_labels = np.array([0.0] * 8 + [1.0] * 4)
    recent = Scored(
        rng.uniform(0.3, 0.7, 12), np.array(["a"] * 12), recent_labels, votes=recent_votes
    )
    fixed = estimate_scored(new, calibration_error=0.05, settings=settings, recent=recent)[0]
    assert fixed.method == "ppi_recent"
    residual = float(np.mean(recent_labels - recent_votes))
    assert fixed.accuracy == pytest.approx(votes.mean() + residual, abs=0.02)
    assert fixed.high - fixed.low > 0.1  # the residual's noise is measured, not [0, 0]
    # All recent labels wrong: the votes' residual (0 or -1) carries its noise; the P of
    # 12 traces anchored among themselves would vary little and give a narrow interval.
    silent = Scored(
        rng.uniform(0.3, 0.7, 12), np.array(["a"] * 12), np.zeros(12), votes=recent_votes
    )
    wrong = estimate_scored(new, calibration_error=0.05, settings=settings, recent=silent)[0]
    assert wrong.method == "ppi_recent"
    assert wrong.high > 0.15  # anchored P here would give about [0, 0.05]
