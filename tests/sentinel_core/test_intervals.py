"""Tests of sentinel_core.intervals on GENERATED data with known truth.

The coverage tests simulate slices whose estimator bias is exchangeable across slices
(the assumption under which split-conformal over slices is valid) and check the
nominal coverage over many seeds, with a stated tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from sentinel_core.errors import InvalidInputError
from sentinel_core.intervals import (
    bootstrap_mean_interval,
    conformal_slice_quantile,
    interval_widening,
    loso_residuals,
    slice_interval,
    widen,
)

FloatArray = npt.NDArray[np.float64]


def test_conformal_quantile_is_the_finite_sample_corrected_rank() -> None:
    scores = np.arange(1, 20) / 100  # k = 19: rank ceil(20 * 0.9) = 18
    assert conformal_slice_quantile(scores, 0.9) == pytest.approx(0.18)
    nine = -np.arange(1, 10) / 10  # k = 9: rank 9, the largest; signs are dropped
    assert conformal_slice_quantile(nine, 0.9) == pytest.approx(0.9)
    assert conformal_slice_quantile([0.3, -0.1, 0.2], 0.9) == pytest.approx(0.3)  # k < 9: max
    assert conformal_slice_quantile([0.1, 0.2, 0.3, 0.4], 0.5) == pytest.approx(0.3)  # rank 3
    assert math.isinf(conformal_slice_quantile([], 0.9))
    with pytest.raises(InvalidInputError, match="confidence"):
        conformal_slice_quantile([0.1], 1.0)


def test_served_widening_is_the_median_absolute_residual_and_zero_without_residuals() -> None:
    assert interval_widening("served", [0.1, -0.3, 0.2], 0.9) == pytest.approx(0.2)
    assert interval_widening("served", [], 0.9) == 0.0
    assert math.isinf(interval_widening("conformal", [], 0.9))
    with pytest.raises(InvalidInputError, match="rule must be one of"):
        interval_widening("wide", [0.1], 0.9)  # type: ignore[arg-type]


def test_widen_clips_to_the_unit_range_and_infinity_is_everything() -> None:
    assert widen((0.1, 0.8), 0.15) == pytest.approx((0.0, 0.95))
    assert widen((0.3, 0.4), math.inf) == (0.0, 1.0)


def test_bootstrap_of_a_constant_is_that_constant_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    assert bootstrap_mean_interval(np.full(7, 0.4), confidence=0.9, n_boot=50, rng=rng) == (
        pytest.approx(0.4),
        pytest.approx(0.4),
    )
    p = np.random.default_rng(1).random(30)
    a = bootstrap_mean_interval(p, confidence=0.9, n_boot=200, rng=np.random.default_rng(5))
    b = bootstrap_mean_interval(p, confidence=0.9, n_boot=200, rng=np.random.default_rng(5))
    assert a == b
    assert a[0] < p.mean() < a[1]
    with pytest.raises(InvalidInputError, match="non-empty"):
        bootstrap_mean_interval([], confidence=0.9, n_boot=10, rng=rng)


def train_mean(X_tr: FloatArray, y_tr: FloatArray, X_te: FloatArray, groups: object) -> FloatArray:
    """A predictor that gives every test row the training accuracy."""
    return np.full(X_te.shape[0], float(y_tr.mean()))


def test_loso_residuals_hold_each_slice_out_of_its_own_fit() -> None:
    y = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    groups = np.array(["a", "a", "b", "b", "c", "c"])
    X = np.zeros((6, 1))
    residuals = loso_residuals(train_mean, X, y, groups)
    # a: 1.0 - mean(b, c) = 1 - 0.25; b: 0 - 0.75; c: 0.5 - 0.5.
    assert residuals == pytest.approx([0.75, -0.75, 0.0])
    assert loso_residuals(train_mean, X[:2], y[:2], groups[:2]).size == 0


def bias_only(X_tr: FloatArray, y_tr: FloatArray, X_te: FloatArray, groups: object) -> FloatArray:
    """A fixed estimator: a row's P(correct) is its first column, whatever the training."""
    return X_te[:, 0]


def simulate_slices(
    rng: np.random.Generator, n_slices: int, n: int, bias_sd: float
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.str_]]:
    """Slices with accuracy a_s ~ U(0.2, 0.8) and P(correct) = a_s + b_s + noise.

    ``b_s ~ N(0, bias_sd)`` is the estimator's bias on slice s, exchangeable across
    slices; the truth is the slice's OBSERVED accuracy (n Bernoulli draws).
    """
    accuracy = rng.uniform(0.2, 0.8, size=n_slices)
    bias = rng.normal(scale=bias_sd, size=n_slices)
    keys = np.repeat([f"s{i:02d}" for i in range(n_slices)], n)
    a = np.repeat(accuracy, n)
    p = np.clip(np.repeat(accuracy + bias, n) + rng.normal(scale=0.1, size=keys.size), 0, 1)
    y = (rng.random(keys.size) < a).astype(np.float64)
    return p[:, None], y, keys


@pytest.mark.parametrize("k", [9, 19])
def test_conformal_interval_covers_a_new_slice_at_nominal_over_many_seeds(k: int) -> None:
    # 600 seeds; each draws k training slices and one new slice, computes the training
    # slices' LOSO residuals and the new slice's conformal interval. Coverage must
    # reach 0.90 within a tolerance of 0.03 (the binomial sd over 600 draws is 0.012).
    covered = []
    for seed in range(600):
        rng = np.random.default_rng(seed)
        X, y, keys = simulate_slices(rng, k + 1, 25, bias_sd=0.12)
        new = keys == keys[-1]
        residuals = loso_residuals(bias_only, X[~new], y[~new], keys[~new])
        low, high = slice_interval("conformal", X[new, 0], residuals, n_boot=200, rng=rng)
        covered.append(low <= y[new].mean() <= high)
    assert np.mean(covered) >= 0.90 - 0.03


def test_the_bare_bootstrap_does_not_cover_when_the_estimator_is_biased() -> None:
    # The same world: the bootstrap alone (served at one training slice) only sees
    # sampling noise, so a bias of sd 0.12 leaves it far below nominal.
    covered = []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        X, y, keys = simulate_slices(rng, 2, 25, bias_sd=0.12)
        new = keys == keys[-1]
        low, high = slice_interval("served", X[new, 0], [], n_boot=200, rng=rng)
        covered.append(low <= y[new].mean() <= high)
    assert np.mean(covered) < 0.6
