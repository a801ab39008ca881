"""Label-free slice intervals: the served rule and slice-conformal, as pure functions.

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
from sklearn.model_selection import LeaveOneGroupOut

from sentinel_core.errors import InvalidInputError

__all__ = [
    "INTERVAL_RULES",
    "IntervalRule",
    "bootstrap_mean_interval",
    "conformal_slice_quantile",
    "interval_widening",
    "loso_residuals",
    "slice_interval",
    "widen",
]

FloatArray = npt.NDArray[np.float64]
IntervalRule = Literal["served", "conformal"]
#: The label-free interval rules, in report order.
INTERVAL_RULES: Final[tuple[IntervalRule, ...]] = ("served", "conformal")

#: ``predict(X_train, y_train, X_test, groups_train) -> P(correct)`` per test row.
Predictor = Callable[[FloatArray, FloatArray, FloatArray, npt.NDArray[np.str_]], FloatArray]


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise InvalidInputError(f"confidence must lie in (0, 1), got {confidence!r}")


def bootstrap_mean_interval(
    p: npt.ArrayLike, *, confidence: float, n_boot: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(p)``, ``p`` of shape ``(n,)``, ``n >= 1``.

    The same resampling as :func:`sentinel_core.slices.estimate_slices` (one
    ``(n_boot, n)`` index matrix), for slices of protocol size.
    """
    _check_confidence(confidence)
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
    _check_confidence(confidence)
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
    """
    by = interval_widening(rule, residuals, confidence)
    bounds = bootstrap_mean_interval(p, confidence=confidence, n_boot=n_boot, rng=rng)
    return widen(bounds, by)
