"""Active statistical inference for labelling campaigns (METHOD §9).

Over 400 lines: the three steps of the active design (sampling probabilities, the
weighted PPI++ estimator, the allocation) are one method, with their derivations in
docstrings.

A slice of ``N`` traces has the estimator's ``f_i = P(correct | h(x_i))`` for every
trace; a campaign buys ``n`` labels ``y_i`` in it. Three pure steps make every label
count, and keep the slice's interval valid however the traces were picked:

1. **Within a slice, sample where the model is unsure** (Zrnic and Candès 2024,
   "Active Statistical Inference"). :func:`sampling_probabilities` gives trace ``i``
   the inclusion probability::

       pi_i = n * ((1 - floor) * u_i / sum_j u_j + floor / N),   u_i = sqrt(f_i (1 - f_i))

   capped at 1 (the excess is handed to the others), so ``sum_i pi_i = n``. For a
   calibrated ``f``, ``E[(y - f)^2 | f] = f (1 - f)``, and drawing proportionally to
   the residual's standard deviation ``sqrt(f (1 - f))`` is the variance-minimising
   rule of Zrnic and Candès for a mean; the uniform ``floor`` keeps every
   ``pi_i >= n * floor / N > 0``, so a trace the estimator is (wrongly) sure of can
   still be picked and the estimator stays unbiased. With ``f`` all 0 or 1 (ATC) the
   rule falls back to uniform sampling. :func:`draw_sample` draws ``sum pi`` traces
   (an integer here) with exactly these probabilities (randomised systematic sampling).

2. **Estimate with the inverse-probability-weighted prediction-powered estimator**
   with PPI++ power tuning (Angelopoulos, Duchi and Zrnic 2023).
   :func:`active_mean_interval` targets the slice's own accuracy
   ``theta = mean_{i<=N} y_i`` (a finite population) with::

       theta_hat(lam) = mean_{i<=N} lam f_i + (1 / N) sum_{i labelled} (y_i - lam f_i) / pi_i

   the Horvitz-Thompson form of ``mean(lam f) + mean((y - lam f) xi / pi)``, unbiased
   for any fixed ``lam`` and any design. Its variance under a fixed-size design is
   estimated with Hájek's approximation (Brewer and Donadio 2003): with
   ``z_i = n (y_i - lam f_i) / (N pi_i)`` (the rectifier mean is ``mean_labelled z``)
   and ``c_i = 1 - pi_i``::

       var_hat = sum_labelled c_i (z_i - zbar_c)^2 / (n (n - 1)),   zbar_c = sum c z / sum c

   ``lam`` minimises this (a quadratic in ``lam``), clipped to [0, 1]: a useless ``f``
   costs nothing (``lam = 0`` is the classical inverse-probability-weighted mean), a
   good one takes full weight (``lam = 1`` is PPI). A ``lam`` fitted to the same labels
   spends one more degree of freedom: the divisor becomes ``n (n - 2)``. Two
   pseudo-residuals ``z = +-0.5`` (weight ``1 - n / N``) join the labelled ones, so
   that a few equal residuals cannot claim zero error (without them the nominal 90%
   intervals covered 0.75-0.83 at 5-10 labels per slice on the real corpus, see
   docs/labels.md); they matter little from a few tens of labels. With equal ``pi_i = n / N``,
   ``z_i = y_i - lam f_i`` and ``var_hat = (1 - n/N) s^2 / n``: the classical
   simple-random-sampling interval with its finite-population correction, and at
   ``lam = 1`` exactly :func:`sentinel_core.intervals.ppi_slice_interval` (which adds the
   same two pseudo-residuals, see ``pseudo_residuals``). The interval is normal,
   ``theta_hat +- z_(1+confidence)/2 * sqrt(var_hat)``, clipped to what the labels
   already fix: ``[sum y_labelled / N, (sum y_labelled + N - n) / N]`` (inside [0, 1]).

3. **Across slices, an audit share, then the widest intervals.** :func:`allocate_labels`
   spends a fixed share of the budget (default 20%) uniformly at random over all
   traces (proportionally to slice sizes), so a slice whose drift the entropy cannot
   see still gets labels every campaign; each slice also gets ``min_per_slice`` (2, the
   fewest with a variance). The rest goes one label at a time to the slice where it
   narrows the interval step 2 will serve most (``objective="width"``, the default):
   it lowers ``sum_s w_s W_s(n_s)``, with the predicted half-width (over ``z``) of
   slice ``s``'s interval after ``n`` labels::

       W_s(n) = sqrt((1 - n / N_s) ((n - 1) sd_s^2 + 2 * 0.5^2)) / n

   the expected variance of step 2 (``n - 1`` residuals of sd ``sd_s``, the two
   pseudo-residuals, the divisor ``n * n`` after the degrees of freedom for the centre
   and ``lam``), with ``sd_s`` the residual standard deviation predicted from ``f``,
   ``sqrt(mean f (1 - f))`` (:func:`predicted_residual_sd`, floored at ``min_sd``).
   Large ``n`` gives ``W ~ sd / sqrt(n)`` and ``n_s`` growing as ``sd_s^(2/3)``;
   small ``n``, where the pseudo-residuals dominate, spreads labels more evenly, as the
   served widths call for. ``objective="variance"`` is classic Neyman allocation: it
   lowers ``sum_s w_s^2 sd_s^2 (1 / n_s - 1 / N_s)``, so ``n_s`` grows as ``w_s sd_s``
   (with ``w_s = N_s``, the traffic-weighted overall accuracy of METHOD §9). Both
   objectives are separable. The variance one is convex in each ``n_s``, so the greedy
   rule is exact; ``W_s`` is convex while a slice is at most about three quarters
   labelled (the finite-population factor makes it concave near a census), so there the
   greedy rule is exact too (checked against brute force in the tests for campaigns
   that label at most 70% of each slice), and a heuristic beyond. What each objective
   saves on the real corpus is measured in docs/labels.md. :func:`campaign_probabilities`
   turns a slice's audit and
   allocated labels into one vector of inclusion probabilities (uniform part plus the
   rule of step 1).

Everything is numpy/scipy; results are typed dataclasses; bad input raises
:class:`~sentinel_core.errors.InvalidInputError` ("expected ..., got ...").
"""

from __future__ import annotations

import heapq
import math
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from sentinel_core.arrays import as_unit_vector
from sentinel_core.errors import InvalidInputError

__all__ = [
    "ALLOCATION_OBJECTIVES",
    "DEFAULT_AUDIT_SHARE",
    "DEFAULT_FLOOR",
    "ActiveEstimate",
    "AllocationObjective",
    "LabelAllocation",
    "active_mean_interval",
    "allocate_labels",
    "campaign_probabilities",
    "draw_sample",
    "predicted_half_width",
    "predicted_residual_sd",
    "sampling_probabilities",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Share of a slice's labels drawn uniformly (the rest by uncertainty).
DEFAULT_FLOOR: Final[float] = 0.2
#: Share of a campaign's budget spent uniformly at random over all traces.
DEFAULT_AUDIT_SHARE: Final[float] = 0.2
#: Two pseudo-residuals of +-this value join the labelled ones in the variance
#: (as in ``ppi_slice_interval``): a handful of equal residuals cannot claim zero error.
_PSEUDO_RESIDUAL: Final[float] = 0.5
#: What the allocation across slices minimises (module docstring, step 3).
AllocationObjective = Literal["width", "variance"]
ALLOCATION_OBJECTIVES: Final[tuple[AllocationObjective, ...]] = ("width", "variance")


@dataclass(frozen=True, slots=True)
class ActiveEstimate:
    """A slice's accuracy from its labels, predictions and inclusion probabilities.

    Attributes:
        estimate: ``theta_hat`` clipped to ``[low_bound, high_bound]``.
        low, high: the normal interval at ``confidence``, clipped to the same bounds.
        se: the estimated standard error (after pseudo-residuals, before clipping).
        lam: the power-tuning weight used on the predictions.
        n: traces in the slice (``N``).
        n_labelled: labelled traces.
        confidence: nominal coverage of the interval.
    """

    estimate: float
    low: float
    high: float
    se: float
    lam: float
    n: int
    n_labelled: int
    confidence: float

    @property
    def width(self) -> float:
        """``high - low``."""
        return self.high - self.low

    def to_dict(self) -> dict[str, Any]:
        """A flat, JSON-ready dict of the fields."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LabelAllocation:
    """Labels per slice of a campaign: the audit part, the allocated part and their sum.

    ``neyman`` holds the labels placed by :func:`allocate_labels`'s objective (by width
    or Neyman's); the name is kept, as is its key in :meth:`to_dict`, for callers.

    All arrays have shape ``(S,)``, in the order of the slices given.
    """

    audit: IntArray
    neyman: IntArray
    residual_sd: FloatArray

    @property
    def labels(self) -> IntArray:
        """Labels per slice, ``audit + neyman``."""
        return self.audit + self.neyman

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists."""
        return {
            "audit": self.audit.tolist(),
            "neyman": self.neyman.tolist(),
            "labels": self.labels.tolist(),
            "residual_sd": self.residual_sd.tolist(),
        }


# ------------------------------------------------------------------ validation


def _count(name: str, value: object, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidInputError(f"expected {name} to be an integer, got {value!r}")
    number = int(value)
    if number < low or (high is not None and number > high):
        upper = "" if high is None else f" and <= {high}"
        raise InvalidInputError(f"expected {name} >= {low}{upper}, got {number}")
    return number


def _share(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InvalidInputError(f"expected {name} in [0, 1], got {value!r}")
    return float(value)


def _z(confidence: float) -> float:
    if not (isinstance(confidence, int | float) and 0.0 < confidence < 1.0):
        raise InvalidInputError(f"expected confidence in (0, 1), got {confidence!r}")
    return float(stats.norm.ppf(0.5 + confidence / 2.0))


# ------------------------------------------------------- step 1: within a slice


def _cap_at_one(weights: FloatArray, total: float) -> FloatArray:
    """``total * weights / sum(weights)`` with every entry capped at 1, excess passed on.

    ``weights`` are positive; ``total <= len(weights)``.
    """
    pi = np.zeros_like(weights)
    capped = np.zeros(weights.size, dtype=bool)
    while True:
        left = total - capped.sum()
        free = ~capped
        pi[free] = left * weights[free] / weights[free].sum()
        pi[capped] = 1.0
        over = free & (pi > 1.0)
        if not np.any(over):
            return pi
        capped |= over


def sampling_probabilities(
    p_correct: npt.ArrayLike, n_labels: int, *, floor: float = DEFAULT_FLOOR
) -> FloatArray:
    """Inclusion probabilities that grow with the model's uncertainty, ``(N,)``.

    ``pi_i = n * ((1 - floor) * u_i / sum u + floor / N)`` with
    ``u_i = sqrt(p_i (1 - p_i))``, capped at 1 with the excess spread over the other
    traces in proportion, so that ``sum pi = n_labels``. When every ``u_i`` is 0 (a
    0/1 predictor) the probabilities are uniform, ``n / N``.

    Args:
        p_correct: the estimator's ``P(correct)`` per trace of the slice, in [0, 1].
        n_labels: the expected number of labels, ``0 <= n_labels <= N``.
        floor: share of the labels spread uniformly, in [0, 1]; with ``floor > 0``
            every ``pi_i >= n_labels * floor / N``.

    Raises:
        InvalidInputError: empty or out-of-range ``p_correct``, ``n_labels`` outside
            ``[0, N]``, ``floor`` outside [0, 1].
    """
    p = as_unit_vector("p_correct", p_correct, allow_empty=False)
    n = _count("n_labels", n_labels, low=0, high=p.size)
    share = _share("floor", floor)
    if n == 0:
        return np.zeros(p.size)
    u = np.sqrt(p * (1.0 - p))
    spread = u / u.sum() if u.sum() > 0.0 else np.full(p.size, 1.0 / p.size)
    weights = (1.0 - share) * spread + share / p.size
    # Traces with weight 0 (floor 0 and p in {0, 1}) keep pi = 0 unless the cap forces
    # labels onto them; give them a vanishing weight so the cap can still spread there.
    weights = np.maximum(weights, 1e-12)
    return _cap_at_one(weights, float(n))


def draw_sample(pi: npt.ArrayLike, rng: np.random.Generator) -> IntArray:
    """Indices of a sample drawn with inclusion probabilities ``pi``, sorted.

    Randomised systematic sampling (Hartley and Rao 1962): the traces are put in random
    order, laid end to end as intervals of length ``pi_i`` and cut by the points
    ``u, u + 1, u + 2, ...`` with ``u ~ U[0, 1)``; trace ``i`` is in the sample with
    probability exactly ``pi_i``, and the sample has ``floor`` or ``ceil`` of
    ``sum pi`` traces (exactly ``sum pi`` when it is an integer, as
    :func:`sampling_probabilities` makes it).
    """
    p = as_unit_vector("pi", pi, allow_empty=False)
    order = rng.permutation(p.size)
    edges = np.concatenate([[0.0], np.cumsum(p[order])])
    total = round(float(edges[-1]))
    if abs(edges[-1] - total) < 1e-9:
        edges[-1] = total  # remove rounding drift so exactly `total` points fall inside
    start = rng.random()
    hits = np.floor(edges[1:] - start) > np.floor(edges[:-1] - start)
    return np.sort(order[hits]).astype(np.int64)


# -------------------------------------------------------- step 2: the estimator


def _tuned_lambda(a: FloatArray, b: FloatArray, c: FloatArray) -> float:
    """``lam`` minimising ``sum c (a - lam b - centre)^2`` (c-weighted centring), in [0, 1]."""
    if c.sum() <= 0.0:
        return 1.0
    a_c = a - np.sum(c * a) / c.sum()
    b_c = b - np.sum(c * b) / c.sum()
    denominator = float(np.sum(c * b_c * b_c))
    if denominator <= 1e-15:
        return 1.0
    return float(np.clip(np.sum(c * a_c * b_c) / denominator, 0.0, 1.0))


def active_mean_interval(
    p_correct: npt.ArrayLike,
    pi: npt.ArrayLike,
    labelled: npt.ArrayLike,
    y_labelled: npt.ArrayLike,
    *,
    lam: float | None = None,
    confidence: float = 0.9,
    pseudo_residuals: bool = True,
) -> ActiveEstimate:
    """The slice's accuracy by inverse-probability-weighted PPI++ (module docstring, step 2).

    Args:
        p_correct: ``P(correct)`` of every trace of the slice, shape ``(N,)``.
        pi: the inclusion probability every trace had, shape ``(N,)``, in (0, 1] for
            the labelled ones (the probabilities the sample was drawn with, e.g. by
            :func:`draw_sample`; a fixed-size design is assumed for the variance).
        labelled: indices (into the slice) of the labelled traces, unique, shape ``(n,)``.
        y_labelled: their labels in [0, 1], shape ``(n,)``.
        lam: weight of the predictions; ``None`` (default) tunes it to minimise the
            estimated variance, clipped to [0, 1]. ``1`` is PPI, ``0`` the classical
            inverse-probability-weighted mean.
        confidence: nominal coverage, in (0, 1).
        pseudo_residuals: add two pseudo-residuals ``+-0.5`` to the variance (as
            :func:`sentinel_core.intervals.ppi_slice_interval` does), so that a few equal
            residuals cannot claim zero error; negligible once ``n`` is in the tens.

    Needs at least two labels, unless every trace is labelled (then the accuracy is
    known: a zero-width interval).
    """
    z = _z(confidence)
    f = as_unit_vector("p_correct", p_correct, allow_empty=False)
    probabilities = as_unit_vector("pi", pi, allow_empty=False)
    if probabilities.shape != f.shape:
        raise InvalidInputError(
            f"expected pi of the same length as p_correct ({f.size}), got {probabilities.size}"
        )
    y = as_unit_vector("y_labelled", y_labelled)
    try:
        index = np.asarray(labelled)
        if index.size == 0:
            index = index.astype(np.int64)
        if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
            raise TypeError
    except TypeError as exc:
        raise InvalidInputError(
            f"expected labelled to be 1-D integer indices, got {labelled!r:.80}"
        ) from exc
    if index.size != y.size:
        raise InvalidInputError(
            f"expected one label per labelled index, got {index.size} indices and {y.size} labels"
        )
    if np.any((index < 0) | (index >= f.size)) or np.unique(index).size != index.size:
        raise InvalidInputError(
            f"expected unique indices in [0, {f.size}), got {index[:10].tolist()}"
        )
    if lam is not None and not (isinstance(lam, int | float) and math.isfinite(lam)):
        raise InvalidInputError(f"expected lam to be None or a finite number, got {lam!r}")
    big_n, n = f.size, y.size
    known, unknown = float(y.sum()), big_n - n
    low_bound, high_bound = known / big_n, (known + unknown) / big_n
    if unknown == 0:
        exact = float(y.mean())
        return ActiveEstimate(exact, exact, exact, 0.0, 0.0, big_n, n, confidence)
    if n < 2:
        raise InvalidInputError(
            f"expected at least 2 labelled traces to estimate a variance, got {n}"
        )
    pi_l = probabilities[index]
    if np.any(pi_l <= 0.0):
        raise InvalidInputError(
            f"expected pi > 0 for every labelled trace, got {pi_l[pi_l <= 0.0][:5].tolist()}"
        )
    f_l = f[index]
    scale = n / (big_n * pi_l)
    a, b, c = scale * y, scale * f_l, 1.0 - pi_l
    weight = _tuned_lambda(a, b, c) if lam is None else float(lam)
    zs = a - weight * b
    theta = float(weight * f.mean() + zs.mean())
    if pseudo_residuals:
        zs = np.concatenate([zs, [_PSEUDO_RESIDUAL, -_PSEUDO_RESIDUAL]])
        c = np.concatenate([c, np.full(2, 1.0 - n / big_n)])
    # One degree of freedom for the centre, one more when lam was fitted to these labels
    # (the residual variance of a fitted line), so the tuned interval is not optimistic.
    denominator = n * max(zs.size - 1 - (lam is None), 1)
    if c.sum() > 0.0:
        centre = float(np.sum(c * zs) / c.sum())
        variance = float(np.sum(c * (zs - centre) ** 2) / denominator)
    else:  # every labelled pi is 1: they are a census of themselves
        variance = 0.0
    se = math.sqrt(max(variance, 0.0))
    low, high = np.clip([theta - z * se, theta + z * se], low_bound, high_bound)
    return ActiveEstimate(
        estimate=float(np.clip(theta, low_bound, high_bound)),
        low=float(low),
        high=float(high),
        se=se,
        lam=weight,
        n=big_n,
        n_labelled=n,
        confidence=float(confidence),
    )


# -------------------------------------------------------- step 3: across slices


def predicted_residual_sd(p_correct: npt.ArrayLike, *, min_sd: float = 0.05) -> float:
    """``max(sqrt(mean p (1 - p)), min_sd)``: the residual sd a calibrated ``p`` predicts.

    For a calibrated ``p``, ``E[(y - p)^2] = mean p (1 - p)``. The floor keeps a slice
    whose predictions are all near 0 or 1 (or a 0/1 predictor) in the allocation.
    """
    p = as_unit_vector("p_correct", p_correct, allow_empty=False)
    if not (math.isfinite(min_sd) and min_sd >= 0.0):
        raise InvalidInputError(f"expected min_sd >= 0, got {min_sd!r}")
    return max(math.sqrt(float(np.mean(p * (1.0 - p)))), float(min_sd))


def predicted_half_width(n: int, size: int, residual_sd: float) -> float:
    """``W(n) = sqrt((1 - n / N) ((n - 1) sd^2 + 2 * 0.5^2)) / n``: the half-width over
    ``z`` that :func:`active_mean_interval` is expected to give a slice of ``N = size``
    traces after ``n >= 1`` labels (module docstring, step 3); 0 once ``n >= N``."""
    if n >= size:
        return 0.0
    guard = 2.0 * _PSEUDO_RESIDUAL**2
    return math.sqrt((1.0 - n / size) * ((n - 1) * residual_sd**2 + guard)) / n


def _proportional(weights: FloatArray, total: int, caps: IntArray) -> IntArray:
    """``total`` units split in proportion to ``weights``, within ``caps`` (largest remainder).

    A slice at its cap passes its share on to the others (water-filling).
    """
    out = np.zeros(weights.size, dtype=np.int64)
    left = min(total, int(caps.sum()))
    while left > 0:
        room = caps - out
        w = np.where(room > 0, weights, 0.0)
        if w.sum() <= 0.0:
            w = (room > 0).astype(np.float64)
        exact = left * w / w.sum()
        give = np.minimum(np.floor(exact).astype(np.int64), room)
        rest = left - int(give.sum())
        order = np.argsort(-(exact - np.floor(exact)), kind="stable")
        for i in order:
            if rest == 0:
                break
            if room[i] - give[i] > 0 and w[i] > 0.0:
                give[i] += 1
                rest -= 1
        if give.sum() == 0:  # every remainder sits on a full slice: hand out one by one
            i = int(np.argmax(np.where(room > 0, w, -1.0)))
            give[i] = 1
        out += give
        left -= int(give.sum())
    return out


def allocate_labels(
    sizes: npt.ArrayLike,
    residual_sd: npt.ArrayLike,
    n_labels: int,
    *,
    audit_share: float = DEFAULT_AUDIT_SHARE,
    min_per_slice: int = 2,
    weights: npt.ArrayLike | None = None,
    objective: AllocationObjective = "width",
) -> LabelAllocation:
    """Split a campaign's labels across slices: audit share, floors, then the rest.

    1. ``round(audit_share * n_labels)`` labels, raised to ``min_per_slice`` per slice
       where the budget allows, go uniformly at random over all traces: each slice gets
       ``min_per_slice``, the rest in proportion to its size (largest remainder).
    2. The remaining labels go, one at a time, to the slice where the next label lowers
       the objective most (module docstring, step 3), never beyond a slice's size:
       ``"width"``, ``sum_s w_s W_s(n_s)`` (the predicted half-widths of the intervals
       :func:`active_mean_interval` will serve); ``"variance"``,
       ``sum_s w_s^2 sd_s^2 (1 / n_s - 1 / N_s)`` (classic Neyman allocation).

    Args:
        sizes: ``(S,)`` traces per slice (``N_s >= 1``).
        residual_sd: ``(S,)`` predicted residual sd per slice
            (:func:`predicted_residual_sd`), ``> 0``.
        n_labels: the campaign's labels, ``>= 0``.
        audit_share: share of ``n_labels`` spent uniformly, in [0, 1].
        min_per_slice: labels every slice gets first where the budget allows.
        weights: ``(S,)`` importance of each slice's accuracy; default all 1 (every
            slice's interval counts the same). With ``objective="variance"``,
            ``sizes`` gives classic Neyman for the traffic-weighted overall accuracy.
        objective: ``"width"`` (default) or ``"variance"``.

    Returns:
        A :class:`LabelAllocation`; its labels sum to ``min(n_labels, sum sizes)``.
    """
    size = np.asarray(sizes)
    sd = np.asarray(residual_sd, dtype=np.float64)
    if size.ndim != 1 or size.size == 0 or sd.shape != size.shape:
        raise InvalidInputError(
            f"expected sizes and residual_sd of the same shape (S,), S >= 1, got "
            f"{size.shape} and {sd.shape}"
        )
    if not np.issubdtype(size.dtype, np.integer) or np.any(size < 1):
        raise InvalidInputError(f"expected integer sizes >= 1, got {size[:10].tolist()}")
    caps = size.astype(np.int64)
    if np.any(~np.isfinite(sd)) or np.any(sd <= 0.0):
        raise InvalidInputError(f"expected residual_sd > 0 and finite, got {sd[:10].tolist()}")
    w = np.ones(sd.size) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != sd.shape or np.any(~np.isfinite(w)) or np.any(w <= 0.0):
        raise InvalidInputError(
            f"expected weights of shape {sd.shape}, finite and > 0, got {np.shape(w)}"
        )
    if objective not in ALLOCATION_OBJECTIVES:
        raise InvalidInputError(
            f"expected objective in {list(ALLOCATION_OBJECTIVES)}, got {objective!r}"
        )
    total = min(_count("n_labels", n_labels, low=0), int(caps.sum()))
    share = _share("audit_share", audit_share)
    floor = _count("min_per_slice", min_per_slice, low=0)
    # 1. The audit, with the per-slice floors in it.
    floors = _proportional(np.ones(sd.size), min(total, floor * sd.size), np.minimum(caps, floor))
    audit_total = max(round(share * total), int(floors.sum()))
    audit = floors + _proportional(
        caps.astype(np.float64), audit_total - int(floors.sum()), caps - floors
    )
    # 2. Greedily: the next label where it lowers the objective most.
    neyman = np.zeros(sd.size, dtype=np.int64)
    left = total - int(audit.sum())

    def gain(i: int) -> float:
        have = int(audit[i] + neyman[i])
        if have >= caps[i]:
            return -math.inf
        if have == 0:
            return math.inf
        if objective == "width":
            size_i, sd_i = int(caps[i]), float(sd[i])
            drop = predicted_half_width(have, size_i, sd_i)
            drop -= predicted_half_width(have + 1, size_i, sd_i)
            return float(w[i] * drop)
        return float((w[i] * sd[i]) ** 2 * (1.0 / have - 1.0 / (have + 1)))

    heap = [(-gain(i), i) for i in range(sd.size)]
    heapq.heapify(heap)
    while left > 0 and heap:
        negative, i = heapq.heappop(heap)
        if negative == math.inf:  # every slice is full
            break
        neyman[i] += 1
        left -= 1
        heapq.heappush(heap, (-gain(i), i))
    return LabelAllocation(audit=audit, neyman=neyman, residual_sd=sd.copy())


def campaign_probabilities(
    p_correct: npt.ArrayLike,
    audit: int,
    neyman: int,
    *,
    floor: float = DEFAULT_FLOOR,
) -> FloatArray:
    """One slice's inclusion probabilities for ``audit`` uniform + ``neyman`` active labels.

    ``pi_i = audit / N + neyman * ((1 - floor) u_i / sum u + floor / N)``, capped at 1
    (:func:`sampling_probabilities` with the uniform share raised to
    ``(audit + neyman * floor) / (audit + neyman)``); ``sum pi = audit + neyman``.
    """
    a = _count("audit", audit, low=0)
    r = _count("neyman", neyman, low=0)
    share = _share("floor", floor)
    n = a + r
    uniform = (a + r * share) / n if n else 1.0
    return sampling_probabilities(p_correct, n, floor=min(1.0, uniform))
