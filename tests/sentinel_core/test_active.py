"""Tests of sentinel_core.active (active statistical inference for campaigns).

Hand-built inputs check the bookkeeping; synthetic populations GENERATED with fixed
seeds, whose true accuracy is known, check the estimator's validity by simulation;
the reference ``ppi_py`` package checks the estimator where it computes the same one.
"""

from __future__ import annotations

import importlib
import itertools
import math
import warnings
from types import ModuleType

import numpy as np
import pytest
from scipy import stats

from sentinel_core.active import (
    ActiveEstimate,
    active_mean_interval,
    allocate_labels,
    campaign_probabilities,
    draw_sample,
    predicted_half_width,
    predicted_residual_sd,
    sampling_probabilities,
)
from sentinel_core.errors import InvalidInputError
from sentinel_core.intervals import ppi_slice_interval

Z90 = float(stats.norm.ppf(0.95))


def import_ppi_py() -> ModuleType:
    """Import ppi_py without letting its import-time ``simplefilter("ignore")`` leak."""
    with warnings.catch_warnings():
        return importlib.import_module("ppi_py")


def population(
    seed: int, n: int = 400, *, informative: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic slice: ``P(correct)`` and labels, ``(n,)`` each.

    Informative: ``f ~ Beta(0.5, 0.5)`` and ``y ~ Bernoulli(0.8 f + 0.1)`` (a spread,
    miscalibrated predictor); otherwise ``f ~ Beta(2, 2)`` and ``y ~ Bernoulli(0.4)``.
    """
    rng = np.random.default_rng(seed)
    if informative:
        f = rng.beta(0.5, 0.5, size=n)
        y = (rng.random(n) < 0.8 * f + 0.1).astype(np.float64)
    else:
        f = rng.beta(2.0, 2.0, size=n)
        y = (rng.random(n) < 0.4).astype(np.float64)
    return f, y


# --------------------------------------------------------- sampling probabilities


def test_sampling_probabilities_sum_to_the_budget_and_grow_with_uncertainty() -> None:
    p = np.array([0.01, 0.1, 0.3, 0.5, 0.7, 0.95, 0.99, 0.5])
    pi = sampling_probabilities(p, 3, floor=0.2)
    assert pi.sum() == pytest.approx(3.0)
    assert np.all(pi >= 3 * 0.2 / p.size - 1e-12)
    u = np.sqrt(p * (1 - p))
    order = np.argsort(u)
    assert np.all(np.diff(pi[order]) >= -1e-12)  # more uncertain, more likely
    assert pi[3] == pytest.approx(pi[7])


def test_sampling_probabilities_cap_at_one_and_pass_the_excess_on() -> None:
    p = np.array([0.5, 0.5, 0.999, 0.999, 0.999, 0.999])
    pi = sampling_probabilities(p, 4, floor=0.0)
    assert pi.sum() == pytest.approx(4.0)
    assert pi.max() <= 1.0
    assert pi[:2] == pytest.approx([1.0, 1.0])
    assert np.all(pi[2:] == pytest.approx(0.5))


def test_sampling_probabilities_fall_back_to_uniform_for_a_zero_one_predictor() -> None:
    pi = sampling_probabilities([0.0, 1.0, 1.0, 0.0, 1.0], 2, floor=0.0)
    assert pi == pytest.approx(np.full(5, 0.4))
    assert sampling_probabilities([0.3, 0.6], 0).tolist() == [0.0, 0.0]


def test_campaign_probabilities_mix_the_audit_uniformly() -> None:
    p = np.linspace(0.02, 0.98, 50)
    pi = campaign_probabilities(p, audit=4, neyman=6, floor=0.2)
    assert pi.sum() == pytest.approx(10.0)
    # The audit's 4 labels and 20% of the 6 others are uniform.
    assert pi.min() >= (4 + 6 * 0.2) / 50 - 1e-12
    assert pi == pytest.approx(sampling_probabilities(p, 10, floor=(4 + 1.2) / 10))


def test_draw_sample_has_a_fixed_size_and_the_asked_inclusion_probabilities() -> None:
    f, _ = population(1, n=30)
    pi = sampling_probabilities(f, 6, floor=0.2)
    rng = np.random.default_rng(7)
    draws = 4000
    counts = np.zeros(f.size)
    for _ in range(draws):
        sample = draw_sample(pi, rng)
        assert sample.size == 6
        assert np.unique(sample).size == 6
        counts[sample] += 1
    # Binomial tolerance: 4.5 standard deviations per trace (30 traces).
    sd = np.sqrt(pi * (1 - pi) / draws)
    assert np.all(np.abs(counts / draws - pi) <= 4.5 * sd + 1e-9)


# ---------------------------------------------------------------- the estimator


def test_equal_probabilities_and_lambda_one_equal_the_uniform_ppi_of_slices() -> None:
    f, y = population(3, n=200)
    rng = np.random.default_rng(3)
    labelled = np.sort(rng.choice(200, size=25, replace=False))
    pi = np.full(200, 25 / 200)
    mine = active_mean_interval(f, pi, labelled, y[labelled], lam=1.0)
    unlabelled = np.setdiff1d(np.arange(200), labelled)
    reference = ppi_slice_interval(f[unlabelled], f[labelled], y[labelled], confidence=0.9)
    assert (mine.estimate, mine.low, mine.high) == pytest.approx(reference, abs=1e-12)


def test_equal_probabilities_and_lambda_zero_give_the_classical_interval() -> None:
    f, y = population(4, n=300)
    rng = np.random.default_rng(4)
    labelled = np.sort(rng.choice(300, size=40, replace=False))
    pi = np.full(300, 40 / 300)
    e = active_mean_interval(f, pi, labelled, y[labelled], lam=0.0, pseudo_residuals=False)
    mean = y[labelled].mean()
    se = math.sqrt((1 - 40 / 300) * np.var(y[labelled], ddof=1) / 40)
    assert e.estimate == pytest.approx(mean, abs=1e-12)
    assert e.se == pytest.approx(se, rel=1e-12)
    assert (e.low, e.high) == pytest.approx((mean - Z90 * se, mean + Z90 * se), abs=1e-12)
    # A predictor that says nothing (constant) leaves the tuned estimate classical too.
    flat = active_mean_interval(np.full(300, 0.7), pi, labelled, y[labelled])
    assert flat.estimate == pytest.approx(mean, abs=1e-12)


def test_point_estimates_agree_with_ppi_py_for_equal_weights() -> None:
    ppi_py = import_ppi_py()
    f, y = population(5, n=500)
    rng = np.random.default_rng(5)
    labelled = np.sort(rng.choice(500, size=60, replace=False))
    pi = np.full(500, 60 / 500)
    for lam in (0.0, 0.4, 1.0):
        mine = active_mean_interval(f, pi, labelled, y[labelled], lam=lam)
        reference = ppi_py.ppi_mean_pointestimate(y[labelled], f[labelled], f, lam=lam)
        assert mine.estimate == pytest.approx(float(np.squeeze(reference)), abs=1e-12)


def test_inverse_probability_weights_agree_with_ppi_py_weighted_estimator() -> None:
    # Two strata drawn with pi = 0.2 and 0.1; a sample of 10 + 5 makes sum(1 / pi) = N,
    # where ppi_py's weighted (Hajek) rectifier and the Horvitz-Thompson one coincide.
    ppi_py = import_ppi_py()
    f, y = population(6, n=100)
    pi = np.where(np.arange(100) < 50, 0.2, 0.1)
    labelled = np.concatenate([np.arange(0, 50, 5), np.arange(50, 100, 10)])
    weights = 1.0 / pi[labelled]
    for lam in (0.0, 0.7, 1.0):
        mine = active_mean_interval(f, pi, labelled, y[labelled], lam=lam)
        reference = ppi_py.ppi_mean_pointestimate(y[labelled], f[labelled], f, lam=lam, w=weights)
        assert mine.estimate == pytest.approx(float(np.squeeze(reference)), abs=1e-12)


def test_interval_agrees_with_ppi_py_when_the_population_is_large() -> None:
    # With N >> n the finite-population correction and ppi_py's imputed-mean term vanish;
    # what remains differs only by ddof (1 here, 0 in ppi_py): within 0.5% at n = 400.
    ppi_py = import_ppi_py()
    f, y = population(8, n=200_000)
    rng = np.random.default_rng(8)
    labelled = np.sort(rng.choice(f.size, size=400, replace=False))
    pi = np.full(f.size, 400 / f.size)
    mine = active_mean_interval(f, pi, labelled, y[labelled], lam=0.6, pseudo_residuals=False)
    low, high = ppi_py.ppi_mean_ci(y[labelled], f[labelled], f, alpha=0.1, lam=0.6)
    assert mine.width == pytest.approx(float(np.squeeze(high - low)), rel=5e-3)
    assert (mine.low + mine.high) / 2 == pytest.approx(float(np.squeeze(low + high)) / 2)


def test_the_estimator_is_unbiased_under_the_uncertainty_design() -> None:
    f, y = population(9, n=200)
    pi = sampling_probabilities(f, 20, floor=0.2)
    rng = np.random.default_rng(9)
    estimates = []
    for _ in range(3000):
        labelled = draw_sample(pi, rng)
        e = active_mean_interval(f, pi, labelled, y[labelled], lam=0.5, pseudo_residuals=False)
        estimates.append(e.estimate)
    mc_se = np.std(estimates) / np.sqrt(len(estimates))
    assert abs(np.mean(estimates) - y.mean()) <= 4 * mc_se


@pytest.mark.parametrize(
    ("design", "informative"),
    [("uniform", True), ("active", True), ("active", False)],
)
def test_intervals_cover_at_their_nominal_level_on_synthetic_data(
    design: str, informative: bool
) -> None:
    """500 synthetic slices (N = 400, n = 40 labels, nominal 0.90, tuned lambda).

    Tolerance: 0.86-0.95. Over 500 independent slices the coverage's binomial sd at
    0.90 is 0.0134, so 0.86 is three sd below nominal (a valid interval fails this
    about once in a thousand suites); the upper bound only rules out an interval
    that is uselessly wide.
    """
    covered = []
    for seed in range(500):
        f, y = population(1000 + seed, informative=informative)
        rng = np.random.default_rng(seed)
        pi = (
            np.full(f.size, 40 / f.size)
            if design == "uniform"
            else sampling_probabilities(f, 40, floor=0.2)
        )
        labelled = draw_sample(pi, rng)
        e = active_mean_interval(f, pi, labelled, y[labelled], confidence=0.9)
        covered.append(e.low <= y.mean() <= e.high)
    assert 0.86 <= np.mean(covered) <= 0.95


def _hard_population(name: str, rng: np.random.Generator, size: int = 300) -> np.ndarray:
    """``(2, size)``: ``f`` and ``y`` of the small-sample study's populations
    (scripts/interval_guard_study.py), the ones where Wald-type intervals fail."""
    if name == "low-calibrated":  # accuracy about 0.08, calibrated spread of P
        f = rng.beta(0.5, 6.0, size)
        y = rng.random(size) < f
    elif name == "overconfident":  # P about 0.05, accuracy 0.2
        f = np.clip(rng.normal(0.05, 0.02, size), 0.001, 1.0)
        y = rng.random(size) < 0.2
    else:  # flat-<accuracy>: an uninformative P
        f = rng.beta(2.0, 2.0, size)
        y = rng.random(size) < float(name.split("-")[1])
    return np.vstack([f, y.astype(np.float64)])


@pytest.mark.parametrize("budget", [10, 20])
@pytest.mark.parametrize(
    "name", ["low-calibrated", "overconfident", "flat-0.05", "flat-0.2", "flat-0.9"]
)
def test_active_intervals_hold_at_small_budgets_where_wald_intervals_fail(
    name: str, budget: int
) -> None:
    """1000 synthetic slices (N = 300) per case, the active design, nominal 0.90.

    Without the pseudo-residuals (``pseudo_residuals=False``) flat-0.05 covers 0.387
    and low-calibrated 0.709 at 10 labels; with them scripts/interval_guard_study.py
    measured 0.866-0.994 over these cases. Tolerance: >= 0.85, which 1000 slices at a
    true 0.90 miss with probability below 1e-7 (binomial sd 0.0095), and <= 0.999 (not
    [0, 1] everywhere).
    """
    covered = []
    for seed in range(1000):
        rng = np.random.default_rng(seed)
        f, y = _hard_population(name, rng)
        pi = sampling_probabilities(f, budget, floor=0.2)
        labelled = draw_sample(pi, rng)
        e = active_mean_interval(f, pi, labelled, y[labelled], confidence=0.9)
        covered.append(e.low <= y.mean() <= e.high)
    assert 0.85 <= np.mean(covered) <= 0.999


def test_active_sampling_narrows_the_interval_when_the_predictor_is_informative() -> None:
    uniform_widths, active_widths = [], []
    for seed in range(200):
        f, y = population(5000 + seed)
        f = np.clip(f, 0.001, 0.999)
        y = (np.random.default_rng(seed).random(f.size) < f).astype(np.float64)  # calibrated
        rng = np.random.default_rng(seed)
        for pi, widths in (
            (np.full(f.size, 40 / f.size), uniform_widths),
            (sampling_probabilities(f, 40, floor=0.2), active_widths),
        ):
            labelled = draw_sample(pi, rng)
            widths.append(active_mean_interval(f, pi, labelled, y[labelled]).width)
    assert np.mean(active_widths) < 0.95 * np.mean(uniform_widths)


def test_a_fully_labelled_slice_is_known_exactly_and_bounds_clip_the_interval() -> None:
    f = np.array([0.2, 0.9, 0.6])
    exact = active_mean_interval(f, np.ones(3), [0, 1, 2], [0.0, 1.0, 1.0])
    assert (exact.estimate, exact.low, exact.high) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    # 2 of 10 labelled, both correct: the accuracy is at least 0.2 whatever the rest.
    e = active_mean_interval(np.full(10, 0.1), np.full(10, 0.2), [0, 1], [1.0, 1.0])
    assert e.low >= 0.2
    assert e.high <= 1.0
    assert isinstance(e, ActiveEstimate)
    assert set(e.to_dict()) == {
        "estimate",
        "low",
        "high",
        "se",
        "lam",
        "n",
        "n_labelled",
        "confidence",
    }


# ---------------------------------------------------------------- allocation


def test_allocation_spends_the_audit_share_then_follows_the_residual_sd() -> None:
    sizes = np.array([1000, 1000, 1000, 1000])
    sd = np.array([0.1, 0.2, 0.3, 0.4])
    plan = allocate_labels(sizes, sd, 1000, audit_share=0.2, min_per_slice=2)
    assert plan.labels.sum() == 1000
    assert plan.audit.sum() == 200
    assert plan.audit.tolist() == [50, 50, 50, 50]  # equal sizes: equal audit
    # By width (the default): more labels where the sd is larger, but less than in
    # proportion; for large n the width sd / sqrt(n) is evened out by n ~ sd^(2/3).
    assert np.all(np.diff(plan.labels) > 0)
    share = plan.labels / plan.labels.sum()
    assert share == pytest.approx(sd ** (2 / 3) / np.sum(sd ** (2 / 3)), abs=0.02)
    assert plan.to_dict()["labels"] == plan.labels.tolist()
    # Neyman (objective="variance"): the totals grow as the sd (within rounding).
    neyman = allocate_labels(sizes, sd, 1000, audit_share=0.2, objective="variance")
    assert neyman.audit.tolist() == plan.audit.tolist()
    assert neyman.labels / neyman.labels.sum() == pytest.approx(sd / sd.sum(), abs=0.01)


def _total_width(split: object, sizes: np.ndarray, sd: np.ndarray) -> float:
    """``sum_s W_s(n_s)`` of a split of labels over slices."""
    return sum(
        predicted_half_width(int(n), int(N), float(s))
        for n, N, s in zip(np.asarray(split), sizes, sd, strict=True)
    )


def test_allocation_by_width_is_the_brute_force_optimum_of_the_predicted_widths() -> None:
    # 200 small campaigns (3 slices of 8-39 traces, at most half of them labelled):
    # the greedy split minimises sum_s W_s(n_s) exactly wherever no slice goes past
    # 70% labelled (W_s is convex there); every such case is checked.
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(200):
        sizes = rng.integers(8, 40, 3)
        sd = rng.uniform(0.05, 0.5, 3)
        budget = int(rng.integers(6, sizes.sum() // 2))
        plan = allocate_labels(sizes, sd, budget, audit_share=0.0, min_per_slice=1)

        splits = [
            c for c in itertools.product(*(range(1, int(N) + 1) for N in sizes)) if sum(c) == budget
        ]
        best = min(splits, key=lambda split: _total_width(split, sizes, sd))
        if max(np.max(np.asarray(best) / sizes), np.max(plan.labels / sizes)) > 0.7:
            continue
        checked += 1
        assert _total_width(plan.labels, sizes, sd) == pytest.approx(
            _total_width(best, sizes, sd), abs=1e-12
        )
    assert checked >= 150


def test_predicted_half_width_matches_the_served_interval_on_average() -> None:
    # Calibrated f, uniform labels, lam = 1: the served se's mean square is W(n)^2.
    rng = np.random.default_rng(12)
    f = rng.beta(0.5, 0.5, 400)
    sd = math.sqrt(float(np.mean(f * (1 - f))))
    for n in (5, 20):
        squares = []
        for _ in range(2000):
            y = (rng.random(f.size) < f).astype(np.float64)
            take = np.sort(rng.choice(f.size, n, replace=False))
            pi = np.full(f.size, n / f.size)
            squares.append(active_mean_interval(f, pi, take, y[take], lam=1.0).se ** 2)
        # lam = 1 spends no degree of freedom: divisor n (n + 1) against W's n * n.
        expected = predicted_half_width(n, f.size, sd) ** 2 * n / (n + 1)
        assert np.mean(squares) == pytest.approx(expected, rel=0.05)


def test_allocation_weights_by_traffic_floors_every_slice_and_respects_sizes() -> None:
    sizes = np.array([100, 400, 5])
    sd = np.array([0.4, 0.4, 0.4])
    plan = allocate_labels(
        sizes, sd, 200, audit_share=0.0, min_per_slice=2, weights=sizes, objective="variance"
    )
    assert plan.labels.sum() == 200
    assert plan.labels[2] <= 5
    assert plan.labels[1] > 3 * plan.labels[0]  # n_s grows as N_s sd_s
    # by width, traffic weights still favour the big slice, less than in proportion
    by_width = allocate_labels(sizes, sd, 200, audit_share=0.0, min_per_slice=2, weights=sizes)
    assert plan.labels[0] < by_width.labels[0] < by_width.labels[1]
    small = allocate_labels(sizes, sd, 5, audit_share=0.2, min_per_slice=2)
    assert small.labels.sum() == 5
    assert small.labels.min() >= 1  # floors first, as far as the budget goes
    everything = allocate_labels(sizes, sd, 10_000)
    assert everything.labels.tolist() == sizes.tolist()


def test_predicted_residual_sd_is_floored() -> None:
    assert predicted_residual_sd([0.5, 0.5]) == pytest.approx(0.5)
    assert predicted_residual_sd([0.0, 1.0, 1.0]) == pytest.approx(0.05)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: sampling_probabilities([0.2, 1.5], 1),
            r"p_correct must hold finite values in \[0, 1\]",
        ),
        (lambda: sampling_probabilities([], 0), r"p_correct must be a non-empty 1-D array"),
        (lambda: sampling_probabilities([0.2, 0.5], 3), r"expected n_labels >= 0 and <= 2"),
        (lambda: sampling_probabilities([0.2, 0.5], 1, floor=-0.1), r"expected floor"),
        (lambda: sampling_probabilities([[0.2, 0.5]], 1), r"p_correct must be 1-D of shape \(n,\)"),
        (
            lambda: active_mean_interval([0.5] * 4, [0.5] * 3, [0, 1], [1, 0]),
            r"expected pi of the same length",
        ),
        (
            lambda: active_mean_interval([0.5] * 4, [0.5] * 4, [0, 1], [1]),
            r"expected one label per labelled index",
        ),
        (
            lambda: active_mean_interval([0.5] * 4, [0.5] * 4, [0, 0], [1, 0]),
            r"expected unique indices in \[0, 4\)",
        ),
        (
            lambda: active_mean_interval([0.5] * 4, [0.5] * 4, [0], [1]),
            r"expected at least 2 labelled traces",
        ),
        (
            lambda: active_mean_interval([0.5] * 4, [0.0, 0.5, 0.5, 0.5], [0, 1], [1, 0]),
            r"expected pi > 0 for every labelled trace",
        ),
        (
            lambda: active_mean_interval([0.5] * 4, [0.5] * 4, [0.0, 1.0], [1, 0]),
            r"expected labelled to be 1-D integer indices",
        ),
        (
            lambda: active_mean_interval([0.5] * 4, [0.5] * 4, [0, 1], [1, 0], confidence=1.0),
            r"expected confidence in \(0, 1\)",
        ),
        (
            lambda: active_mean_interval([0.5] * 4, [0.5] * 4, [0, 1], [1, 0], lam=math.nan),
            r"expected lam to be None or a finite number",
        ),
        (
            lambda: allocate_labels(np.array([10, 10]), np.array([0.3]), 5),
            r"expected sizes and residual_sd of the same shape",
        ),
        (
            lambda: allocate_labels(np.array([10, 10]), np.array([0.3, 0.0]), 5),
            r"expected residual_sd > 0",
        ),
        (
            lambda: allocate_labels(np.array([10, 10]), np.array([0.3, 0.3]), -1),
            r"expected n_labels >= 0",
        ),
        (
            lambda: allocate_labels(np.array([10, 0]), np.array([0.3, 0.3]), 5),
            r"expected integer sizes >= 1",
        ),
        (
            lambda: allocate_labels(np.array([10, 10]), np.array([0.3, 0.3]), 5, audit_share=2),
            r"expected audit_share in \[0, 1\]",
        ),
        (
            lambda: allocate_labels(np.array([10, 10]), np.array([0.3, 0.3]), 5, objective="wdith"),
            r"expected objective in \['width', 'variance'\], got 'wdith'",
        ),
    ],
)
def test_bad_input_says_what_was_expected(call: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        call()  # type: ignore[operator]
