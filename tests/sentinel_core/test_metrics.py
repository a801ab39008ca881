"""Tests of sentinel_core.metrics.

Every input is either a small hand-built array whose score is computed by hand in the
test, or synthetic data GENERATED with a fixed seed (or by Hypothesis) to check
properties and agreement with scipy and scikit-learn.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import roc_auc_score

from sentinel_core.errors import InvalidInputError
from sentinel_core.metrics import (
    accuracy_floor,
    aee,
    auroc,
    brier,
    ece,
    reliability_bins,
    spearman_rho,
)

probabilities = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
# On a 1/100 grid, 1 - p keeps distinct values distinct (no rounding into ties).
grid_probabilities = st.integers(min_value=0, max_value=100).map(lambda k: k / 100)


@st.composite
def probs_and_labels(draw: st.DrawFn) -> tuple[list[float], list[int]]:
    n = draw(st.integers(min_value=1, max_value=40))
    probs = draw(st.lists(grid_probabilities, min_size=n, max_size=n))
    labels = draw(st.lists(st.integers(min_value=0, max_value=1), min_size=n, max_size=n))
    return probs, labels


def test_aee_is_the_mean_absolute_gap_between_estimates_and_truths() -> None:
    # |0.5 - 0.6| = 0.1 and |0.8 - 0.6| = 0.2, mean 0.15.
    assert aee([0.5, 0.8], [0.6, 0.6]) == pytest.approx(0.15)


def test_aee_rejects_estimates_and_truths_of_different_lengths() -> None:
    with pytest.raises(InvalidInputError, match="same length"):
        aee([0.5, 0.8], [0.6])


def test_aee_rejects_an_accuracy_outside_the_unit_interval() -> None:
    with pytest.raises(InvalidInputError, match=r"must hold finite values in \[0, 1\]"):
        aee([1.2], [0.6])


def test_spearman_rho_matches_a_hand_computed_ranking() -> None:
    # Ranks (1, 2, 3) against (1, 3, 2): sum d^2 = 2, rho = 1 - 6 * 2 / (3 * 8) = 0.5.
    assert spearman_rho([0.1, 0.2, 0.3], [0.3, 0.5, 0.4]) == pytest.approx(0.5)


def test_spearman_rho_is_nan_for_fewer_than_two_slices_or_constant_input() -> None:
    assert math.isnan(spearman_rho([0.4], [0.5]))
    assert math.isnan(spearman_rho([], []))
    assert math.isnan(spearman_rho([0.4, 0.4, 0.4], [0.1, 0.5, 0.9]))
    assert math.isnan(spearman_rho([0.1, 0.5, 0.9], [0.7, 0.7, 0.7]))


def test_spearman_rho_agrees_with_scipy_on_generated_data_with_ties() -> None:
    rng = np.random.default_rng(0)
    estimates = rng.integers(0, 5, size=30) / 4  # many ties
    truths = np.clip(estimates + rng.normal(scale=0.3, size=30), 0, 1)
    expected = stats.spearmanr(estimates, truths).statistic
    assert spearman_rho(estimates, truths) == pytest.approx(expected, abs=1e-12)


def test_auroc_counts_correctly_ordered_pairs() -> None:
    # Positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of 4 pairs ordered.
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)


def test_auroc_counts_a_tie_as_one_half() -> None:
    assert auroc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)


def test_auroc_is_nan_when_only_one_class_is_present() -> None:
    assert math.isnan(auroc([0.2, 0.9], [1, 1]))


def test_auroc_agrees_with_scikit_learn_on_generated_data() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=200)
    probs = np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(scale=0.2, size=200), 0, 1).round(2)
    assert auroc(probs, y) == pytest.approx(roc_auc_score(y, probs), abs=1e-12)


def test_ece_weights_each_bins_gap_by_its_share_of_responses() -> None:
    # Bin [0.1, 0.2): mean P 0.15, accuracy 0.5, gap 0.35, weight 1/2 -> 0.175.
    # Bin [0.8, 0.9): mean P 0.85, accuracy 1.0, gap 0.15, weight 1/2 -> 0.075.
    assert ece([0.15, 0.15, 0.85, 0.85], [0, 1, 1, 1]) == pytest.approx(0.25)


def test_ece_puts_a_probability_of_one_in_the_last_bin() -> None:
    # One bin [0.5, 1]: mean P 0.8, accuracy 0.5, gap 0.3.
    assert ece([0.6, 1.0], [0, 1], n_bins=2) == pytest.approx(0.3)


def test_ece_is_zero_for_a_perfectly_calibrated_constant() -> None:
    assert ece([0.25] * 4, [1, 0, 0, 0]) == pytest.approx(0.0)


def test_ece_rejects_a_non_positive_number_of_bins() -> None:
    with pytest.raises(InvalidInputError, match="n_bins must be a positive integer"):
        ece([0.5], [1], n_bins=0)


def test_brier_is_the_mean_squared_gap_to_the_labels() -> None:
    # (0.2 - 0)^2 = 0.04 and (0.9 - 1)^2 = 0.01, mean 0.025.
    assert brier([0.2, 0.9], [0, 1]) == pytest.approx(0.025)


def test_brier_rejects_labels_that_are_not_zero_or_one() -> None:
    with pytest.raises(InvalidInputError, match=r"y must hold 0/1 labels, got values \[2.0\]"):
        brier([0.2, 0.9], [0, 2])


def test_brier_rejects_a_nan_probability() -> None:
    with pytest.raises(InvalidInputError, match="must be finite"):
        brier([float("nan")], [1])


@settings(max_examples=60, deadline=None)
@given(probs_and_labels())
def test_calibration_scores_stay_in_the_unit_interval(data: tuple[list[float], list[int]]) -> None:
    probs, labels = data
    assert 0.0 <= ece(probs, labels) <= 1.0
    assert 0.0 <= brier(probs, labels) <= 1.0


@settings(max_examples=60, deadline=None)
@given(probs_and_labels())
def test_auroc_of_reversed_probabilities_is_one_minus_auroc(
    data: tuple[list[float], list[int]],
) -> None:
    probs, labels = data
    forward = auroc(probs, labels)
    if math.isnan(forward):
        assert len(set(labels)) == 1
    else:
        assert auroc(1.0 - np.asarray(probs), labels) == pytest.approx(1.0 - forward)


@settings(max_examples=60, deadline=None)
@given(st.lists(probabilities, min_size=1, max_size=30))
def test_aee_of_an_estimate_against_itself_is_zero(values: list[float]) -> None:
    assert aee(values, values) == 0.0


def test_accuracy_floor_matches_hand_computed_binomial_expectations() -> None:
    # n = 1, p = 0.5: |0 - 0.5| and |1 - 0.5| each with probability 1/2 -> 0.5.
    assert accuracy_floor(1, 0.5) == pytest.approx(0.5)
    # n = 2, p = 0.5: K = 0, 1, 2 with probabilities 1/4, 1/2, 1/4 -> 0.5/4 + 0.5/4 = 0.25.
    assert accuracy_floor(2, 0.5) == pytest.approx(0.25)
    # n = 3, p = 0.2: 0.512 * 0.2 + 0.384 * (1/3 - 0.2) + 0.096 * (2/3 - 0.2) + 0.008 * 0.8.
    expected = 0.512 * 0.2 + 0.384 * (1 / 3 - 0.2) + 0.096 * (2 / 3 - 0.2) + 0.008 * 0.8
    assert accuracy_floor(3, 0.2) == pytest.approx(expected)


def test_accuracy_floor_is_zero_for_a_slice_that_is_always_right_or_always_wrong() -> None:
    assert accuracy_floor(50, 0.0) == 0.0
    assert accuracy_floor(50, 1.0) == 0.0


def test_accuracy_floor_approaches_the_normal_mean_absolute_deviation_for_large_n() -> None:
    # For large n, E|K/n - p| -> sqrt(2 p (1 - p) / (pi n)); 1% is well above the O(1/n) gap.
    n, p = 10_000, 0.3
    assert accuracy_floor(n, p) == pytest.approx(
        math.sqrt(2 * p * (1 - p) / (math.pi * n)), rel=0.01
    )


def test_accuracy_floor_matches_a_simulated_perfect_estimator() -> None:
    rng = np.random.default_rng(2)
    observed = rng.binomial(40, 0.7, size=200_000) / 40
    # Monte Carlo standard error of the mean |error| is about 0.06 / sqrt(2e5) ~ 1.3e-4.
    assert accuracy_floor(40, 0.7) == pytest.approx(np.mean(np.abs(observed - 0.7)), abs=1e-3)


def test_accuracy_floor_rejects_an_empty_slice() -> None:
    with pytest.raises(InvalidInputError, match="n must be a positive integer, got 0"):
        accuracy_floor(0, 0.5)


def test_reliability_bins_give_each_populated_bins_means_and_size() -> None:
    bins = reliability_bins([0.05, 0.15, 0.15, 0.85, 0.95], [0, 1, 0, 1, 1], n_bins=10)
    assert bins.n.tolist() == [1, 2, 1, 1]
    assert bins.mean_p == pytest.approx([0.05, 0.15, 0.85, 0.95])
    assert bins.observed == pytest.approx([0.0, 0.5, 1.0, 1.0])
    # One class only is still a diagram (every bin observes that class).
    assert reliability_bins([0.2, 0.7], [1, 1]).observed.tolist() == [1.0, 1.0]
    with pytest.raises(InvalidInputError, match="n_bins"):
        reliability_bins([0.5], [1], n_bins=0)
