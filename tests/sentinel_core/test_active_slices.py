"""Slice estimates with labels bought by an active campaign (method ``active``).

Synthetic slices with known truth: the campaign plans with ``acquisition.plan``
(active design), its labels are weighted by the inclusion probabilities the plan
stored, and labels the slice had before count as known.
"""

from __future__ import annotations

import numpy as np
import pytest

from sentinel_core.acquisition import plan
from sentinel_core.active import active_mean_interval
from sentinel_core.slices import SliceEstimate, estimate_slices_with_labels


def _campaign(
    rng: np.random.Generator, *, n: int = 300, known: int = 20, budget: int = 30
) -> tuple[np.ndarray, ...]:
    """One slice: P(correct), true outcomes, and the labels/pi/population a campaign leaves."""
    p = rng.beta(1.5, 1.5, n)
    truth = (rng.random(n) < p).astype(float)
    labels = np.full(n, np.nan)
    labels[:known] = truth[:known]  # labelled before the campaign: not in its population
    ids = np.array([f"t{i}" for i in range(n)])
    keys = np.array(["s"] * n)
    estimate = SliceEstimate("s", n, float(p.mean()), 0.3, 0.7, "bootstrap", False)
    the_plan = plan(
        [estimate], ids, keys, p, ~np.isnan(labels), by="s", budget=budget, unit="labels",
        cost_per_label=0.0, design="active", seed=int(rng.integers(1 << 31)),
    )  # fmt: skip
    pi, population = np.full(n, np.nan), np.full(n, np.nan)
    for item in the_plan.items:
        i = int(item.trace_id[1:])
        labels[i], pi[i], population[i] = truth[i], item.pi, item.population
    return p, truth, labels, pi, population


def test_a_slice_labelled_by_an_active_campaign_is_estimated_by_the_weighted_estimator() -> None:
    p, _truth, labels, pi, population = _campaign(np.random.default_rng(0))
    (e,) = estimate_slices_with_labels(
        p, ["s"] * p.size, labels, inclusion=pi, population=population
    )
    assert (e.method, e.n, e.n_labelled) == ("active", 300, 50)
    # The campaign's population (the 280 not labelled before), then the known 20 added.
    pool = np.arange(20, 300)
    sampled = np.flatnonzero(~np.isnan(labels[pool]))
    inner = active_mean_interval(p[pool], np.nan_to_num(pi[pool]), sampled, labels[pool][sampled])
    known = labels[:20].sum()
    assert e.accuracy == pytest.approx((known + 280 * inner.estimate) / 300)
    assert (e.low, e.high) == pytest.approx(
        ((known + 280 * inner.low) / 300, (known + 280 * inner.high) / 300)
    )


def test_active_slice_intervals_cover_the_true_slice_accuracy_at_their_nominal_level() -> None:
    # 400 slices, nominal 0.90: 0.865 is 2.4 binomial sd below it (sd 0.015).
    rng = np.random.default_rng(7)
    hits, methods = 0, set()
    for _ in range(400):
        p, truth, labels, pi, population = _campaign(rng)
        (e,) = estimate_slices_with_labels(
            p, ["s"] * p.size, labels, inclusion=pi, population=population
        )
        methods.add(e.method)
        hits += e.low <= truth.mean() <= e.high
    assert methods == {"active"}
    assert 0.865 <= hits / 400 <= 0.95


def test_labels_from_another_population_fall_back_to_uniform_ppi() -> None:
    p, _truth, labels, pi, population = _campaign(np.random.default_rng(1))
    population[~np.isnan(population)] = 999  # drawn from a population this window is not
    (e,) = estimate_slices_with_labels(
        p, ["s"] * p.size, labels, inclusion=pi, population=population
    )
    assert e.method == "ppi"
    (plain,) = estimate_slices_with_labels(p, ["s"] * p.size, labels)
    assert plain.method == "ppi"
    assert (e.accuracy, e.low, e.high) == (plain.accuracy, plain.low, plain.high)


def test_inclusion_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="inclusion and population must be of length 3"):
        estimate_slices_with_labels([0.5] * 3, ["s"] * 3, [1.0, np.nan, 0.0], inclusion=[0.5])
