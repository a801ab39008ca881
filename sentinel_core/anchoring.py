"""Slice-anchored P(correct): a calibrated classifier shifted, per slice, onto ATC's count.

The default estimator (:class:`sentinel_core.estimator.AnchoredEstimator`) has two
parts fitted on the same labelled responses:

- a calibrated classifier over the 11-d profile (the paper's logistic regression,
  ``lr_11d``), whose ``P(correct)`` ranks responses well within a slice but averages
  to a poor slice accuracy on a slice unlike its training data: its probabilities are
  compressed toward the training accuracy (the group protocol, docs/results.md);
- ATC on ``H_max`` (Garg et al. 2022), whose share of confident responses is the most
  accurate label-free slice accuracy measured here, but which says 0 or 1 per response.

Within a slice ``s`` of ``n`` responses, :func:`anchor_slice` shifts every response's
log-odds by one amount ``delta_s``,

    P_i = sigmoid(logit(p_i) + delta_s),   mean_i P_i = t_s,

where ``t_s`` is ATC's share of confident responses in the slice, kept ``1 / (2 n)``
inside (0, 1) so that no response is certain. This is the prior-shift adjustment of a
calibrated classifier (Saerens, Latinne and Decaestecker 2002: a change of the class
prior moves every log-odds by the same amount) with the new prior estimated by ATC
instead of by EM. So the slice's estimate (the mean of its ``P_i``) is ATC's, and each
response's ``P_i`` keeps the classifier's order within the slice and a real spread.
Without a slice (one response alone, or a caller that does not know the slices) the
classifier's pooled ``p_i`` is the answer.

Pinned responses (``pinned``, a value per response, NaN for the others) keep their
value and are not shifted; the others are shifted so that the whole slice's mean is
still ``t_s``. The default pins a response cut at ``max_tokens``
(``finish_reason == "length"``) at the share of correct among the cut responses it was
trained on (``AnchoredEstimator.cut_p_``): a cut response has no final answer unless it
boxed one before the cut (1 of the first model's 265 cut responses is correct), which
the entropy profile sees only in part (lr_11d gives them a mean P of 0.13). The slice
estimate does not change (unless the pins alone hold the slice above ATC's share or
below it, with every other response at the margin: a slice of almost only cut
responses); within the
slice, P(correct) then tracks correctness more closely, which is what prediction-
powered inference and active sampling spend (docs/labels.md).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

from sentinel_core.arrays import as_unit_vector, check_same_length
from sentinel_core.errors import InvalidInputError

__all__ = ["anchor_slice", "anchor_to_slices"]

FloatArray = npt.NDArray[np.float64]

#: Log-odds are clipped to this magnitude first (p within about 1e-13 of 0 or 1), so
#: that the shift is always finite and found.
_MAX_LOGIT: Final[float] = 30.0


def anchor_slice(p: npt.ArrayLike, share: float, pinned: npt.ArrayLike | None = None) -> FloatArray:
    """``p`` (one slice's pooled ``P(correct)``, shape ``(n,)``, ``n >= 1``) shifted on the
    log-odds scale so that its mean is ``share`` (clipped to ``[1/(2n), 1 - 1/(2n)]``).

    ``pinned`` ``(n,)``: a fixed ``P(correct)`` in [0, 1] per pinned response, NaN for
    the others; the others alone are shifted, so that the mean over all ``n`` is still
    ``share`` as far as they can make it (their own mean kept within the same
    ``[1/(2n), 1 - 1/(2n)]``)."""
    values = as_unit_vector("p", p)
    if values.size == 0:
        raise InvalidInputError("expected at least one response in the slice, got none")
    if not 0.0 <= share <= 1.0:
        raise InvalidInputError(f"share must lie in [0, 1], got {share!r}")
    margin = 0.5 / values.size
    target = min(max(share, margin), 1.0 - margin)
    if pinned is not None:
        fixed = np.asarray(pinned, dtype=np.float64).ravel()
        check_same_length("p", values.size, "pinned", fixed.size)
        held = ~np.isnan(fixed)
        if np.any((fixed[held] < 0.0) | (fixed[held] > 1.0)):
            raise InvalidInputError(
                f"pinned values must lie in [0, 1] (NaN: not pinned), got {fixed[held][:5]}"
            )
        if held.any():
            out = fixed.copy()
            free = ~held
            if free.any():
                rest = (target * values.size - float(fixed[held].sum())) / free.sum()
                out[free] = _shifted_to_mean(values[free], min(max(rest, margin), 1.0 - margin))
            return out
    return _shifted_to_mean(values, target)


def _shifted_to_mean(values: FloatArray, target: float) -> FloatArray:
    """``values`` moved by one log-odds shift to the mean ``target``, in (0, 1)."""
    z = np.clip(special.logit(values), -_MAX_LOGIT, _MAX_LOGIT)

    def gap(delta: float) -> float:
        return float(special.expit(z + delta).mean()) - target

    # gap is increasing in delta, below 0 at -2 max and above 0 at +2 max.
    bound = 2.0 * _MAX_LOGIT + 10.0
    delta = optimize.brentq(gap, -bound, bound, xtol=1e-12)
    return np.asarray(special.expit(z + delta), dtype=np.float64)


def anchor_to_slices(
    p: npt.ArrayLike,
    votes: npt.ArrayLike,
    slices: npt.ArrayLike,
    pinned: npt.ArrayLike | None = None,
) -> FloatArray:
    """Every slice of ``slices`` anchored on its share of ATC ``votes`` (module docstring).

    Args:
        p: the classifier's pooled ``P(correct)`` per response, shape ``(n,)``.
        votes: 1 where ATC finds the response on the confident side, else 0, ``(n,)``.
        slices: each response's slice key, ``(n,)`` (compared as strings).
        pinned: a fixed ``P(correct)`` per response, NaN where free, ``(n,)``; None:
            none pinned (:func:`anchor_slice`).

    Returns:
        The anchored ``P(correct)``, shape ``(n,)``, in the input order.
    """
    values = as_unit_vector("p", p)
    confident = np.asarray(votes, dtype=np.float64).ravel()
    keys = np.asarray(slices).astype(str).ravel()
    check_same_length("p", values.size, "votes", confident.size)
    check_same_length("p", values.size, "slices", keys.size)
    if not np.all((confident == 0.0) | (confident == 1.0)):
        raise InvalidInputError(f"votes must be 0/1, got values {np.unique(confident)[:5]}")
    fixed = None
    if pinned is not None:
        fixed = np.asarray(pinned, dtype=np.float64).ravel()
        check_same_length("p", values.size, "pinned", fixed.size)
    out = np.empty(values.size)
    if values.size == 0:
        return out
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    for rows in np.split(order, np.cumsum(counts)[:-1]):
        out[rows] = anchor_slice(
            values[rows], float(confident[rows].mean()), None if fixed is None else fixed[rows]
        )
    return out
