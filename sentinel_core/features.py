"""Per-step truncated entropy, the 11-d entropy profile and the nine baseline scores.

Over 400 lines: METHOD §2-4 in one place (the per-step entropy kernel, the 11-d profile
and the nine baselines share the same top-k arrays and tests).

This module implements METHOD.md sections 2-4. Every function takes natural-log
probabilities ``l[t, i]`` as served with ``logprobs=true, top_logprobs=k``:

* ``H(t) = -sum_i p[t, i] * ln p[t, i]`` with ``p = exp(l)``, the *truncated*
  entropy: the tail outside the top k is left out, not renormalised (an option);
* the profile ``h(x)`` of a trajectory ``H(1..T)``, in :data:`FEATURE_NAMES` order;
* the white-box baselines, in :data:`BASELINE_NAMES` order.

The batch functions work on a ragged batch stored flat: all traces' steps
concatenated into one ``(N, k)`` array plus an ``(n,)`` array of lengths. Ingest
featurises millions of steps at a time, so the flat kernel never loops over steps
or traces in Python, only over fixed-size blocks: the entropy is an ``exp`` and a
fused multiply-sum over cache-sized blocks of rows, per-trace statistics are
``ufunc.reduceat`` calls, and the quantiles come from one sort per block of
4096 traces. On 2.1 million float32 steps with k = 20 it runs in about the time
of the bare expression ``-(np.exp(l) * l).sum(axis=1)``.

Rows of top-k logprobs are assumed sorted descending (the order the APIs serve);
only the mean max-probability and the mean margin depend on that order, the
entropy does not. Entropies are computed in the input's precision (float32 or
float64) and returned as float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from sentinel_core.errors import InvalidInputError

__all__ = [
    "ALL_SCORE_NAMES",
    "BASELINE_NAMES",
    "FEATURE_NAMES",
    "FEATURE_SET_VERSION",
    "baseline_scores",
    "baseline_scores_from_flat",
    "entropy_profile",
    "entropy_profiles",
    "profiles_from_flat",
    "scores_from_flat",
    "step_entropy",
    "tail_mass",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
LogprobArray = npt.NDArray[np.floating[Any]]

FEATURE_NAMES: Final[tuple[str, ...]] = (
    "H_max",
    "H_mean",
    "H_std",
    "H_q10",
    "H_q25",
    "H_q50",
    "H_q75",
    "H_q90",
    "H_skew",
    "H_kurt",
    "H_sea",
)
BASELINE_NAMES: Final[tuple[str, ...]] = (
    "seq_loglik",
    "mean_logprob",
    "perplexity",
    "min_logprob",
    "mean_max_prob",
    "mean_margin",
    "mean_entropy",
    "max_entropy",
    "eas",
)
ALL_SCORE_NAMES: Final[tuple[str, ...]] = FEATURE_NAMES + BASELINE_NAMES
FEATURE_SET_VERSION: Final[str] = "entropy-v1"

_QUANTILES: Final[FloatArray] = np.array([0.10, 0.25, 0.50, 0.75, 0.90])
# Skewness and kurtosis are set to 0 when the standard deviation is below this
# fraction of the mean: the trajectory is constant up to rounding, and the ratio
# of two rounding errors is noise, not shape. 1e-6 is float32's precision, in
# which entropies of float32 logprobs are computed (found by Hypothesis: a
# trajectory constant up to 2e-8 nats gave skew -0.71).
_FLAT_RTOL: Final[float] = 1e-6
# Rows per block of the entropy kernel: 4096 x k=20 float32 probabilities stay in
# L2 cache between exp() and the multiply-sum, which makes the kernel faster than
# the two-pass numpy expression over the whole array.
_ROWS_PER_BLOCK: Final[int] = 4096
# Quantiles sort a block of traces at once on the key H + trace_offset; the key's
# magnitude, and so its rounding error (about 1e-12 nats here), grows with the
# number of traces in a block.
_TRACES_PER_SORT: Final[int] = 4096
# Below this top-k mass the renormalised entropy is recomputed from shifted
# logprobs, because exp(l) has lost its relative precision to underflow.
_MASS_FLOOR: Final[float] = 1e-30
_N_FEATURES: Final[int] = len(FEATURE_NAMES)
_N_BASELINES: Final[int] = len(BASELINE_NAMES)


@dataclass(frozen=True, slots=True)
class _StepTerms:
    """Per-step quantities of N steps, computed once and shared by every score."""

    entropy: FloatArray  # (N,) truncated or renormalised entropy, nats
    top_prob: LogprobArray  # (N,) p[t, 0]
    margin: LogprobArray  # (N,) p[t, 0] - p[t, 1], or p[t, 0] when k = 1
    k: int


# --------------------------------------------------------------------------- public


def step_entropy(top_logprobs: npt.ArrayLike, *, renormalise: bool = False) -> FloatArray:
    """Per-step truncated entropy H(t) of one trace, in nats.

    Args:
        top_logprobs: (T, k) natural-log probabilities of the top-k tokens per step.
        renormalise: divide the top-k probabilities by their sum first, so each
            step is the entropy of a proper k-way distribution.

    Returns:
        (T,) float64, ``H(t) = -sum_i p log p`` with ``p = exp(l)``.
    """
    top = _as_trace(top_logprobs)
    return _step_terms(top, renormalise=renormalise, name="top_logprobs").entropy


def tail_mass(top_logprobs: npt.ArrayLike) -> FloatArray:
    """Probability left outside the top k at each step of one trace.

    Args:
        top_logprobs: (T, k) natural-log probabilities of the top-k tokens per step.

    Returns:
        (T,) float64, ``1 - sum_i exp(l[t, i])`` clipped at 0 (APIs round the
        top-k logprobs, so their sum can exceed 1 by a hair).
    """
    top = _as_trace(top_logprobs)
    if not (top.max() <= 0.0 and np.isfinite(top).all()):
        raise InvalidInputError(_locate_bad_logprob(top, name="top_logprobs", counts=None))
    mass: FloatArray = np.exp(top).sum(axis=1, dtype=np.float64)
    return np.maximum(1.0 - mass, 0.0)


def entropy_profile(top_logprobs: npt.ArrayLike, *, renormalise: bool = False) -> FloatArray:
    """The 11-d entropy profile h(x) of one trace.

    Args:
        top_logprobs: (T, k) natural-log probabilities of the top-k tokens per step.
        renormalise: use the entropy of the renormalised top-k distribution.

    Returns:
        (11,) float64 in :data:`FEATURE_NAMES` order.
    """
    top = _as_trace(top_logprobs)
    counts, starts = _as_lengths([top.shape[0]], n_rows=top.shape[0])
    terms = _step_terms(top, renormalise=renormalise, name="top_logprobs")
    return _profile_columns(terms.entropy, counts, starts).reshape(_N_FEATURES)


def entropy_profiles(
    traces: Sequence[npt.ArrayLike],
    *,
    renormalise: bool = False,
) -> FloatArray:
    """Entropy profiles of many traces, computed by the flat kernel in one pass.

    The traces are validated and concatenated once; prefer
    :func:`profiles_from_flat` when the data is already flat.

    Args:
        traces: n arrays of shape (T_j, k_j), natural-log probabilities. Traces
            with a smaller k are padded with probability-0 entries, which leave
            the entropy unchanged (``0 log 0 = 0``).
        renormalise: use the entropy of the renormalised top-k distribution.

    Returns:
        (n, 11) float64 in :data:`FEATURE_NAMES` order; (0, 11) for no traces.
    """
    flat_top, lengths = _stack(traces)
    counts, starts = _as_lengths(lengths, n_rows=flat_top.shape[0])
    if counts.size == 0:
        return np.empty((0, _N_FEATURES))
    terms = _step_terms(flat_top, renormalise=renormalise, name="traces", counts=counts)
    return _profile_columns(terms.entropy, counts, starts)


def profiles_from_flat(
    flat_top: npt.ArrayLike,
    lengths: npt.ArrayLike,
    *,
    renormalise: bool = False,
) -> FloatArray:
    """Entropy profiles of a ragged batch stored flat.

    Args:
        flat_top: (N, k) float32 or float64 natural-log probabilities, the steps of
            all n traces concatenated in order.
        lengths: (n,) integer step counts, each >= 1, summing to N.
        renormalise: use the entropy of the renormalised top-k distribution.

    Returns:
        (n, 11) float64 in :data:`FEATURE_NAMES` order.
    """
    top = _as_logprob_matrix(flat_top, name="flat_top", rows="N")
    counts, starts = _as_lengths(lengths, n_rows=top.shape[0])
    if counts.size == 0:
        return np.empty((0, _N_FEATURES))
    terms = _step_terms(top, renormalise=renormalise, name="flat_top", counts=counts)
    return _profile_columns(terms.entropy, counts, starts)


def baseline_scores(top_logprobs: npt.ArrayLike, chosen: npt.ArrayLike) -> FloatArray:
    """The nine baseline scores of one trace.

    Args:
        top_logprobs: (T, k) natural-log probabilities, each row sorted descending.
        chosen: (T,) logprob of the token actually generated at each step.

    Returns:
        (9,) float64 in :data:`BASELINE_NAMES` order (see
        :func:`baseline_scores_from_flat`).
    """
    top = _as_trace(top_logprobs)
    counts, starts = _as_lengths([top.shape[0]], n_rows=top.shape[0])
    picked = _as_chosen(chosen, n_rows=top.shape[0], rows="T")
    terms = _step_terms(top, renormalise=False, name="top_logprobs")
    summary = _entropy_summary(terms.entropy, starts)
    return _baseline_columns(terms, summary, picked, counts, starts).reshape(_N_BASELINES)


def baseline_scores_from_flat(
    flat_top: npt.ArrayLike,
    chosen: npt.ArrayLike,
    lengths: npt.ArrayLike,
) -> FloatArray:
    """The nine baseline scores (METHOD section 4) of a ragged batch stored flat.

    Args:
        flat_top: (N, k) float32 or float64 natural-log probabilities, each row
            sorted descending (rank 0 is the most likely token), the steps of all n
            traces concatenated in order.
        chosen: (N,) logprob of the token actually generated at each step (the
            OpenAI ``logprob`` field).
        lengths: (n,) integer step counts, each >= 1, summing to N.

    Returns:
        (n, 9) float64 in :data:`BASELINE_NAMES` order: sum, mean, ``exp(-mean)``
        and min of ``chosen``; mean of ``p[t, 0]``; mean of ``p[t, 0] - p[t, 1]``
        (``p[t, 0]`` when k = 1); mean and max of the truncated entropy; and
        ``eas = sum_t H(t) / ln k``, set to 0 when k = 1 because ``ln 1 = 0``
        leaves nothing to normalise by (the raw sum stays in ``H_sea``).
    """
    top = _as_logprob_matrix(flat_top, name="flat_top", rows="N")
    counts, starts = _as_lengths(lengths, n_rows=top.shape[0])
    picked = _as_chosen(chosen, n_rows=top.shape[0], rows="N")
    if counts.size == 0:
        return np.empty((0, _N_BASELINES))
    terms = _step_terms(top, renormalise=False, name="flat_top", counts=counts)
    summary = _entropy_summary(terms.entropy, starts)
    return _baseline_columns(terms, summary, picked, counts, starts)


def scores_from_flat(
    flat_top: npt.ArrayLike,
    chosen: npt.ArrayLike,
    lengths: npt.ArrayLike,
    *,
    renormalise: bool = False,
) -> FloatArray:
    """Profile and baselines of a ragged batch, sharing one entropy pass.

    This is the function ingest calls. With ``renormalise=True`` every
    entropy-based column (the profile, ``mean_entropy``, ``max_entropy``,
    ``eas``) uses the renormalised entropy; the other baselines are unchanged.

    Args:
        flat_top: (N, k) float32 or float64 natural-log probabilities, each row
            sorted descending, the steps of all n traces concatenated in order.
        chosen: (N,) logprob of the token actually generated at each step.
        lengths: (n,) integer step counts, each >= 1, summing to N.
        renormalise: use the entropy of the renormalised top-k distribution.

    Returns:
        (n, 20) float64 in :data:`ALL_SCORE_NAMES` order.
    """
    top = _as_logprob_matrix(flat_top, name="flat_top", rows="N")
    counts, starts = _as_lengths(lengths, n_rows=top.shape[0])
    picked = _as_chosen(chosen, n_rows=top.shape[0], rows="N")
    scores = np.empty((counts.size, _N_FEATURES + _N_BASELINES))
    if counts.size == 0:
        return scores
    terms = _step_terms(top, renormalise=renormalise, name="flat_top", counts=counts)
    summary = _entropy_summary(terms.entropy, starts)
    scores[:, :_N_FEATURES] = _profile_columns(terms.entropy, counts, starts, summary=summary)
    scores[:, _N_FEATURES:] = _baseline_columns(terms, summary, picked, counts, starts)
    return scores


# ----------------------------------------------------------------------- validation


def _as_logprob_matrix(values: npt.ArrayLike, *, name: str, rows: str) -> LogprobArray:
    """A 2-d float32/float64 view of ``values`` (copied only for other dtypes)."""
    try:
        array = np.asarray(values)
    except ValueError as exc:  # ragged nested lists
        raise InvalidInputError(
            f"{name} must be a 2-d ({rows}, k) array, got a ragged sequence"
        ) from exc
    if array.ndim != 2:
        raise InvalidInputError(f"{name} must be a 2-d ({rows}, k) array, got shape {array.shape}")
    if array.dtype != np.float32 and array.dtype != np.float64:
        if array.dtype.kind not in "iuf":
            raise InvalidInputError(
                f"{name} must hold real numbers (float32 or float64), got dtype {array.dtype}"
            )
        array = array.astype(np.float64)
    if array.shape[1] < 1:
        raise InvalidInputError(
            f"{name} needs at least one logprob per step (k >= 1), got k = {array.shape[1]}"
        )
    return array


def _as_trace(values: npt.ArrayLike) -> LogprobArray:
    top = _as_logprob_matrix(values, name="top_logprobs", rows="T")
    if top.shape[0] < 1:
        raise InvalidInputError(
            f"a trace needs at least one generated token (T >= 1), got T = {top.shape[0]}"
        )
    return top


def _as_lengths(lengths: npt.ArrayLike, *, n_rows: int) -> tuple[IntArray, IntArray]:
    """Validated (n,) step counts and the (n,) row where each trace starts."""
    array = np.asarray(lengths)
    if array.ndim != 1:
        raise InvalidInputError(
            f"lengths must be a 1-d (n,) array of step counts, got shape {array.shape}"
        )
    if array.size and array.dtype.kind not in "iu":
        raise InvalidInputError(f"lengths must be integers, got dtype {array.dtype}")
    counts = array.astype(np.int64)
    if counts.size and counts.min() < 1:
        trace = int(np.argmax(counts < 1))
        raise InvalidInputError(
            "a trace needs at least one generated token (T >= 1), "
            f"got T = {counts[trace]} for trace {trace}"
        )
    total = int(counts.sum())
    if total != n_rows:
        raise InvalidInputError(
            f"lengths must sum to the number of rows of flat_top (N = {n_rows}), got sum {total}"
        )
    starts = np.zeros_like(counts)
    np.cumsum(counts[:-1], out=starts[1:])
    return counts, starts


def _as_chosen(chosen: npt.ArrayLike, *, n_rows: int, rows: str) -> FloatArray:
    array = np.asarray(chosen)
    if array.shape != (n_rows,):
        raise InvalidInputError(
            f"chosen must be a 1-d ({rows},) array with one logprob per step "
            f"({rows} = {n_rows}), got shape {array.shape}"
        )
    if array.size and array.dtype.kind not in "iuf":
        raise InvalidInputError(f"chosen must hold real numbers, got dtype {array.dtype}")
    picked = array.astype(np.float64)
    if picked.size and not (np.isfinite(picked).all() and picked.max() <= 0.0):
        step = int(np.argmax(~np.isfinite(picked) | (picked > 0.0)))
        raise InvalidInputError(_bad_value_message("chosen", picked[step], f"step {step}"))
    return picked


def _locate_bad_logprob(top: LogprobArray, *, name: str, counts: IntArray | None) -> str:
    """Error message naming the first non-finite or positive logprob (slow path)."""
    bad = np.argwhere(~np.isfinite(top) | (top > 0.0))
    if bad.size == 0:
        return f"{name} must hold finite logprobs <= 0"
    row, rank = (int(i) for i in bad[0])
    if counts is None:
        where = f"step {row}, rank {rank}"
    else:
        ends = np.cumsum(counts)
        trace = int(np.searchsorted(ends, row, side="right"))
        step = row - int(ends[trace] - counts[trace])
        where = f"row {row} (trace {trace}, step {step}), rank {rank}"
    return _bad_value_message(name, top[row, rank], where)


def _bad_value_message(name: str, value: np.floating[Any], where: str) -> str:
    if np.isfinite(value):
        return f"{name} must hold natural-log probabilities <= 0, got {float(value)!r} at {where}"
    return f"{name} must hold finite logprobs, got {float(value)!r} at {where}"


def _stack(
    traces: Sequence[npt.ArrayLike],
) -> tuple[LogprobArray, IntArray]:
    """Concatenate traces into one (N, k_max) array once; pad a smaller k with p = 0."""
    arrays = []
    for j, values in enumerate(traces):
        try:
            arrays.append(_as_trace(values))
        except InvalidInputError as exc:
            raise InvalidInputError(f"trace {j}: {exc}") from exc
    lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    if not arrays:
        return np.empty((0, 1)), lengths
    widths = {a.shape[1] for a in arrays}
    if len(widths) == 1:
        return np.concatenate(arrays), lengths
    dtype = np.result_type(*arrays)
    # The most negative finite value: exp() underflows to exactly 0 and 0 * l = 0,
    # so a padded rank adds nothing to the entropy, renormalised or not.
    flat = np.full((int(lengths.sum()), max(widths)), np.finfo(dtype).min, dtype=dtype)
    row = 0
    for a in arrays:
        flat[row : row + a.shape[0], : a.shape[1]] = a
        row += a.shape[0]
    return flat, lengths


# -------------------------------------------------------------------------- kernels


def _step_terms(
    top: LogprobArray,
    *,
    renormalise: bool,
    name: str,
    counts: IntArray | None = None,
) -> _StepTerms:
    """Validate the (N, k) logprobs and compute every per-step quantity in one pass.

    The rows are processed in blocks small enough for the block's probabilities
    to stay in cache between ``exp`` and the multiply-sum. ``-p * l`` equals
    ``-xlogy(p, p)`` without a second logarithm, and is safe because every ``l``
    is finite (p = 0 only by underflow, where 0 * l = 0). ``counts`` only serves
    error messages: given, they name the trace and step of a bad value.
    """
    n_rows, k = top.shape
    entropy = np.empty(n_rows, dtype=top.dtype)
    top_prob = np.empty(n_rows, dtype=top.dtype)
    margin = np.empty(n_rows, dtype=top.dtype) if k > 1 else top_prob
    mass = np.empty(n_rows, dtype=top.dtype) if renormalise else None
    buffer = np.empty((min(_ROWS_PER_BLOCK, n_rows), k), dtype=top.dtype)
    for lo in range(0, n_rows, _ROWS_PER_BLOCK):
        hi = min(lo + _ROWS_PER_BLOCK, n_rows)
        block = top[lo:hi]
        # max() propagates NaN and sees +inf; checked before exp() can overflow.
        if not block.max() <= 0.0:
            raise InvalidInputError(_locate_bad_logprob(top, name=name, counts=counts))
        probs = buffer[: hi - lo]
        np.exp(block, out=probs)
        np.einsum("ij,ij->i", probs, block, out=entropy[lo:hi])
        top_prob[lo:hi] = probs[:, 0]
        if k > 1:
            np.subtract(probs[:, 0], probs[:, 1], out=margin[lo:hi])
        if mass is not None:
            np.einsum("ij->i", probs, out=mass[lo:hi])
    np.negative(entropy, out=entropy)
    # The one invalid value max() misses is -inf; it turns the entropy into
    # 0 * -inf = nan, so an (N,) check replaces a second pass over (N, k).
    if not np.isfinite(entropy).all():
        raise InvalidInputError(_locate_bad_logprob(top, name=name, counts=counts))
    if mass is not None:
        entropy = _renormalised(entropy, mass, top)
    return _StepTerms(entropy.astype(np.float64, copy=False), top_prob, margin, k)


def _renormalised(entropy: LogprobArray, mass: LogprobArray, top: LogprobArray) -> LogprobArray:
    """Entropy of p / s from the truncated one: ``H / s + ln s``, s = sum_i p, (N,).

    Rows whose top-k mass has underflowed are recomputed from shifted logprobs.
    """
    with np.errstate(divide="ignore", invalid="ignore"):  # mass = 0 rows are redone below
        result: LogprobArray = entropy / mass
        result += np.log(mass)
    tiny = np.flatnonzero(~(mass > _MASS_FLOOR))
    if tiny.size:
        shifted = top[tiny].astype(np.float64)
        shifted -= shifted.max(axis=1, keepdims=True)
        shifted -= np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        result[tiny] = -np.einsum("ij,ij->i", np.exp(shifted), shifted)
    # H / s + ln s can round a hair below 0 when one token holds all the mass.
    np.maximum(result, 0.0, out=result)
    return result


def _entropy_summary(entropy: FloatArray, starts: IntArray) -> tuple[FloatArray, FloatArray]:
    """Per-trace (max, sum) of the (N,) entropy, (n,) each."""
    return np.maximum.reduceat(entropy, starts), np.add.reduceat(entropy, starts)


def _profile_columns(
    entropy: FloatArray,
    counts: IntArray,
    starts: IntArray,
    *,
    summary: tuple[FloatArray, FloatArray] | None = None,
) -> FloatArray:
    """(n, 11) profile from the (N,) entropy of n traces starting at ``starts``."""
    peak, total = summary if summary is not None else _entropy_summary(entropy, starts)
    size = counts.astype(np.float64)
    # Centre on each trace's first value before averaging: a constant trajectory
    # then has deviations of exactly 0, and the moments are better conditioned.
    first = entropy[starts]
    dev = entropy - np.repeat(first, counts)
    shift = np.add.reduceat(dev, starts) / size
    dev -= np.repeat(shift, counts)
    mean = first + shift
    square = dev * dev
    m2 = np.add.reduceat(square, starts) / size
    m3 = np.add.reduceat(np.multiply(dev, square, out=dev), starts) / size
    m4 = np.add.reduceat(np.multiply(square, square, out=square), starts) / size
    std = np.sqrt(m2)
    shaped = m2 > (_FLAT_RTOL * mean) ** 2

    profile = np.empty((counts.size, _N_FEATURES))
    profile[:, 0] = peak
    profile[:, 1] = mean
    profile[:, 2] = std
    profile[:, 3:8] = _quantile_columns(entropy, counts, starts)
    profile[:, 8] = np.divide(m3, m2 * std, out=np.zeros_like(m3), where=shaped)
    profile[:, 9] = np.divide(m4, m2 * m2, out=np.full_like(m4, 3.0), where=shaped) - 3.0
    profile[:, 10] = total
    return profile


def _quantile_columns(entropy: FloatArray, counts: IntArray, starts: IntArray) -> FloatArray:
    """(n, 5) quantiles at :data:`_QUANTILES`, numpy's default linear method."""
    ordered = _sort_within_traces(entropy, counts, starts)
    last = (counts - 1)[:, np.newaxis]
    virtual = last * _QUANTILES
    below = np.floor(virtual)
    gamma = virtual - below
    low_index = below.astype(np.int64)
    low = ordered[starts[:, np.newaxis] + low_index]
    high = ordered[starts[:, np.newaxis] + np.minimum(low_index + 1, last)]
    # As numpy's _lerp: interpolate from the nearer end, so gamma = 1 gives `high`.
    diff = high - low
    result: FloatArray = low + diff * gamma
    np.subtract(high, diff * (1.0 - gamma), out=result, where=gamma >= 0.5)
    return result


def _sort_within_traces(entropy: FloatArray, counts: IntArray, starts: IntArray) -> FloatArray:
    """The (N,) entropy sorted ascending inside each trace's rows.

    One sort per block of traces: trace j of a block gets the key
    ``H + j * stride`` with ``stride`` a power of two above ``max H`` (H >= 0),
    so traces cannot interleave, ``j * stride`` is exact, and subtracting it back
    is exact (Sterbenz); only the rounding of the key itself, at most half an ulp
    of ``block * stride``, reaches the result.
    """
    ordered = np.empty_like(entropy)
    stride = 2.0 ** np.ceil(np.log2(float(entropy.max()) + 1.0))
    ends = starts + counts
    for first in range(0, counts.size, _TRACES_PER_SORT):
        last = min(first + _TRACES_PER_SORT, counts.size)
        lo, hi = int(starts[first]), int(ends[last - 1])
        offset = np.repeat(np.arange(last - first, dtype=np.float64) * stride, counts[first:last])
        block = entropy[lo:hi] + offset
        block.sort()
        np.subtract(block, offset, out=ordered[lo:hi])
    return ordered


def _baseline_columns(
    terms: _StepTerms,
    summary: tuple[FloatArray, FloatArray],
    chosen: FloatArray,
    counts: IntArray,
    starts: IntArray,
) -> FloatArray:
    """(n, 9) baselines in :data:`BASELINE_NAMES` order."""
    entropy_max, entropy_sum = summary
    size = counts.astype(np.float64)
    loglik = np.add.reduceat(chosen, starts)

    scores = np.empty((counts.size, _N_BASELINES))
    scores[:, 0] = loglik
    scores[:, 1] = loglik / size
    scores[:, 2] = np.exp(-scores[:, 1])
    scores[:, 3] = np.minimum.reduceat(chosen, starts)
    scores[:, 4] = np.add.reduceat(terms.top_prob, starts, dtype=np.float64) / size
    scores[:, 5] = np.add.reduceat(terms.margin, starts, dtype=np.float64) / size
    scores[:, 6] = entropy_sum / size
    scores[:, 7] = entropy_max
    scores[:, 8] = entropy_sum / np.log(terms.k) if terms.k > 1 else 0.0
    return scores
