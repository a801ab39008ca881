"""Tests of sentinel_core.slices.

Small hand-built inputs check the bookkeeping; synthetic data GENERATED with fixed
seeds check the prediction-powered interval against the reference ``ppi_py`` package
and the coverage of both intervals by simulation.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel_core.errors import InvalidInputError
from sentinel_core.intervals import ppi_mean_interval, ppi_slice_interval
from sentinel_core.slices import (
    SliceEstimate,
    estimate_slices,
    estimate_slices_with_labels,
    rectify_with_recent_labels,
)


def import_ppi_py() -> ModuleType:
    """Import ppi_py without letting its import-time ``simplefilter("ignore")`` leak.

    ppi_py silences every warning globally when imported; the suite treats warnings as
    errors, so the import is fenced in ``catch_warnings``, which restores the filters.
    """
    with warnings.catch_warnings():
        return importlib.import_module("ppi_py")


def test_slice_estimate_is_frozen_and_serialises_to_a_flat_dict() -> None:
    estimate = SliceEstimate("gsm8k", 40, 0.8, 0.7, 0.9, "bootstrap", too_few=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        estimate.accuracy = 0.5  # type: ignore[misc]
    assert estimate.to_dict() == {
        "slice": "gsm8k",
        "n": 40,
        "accuracy": 0.8,
        "low": 0.7,
        "high": 0.9,
        "method": "bootstrap",
        "too_few": False,
        "n_labelled": 0,
    }


def test_estimate_slices_reports_slice_means_lowest_first_and_flags_small_slices() -> None:
    probs = [0.9, 0.2, 0.7, 0.4, 0.8]
    keys = ["b", "a", "b", "a", "b"]
    low_first = estimate_slices(probs, keys, min_n=3, n_boot=500)
    assert [e.slice for e in low_first] == ["a", "b"]
    assert [e.accuracy for e in low_first] == pytest.approx([0.3, 0.8])
    assert [(e.n, e.too_few, e.method) for e in low_first] == [
        (2, True, "bootstrap"),
        (3, False, "bootstrap"),
    ]
    a, b = low_first
    # Bootstrap means of a slice cannot leave the range of its probabilities.
    assert 0.2 <= a.low <= a.accuracy <= a.high <= 0.4
    assert 0.7 <= b.low <= b.accuracy <= b.high <= 0.9


def test_calibration_error_widens_both_bounds_by_exactly_its_value() -> None:
    rng = np.random.default_rng(0)
    probs = rng.uniform(0.3, 0.7, size=200)
    keys = np.repeat(["x", "y"], 100)
    plain = estimate_slices(probs, keys, seed=3)
    wide = estimate_slices(probs, keys, calibration_error=0.05, seed=3)
    for before, after in zip(plain, wide, strict=True):
        assert after.low == pytest.approx(before.low - 0.05)
        assert after.high == pytest.approx(before.high + 0.05)
        assert after.accuracy == before.accuracy


def test_widened_bounds_are_clipped_to_the_unit_interval() -> None:
    (estimate,) = estimate_slices([0.97, 0.99, 1.0], ["s"] * 3, calibration_error=0.2)
    assert estimate.high == 1.0
    assert estimate.low == pytest.approx(0.97 - 0.2, abs=0.02)


def test_a_single_response_slice_has_a_degenerate_bootstrap_interval() -> None:
    (estimate,) = estimate_slices([0.6], ["lonely"], calibration_error=0.1)
    assert (estimate.low, estimate.accuracy, estimate.high) == pytest.approx((0.5, 0.6, 0.7))
    assert estimate.too_few


def test_the_same_seed_gives_the_same_intervals() -> None:
    rng = np.random.default_rng(1)
    probs = rng.uniform(size=90)
    keys = np.repeat(["a", "b", "c"], 30)
    assert estimate_slices(probs, keys, seed=7) == estimate_slices(probs, keys, seed=7)
    assert estimate_slices(probs, keys, seed=7) != estimate_slices(probs, keys, seed=8)


def test_a_large_slice_bootstrapped_in_chunks_has_the_normal_width() -> None:
    # n = 5000, 1000 resamples: 5e6 draws exceed one chunk, so two chunks are drawn.
    # The width should be 2 * 1.645 * sd / sqrt(n) within bootstrap noise (~5%); 15% slack.
    rng = np.random.default_rng(2)
    probs = rng.uniform(size=5000)
    (estimate,) = estimate_slices(probs, np.zeros(5000, dtype=int), n_boot=1000)
    expected_width = 2 * 1.6449 * probs.std(ddof=1) / np.sqrt(5000)
    assert estimate.high - estimate.low == pytest.approx(expected_width, rel=0.15)
    assert estimate.slice == "0"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"probs": [0.5, 1.5]}, r"probs must hold finite values in \[0, 1\]"),
        ({"slice_keys": ["a"]}, "probs and slice_keys must be the same length"),
        ({"confidence": 1.0}, r"confidence must lie in \(0, 1\)"),
        ({"calibration_error": -0.1}, "calibration_error must be a finite value >= 0"),
        ({"n_boot": 0}, "n_boot must be a positive integer"),
    ],
)
def test_estimate_slices_rejects_invalid_input(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"probs": [0.5, 0.6], "slice_keys": ["a", "a"], **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        estimate_slices(**arguments)  # type: ignore[arg-type]


def test_ppi_matches_the_ppi_py_reference_on_generated_data() -> None:
    ppi_py = import_ppi_py()
    rng = np.random.default_rng(3)
    pred_unlabelled = rng.uniform(0.2, 0.95, size=500)
    pred_labelled = rng.uniform(0.2, 0.95, size=60)
    y = (rng.random(60) < np.clip(pred_labelled - 0.15, 0, 1)).astype(float)
    estimate, low, high = ppi_mean_interval(pred_unlabelled, pred_labelled, y, confidence=0.9)
    # lam=1 is plain PPI (ppi_py's default tunes lam, PPI++).
    reference = ppi_py.ppi_mean_pointestimate(y, pred_labelled, pred_unlabelled, lam=1)
    ref_low, ref_high = ppi_py.ppi_mean_ci(y, pred_labelled, pred_unlabelled, alpha=0.1, lam=1)
    assert estimate == pytest.approx(float(np.squeeze(reference)), abs=1e-9)
    assert (low + high) / 2 == pytest.approx(float(np.squeeze(ref_low + ref_high)) / 2, abs=1e-9)
    # ppi_py's standard deviations use ddof=0, ours ddof=1: the half-widths differ by a
    # factor between 1 and sqrt(60 / 59) ~ 1.0085.
    ratio = (high - low) / float(np.squeeze(ref_high - ref_low))
    assert 1.0 <= ratio <= np.sqrt(60 / 59) + 1e-12


def test_ppi_of_a_fully_labelled_slice_is_the_label_mean_with_a_wilson_interval() -> None:
    # Wilson 90% for 3 of 4 (statsmodels proportion_confint(3, 4, 0.1, "wilson")).
    estimate, low, high = ppi_mean_interval([], [0.9, 0.8, 0.7, 0.6], [1, 1, 1, 0])
    assert (estimate, low, high) == pytest.approx((0.75, 0.356168008598506, 0.942092678800141))


def test_ppi_with_one_unlabelled_response_borrows_the_variance_of_all_predictions() -> None:
    estimate, low, high = ppi_mean_interval([0.5], [0.4, 0.6, 0.8], [0, 1, 1])
    # 0.5 + mean(-0.4, 0.4, 0.2) = 0.5667; variance of all four predictions is 0.02667.
    assert estimate == pytest.approx(0.5 + 0.2 / 3)
    se = np.sqrt(np.var([0.5, 0.4, 0.6, 0.8], ddof=1) / 1 + np.var([-0.4, 0.4, 0.2], ddof=1) / 3)
    assert low == pytest.approx(estimate - 1.6448536 * se, rel=1e-6)
    assert high == 1.0  # estimate + z * se = 1.05, clipped


def test_ppi_estimate_and_bounds_are_clipped_to_the_unit_interval() -> None:
    # 0.05 + (0 - 0.9) = -0.85 with a zero-variance residual: everything clips to 0.
    assert ppi_mean_interval([0.05] * 10, [0.9, 0.9], [0, 0]) == (0.0, 0.0, 0.0)


def test_ppi_with_a_single_label_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="at least 2 labelled responses, got 1"):
        ppi_mean_interval([0.5, 0.6], [0.7], [1])


def test_labels_choose_the_method_per_slice() -> None:
    nan = float("nan")
    probs = [0.5, 0.6, 0.7, 0.2, 0.3, 0.9, 0.8, 0.7, 0.4, 0.5]
    keys = ["none", "none", "one", "one", "one", "some", "some", "some", "all", "all"]
    labels = [nan, nan, 1.0, nan, nan, 1.0, 0.0, nan, 1.0, 0.0]
    by_slice = {e.slice: e for e in estimate_slices_with_labels(probs, keys, labels, min_n=1)}
    assert {name: (e.method, e.n_labelled) for name, e in by_slice.items()} == {
        "none": ("bootstrap", 0),
        "one": ("bootstrap", 1),
        "some": ("ppi", 2),
        "all": ("wilson", 2),
    }
    # "some": labels 1 + 0 known; the unlabelled one is P 0.7 + mean residual
    # ((1 - 0.9) + (0 - 0.8)) / 2 = 0.35; the slice's accuracy (1 + 0 + 0.35) / 3.
    assert by_slice["some"].accuracy == pytest.approx(1.35 / 3)
    assert by_slice["all"].accuracy == pytest.approx(0.5)
    assert by_slice["one"].accuracy == pytest.approx(0.4)


def test_a_mostly_labelled_small_slice_is_not_dominated_by_its_one_unlabelled_response() -> None:
    # Four labelled wrong answers the estimator also called wrong, one unlabelled it
    # calls right: the slice's accuracy is at most 1/5, whatever that one turns out to be.
    nan = float("nan")
    (e,) = estimate_slices_with_labels(
        [0.0, 0.0, 0.0, 0.0, 1.0], ["s"] * 5, [0, 0, 0, 0, nan], min_n=1
    )
    assert e.method == "ppi"
    assert e.accuracy == pytest.approx(0.2)
    assert 0.0 <= e.low < 0.2
    assert e.high == pytest.approx(0.2)  # one unknown answer of five: never above 1/5


@settings(max_examples=100, deadline=None)
@given(
    n_u=st.integers(1, 50),
    n_l=st.integers(2, 50),
    seed=st.integers(0, 1000),
)
def test_the_slice_interval_equals_the_label_mean_when_predictions_are_perfect(
    n_u: int, n_l: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(n_u + n_l) < 0.5).astype(float)
    estimate, low, high = ppi_slice_interval(y[:n_u], y[n_u:], y[n_u:])
    assert estimate == pytest.approx(y.mean())
    assert y[n_u:].sum() / y.size - 1e-12 <= low <= estimate <= high
    assert high <= (y[n_u:].sum() + n_u) / y.size + 1e-12


def test_labels_outside_the_unit_interval_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match=r"labels must hold values in \[0, 1\] or NaN"):
        estimate_slices_with_labels([0.5, 0.5], ["a", "a"], [2.0, float("nan")])


def test_ppi_interval_covers_the_true_accuracy_with_a_miscalibrated_predictor() -> None:
    # Simulation: 400 slices, slice accuracy mu ~ U(0.2, 0.9); per response
    # q ~ Beta(4 mu, 4 (1 - mu)) and y ~ Bernoulli(q); the truth is the slice's mean y. The
    # predictor is overconfident and biased: P = sigmoid(2 logit(q) + 1). 40 of 340
    # responses per slice are labelled. Nominal coverage 0.90; with 400 slices the
    # binomial sd of the observed coverage is 0.015, so [0.86, 0.94] is about +-2.7 sd.
    rng = np.random.default_rng(4)
    n_slices, size, n_labelled = 400, 340, 40
    mu = rng.uniform(0.2, 0.9, size=n_slices)
    q = np.clip(rng.beta(4 * mu, 4 * (1 - mu), size=(size, n_slices)).T, 1e-6, 1 - 1e-6)
    y = (rng.random((n_slices, size)) < q).astype(float)
    probs = 1.0 / (1.0 + np.exp(-(2.0 * np.log(q / (1 - q)) + 1.0)))
    labels = np.where(np.arange(size) < n_labelled, y, np.nan)  # rows are iid: first 40
    keys = np.repeat([f"s{i:03d}" for i in range(n_slices)], size)
    results = estimate_slices_with_labels(probs.ravel(), keys, labels.ravel(), confidence=0.9)
    # The target is each slice's own accuracy: the mean of its 340 responses' y.
    truth = dict(zip([f"s{i:03d}" for i in range(n_slices)], y.mean(axis=1), strict=True))
    covered = np.mean([e.low <= truth[e.slice] <= e.high for e in results])
    assert {e.method for e in results} == {"ppi"}
    assert np.mean(np.abs(probs.mean(axis=1) - mu)) > 0.05  # the predictor is miscalibrated
    assert 0.86 <= covered <= 0.94


def test_bootstrap_interval_covers_the_expected_mean_of_a_calibrated_predictor() -> None:
    # Simulation: 400 slices of 100 responses with P ~ Beta(6 m, 6 (1 - m)), m ~ U(0.2,
    # 0.9); a calibrated predictor's slice accuracy is the expected mean of P, m. The
    # percentile bootstrap of a mean undercovers slightly at n = 100 (~0.5 point), and
    # the binomial sd over 400 slices is 0.015: [0.85, 0.95] is about +-3 sd.
    rng = np.random.default_rng(5)
    m = rng.uniform(0.2, 0.9, size=400)
    probs = rng.beta(6 * m, 6 * (1 - m), size=(100, 400)).T
    keys = np.repeat([f"s{i:03d}" for i in range(400)], 100)
    results = estimate_slices(probs.ravel(), keys, n_boot=1000, confidence=0.9)
    truth = dict(zip([f"s{i:03d}" for i in range(400)], m, strict=True))
    covered = np.mean([e.low <= truth[e.slice] <= e.high for e in results])
    assert 0.85 <= covered <= 0.95


def _biased_slice(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Predictions near 0.7 for responses that are right 30% of the time."""
    return np.clip(rng.normal(0.7, 0.1, n), 0, 1), (rng.random(n) < 0.3).astype(float)


def test_recent_labels_correct_a_biased_label_free_estimate() -> None:
    rng = np.random.default_rng(4)
    p_new, _ = _biased_slice(rng, 200)
    p_old, y_old = _biased_slice(rng, 40)
    keys = np.array(["a"] * 200)
    label_free = estimate_slices(p_new, keys, n_boot=300)
    assert label_free[0].accuracy == pytest.approx(0.7, abs=0.03)
    # A gate of 0.95 lets a bias this clear through.
    (fixed,) = rectify_with_recent_labels(
        label_free, p_new, keys, p_old, np.array(["a"] * 40), y_old, window=30, min_labels=10,
        gate=0.95,
    )  # fmt: skip
    assert fixed.method == "ppi_recent"
    assert fixed.n_labelled == 30  # only the window counts
    assert fixed.n == 200
    expected, low, high = ppi_mean_interval(p_new, p_old[:30], y_old[:30])
    assert (fixed.accuracy, fixed.low, fixed.high) == (expected, low, high)
    assert fixed.low <= 0.3 <= fixed.high
    assert fixed.high < label_free[0].low  # the bias is gone, not just widened


def test_only_unlabelled_slices_with_enough_recent_labels_are_rectified() -> None:
    rng = np.random.default_rng(5)
    p = rng.random(90)
    keys = np.repeat(["few", "labelled", "plenty"], 30)
    labels = np.full(90, np.nan)
    labels[30:35] = 1.0  # "labelled" has labels of its own: PPI on them, untouched here
    estimates = estimate_slices_with_labels(p, keys, labels, n_boot=200)
    recent_keys = np.array(["few"] * 9 + ["labelled"] * 20 + ["plenty"] * 12 + ["gone"] * 12)
    recent_p = rng.random(recent_keys.size)
    recent_y = (rng.random(recent_keys.size) < 0.5).astype(float)
    fixed = {
        e.slice: e
        for e in rectify_with_recent_labels(
            estimates, p, keys, recent_p, recent_keys, recent_y, window=30, min_labels=10
        )
    }
    before = {e.slice: e for e in estimates}
    assert fixed["few"] == before["few"]  # 9 < min_labels
    assert fixed["labelled"] == before["labelled"]
    assert fixed["plenty"].method == "ppi_recent"
    assert fixed["plenty"].n_labelled == 12
    assert set(fixed) == {"few", "labelled", "plenty"}  # no slice made up from old labels


def test_the_most_recent_labels_count_first() -> None:
    p_new = np.full(50, 0.5)
    keys = np.array(["s"] * 50)
    estimates = estimate_slices(p_new, keys, n_boot=100)
    # Most recent first: 10 wrong answers the model rated 0.5, then 40 older right ones.
    recent_p = np.full(50, 0.5)
    recent_y = np.r_[np.zeros(10), np.ones(40)]
    (fixed,) = rectify_with_recent_labels(
        estimates, p_new, keys, recent_p, np.array(["s"] * 50), recent_y, window=10, min_labels=5
    )
    assert fixed.accuracy == 0.0


def test_the_gate_keeps_a_slice_the_estimator_gets_right_label_free() -> None:
    rng = np.random.default_rng(6)
    p_new = rng.uniform(0.2, 0.8, 100)
    keys = np.array(["s"] * 100)
    estimates = estimate_slices(p_new, keys, n_boot=100)
    # Labels drawn from the predictions themselves: the residual is noise around zero.
    recent_p = rng.uniform(0.2, 0.8, 30)
    recent_y = (rng.random(30) < recent_p).astype(float)
    residual = recent_y - recent_p
    assert abs(residual.mean()) < 1.96 * residual.std(ddof=1) / np.sqrt(30)
    (gated,) = rectify_with_recent_labels(
        estimates, p_new, keys, recent_p, np.array(["s"] * 30), recent_y, gate=0.95
    )
    assert gated == estimates[0]
    (ungated,) = rectify_with_recent_labels(
        estimates, p_new, keys, recent_p, np.array(["s"] * 30), recent_y, gate=None
    )
    assert ungated.method == "ppi_recent"
    assert ungated.accuracy != estimates[0].accuracy


def test_the_gate_level_is_checked() -> None:
    with pytest.raises(InvalidInputError, match="confidence"):
        rectify_with_recent_labels([], [0.5], ["s"], [0.5, 0.5], ["s", "s"], [1.0, 0.0], gate=1.0)


@pytest.mark.parametrize(("window", "min_labels"), [(0, 2), (10, 1), (5, 6)])
def test_rectifying_rejects_an_impossible_window(window: int, min_labels: int) -> None:
    with pytest.raises(InvalidInputError, match="min_labels"):
        rectify_with_recent_labels(
            [], [0.5], ["s"], [0.5, 0.5], ["s", "s"], [1.0, 0.0],
            window=window, min_labels=min_labels,
        )  # fmt: skip


def test_a_resampled_spread_gives_the_interval_of_those_values_centred_on_the_estimate() -> None:
    """The default resamples ATC's 0/1 votes: its interval is ATC's, moved to its estimate."""
    rng = np.random.default_rng(3)
    votes = (rng.uniform(size=120) < 0.4).astype(float)
    smooth = np.clip(votes * 0.3 + 0.28 + rng.normal(scale=0.02, size=120), 0, 1)
    keys = np.array(["s"] * 120)
    plain = estimate_slices(smooth, keys, n_boot=500, seed=1)[0]
    spread = estimate_slices_with_labels(
        smooth, keys, np.full(120, np.nan), n_boot=500, seed=1, resample=votes
    )[0]
    atc = estimate_slices(votes, keys, n_boot=500, seed=1)[0]
    assert spread.accuracy == pytest.approx(smooth.mean())
    assert spread.high - spread.low == pytest.approx(atc.high - atc.low, abs=1e-12)
    assert spread.high - spread.low > 2 * (plain.high - plain.low)
    assert spread.low - atc.low == pytest.approx(smooth.mean() - votes.mean(), abs=1e-12)
    with pytest.raises(InvalidInputError, match="resample must be of length 120"):
        estimate_slices_with_labels(smooth, keys, np.full(120, np.nan), resample=votes[:10])
