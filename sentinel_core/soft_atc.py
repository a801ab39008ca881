"""Soft ATC: average thresholded confidence made smooth, so P(correct) has a spread.

ATC (Garg et al. 2022; :class:`~sentinel_core.estimator.ATCEstimator`) picks a threshold
``t`` on a confidence score so that the share of training responses above it equals the
training accuracy, and estimates a slice's accuracy as its share above ``t``. As a
per-response probability that is 0 or 1, which makes reliability diagrams two dots and
uncertainty sampling blind. Soft ATC replaces the step by a logistic ramp of width
``tau``::

    P(correct | c) = sigmoid((c - t_tau) / tau)

where ``c`` is the score oriented so that higher is more confident, and ``t_tau`` solves
ATC's own equation with the ramp: ``mean_train P = training accuracy`` (so a slice that
looks like the training data is estimated at the training accuracy, exactly as ATC). A
slice's estimate is the mean of ``P`` over its responses: the same story per response
and per slice. ``tau = 0`` is ATC itself.

``tau`` is chosen with the slice structure in mind: over a grid of multiples of the
score's standard deviation (0 included), the one with the lowest leave-one-slice-out
error of slice means on the training slices, the quantity the estimator is for (a
per-response log-loss choice calibrates responses better but, measured on the real
traces, estimates slices worse). With fewer than three training slices there is nothing
to hold out, and ``tau`` is the grid's prior value, 0.1 standard deviations.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from scipy.special import expit

from sentinel_core.errors import InvalidInputError, NotFittedError

FloatArray = npt.NDArray[np.float64]

#: Ramp widths tried, in standard deviations of the oriented score (0: hard ATC).
TAU_GRID: Final[tuple[float, ...]] = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)
#: The width used when there are too few training slices to choose one.
TAU_PRIOR: Final[float] = 0.1
_MIN_SLICES_TO_CHOOSE: Final[int] = 3
_BISECTION_STEPS: Final[int] = 60


def _threshold(c: FloatArray, accuracy: float, tau: float) -> float:
    """``t`` such that the training mean of ``P`` equals ``accuracy`` (0 < accuracy < 1)."""
    if tau == 0.0:
        # Hard ATC: the share strictly above t is the accuracy (the 1 - acc quantile).
        return float(np.quantile(c, 1.0 - accuracy, method="lower"))
    low, high = float(c.min()) - 40 * tau, float(c.max()) + 40 * tau
    for _ in range(_BISECTION_STEPS):  # mean P decreases in t: bisection converges
        middle = 0.5 * (low + high)
        if expit((c - middle) / tau).mean() > accuracy:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def _ramp(c: FloatArray, threshold: float, tau: float) -> FloatArray:
    if tau == 0.0:
        return (c > threshold).astype(np.float64)
    return np.asarray(expit((c - threshold) / tau), dtype=np.float64)


class SoftATC:
    """Soft ATC on one score; ``fit`` then ``predict`` per-response ``P(correct)``.

    Args:
        higher_is_confident: the score's confident direction (see
            :data:`~sentinel_core.estimator.CONFIDENT_DIRECTION`).
        tau: a fixed ramp width in the score's units, or None to choose it (module
            docstring).

    Attributes:
        tau_: the ramp width used, in the score's units.
        threshold_: ``t`` in the oriented score's units (higher is confident).
        source_accuracy_: the training accuracy.
    """

    def __init__(self, higher_is_confident: bool, tau: float | None = None) -> None:
        if tau is not None and not (np.isfinite(tau) and tau >= 0):
            raise InvalidInputError(f"expected tau >= 0 or None, got {tau!r}")
        self.higher_is_confident = higher_is_confident
        self.tau = tau

    def _oriented(self, scores: npt.ArrayLike) -> FloatArray:
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 1 or not np.isfinite(s).all():
            raise InvalidInputError(
                f"expected a 1-d array of finite scores, got shape {s.shape} "
                f"with {int((~np.isfinite(s)).sum())} non-finite values"
            )
        return s if self.higher_is_confident else -s

    def fit(
        self, scores: npt.ArrayLike, y: npt.ArrayLike, groups: npt.ArrayLike | None = None
    ) -> SoftATC:
        """Fit on training scores, 0/1 labels and (optionally) each response's slice."""
        c = self._oriented(scores)
        labels = np.asarray(y, dtype=np.float64)
        if labels.shape != c.shape or not np.isin(labels, (0.0, 1.0)).all():
            raise InvalidInputError(
                f"expected one 0/1 label per score ({c.size}), got shape {labels.shape}"
            )
        if c.size == 0:
            raise InvalidInputError("expected at least one training response, got none")
        self.source_accuracy_ = float(labels.mean())
        self.tau_ = self.tau if self.tau is not None else self._choose_tau(c, labels, groups)
        if self.source_accuracy_ in (0.0, 1.0):
            # Every response on one side: the training data says nothing about where
            # failures begin, so every estimate is that accuracy (as in ATC).
            self.threshold_ = -np.inf if self.source_accuracy_ == 1.0 else np.inf
        else:
            self.threshold_ = _threshold(c, self.source_accuracy_, self.tau_)
        return self

    def _choose_tau(self, c: FloatArray, labels: FloatArray, groups: npt.ArrayLike | None) -> float:
        spread = float(c.std())
        if spread == 0.0:
            return 0.0
        keys = None if groups is None else np.asarray(groups).astype(str)
        if keys is not None and keys.shape != c.shape:
            raise InvalidInputError(
                f"expected one group per score ({c.size}), got shape {keys.shape}"
            )
        if keys is None or np.unique(keys).size < _MIN_SLICES_TO_CHOOSE:
            return TAU_PRIOR * spread
        errors = [self._held_out_error(c, labels, keys, factor * spread) for factor in TAU_GRID]
        return TAU_GRID[int(np.argmin(errors))] * spread

    @staticmethod
    def _held_out_error(
        c: FloatArray, labels: FloatArray, keys: npt.NDArray[np.str_], tau: float
    ) -> float:
        """Mean over slices of |mean P - accuracy| with that slice held out of the fit."""
        errors = []
        for key in np.unique(keys):
            held = keys == key
            accuracy = float(labels[~held].mean())
            if accuracy in (0.0, 1.0):
                estimate = accuracy
            else:
                threshold = _threshold(c[~held], accuracy, tau)
                estimate = float(_ramp(c[held], threshold, tau).mean())
            errors.append(abs(estimate - float(labels[held].mean())))
        return float(np.mean(errors))

    def predict(self, scores: npt.ArrayLike) -> FloatArray:
        """``P(correct)`` per response, shape ``(n,)``."""
        if not hasattr(self, "threshold_"):
            raise NotFittedError("SoftATC must be fitted before use; call fit(scores, y)")
        c = self._oriented(scores)
        if not np.isfinite(self.threshold_):
            return np.full(c.shape, self.source_accuracy_)
        return _ramp(c, self.threshold_, self.tau_)
