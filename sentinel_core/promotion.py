"""Challenger against champion on held-out slices, and the rule that promotes (METHOD §8.5).

The challenger is judged out of slice: the labelled slices are dealt into ``n_folds``
groups (seeded), and for each group a fresh estimator from the challenger's recipe
(method + supervision sampling) is trained on the other groups and predicts the
group's responses (:func:`cross_fit`). The champion is a fixed, already-trained model:
it is scored as it is on the same responses. Labels it was trained on are in-sample
for it, which can only flatter it, so the comparison is conservative: a challenger
must beat a champion that may have seen the answers.

Scores (:class:`HeldOutScores`, from ``sentinel_core.metrics``): per slice the absolute
error of the mean ``P(correct)`` against the labelled accuracy; their mean (AEE) and
median; Spearman rho over slices; AUROC, ECE and Brier over responses.

Rule (:func:`decide`): promote when there is no champion, or when the challenger's
MEDIAN per-slice error is lower than the champion's by at least ``margin``. The median,
as for the interval widening of METHOD §6, so one pathological slice does not decide;
the margin keeps the alias from flapping between equivalent models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sentinel_core.errors import InvalidInputError
from sentinel_core.estimator import ProbabilisticClassifier, predict_in_slices
from sentinel_core.metrics import aee, auroc, brier, ece, spearman_rho

__all__ = [
    "Decision",
    "HeldOutScores",
    "cross_fit",
    "decide",
    "score_held_out",
    "slice_folds",
    "summary",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
#: Picks training rows: ``(slice_keys, labels) -> positions`` into them.
Sampler = Callable[[npt.NDArray[np.str_], FloatArray], IntArray]


@dataclass(frozen=True)
class HeldOutScores:
    """How well slice means of ``P(correct)`` matched labelled slice accuracies."""

    aee: float
    median_abs_error: float
    rho: float
    auroc: float
    ece: float
    brier: float
    n_slices: int
    n_labels: int
    per_slice: Mapping[str, tuple[float, float]]
    #: The held-out P(correct) of every labelled response and its label, ``(n,)`` each,
    #: for the reliability diagram (empty when not kept).
    probs: tuple[float, ...] = ()
    labels: tuple[float, ...] = ()

    def metrics(self, prefix: str) -> dict[str, float]:
        """The scalar scores as ``{prefix + name: value}``, for tracking."""
        values = asdict(self)
        for field in ("per_slice", "probs", "labels"):
            values.pop(field)
        return {f"{prefix}{k}": float(v) for k, v in values.items()}


@dataclass(frozen=True)
class Decision:
    """Whether the challenger takes the champion alias, and why (one sentence)."""

    promote: bool
    reason: str


def slice_folds(names: npt.ArrayLike, *, n_folds: int, seed: int = 0) -> dict[str, int]:
    """Deal the distinct slice names into ``min(n_folds, n_slices)`` groups, seeded."""
    unique = np.unique(np.asarray(names).astype(str))
    if unique.size < 2:
        raise InvalidInputError(
            f"held-out evaluation needs at least 2 labelled slices, got {unique.size}"
        )
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise InvalidInputError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    order = np.random.default_rng(seed).permutation(unique.size)
    k = min(n_folds, unique.size)
    return {str(unique[j]): int(i % k) for i, j in enumerate(order)}


def cross_fit(
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    slice_keys: npt.ArrayLike,
    *,
    make: Callable[[], ProbabilisticClassifier],
    sample: Sampler,
    n_folds: int,
    seed: int = 0,
) -> FloatArray:
    """Out-of-slice ``P(correct)`` for every row, shape ``(n,)``.

    For each group of slices from :func:`slice_folds`, ``sample`` picks training rows
    among the other groups' rows and ``make()`` is fitted on them; the held-out rows are
    predicted with their slices (the default anchors each slice on ATC's share).
    """
    features = np.asarray(X, dtype=np.float64)
    labels = np.asarray(y, dtype=np.float64)
    keys = np.asarray(slice_keys).astype(str)
    if features.ndim != 2 or labels.shape != (features.shape[0],) or keys.shape != labels.shape:
        raise InvalidInputError(
            f"X must be (n, d) with y and slice_keys of shape (n,), got {features.shape}, "
            f"{labels.shape} and {keys.shape}"
        )
    folds = slice_folds(keys, n_folds=n_folds, seed=seed)
    fold_of = np.array([folds[k] for k in keys])
    probs = np.empty(labels.size)
    for fold in range(max(folds.values()) + 1):
        test = fold_of == fold
        train = np.flatnonzero(~test)
        picked = train[sample(keys[train], labels[train])]
        model = make().fit(features[picked], labels[picked].astype(np.int64))
        probs[test] = predict_in_slices(model, features[test], keys[test])
    return probs


def score_held_out(
    probs: npt.ArrayLike, y: npt.ArrayLike, slice_keys: npt.ArrayLike
) -> HeldOutScores:
    """Slice-level and response-level scores of ``probs`` against 0/1 ``y``, all ``(n,)``."""
    p = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(y, dtype=np.float64)
    keys = np.asarray(slice_keys).astype(str)
    names, inverse = np.unique(keys, return_inverse=True)
    counts = np.bincount(inverse, minlength=names.size)
    estimate = np.bincount(inverse, weights=p, minlength=names.size) / counts
    truth = np.bincount(inverse, weights=labels, minlength=names.size) / counts
    errors = np.abs(estimate - truth)
    return HeldOutScores(
        aee=aee(estimate, truth),
        median_abs_error=float(np.median(errors)),
        rho=spearman_rho(estimate, truth),
        auroc=auroc(p, labels),
        ece=ece(p, labels),
        brier=brier(p, labels),
        n_slices=int(names.size),
        n_labels=int(labels.size),
        per_slice={
            str(n): (float(e), float(t)) for n, e, t in zip(names, estimate, truth, strict=True)
        },
        probs=tuple(p.tolist()),
        labels=tuple(labels.tolist()),
    )


def decide(
    challenger: HeldOutScores | None,
    champion: HeldOutScores | None,
    *,
    margin: float,
    force: bool = False,
) -> Decision:
    """Apply the promotion rule of the module docstring.

    ``challenger`` is None when its held-out error cannot be measured (labels in one
    slice): the rule cannot promote it. ``force`` promotes anyway, the reason naming
    what the rule said, so the registry records that an operator overrode it.
    """
    if not 0.0 <= margin <= 1.0:
        raise InvalidInputError(f"margin must lie in [0, 1], got {margin!r}")
    rule = _rule(challenger, champion, margin)
    if force and not rule.promote:
        return Decision(True, f"forced by the operator (--force) over the rule: {rule.reason}")
    return rule


def _rule(
    challenger: HeldOutScores | None, champion: HeldOutScores | None, margin: float
) -> Decision:
    if challenger is None:
        return Decision(
            False,
            "the challenger's held-out error cannot be measured (labels in one slice), "
            "so it is served with calibration error 1.0 (intervals [0, 1]) if at all",
        )
    mine = challenger.median_abs_error
    if champion is None:
        return Decision(True, f"no champion in service; challenger median error {mine:.4f}")
    theirs = champion.median_abs_error
    if mine <= theirs - margin:
        return Decision(
            True,
            f"challenger median held-out slice error {mine:.4f} beats champion's {theirs:.4f} "
            f"by {theirs - mine:.4f} >= margin {margin:.4f}",
        )
    return Decision(
        False,
        f"challenger median held-out slice error {mine:.4f} does not beat champion's "
        f"{theirs:.4f} by the margin {margin:.4f}",
    )


def summary(scores: HeldOutScores) -> dict[str, Any]:
    """A JSON-ready dict of the scores, per-slice pairs included."""
    values = asdict(scores)
    values["per_slice"] = {k: list(v) for k, v in scores.per_slice.items()}
    return values
