"""Per-slice accuracy estimates with intervals (METHOD §6).

Without labels a slice's accuracy is ``A_hat(D) = mean_{x in D} P(correct | h(x))``,
with a percentile bootstrap interval over the slice's responses, widened on both sides
by the estimator's calibration error measured on held-out slices (see
:func:`sentinel_core.estimator.estimate_held_out_calibration_error`): the bootstrap
alone only captures sampling noise, not the estimator's bias on a new slice.

With some labels in a slice, prediction-powered inference (Angelopoulos et al., 2023)
corrects the estimate by the mean residual ``y - P`` on the labelled responses. Its
interval stays valid when the estimator is miscalibrated and shrinks as the
estimator improves.

A slice of new, unlabelled traffic can borrow the residual from its own recent
labelled responses (:func:`rectify_with_recent_labels`, method ``"ppi_recent"``): the
same PPI estimate with the labelled responses taken from the slice's recent past
instead of the new traffic, valid as long as the slice has not changed since.

Every result is a :class:`SliceEstimate`; a slice with fewer than ``min_n`` responses
is still reported, flagged ``too_few``. The interval maths (PPI, Wilson, the active
design's weighted PPI) lives in :mod:`sentinel_core.intervals`; this module decides
which applies to a slice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from sentinel_core.arrays import as_unit_vector
from sentinel_core.errors import InvalidInputError
from sentinel_core.intervals import (
    active_slice_interval,
    ppi_mean_interval,
    ppi_slice_interval,
    z_of,
)

__all__ = [
    "MISSING_SLICE",
    "SliceEstimate",
    "check_slice_key",
    "estimate_slices",
    "estimate_slices_with_labels",
    "rectify_with_recent_labels",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

#: The slice of the traces whose metadata lacks the slice key (or holds null there).
MISSING_SLICE: Final[str] = "(missing)"

#: Largest resample matrix (resamples x slice size) drawn at once; bigger slices are
#: bootstrapped in chunks of resamples so memory stays near 32 MB of indices.
_MAX_DRAWS_PER_CHUNK: Final[int] = 4_000_000


@dataclass(frozen=True)
class SliceEstimate:
    """Estimated accuracy of one slice with its interval.

    Attributes:
        slice: the slice key, as a string.
        n: responses in the slice.
        accuracy: point estimate in [0, 1].
        low, high: interval bounds in [0, 1] at the requested confidence.
        method: ``"bootstrap"`` (label-free), ``"ppi"`` (prediction-powered, some
            labels), ``"active"`` (prediction-powered, weighted by an active campaign's
            inclusion probabilities), ``"wilson"`` (every response labelled) or ``"ppi_recent"``
            (prediction-powered with the slice's recent labelled responses).
        too_few: ``n`` is below the ``min_n`` asked for; the estimate is reported but
            should not drive decisions on its own.
        n_labelled: labelled responses in the slice (a ``"bootstrap"`` estimate, used
            below two labels, does not use its single label); for ``"ppi_recent"``
            the recent labelled responses used.
    """

    slice: str
    n: int
    accuracy: float
    low: float
    high: float
    method: str
    too_few: bool
    n_labelled: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A flat, JSON-ready dict of the fields."""
        return asdict(self)


def check_slice_key(metadata: Iterable[Any], key: str) -> tuple[int, int]:
    """Check that ``key`` names slices of these traces; ``(missing, n)``.

    ``metadata`` holds one mapping per trace. Returns how many of the ``n`` traces
    lack ``key`` (or hold null there): they fall into the slice ``(missing)``.

    Raises:
        InvalidInputError: traces exist and none of them carries ``key`` (a typo in
            ``--by``); the message lists the keys they do carry. No traces at all is
            not an error here: there is nothing to check the key against.
    """
    n = missing = 0
    carried: Counter[str] = Counter()
    for meta in metadata:
        n += 1
        present = (
            {str(k) for k, v in meta.items() if v is not None}
            if isinstance(meta, Mapping)
            else set()
        )
        carried.update(present)
        missing += key not in present
    if n and missing == n:
        keys = ", ".join(f"{k} ({c})" for k, c in sorted(carried.items())) or "none"
        raise InvalidInputError(
            f"expected a metadata key that the traces carry, got {key!r}: none of "
            f"the {n} traces has it; keys they carry (traces): {keys}"
        )
    return missing, n


def _check_options(calibration_error: float, n_boot: int, min_n: int) -> None:
    if not (np.isfinite(calibration_error) and calibration_error >= 0.0):
        raise InvalidInputError(
            f"calibration_error must be a finite value >= 0, got {calibration_error!r}"
        )
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise InvalidInputError(f"n_boot must be a positive integer, got {n_boot!r}")
    if isinstance(min_n, bool) or not isinstance(min_n, int) or min_n < 1:
        raise InvalidInputError(f"min_n must be a positive integer, got {min_n!r}")


def _group(slice_keys: npt.ArrayLike, n: int) -> tuple[list[str], IntArray]:
    """Sorted slice names and, per response, the index of its slice, shape ``(n,)``."""
    keys = np.asarray(slice_keys)
    if keys.shape != (n,):
        raise InvalidInputError(
            f"probs and slice_keys must be the same length, but probs is length {n} "
            f"and slice_keys has shape {keys.shape}"
        )
    names, inverse = np.unique(keys.astype(str), return_inverse=True)
    return [str(name) for name in names], inverse.astype(np.intp)


def _bootstrap_interval(
    p: FloatArray, *, confidence: float, n_boot: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(p)``; ``p`` has shape ``(n,)``.

    All resamples are drawn as one ``(n_boot, n)`` index matrix (in chunks of
    resamples when that matrix would exceed :data:`_MAX_DRAWS_PER_CHUNK`).
    """
    n = p.size
    means = np.empty(n_boot)
    chunk = max(1, _MAX_DRAWS_PER_CHUNK // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = p[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def _bootstrap_estimate(
    name: str,
    p: FloatArray,
    *,
    calibration_error: float,
    confidence: float,
    n_boot: int,
    min_n: int,
    rng: np.random.Generator,
    n_labelled: int = 0,
    resample: FloatArray | None = None,
) -> SliceEstimate:
    values = p if resample is None else resample
    low, high = _bootstrap_interval(values, confidence=confidence, n_boot=n_boot, rng=rng)
    # Centred on the estimate when another per-response value is resampled.
    shift = float(p.mean()) - float(values.mean())
    low, high = low + shift, high + shift
    return SliceEstimate(
        slice=name,
        n=int(p.size),
        accuracy=float(p.mean()),
        low=max(0.0, low - calibration_error),
        high=min(1.0, high + calibration_error),
        method="bootstrap",
        too_few=p.size < min_n,
        n_labelled=n_labelled,
    )


def estimate_slices(
    probs: npt.ArrayLike,
    slice_keys: npt.ArrayLike,
    *,
    calibration_error: float = 0.0,
    confidence: float = 0.9,
    n_boot: int = 2000,
    min_n: int = 30,
    seed: int = 0,
) -> list[SliceEstimate]:
    """Label-free accuracy estimate of every slice, lowest accuracy first.

    ``accuracy`` is the slice mean of ``P(correct)``; the interval is the percentile
    bootstrap over the slice's responses, widened by ``calibration_error`` on each
    side and clipped to [0, 1].

    Args:
        probs: ``P(correct)`` per response, shape ``(n,)``, in [0, 1].
        slice_keys: slice key per response, shape ``(n,)``; keys are compared as strings.
        calibration_error: the estimator's error on held-out slices, added on both sides.
        confidence: interval coverage, in (0, 1).
        n_boot: bootstrap resamples per slice.
        min_n: slices with fewer responses are flagged ``too_few``.
        seed: seed of the resampling; slices are resampled in sorted-key order.
    """
    p = as_unit_vector("probs", probs)
    # Label-free is the labelled estimate of a slice without labels: one code path.
    return estimate_slices_with_labels(
        p,
        slice_keys,
        np.full(p.shape, np.nan),
        calibration_error=calibration_error,
        confidence=confidence,
        n_boot=n_boot,
        min_n=min_n,
        seed=seed,
    )


def estimate_slices_with_labels(
    probs: npt.ArrayLike,
    slice_keys: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    calibration_error: float = 0.0,
    confidence: float = 0.9,
    n_boot: int = 2000,
    min_n: int = 30,
    seed: int = 0,
    inclusion: npt.ArrayLike | None = None,
    population: npt.ArrayLike | None = None,
    resample: npt.ArrayLike | None = None,
) -> list[SliceEstimate]:
    """Per-slice estimates that use whatever labels exist, lowest accuracy first.

    Labels bought by an active campaign carry the probability ``inclusion`` each had
    of being picked and the ``population`` (responses of the slice unlabelled at
    planning time) it was drawn from. A slice whose campaign-labelled responses
    (at least two) come from one population that is exactly the slice's responses
    not labelled otherwise is estimated by :func:`active_slice_interval` (method
    ``"active"``); any other mix falls back to the uniform-sampling PPI below.

    A slice with at least two labels gets :func:`ppi_slice_interval` (method ``"ppi"``,
    or ``"wilson"`` when every response is labelled); a slice with fewer gets the
    label-free bootstrap of :func:`estimate_slices` (a single label is counted in
    ``n_labelled`` but cannot estimate a residual variance, so it is not used).

    Args:
        probs: ``P(correct)`` per response, shape ``(n,)``, in [0, 1].
        slice_keys: slice key per response, shape ``(n,)``.
        labels: label per response in [0, 1], NaN where unlabelled, shape ``(n,)``.
        calibration_error, confidence, n_boot, min_n, seed: as in :func:`estimate_slices`;
            ``calibration_error`` only widens bootstrap intervals, since PPI measures
            the estimator's error on the slice itself.
        inclusion: per response, the inclusion probability of its label under an
            active campaign, NaN otherwise, shape ``(n,)`` (default: all NaN).
        population: per response, the size of the population that label was drawn
            from, NaN otherwise, shape ``(n,)``.
        resample: per response, the values in [0, 1] whose slice-mean bootstrap gives a
            label-free interval's sampling term, the interval then centred on the
            estimate; default ``probs``. The default estimator passes ATC's 0/1 votes:
            its slice estimate is ATC's, and so is its interval (the bootstrap of its
            anchored ``probs``, smoother than the 0/1 outcomes they estimate, would be
            narrower than the slice's own sampling noise).
    """
    p = as_unit_vector("probs", probs)
    spread = None if resample is None else as_unit_vector("resample", resample)
    if spread is not None and spread.shape != p.shape:
        raise InvalidInputError(
            f"resample must be of length {p.size} like probs, got {spread.size}"
        )
    y = as_unit_vector("labels", labels, allow_nan=True)
    if y.shape != p.shape:
        raise InvalidInputError(
            f"probs and labels must be the same length, but probs is length {p.size} "
            f"and labels is length {y.size}"
        )
    pi = (
        np.full(p.shape, np.nan)
        if inclusion is None
        else as_unit_vector("inclusion", inclusion, allow_nan=True)
    )
    pop = (
        np.full(p.shape, np.nan)
        if population is None
        else np.asarray(population, dtype=np.float64).ravel()
    )
    if pi.shape != p.shape or pop.shape != p.shape:
        raise InvalidInputError(
            f"inclusion and population must be of length {p.size} like probs, got "
            f"{pi.size} and {pop.size}"
        )
    names, inverse = _group(slice_keys, p.size)
    z_of(confidence)
    _check_options(calibration_error, n_boot, min_n)
    rng = np.random.default_rng(seed)
    results: list[SliceEstimate] = []
    for i, name in enumerate(names):
        in_slice = inverse == i
        p_slice, y_slice = p[in_slice], y[in_slice]
        labelled = ~np.isnan(y_slice)
        n_labelled = int(labelled.sum())
        if n_labelled < 2:
            results.append(
                _bootstrap_estimate(
                    name,
                    p_slice,
                    calibration_error=calibration_error,
                    confidence=confidence,
                    n_boot=n_boot,
                    min_n=min_n,
                    rng=rng,
                    n_labelled=n_labelled,
                    resample=None if spread is None else spread[in_slice],
                )
            )
            continue
        active = _active_design(labelled, pi[in_slice], pop[in_slice])
        if active is not None:
            method = "active"
            estimate, low, high = active_slice_interval(
                p_slice, y_slice, active, pi[in_slice], confidence=confidence
            )
        else:
            method = "ppi" if n_labelled < p_slice.size else "wilson"
            estimate, low, high = ppi_slice_interval(
                p_slice[~labelled], p_slice[labelled], y_slice[labelled], confidence=confidence
            )
        results.append(
            SliceEstimate(
                slice=name,
                n=int(p_slice.size),
                accuracy=estimate,
                low=low,
                high=high,
                method=method,
                too_few=p_slice.size < min_n,
                n_labelled=n_labelled,
            )
        )
    return sorted(results, key=lambda e: (e.accuracy, e.slice))


def _active_design(
    labelled: npt.NDArray[np.bool_], pi: FloatArray, population: FloatArray
) -> npt.NDArray[np.bool_] | None:
    """The slice's sampled population (a mask) when its labels fit one active design."""
    sampled = labelled & np.isfinite(pi)
    if sampled.sum() < 2:
        return None
    sizes = np.unique(population[sampled])
    drawn_from = ~(labelled & ~sampled)  # every response not labelled by other means
    if sizes.size != 1 or int(sizes[0]) != int(drawn_from.sum()) or labelled[drawn_from].all():
        return None
    return drawn_from


def rectify_with_recent_labels(
    estimates: list[SliceEstimate],
    probs: npt.ArrayLike,
    slice_keys: npt.ArrayLike,
    recent_probs: npt.ArrayLike,
    recent_keys: npt.ArrayLike,
    recent_labels: npt.ArrayLike,
    *,
    window: int = 30,
    min_labels: int = 10,
    confidence: float = 0.9,
    gate: float | None = None,
) -> list[SliceEstimate]:
    """Label-free slice estimates corrected by each slice's recent labelled residual.

    For every ``"bootstrap"`` estimate in ``estimates`` (a slice of new traffic without
    labels of its own) whose slice has at least ``min_labels`` among its last
    ``window`` recent labelled responses, the estimate becomes
    :func:`ppi_mean_interval` of the slice's new ``P(correct)`` against those labelled
    responses (method ``"ppi_recent"``): the new traffic's mean prediction plus the
    estimator's mean residual ``y - P`` on the slice's recent labels. This is METHOD
    §6's PPI with the labelled sample drawn from the slice's recent past, so it
    assumes the slice has not changed since; right after a change the old residual
    misleads until new labels replace it, which is why only the last ``window``
    count. Other estimates are returned unchanged; the order is lowest first.

    With ``gate`` (a confidence level), a slice is corrected only when its mean
    residual is distinguishable from zero: ``|mean(y - P)| > z_gate * sd / sqrt(k)``
    over its ``k`` recent labels (``ddof=1``). A slice the estimator already gets right
    keeps its label-free estimate instead of taking on the noise of a few labels; a
    slice whose labels say the estimator is off (a change it cannot see) is corrected
    as soon as they say so clearly.

    Args:
        estimates: the new traffic's estimates (:func:`estimate_slices_with_labels`).
        probs, slice_keys: ``P(correct)`` and slice key of the new traffic, ``(n,)``.
        recent_probs, recent_keys, recent_labels: the recent labelled responses,
            most recent first, scored by the same estimator, labels in [0, 1].
        window: recent labelled responses per slice that may count (most recent first).
        min_labels: fewest recent labels that rectify a slice (at least 2).
        confidence: interval coverage, in (0, 1).
        gate: confidence level in (0, 1) at which the mean residual must differ from
            zero for the slice to be corrected; ``None`` (the default, as
            ``Settings.rectify_gate``) corrects every eligible slice.
    """
    z_gate = None if gate is None else z_of(gate)
    if window < 1 or min_labels < 2 or min_labels > window:
        raise InvalidInputError(
            f"expected 2 <= min_labels <= window, got min_labels={min_labels}, window={window}"
        )
    p = as_unit_vector("probs", probs)
    names, inverse = _group(slice_keys, p.size)
    rp = as_unit_vector("recent_probs", recent_probs)
    ry = as_unit_vector("recent_labels", recent_labels)
    if ry.shape != rp.shape:
        raise InvalidInputError(
            f"recent_probs and recent_labels must be the same length, got {rp.size} and {ry.size}"
        )
    recent_names, recent_inverse = _group(recent_keys, rp.size)
    position = {name: i for i, name in enumerate(recent_names)}
    slices = {name: inverse == i for i, name in enumerate(names)}
    out: list[SliceEstimate] = []
    for e in estimates:
        j = position.get(e.slice)
        if e.method != "bootstrap" or j is None or e.slice not in slices:
            out.append(e)
            continue
        mine = np.flatnonzero(recent_inverse == j)[:window]
        if mine.size < min_labels:
            out.append(e)
            continue
        if z_gate is not None:
            residual = ry[mine] - rp[mine]
            se = np.std(residual, ddof=1) / np.sqrt(mine.size)
            if abs(residual.mean()) <= z_gate * se:
                out.append(e)
                continue
        estimate, low, high = ppi_mean_interval(
            p[slices[e.slice]], rp[mine], ry[mine], confidence=confidence
        )
        out.append(
            SliceEstimate(
                slice=e.slice,
                n=e.n,
                accuracy=estimate,
                low=low,
                high=high,
                method="ppi_recent",
                too_few=e.too_few,
                n_labelled=int(mine.size),
            )
        )
    return sorted(out, key=lambda x: (x.accuracy, x.slice))
