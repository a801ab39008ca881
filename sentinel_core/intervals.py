"""The interval maths of a slice's accuracy, as pure functions (slice logic: ``slices``).

With labels (the second half of the module): :func:`ppi_mean_interval` and
:func:`ppi_slice_interval` (prediction-powered inference, the latter for a finite
slice whose labelled answers are known), a Wilson interval for a fully labelled slice,
and :func:`active_slice_interval` (labels bought by an active campaign, weighted by
their inclusion probabilities through :mod:`sentinel_core.active`).

Without labels (the first half): the served rule and slice-conformal.

A label-free estimate of a slice's accuracy is the slice mean of ``P(correct)``
(METHOD §6). Its error on a new slice has two parts: the estimator's bias on a slice it
was not trained on (a distribution shift the entropy may not see), and the sampling
noise of a slice of ``n`` responses. Both rules below take the first from the
estimator's leave-one-slice-out (LOSO) residuals on its TRAINING slices (fit on all
training slices but one, estimate that one, compare with its observed accuracy; what
:func:`~sentinel_core.estimator.estimate_held_out_calibration_error` measures), and
the second from a percentile bootstrap of the slice mean of ``P(correct)``:

- ``"served"``, today's rule (:func:`sentinel_core.slices.estimate_slices`): the
  bootstrap interval widened on both sides by the MEDIAN absolute LOSO residual.
  Without two training slices there is no residual; the serving code then widens by 0
  (``calibration_error`` NaN becomes 0.0), and so does this rule.
- ``"conformal"``, split-conformal over slices (:func:`conformal_slice_quantile`):
  the bootstrap interval widened on both sides by the finite-sample-corrected
  ``confidence`` quantile of the ``k`` absolute LOSO residuals, the
  ``ceil((k + 1) * confidence)``-th smallest. If slices were exchangeable that
  quantile alone would cover a new slice's error with probability >= ``confidence``
  (Vovk et al. 2005; Lei et al. 2018); it exists only for ``k >= confidence /
  (1 - confidence)`` (9 slices at 0.90). Below that the largest residual is used (the
  quantile at level ``k / (k + 1)``), and with no residual at all (one training
  slice) the interval is [0, 1]: nothing measured says how far off a new slice is.
  The bootstrap term is the held-out slice's own sampling error; the residuals hold
  the training slices' sampling noise too, so the sum errs on the wide side.

Both are clipped to [0, 1]. :func:`loso_residuals` computes the residuals from any
``predict(X_train, y_train, X_test, groups)`` callable, so the group protocol
(:mod:`sentinel_core.protocol`) measures coverage and width of both rules with the same
fits it uses for AEE.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats
from sklearn.model_selection import LeaveOneGroupOut

from sentinel_core.active import active_mean_interval
from sentinel_core.arrays import as_unit_vector
from sentinel_core.errors import InvalidInputError

__all__ = [
    "INTERVAL_RULES",
    "IntervalRule",
    "active_slice_interval",
    "bootstrap_mean_interval",
    "conformal_slice_quantile",
    "interval_widening",
    "loso_residuals",
    "ppi_mean_interval",
    "ppi_slice_interval",
    "resampled_interval",
    "slice_interval",
    "widen",
    "z_of",
]

FloatArray = npt.NDArray[np.float64]
IntervalRule = Literal["served", "conformal"]
#: The label-free interval rules, in report order.
INTERVAL_RULES: Final[tuple[IntervalRule, ...]] = ("served", "conformal")

#: ``predict(X_train, y_train, X_test, groups_train) -> P(correct)`` per test row.
Predictor = Callable[[FloatArray, FloatArray, FloatArray, npt.NDArray[np.str_]], FloatArray]


def z_of(confidence: float) -> float:
    """The normal quantile of a two-sided ``confidence`` interval, after checking it."""
    if not 0.0 < confidence < 1.0:
        raise InvalidInputError(f"confidence must lie in (0, 1), got {confidence!r}")
    return float(stats.norm.ppf(0.5 + confidence / 2.0))


def bootstrap_mean_interval(
    p: npt.ArrayLike, *, confidence: float, n_boot: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(p)``, ``p`` of shape ``(n,)``, ``n >= 1``.

    The same resampling as :func:`sentinel_core.slices.estimate_slices` (one
    ``(n_boot, n)`` index matrix), for slices of protocol size.
    """
    z_of(confidence)
    values = np.asarray(p, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise InvalidInputError(f"p must be 1-D and non-empty, got shape {values.shape}")
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def conformal_slice_quantile(residuals: npt.ArrayLike, confidence: float) -> float:
    """The split-conformal quantile of ``k`` absolute slice residuals (module docstring).

    The ``ceil((k + 1) * confidence)``-th smallest ``|r|``; the largest when that rank
    exceeds ``k``; ``inf`` when ``k == 0`` (no residual: the interval is [0, 1]).
    """
    z_of(confidence)
    scores = np.sort(np.abs(np.asarray(residuals, dtype=np.float64).ravel()))
    if scores.size == 0:
        return math.inf
    if not np.all(np.isfinite(scores)):
        raise InvalidInputError(f"residuals must be finite, got {scores[~np.isfinite(scores)]}")
    rank = min(scores.size, math.ceil((scores.size + 1) * confidence - 1e-12))
    return float(scores[rank - 1])


def loso_residuals(
    predict: Predictor,
    X: FloatArray,
    y: FloatArray,
    groups: npt.NDArray[np.str_],
) -> FloatArray:
    """Signed leave-one-slice-out residuals ``accuracy - mean P(correct)`` per slice.

    For each of the ``k`` slices of ``groups`` (sorted), fit on the others with
    ``predict`` and compare the held-out slice's mean prediction with its accuracy.
    Shape ``(k,)``; empty with fewer than two slices (nothing to fit on).
    """
    if np.unique(groups).size < 2:
        return np.empty(0)
    # LeaveOneGroupOut yields the slices in sorted order, each held out once.
    residuals = [
        float(y[held].mean()) - float(np.mean(predict(X[train], y[train], X[held], groups[train])))
        for train, held in LeaveOneGroupOut().split(X, y, groups)
    ]
    return np.asarray(residuals, dtype=np.float64)


def interval_widening(rule: IntervalRule, residuals: npt.ArrayLike, confidence: float) -> float:
    """How far ``rule`` widens the bootstrap interval on each side; ``inf`` means [0, 1].

    ``residuals``: LOSO residuals of the training slices (:func:`loso_residuals`),
    shape ``(k,)``, possibly empty.
    """
    r = np.asarray(residuals, dtype=np.float64).ravel()
    if rule == "served":
        return float(np.median(np.abs(r))) if r.size else 0.0
    if rule == "conformal":
        return conformal_slice_quantile(r, confidence)
    raise InvalidInputError(f"rule must be one of {list(INTERVAL_RULES)}, got {rule!r}")


def widen(bounds: tuple[float, float], by: float) -> tuple[float, float]:
    """``bounds`` widened by ``by`` on each side, clipped to [0, 1] (``inf``: [0, 1])."""
    if not math.isfinite(by):
        return 0.0, 1.0
    return max(0.0, bounds[0] - by), min(1.0, bounds[1] + by)


def slice_interval(
    rule: IntervalRule,
    p: npt.ArrayLike,
    residuals: npt.ArrayLike,
    *,
    confidence: float = 0.9,
    n_boot: int = 1000,
    rng: np.random.Generator,
    resample: npt.ArrayLike | None = None,
) -> tuple[float, float]:
    """A slice's label-free interval ``(low, high)`` by ``rule`` (module docstring).

    Args:
        rule: ``"served"`` or ``"conformal"``.
        p: the slice's ``P(correct)`` per response, shape ``(n,)``.
        residuals: LOSO residuals of the training slices (:func:`loso_residuals`),
            shape ``(k,)``, possibly empty.
        confidence: nominal coverage, in (0, 1).
        n_boot: bootstrap resamples.
        rng: the bootstrap's random generator.
        resample: the per-response values whose bootstrap gives the sampling term,
            centred on ``mean(p)`` (default ``p``; ATC's votes for the default
            estimator, as :func:`sentinel_core.slices.estimate_slices_with_labels`).
    """
    by = interval_widening(rule, residuals, confidence)
    return widen(resampled_interval(p, resample, confidence, n_boot, rng), by)


def resampled_interval(
    p: npt.ArrayLike,
    resample: npt.ArrayLike | None,
    confidence: float,
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """The bootstrap interval of ``mean(resample)`` (default ``p``) moved to ``mean(p)``."""
    centre = np.asarray(p, dtype=np.float64)
    values = centre if resample is None else np.asarray(resample, dtype=np.float64)
    low, high = bootstrap_mean_interval(values, confidence=confidence, n_boot=n_boot, rng=rng)
    shift = float(centre.mean()) - float(values.mean())
    return low + shift, high + shift


# ------------------------------------------ intervals of a slice with labels


def _wilson_interval(y: FloatArray, confidence: float) -> tuple[float, float, float]:
    """``mean(y)`` with the Wilson score interval (scipy's); ``y`` is 0/1 of shape ``(n,)``."""
    successes = round(float(y.sum()))
    if not np.all((y == 0.0) | (y == 1.0)):
        raise InvalidInputError(f"a fully labelled slice needs 0/1 labels, got {np.unique(y)[:5]}")
    ci = stats.binomtest(successes, y.size).proportion_ci(confidence, method="wilson")
    return float(y.mean()), float(ci.low), float(ci.high)


def _ppi_inputs(
    pred_unlabelled: npt.ArrayLike, pred_labelled: npt.ArrayLike, y_labelled: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    p_u = as_unit_vector("pred_unlabelled", pred_unlabelled)
    p_l = as_unit_vector("pred_labelled", pred_labelled)
    y = as_unit_vector("y_labelled", y_labelled)
    if p_l.shape != y.shape:
        raise InvalidInputError(
            "pred_labelled and y_labelled must be the same length, but pred_labelled is "
            f"length {p_l.size} and y_labelled is length {y.size}"
        )
    return p_u, p_l, y


def ppi_mean_interval(
    pred_unlabelled: npt.ArrayLike,
    pred_labelled: npt.ArrayLike,
    y_labelled: npt.ArrayLike,
    *,
    confidence: float = 0.9,
) -> tuple[float, float, float]:
    """Prediction-powered estimate of a mean and its interval: ``(estimate, low, high)``.

    ``estimate = mean(pred_unlabelled) + mean(y_labelled - pred_labelled)``, the
    predictions' mean corrected by the labelled residual (Angelopoulos et al., 2023;
    ``lam = 1`` in ``ppi_py``). The interval is normal: ``estimate +- z * se`` with
    ``se^2 = var(pred_unlabelled) / N + var(y - pred_labelled) / n`` (``ddof=1``, where
    ``ppi_py`` uses ``ddof=0``). With a single unlabelled response its variance is
    estimated from all predictions, labelled ones included. Estimate and bounds are
    clipped to [0, 1], the range of an accuracy.

    When no response is unlabelled (``N == 0``) the slice is fully labelled: the
    estimate is ``mean(y_labelled)`` with a Wilson interval, which needs one label;
    otherwise at least two labels are needed to estimate the residual variance.

    Args:
        pred_unlabelled: ``P(correct)`` of unlabelled responses, shape ``(N,)``.
        pred_labelled: ``P(correct)`` of labelled responses, shape ``(n,)``.
        y_labelled: their labels in [0, 1], shape ``(n,)``.
        confidence: interval coverage, in (0, 1).
    """
    z = z_of(confidence)
    p_u, p_l, y = _ppi_inputs(pred_unlabelled, pred_labelled, y_labelled)
    if p_u.size == 0:
        if y.size == 0:
            raise InvalidInputError("a fully labelled slice needs at least 1 label, got 0")
        return _wilson_interval(y, confidence)
    if y.size < 2:
        raise InvalidInputError(f"PPI needs at least 2 labelled responses, got {y.size}")
    residual = y - p_l
    if p_u.size >= 2:
        var_unlabelled = float(np.var(p_u, ddof=1))
    else:
        var_unlabelled = float(np.var(np.concatenate([p_u, p_l]), ddof=1))
    estimate = float(p_u.mean() + residual.mean())
    se = float(np.sqrt(var_unlabelled / p_u.size + np.var(residual, ddof=1) / y.size))
    low, high = np.clip([estimate - z * se, estimate + z * se], 0.0, 1.0)
    return float(np.clip(estimate, 0.0, 1.0)), float(low), float(high)


def ppi_slice_interval(
    pred_unlabelled: npt.ArrayLike,
    pred_labelled: npt.ArrayLike,
    y_labelled: npt.ArrayLike,
    *,
    confidence: float = 0.9,
) -> tuple[float, float, float]:
    """A slice's accuracy from its labels and predictions: ``(estimate, low, high)``.

    The target is the slice's own accuracy, the mean of ``y`` over its ``n = n_l + N``
    responses, of which the ``n_l`` labelled ones are known exactly. Only the ``N``
    unlabelled ones are estimated, prediction-powered: ``sum(y_u) ~ sum(p_u) + N *
    mean(y_l - p_l)``; so ``estimate = (sum(y_l) + sum(p_u) + N * mean residual) / n``.
    ``sum(p_u)`` is known, so the error is ``N * (mean res_u - mean res_l)``, with
    ``se = (N / n) * sd(res) * sqrt(1 / N + 1 / n_l)`` (``ddof=1``, with two
    pseudo-residuals of +-0.5 so that a handful of equal residuals cannot claim zero
    error). Estimate and bounds are clipped to what the labels already fix:
    ``[sum(y_l) / n, (sum(y_l) + N) / n]``. When most of a
    slice is labelled this is far tighter and better centred than the mean of
    :func:`ppi_mean_interval`, which targets the mean of an infinite population and
    lets a single unlabelled response dominate a small slice.
    Needs two labels and one unlabelled response; a fully labelled slice goes to
    :func:`ppi_mean_interval` (Wilson).
    """
    z = z_of(confidence)
    p_u, p_l, y = _ppi_inputs(pred_unlabelled, pred_labelled, y_labelled)
    if p_u.size == 0:
        return ppi_mean_interval(p_u, p_l, y, confidence=confidence)
    if y.size < 2:
        raise InvalidInputError(f"PPI needs at least 2 labelled responses, got {y.size}")
    n_u, n_l = p_u.size, y.size
    n = n_u + n_l
    residual = y - p_l
    estimate = float((y.sum() + p_u.sum() + n_u * residual.mean()) / n)
    # Plus-two variance: two pseudo-residuals +-0.5 (mean 0) keep a few identical
    # residuals from claiming zero error; negligible once n_l is in the tens.
    sd = float(np.std(np.concatenate([residual, [0.5, -0.5]]), ddof=1))
    se = n_u / n * sd * float(np.sqrt(1.0 / n_u + 1.0 / n_l))
    # Whatever the unlabelled responses turn out to be, the accuracy lies in these bounds.
    floor, ceiling = y.sum() / n, (y.sum() + n_u) / n
    low, high = np.clip([estimate - z * se, estimate + z * se], floor, ceiling)
    return float(np.clip(estimate, floor, ceiling)), float(low), float(high)


def active_slice_interval(
    p_correct: npt.ArrayLike,
    labels: npt.ArrayLike,
    drawn_from: npt.ArrayLike,
    inclusion: npt.ArrayLike,
    *,
    confidence: float = 0.9,
) -> tuple[float, float, float]:
    """A slice's accuracy when an active campaign labelled part of it: ``(estimate, low, high)``.

    The responses labelled by other means are known exactly; the rest, ``drawn_from``,
    is the population the campaign sampled with probabilities ``inclusion``, estimated
    by the inverse-probability-weighted PPI++ of :func:`sentinel_core.active.
    active_mean_interval` (valid under the non-uniform pick). The two combine by their
    sizes: ``(sum(y_known) + N_pop * theta_pop) / n``, the interval scaled alike.

    Args:
        p_correct: ``(n,)`` P(correct) of every response of the slice.
        labels: ``(n,)`` labels in [0, 1], NaN where unlabelled.
        drawn_from: ``(n,)`` bool, the campaign's population.
        inclusion: ``(n,)`` inclusion probability of each sampled label (others unused).
    """
    p = as_unit_vector("p_correct", p_correct)
    y = as_unit_vector("labels", labels, allow_nan=True)
    pool = np.asarray(drawn_from, dtype=bool)
    pi = np.nan_to_num(np.asarray(inclusion, dtype=np.float64), nan=0.0)
    known = ~pool & ~np.isnan(y)
    sampled = np.flatnonzero(~np.isnan(y[pool]))
    population = active_mean_interval(
        p[pool], pi[pool], sampled, y[pool][sampled], confidence=confidence
    )
    n, n_pop, known_sum = p.size, int(pool.sum()), float(y[known].sum())
    scale = [
        (known_sum + n_pop * v) / n for v in (population.estimate, population.low, population.high)
    ]
    return float(scale[0]), float(scale[1]), float(scale[2])
