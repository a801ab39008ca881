"""How accuracy estimates and per-response probabilities are judged (METHOD §7).

Slice-level scores compare one estimate per slice with the slice's true accuracy:

- :func:`aee`, the accuracy estimation error, mean over slices of ``|A_hat - A|``;
- :func:`spearman_rho`, whether the estimates rank the slices as the truths do;
- :func:`accuracy_floor`, the error a *perfect* estimator still shows on a slice of
  ``n`` responses, because the observed accuracy is itself a binomial mean. Print it
  beside every AEE: an AEE near the floor cannot be improved by a better estimator.

Instance-level scores judge ``P(correct)`` per response against 0/1 labels:
:func:`auroc` (ranking), :func:`ece` and :func:`brier` (calibration).

The scores themselves are the ecosystem's (``scipy.stats.spearmanr``,
``sklearn.metrics.roc_auc_score``, ``brier_score_loss``); this module adds the input
checks, the NaN conventions and the two the libraries lack (ECE, the binomial floor).

Every function takes 1-D array-likes of shape ``(n,)``, validates ranges up front and
raises :class:`~sentinel_core.errors.InvalidInputError` with what was expected and what
came. Scores that are undefined on the input (a ranking of one slice, an AUROC with one
class) are ``NaN`` by design, never a warning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, roc_auc_score

from sentinel_core.arrays import as_labels, as_unit_vector, as_vector, check_same_length
from sentinel_core.errors import InvalidInputError

__all__ = [
    "ReliabilityBins",
    "accuracy_floor",
    "aee",
    "auroc",
    "brier",
    "ece",
    "reliability_bins",
    "spearman_rho",
]

FloatArray = npt.NDArray[np.float64]


def _probs_and_labels(probs: npt.ArrayLike, y: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    p = as_unit_vector("probs", probs, allow_empty=False)
    labels = as_labels("y", y)
    check_same_length("probs", p.size, "y", labels.size)
    return p, labels


def aee(estimates: npt.ArrayLike, truths: npt.ArrayLike) -> float:
    """Accuracy estimation error: mean over slices of ``|A_hat - A|``.

    Args:
        estimates: estimated accuracy per slice, shape ``(n_slices,)``, in [0, 1].
        truths: true accuracy per slice, shape ``(n_slices,)``, in [0, 1].
    """
    a_hat = as_unit_vector("estimates", estimates, allow_empty=False)
    a = as_unit_vector("truths", truths, allow_empty=False)
    check_same_length("estimates", a_hat.size, "truths", a.size)
    return float(np.mean(np.abs(a_hat - a)))


def spearman_rho(estimates: npt.ArrayLike, truths: npt.ArrayLike) -> float:
    """Spearman rank correlation between estimated and true slice accuracies.

    ``scipy.stats.spearmanr`` (average ranks for ties). Returns
    ``NaN`` when there are fewer than 2 slices or when either input is constant: a
    ranking is then undefined, and NaN keeps it out of medians instead of faking 0.

    Args:
        estimates: shape ``(n_slices,)``.
        truths: shape ``(n_slices,)``.
    """
    a_hat = as_vector("estimates", estimates, allow_empty=True)
    a = as_vector("truths", truths, allow_empty=True)
    check_same_length("estimates", a_hat.size, "truths", a.size)
    if a.size < 2 or np.ptp(a_hat) == 0.0 or np.ptp(a) == 0.0:
        return float("nan")
    return float(stats.spearmanr(a_hat, a).statistic)


def auroc(probs: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Area under the ROC curve of ``P(correct)`` against 0/1 correctness.

    ``sklearn.metrics.roc_auc_score`` (ties count one half). Returns ``NaN`` when ``y``
    holds a single class, where the AUROC is undefined.

    Args:
        probs: ``P(correct)`` per response, shape ``(n,)``, in [0, 1].
        y: 1 if the response was correct else 0, shape ``(n,)``.
    """
    p, labels = _probs_and_labels(probs, y)
    if np.unique(labels).size < 2:
        return float("nan")
    return float(roc_auc_score(labels, p))


@dataclass(frozen=True)
class ReliabilityBins:
    """The non-empty equal-width bins of a reliability diagram, each of shape ``(b,)``."""

    mean_p: FloatArray
    observed: FloatArray
    n: npt.NDArray[np.int64]


def reliability_bins(
    probs: npt.ArrayLike, y: npt.ArrayLike, *, n_bins: int = 10
) -> ReliabilityBins:
    """Mean ``P(correct)``, observed accuracy and size of each non-empty bin.

    ``sklearn.calibration.calibration_curve`` (``strategy="uniform"``) gives the means;
    it drops the bin sizes, so they are counted with its own binning (right-closed
    bins, ``P = 0`` in the first).

    Args:
        probs: ``P(correct)`` per response, shape ``(n,)``, in [0, 1].
        y: 0/1 correctness, shape ``(n,)``.
        n_bins: number of equal-width bins on [0, 1], at least 1.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise InvalidInputError(f"n_bins must be a positive integer, got {n_bins!r}")
    p, labels = _probs_and_labels(probs, y)
    edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    counts = np.bincount(np.searchsorted(edges, p), minlength=n_bins)
    observed, mean_p = calibration_curve(labels, p, n_bins=n_bins, strategy="uniform")
    return ReliabilityBins(mean_p=mean_p, observed=observed, n=counts[counts > 0])


def ece(probs: npt.ArrayLike, y: npt.ArrayLike, *, n_bins: int = 10) -> float:
    """Expected calibration error with equal-width bins, weighted by bin size.

    ``ECE = sum_b (n_b / n) * |mean(y in b) - mean(P in b)|`` over the non-empty bins of
    :func:`reliability_bins` (scikit-learn has no ECE of its own).

    Args:
        probs: ``P(correct)`` per response, shape ``(n,)``, in [0, 1].
        y: 0/1 correctness, shape ``(n,)``.
        n_bins: number of equal-width bins on [0, 1], at least 1.
    """
    bins = reliability_bins(probs, y, n_bins=n_bins)
    return float(np.sum(bins.n * np.abs(bins.observed - bins.mean_p)) / np.sum(bins.n))


def brier(probs: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Brier score, ``mean((P - y)^2)``; 0 is perfect, 0.25 is a constant 0.5.

    Args:
        probs: ``P(correct)`` per response, shape ``(n,)``, in [0, 1].
        y: 0/1 correctness, shape ``(n,)``.
    """
    p, labels = _probs_and_labels(probs, y)
    return float(brier_score_loss(labels, p))


def accuracy_floor(n: int, accuracy: float) -> float:
    """Expected ``|A_hat - A|`` of a perfect estimator on a slice of ``n`` responses.

    The observed accuracy ``A`` of a slice is a mean of ``n`` Bernoulli(p) outcomes, so
    even an estimator that knows ``p`` exactly errs by ``E|K/n - p|`` with
    ``K ~ Binomial(n, p)``. This is computed exactly from the binomial pmf, shape
    ``(n + 1,)``. It is the floor below which no AEE on such a slice can go; for p = 0.5
    it is about ``0.4 / sqrt(n)``.

    Args:
        n: number of responses in the slice, at least 1.
        accuracy: the slice's true accuracy ``p`` in [0, 1] (in practice its observed
            accuracy, the best available value of ``p``).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidInputError(f"n must be a positive integer, got {n!r}")
    p = float(accuracy)
    if not 0.0 <= p <= 1.0:
        raise InvalidInputError(f"accuracy must lie in [0, 1], got {accuracy!r}")
    k = np.arange(int(n) + 1)
    pmf = stats.binom.pmf(k, int(n), p)
    return float(np.sum(pmf * np.abs(k / int(n) - p)))
