"""Soft ATC: ATC's equation kept, the step made a ramp whose width the slices choose."""

from __future__ import annotations

import numpy as np
import pytest

from sentinel_core.errors import InvalidInputError, NotFittedError
from sentinel_core.estimator import ATCEstimator
from sentinel_core.soft_atc import TAU_GRID, TAU_PRIOR, SoftATC


def _generated(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GENERATED: an entropy-like score (lower is confident), labels, 6 slices of shifted mix."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 6, size=n)
    shift = groups * 0.3
    score = rng.gamma(2.0, 0.5, size=n) + shift
    p_true = 1 / (1 + np.exp(3 * (score - 1.5)))
    y = (rng.random(n) < p_true).astype(float)
    return score, y, groups.astype(str)


def test_the_training_mean_of_p_equals_the_training_accuracy_for_every_width() -> None:
    score, y, _ = _generated()
    for factor in TAU_GRID[1:]:
        soft = SoftATC(higher_is_confident=False, tau=factor * score.std()).fit(score, y)
        assert soft.predict(score).mean() == pytest.approx(y.mean(), abs=1e-6)


def test_width_zero_is_atc_itself() -> None:
    score, y, _ = _generated(seed=1)
    target = _generated(seed=2)[0]
    soft = SoftATC(higher_is_confident=False, tau=0.0).fit(score, y)
    atc = ATCEstimator(higher_is_confident=False).fit(score, y)
    # Both take the 1 - accuracy quantile: the estimates agree to one response in the share.
    assert soft.predict(target).mean() == pytest.approx(atc.estimate(target), abs=2 / target.size)
    assert set(np.unique(soft.predict(target))) <= {0.0, 1.0}


def test_p_correct_is_monotone_in_confidence_and_has_a_spread() -> None:
    score, y, groups = _generated(seed=3)
    soft = SoftATC(higher_is_confident=False).fit(score, y, groups=groups)
    grid = np.linspace(score.min(), score.max(), 50)
    p = soft.predict(grid)
    assert np.all(np.diff(p) <= 1e-12)  # lower entropy, higher P(correct)
    if soft.tau_ > 0:
        assert ((p > 0.05) & (p < 0.95)).sum() >= 3


def test_the_width_is_the_grid_value_with_the_lowest_leave_one_slice_out_error() -> None:
    score, y, groups = _generated(seed=4)
    soft = SoftATC(higher_is_confident=False).fit(score, y, groups=groups)
    c = -score
    errors = [SoftATC._held_out_error(c, y, groups, factor * score.std()) for factor in TAU_GRID]
    assert soft.tau_ == pytest.approx(TAU_GRID[int(np.argmin(errors))] * score.std())


def test_too_few_slices_use_the_prior_width() -> None:
    score, y, _ = _generated(seed=5)
    soft = SoftATC(higher_is_confident=False).fit(score, y, groups=np.array(["a", "b"] * 300))
    assert soft.tau_ == pytest.approx(TAU_PRIOR * score.std())


def test_an_all_correct_training_set_estimates_that_accuracy_everywhere() -> None:
    score, _, _ = _generated(seed=6)
    soft = SoftATC(higher_is_confident=False).fit(score, np.ones_like(score))
    assert np.all(soft.predict(score[:10]) == 1.0)


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, np.nan], [1, 0], "finite scores"),
        ([0.1, 0.2], [1, 2], "0/1 label"),
        ([], [], "at least one"),
    ],
)
def test_bad_input_says_what_was_expected(
    scores: list[float], labels: list[int], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        SoftATC(higher_is_confident=False).fit(scores, labels)


def test_predict_before_fit_is_a_clear_error() -> None:
    with pytest.raises(NotFittedError):
        SoftATC(higher_is_confident=True).predict([0.1])
