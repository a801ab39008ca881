"""Tests of sentinel_core.estimator.

All data are synthetic, GENERATED with fixed seeds: features drawn from normals, and
correctness drawn from a known P(correct | x) so calibration and accuracy can be
checked against the truth. The scikit-learn contract is checked with scikit-learn's
own ``parametrize_with_checks`` on the fast configurations (``search=False``), and with
a chosen subset of its checks on the forest and on ``search=True``: the full suite
takes ~50 s and ~15 s on them, the subset a few seconds. (The full suite passes on
both, with the same expected failure.)
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.base import clone
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import (
    check_classifiers_one_label,
    check_estimators_pickle,
    check_estimators_unfitted,
    check_fit_check_is_fitted,
    check_fit_idempotent,
    check_n_features_in_after_fitting,
    parametrize_with_checks,
)

from sentinel_core.errors import InvalidInputError, NotFittedError
from sentinel_core.estimator import (
    CONFIDENT_DIRECTION,
    PARAM_GRIDS,
    ATCEstimator,
    EntropyEstimator,
    estimate_held_out_calibration_error,
)
from sentinel_core.features import BASELINE_NAMES, FEATURE_NAMES
from sentinel_core.metrics import ece

FloatArray = npt.NDArray[np.float64]

ONLY_BALANCED_WEIGHTS = (
    "class_weight takes None or 'balanced' only, so the check's dict is rejected; and "
    "calibration on unweighted folds maps scores back to frequencies, so predictions "
    "would not favour a heavily weighted class anyway"
)


def _expected_failures(estimator: Any) -> dict[str, str]:
    return {"check_class_weight_classifiers": ONLY_BALANCED_WEIGHTS}


def make_logistic_data(
    n: int, *, seed: int, shift: float = 0.0, d: int = 3
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Generated data with P(correct | x) = sigmoid(2 x_0 - 0.5 x_1 + 0.5)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + shift
    p = 1.0 / (1.0 + np.exp(-(2.0 * X[:, 0] - 0.5 * X[:, 1] + 0.5)))
    return X, (rng.random(n) < p).astype(np.int64)


@parametrize_with_checks(
    [
        EntropyEstimator(search=False),
        EntropyEstimator(family="mlp", search=False),
        EntropyEstimator(calibration="none", search=False),
    ],
    expected_failed_checks=_expected_failures,
)
def test_entropy_estimator_passes_the_scikit_learn_estimator_checks(
    estimator: EntropyEstimator, check: Callable[[Any], None]
) -> None:
    check(estimator)


CONTRACT_SUBSET = (
    check_estimators_unfitted,
    check_fit_check_is_fitted,
    check_fit_idempotent,
    check_estimators_pickle,
    check_n_features_in_after_fitting,
    check_classifiers_one_label,
)


@pytest.mark.parametrize("check", CONTRACT_SUBSET, ids=lambda check: check.__name__)
@pytest.mark.parametrize(
    "estimator",
    [
        EntropyEstimator(family="forest", search=False, cv=2),
        EntropyEstimator(family="logistic", search=True, cv=2),
    ],
    ids=["forest", "logistic-search"],
)
def test_slower_configurations_pass_the_key_scikit_learn_checks(
    estimator: EntropyEstimator, check: Callable[[str, Any], None]
) -> None:
    check(type(estimator).__name__, estimator)


def test_init_only_stores_parameters_so_clone_reproduces_them() -> None:
    estimator = EntropyEstimator(family="mlp", calibration="sigmoid", class_weight="balanced")
    assert clone(estimator).get_params() == estimator.get_params()
    assert not [name for name in vars(estimator) if name.endswith("_")]


def test_fit_returns_self_and_probabilities_have_two_columns_summing_to_one() -> None:
    X, y = make_logistic_data(300, seed=0)
    estimator = EntropyEstimator(search=False)
    assert estimator.fit(X, y) is estimator
    proba = estimator.predict_proba(X)
    assert proba.shape == (300, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(estimator.predict_correct_proba(X), proba[:, 1])


def test_search_picks_its_hyper_parameters_from_the_documented_grid() -> None:
    X, y = make_logistic_data(300, seed=1)
    estimator = EntropyEstimator(search=True).fit(X, y)
    assert set(estimator.best_params_) == set(PARAM_GRIDS["logistic"])
    assert estimator.best_params_["model__C"] in PARAM_GRIDS["logistic"]["model__C"]


def test_predict_proba_before_fit_raises_not_fitted() -> None:
    with pytest.raises(ValueError, match="not fitted"):
        EntropyEstimator().predict_proba(np.zeros((2, 3)))


@pytest.mark.parametrize(("label", "expected"), [(1, 0.99), (0, 0.01)])
def test_a_single_class_gives_a_constant_clipped_training_accuracy(
    label: int, expected: float
) -> None:
    X, _ = make_logistic_data(20, seed=2)
    estimator = EntropyEstimator(search=False).fit(X, np.full(20, label))
    assert estimator.constant_
    np.testing.assert_allclose(estimator.predict_correct_proba(X[:5]), expected)
    np.testing.assert_array_equal(estimator.predict(X[:5]), np.full(5, label))
    np.testing.assert_array_equal(estimator.classes_, [0, 1])


def test_a_single_class_that_is_not_zero_or_one_is_rejected() -> None:
    X, _ = make_logistic_data(10, seed=3)
    with pytest.raises(InvalidInputError, match="single class 'yes'"):
        EntropyEstimator(search=False).fit(X, np.array(["yes"] * 10))


def test_more_than_two_classes_are_rejected() -> None:
    X, _ = make_logistic_data(9, seed=3)
    with pytest.raises(InvalidInputError, match="Only binary classification is supported"):
        EntropyEstimator(search=False).fit(X, np.arange(9) % 3)


def test_folds_shrink_to_the_minority_count() -> None:
    X, _ = make_logistic_data(40, seed=4)
    y = np.zeros(40, dtype=int)
    y[:3] = 1
    estimator = EntropyEstimator(search=True, cv=5).fit(X, y)
    assert estimator.n_folds_ == 3
    assert estimator.calibration_method_ == "sigmoid"


def test_a_minority_of_one_falls_back_to_an_uncalibrated_fit() -> None:
    X, _ = make_logistic_data(40, seed=5)
    y = np.zeros(40, dtype=int)
    y[7] = 1
    estimator = EntropyEstimator(search=True).fit(X, y)
    assert (estimator.n_folds_, estimator.calibration_method_) == (0, "none")
    assert estimator.best_params_ == {}
    assert estimator.predict_proba(X).shape == (40, 2)


@pytest.mark.parametrize(("n", "expected"), [(999, "sigmoid"), (1000, "isotonic")])
def test_auto_calibration_is_isotonic_from_one_thousand_labels(n: int, expected: str) -> None:
    X, y = make_logistic_data(n, seed=6)
    estimator = EntropyEstimator(search=False, cv=2).fit(X, y)
    assert estimator.calibration_method_ == expected


def test_an_explicit_calibration_method_is_used_whatever_the_size() -> None:
    X, y = make_logistic_data(200, seed=6)
    estimator = EntropyEstimator(search=False, calibration="isotonic").fit(X, y)
    assert estimator.calibration_method_ == "isotonic"


def test_no_calibration_fits_the_plain_pipeline_on_all_data() -> None:
    X, y = make_logistic_data(200, seed=6)
    estimator = EntropyEstimator(search=False, calibration="none").fit(X, y)
    assert (estimator.calibration_method_, estimator.n_folds_) == ("none", 0)
    plain = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    np.testing.assert_allclose(
        estimator.predict_correct_proba(X), plain.predict_proba(X)[:, 1], rtol=1e-6
    )


def test_no_calibration_with_search_still_cross_validates_the_grid() -> None:
    X, y = make_logistic_data(200, seed=6)
    estimator = EntropyEstimator(search=True, calibration="none", cv=3).fit(X, y)
    assert (estimator.calibration_method_, estimator.n_folds_) == ("none", 3)
    assert "model__C" in estimator.best_params_


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"family": "svm"}, "family must be one of"),
        ({"calibration": "beta"}, "calibration must be one of"),
        ({"class_weight": "auto"}, "class_weight must be None or 'balanced'"),
        ({"cv": 1}, "cv must be an integer >= 2"),
    ],
)
def test_invalid_parameters_are_rejected_at_fit(params: dict[str, Any], message: str) -> None:
    X, y = make_logistic_data(30, seed=7)
    estimator = EntropyEstimator(**params)
    with pytest.raises(InvalidInputError, match=message):
        estimator.fit(X, y)


def test_calibration_repairs_the_miscalibration_of_class_balancing() -> None:
    # A balanced logistic regression on 85%-correct data is pushed towards 50/50: badly
    # miscalibrated. The calibrated estimator with the same balancing must not be worse
    # and, on 4000 held-out rows, should be within 0.04 ECE (its sampling noise ~0.01).
    X, y = make_logistic_data(6000, seed=8, shift=1.5)
    X_train, y_train, X_test, y_test = X[:2000], y[:2000], X[2000:], y[2000:]
    assert y.mean() > 0.8
    raw = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced"))
    raw_ece = ece(raw.fit(X_train, y_train).predict_proba(X_test)[:, 1], y_test)
    calibrated = EntropyEstimator(search=False, class_weight="balanced").fit(X_train, y_train)
    calibrated_ece = ece(calibrated.predict_correct_proba(X_test), y_test)
    assert raw_ece > 0.1
    assert calibrated_ece <= raw_ece
    assert calibrated_ece < 0.04


@pytest.mark.parametrize("family", ["logistic", "forest", "mlp"])
def test_every_family_accepts_balancing_and_its_mean_probability_tracks_accuracy(
    family: str,
) -> None:
    # Held-out mean P vs accuracy on 1000 rows: the binomial noise of the accuracy is
    # ~0.013, calibration error of a cross-fitted sigmoid a few hundredths; 0.06 is loose
    # enough for all three families yet would fail an uncalibrated balanced model (~0.2).
    X, y = make_logistic_data(1400, seed=9, shift=0.6)
    estimator = EntropyEstimator(family=family, search=False, class_weight="balanced", cv=3)
    p = estimator.fit(X[:400], y[:400]).predict_correct_proba(X[400:])
    assert abs(p.mean() - y[400:].mean()) < 0.06


def test_feature_names_of_a_frame_are_remembered() -> None:
    pd = pytest.importorskip("pandas")
    X, y = make_logistic_data(60, seed=10)
    frame = pd.DataFrame(X, columns=["H_max", "H_mean", "H_sea"])
    estimator = EntropyEstimator(search=False).fit(frame, y)
    assert list(estimator.feature_names_in_) == ["H_max", "H_mean", "H_sea"]
    assert pickle.loads(pickle.dumps(estimator)).predict_proba(frame).shape == (60, 2)


def test_confident_direction_covers_every_feature_and_baseline() -> None:
    assert set(CONFIDENT_DIRECTION) == set(FEATURE_NAMES) | set(BASELINE_NAMES)
    assert CONFIDENT_DIRECTION["H_max"] is False
    assert CONFIDENT_DIRECTION["H_sea"] is False
    assert CONFIDENT_DIRECTION["perplexity"] is False
    assert CONFIDENT_DIRECTION["seq_loglik"] is True
    assert CONFIDENT_DIRECTION["mean_margin"] is True


@pytest.mark.parametrize("higher_is_confident", [True, False])
def test_atc_threshold_puts_the_source_accuracy_on_the_confident_side(
    higher_is_confident: bool,
) -> None:
    rng = np.random.default_rng(11)
    scores = rng.normal(size=200)
    y = np.zeros(200, dtype=int)
    y[:140] = 1  # accuracy 0.7, and 0.7 * 200 is a whole number of responses
    atc = ATCEstimator(higher_is_confident=higher_is_confident).fit(scores, y)
    assert atc.estimate(scores) == pytest.approx(0.7)
    assert atc.confident(scores).sum() == 140
    # Higher is confident: the threshold is the (1 - acc) empirical quantile.
    expected = np.sort(scores)[59] if higher_is_confident else np.sort(scores)[140]
    assert atc.threshold_ == expected


def test_atc_with_tied_scores_takes_the_closest_reachable_share() -> None:
    # Shares reachable with scores {0, 0, 1, 1, 1}: 1.0, 0.6 (t = 0), 0.0 (t = 1).
    atc = ATCEstimator(higher_is_confident=True).fit([0, 0, 1, 1, 1], [1, 1, 1, 0, 0])
    assert atc.threshold_ == 0.0
    assert atc.estimate([0, 0, 1, 1, 1]) == pytest.approx(0.6)


@pytest.mark.parametrize(("label", "threshold"), [(1, -math.inf), (0, math.inf)])
def test_atc_on_an_all_right_or_all_wrong_source_returns_that_accuracy(
    label: int, threshold: float
) -> None:
    atc = ATCEstimator(higher_is_confident=True).fit([0.1, 0.5, 0.9], [label] * 3)
    assert atc.threshold_ == threshold
    assert atc.estimate([-100.0, 0.3, 100.0]) == float(label)


@pytest.mark.parametrize("higher_is_confident", [True, False])
def test_atc_recovers_the_accuracy_of_a_shifted_target(higher_is_confident: bool) -> None:
    # Generated: confidence c, correct when c + 0.3 * noise > 0. The target's c is shifted
    # by -0.7: true accuracy Phi(-0.7 / 1.044) ~ 0.25 and ATC's ~ Phi(-0.7) ~ 0.24, so the
    # method's own bias is ~0.01; 4000 rows add ~0.007 noise; tolerance 0.04.
    rng = np.random.default_rng(12)
    c_source, c_target = rng.normal(size=4000), rng.normal(size=4000) - 0.7
    y_source = (c_source + 0.3 * rng.normal(size=4000) > 0).astype(int)
    y_target = (c_target + 0.3 * rng.normal(size=4000) > 0).astype(int)
    sign = 1.0 if higher_is_confident else -1.0  # an entropy-like score is -c
    atc = ATCEstimator(higher_is_confident).fit(sign * c_source, y_source)
    assert abs(atc.estimate(sign * c_target) - y_target.mean()) < 0.04
    assert abs(y_source.mean() - y_target.mean()) > 0.2  # the shift is real


def test_atc_for_score_reads_the_confident_direction() -> None:
    assert ATCEstimator.for_score("H_max").higher_is_confident is False
    assert ATCEstimator.for_score("seq_loglik").higher_is_confident is True


def test_atc_for_an_unknown_score_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="score must be one of"):
        ATCEstimator.for_score("vibes")


def test_atc_used_before_fit_raises_not_fitted() -> None:
    with pytest.raises(NotFittedError, match="must be fitted"):
        ATCEstimator(higher_is_confident=True).estimate([0.5])


def test_atc_rejects_labels_that_are_not_zero_or_one() -> None:
    with pytest.raises(InvalidInputError, match="y must hold 0/1 labels"):
        ATCEstimator(higher_is_confident=True).fit([0.1, 0.2], [0, 3])


def test_held_out_calibration_error_is_the_median_miss_of_a_prior_predictor() -> None:
    # Four equal groups of 10 with accuracies 0.2, 0.4, 0.6, 0.8. Leaving out one, the
    # prior of the other three is (2.0 - acc) / 3: misses 0.4, 0.1333, 0.1333, 0.4.
    X = np.zeros((40, 1))
    groups = np.repeat(["a", "b", "c", "d"], 10)
    y = np.concatenate([np.arange(10) < k for k in (2, 4, 6, 8)]).astype(int)
    error = estimate_held_out_calibration_error(
        X, y, groups, estimator_factory=lambda: DummyClassifier(strategy="prior")
    )
    assert error == pytest.approx((0.4 / 3 + 0.4) / 2)


def test_held_out_calibration_error_is_small_for_a_well_specified_estimator() -> None:
    # Groups differ by a covariate shift only; P(correct | x) is the same logistic law, so
    # the estimator transfers and slice means of P land within a few hundredths.
    parts = [make_logistic_data(150, seed=20 + i, shift=s) for i, s in enumerate((-1, 0, 1))]
    X = np.vstack([part[0] for part in parts])
    y = np.concatenate([part[1] for part in parts])
    groups = np.repeat(["easy", "middle", "hard"], 150)
    error = estimate_held_out_calibration_error(
        X, y, groups, estimator_factory=lambda: EntropyEstimator(search=False)
    )
    assert 0.0 <= error < 0.08


def test_held_out_calibration_error_is_nan_with_a_single_group() -> None:
    X, y = make_logistic_data(30, seed=13)
    error = estimate_held_out_calibration_error(
        X, y, np.zeros(30), estimator_factory=lambda: EntropyEstimator(search=False)
    )
    assert math.isnan(error)
