"""Which labelled responses the estimator is trained on: difficulty-mixed sampling (METHOD §8.4).

The paper's main finding (METHOD §7) is that supervision mixing easy and hard slices
("Extremes", e.g. GSM8K + OlympiadBench) generalises better to unseen slices than
homogeneous supervision ("Intermediate"). The labelling loop works against that: the
acquisition step spends its budget on the slices that look worst, so the labelled set
drifts towards hard slices. :func:`difficulty_mixed` restores the balance;
:func:`pooled` (plain pooling) is kept for comparison (``benchmarks/supervision.py``).

The tier rule (:func:`difficulty_tiers`), and why:

- A slice's difficulty is its labelled accuracy; only slices with at least
  ``min_labels`` labels take part (below that one or two labels put a slice at 0 or 1 by
  chance, which would make it an "extreme" by noise). Smaller slices are listed in
  ``excluded`` and contribute no rows.
- The cut is the MEDIAN of the slice accuracies, not a fixed level such as 0.5: the
  split is relative to the model being monitored, so a strong model still has a hard
  half, and it needs no tuned threshold. ``hard`` = accuracy below the median, ``easy``
  = above. Slices exactly at the median (the middle slice of an odd count, or ties) go
  to ``hard`` when nothing lies below the median, else to ``easy``. With two or more
  slices of different accuracies both tiers are non-empty.
- When every eligible slice has the same accuracy, difficulty is undefined: there is a
  single tier (``hard`` holds every slice, ``easy`` none, ``degenerate`` is True) and
  :func:`difficulty_mixed` reduces to slice-balanced sampling.

Sampling: each tier contributes the same number of rows, ``size // n_tiers`` (``size``
defaults to the largest balanced set, ``n_tiers * min(tier capacities)``); inside a
tier rows are spread over slices as evenly as their label counts allow (water-filling:
a slice that runs out gives its share to the others); rows are drawn without
replacement, seeded. Only labelled rows (label not NaN) are ever drawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from sentinel_core.errors import InvalidInputError

__all__ = [
    "DEFAULT_MIN_LABELS",
    "Supervision",
    "TierSplit",
    "difficulty_mixed",
    "difficulty_tiers",
    "pooled",
    "supervision_set",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
Tier = Literal["easy", "hard"]

#: Labels a slice needs before its accuracy places it in a tier.
DEFAULT_MIN_LABELS: Final[int] = 5


@dataclass(frozen=True)
class TierSplit:
    """Slices split by labelled accuracy around the median (see the module docstring).

    Attributes:
        threshold: the median slice accuracy.
        accuracy: labelled accuracy per eligible slice.
        easy, hard: slice names per tier, sorted.
        excluded: slices with fewer than ``min_labels`` labels, sorted.
        degenerate: every eligible slice has the same accuracy; one tier only.
    """

    threshold: float
    accuracy: Mapping[str, float]
    easy: tuple[str, ...]
    hard: tuple[str, ...]
    excluded: tuple[str, ...]
    degenerate: bool


@dataclass(frozen=True)
class Supervision:
    """A sampled supervision set: row positions into the input and how they were chosen.

    Attributes:
        indices: positions of the chosen rows in the input arrays, sorted, unique,
            shape ``(m,)``.
        per_slice: rows chosen per slice.
        per_tier: rows chosen per tier (``{"pooled": m}`` for :func:`pooled`).
        tiers: the split used (None for :func:`pooled`).
        strategy: ``"difficulty_mixed"`` or ``"pooled"``.
    """

    indices: IntArray
    per_slice: Mapping[str, int]
    per_tier: Mapping[str, int]
    tiers: TierSplit | None
    strategy: str


def _labelled(
    slice_keys: npt.ArrayLike, labels: npt.ArrayLike
) -> tuple[npt.NDArray[np.str_], FloatArray, IntArray]:
    """Keys as text, labels as floats, and the positions of labelled rows."""
    keys = np.asarray(slice_keys)
    y = np.asarray(labels, dtype=np.float64)
    if keys.ndim != 1 or y.ndim != 1:
        raise InvalidInputError(
            f"slice_keys and labels must be 1-D, got shapes {keys.shape} and {y.shape}"
        )
    if keys.shape != y.shape:
        raise InvalidInputError(
            "slice_keys and labels must be the same length, but slice_keys is length "
            f"{keys.size} and labels is length {y.size}"
        )
    present = ~np.isnan(y)
    bad = present & ~np.isin(y, (0.0, 1.0))
    if np.any(bad):
        raise InvalidInputError(
            f"labels must hold 0/1 or NaN (unlabelled), got {np.unique(y[bad])[:5].tolist()}"
        )
    return keys.astype(str), y, np.flatnonzero(present).astype(np.intp)


def _check_min_labels(min_labels: int) -> None:
    if isinstance(min_labels, bool) or not isinstance(min_labels, int) or min_labels < 1:
        raise InvalidInputError(f"min_labels must be a positive integer, got {min_labels!r}")


def difficulty_tiers(
    slice_keys: npt.ArrayLike, labels: npt.ArrayLike, *, min_labels: int = DEFAULT_MIN_LABELS
) -> TierSplit:
    """Split slices into easy and hard by labelled accuracy around the median.

    Args:
        slice_keys: slice key per row, shape ``(n,)``; compared as strings.
        labels: 0/1 per row, NaN where unlabelled, shape ``(n,)``.
        min_labels: labels a slice needs to be placed in a tier.

    Raises:
        InvalidInputError: no slice has ``min_labels`` labels.
    """
    _check_min_labels(min_labels)
    keys, y, rows = _labelled(slice_keys, labels)
    names, inverse = np.unique(keys[rows], return_inverse=True)
    counts = np.bincount(inverse, minlength=names.size)
    correct = np.bincount(inverse, weights=y[rows], minlength=names.size)
    eligible = counts >= min_labels
    excluded = tuple(str(n) for n in names[~eligible])
    if not np.any(eligible):
        raise InvalidInputError(
            f"expected at least one slice with >= {min_labels} labels, got "
            f"{names.size} labelled slices with at most {int(counts.max(initial=0))} labels"
        )
    accuracy = {
        str(n): float(c / k)
        for n, c, k in zip(names[eligible], correct[eligible], counts[eligible], strict=True)
    }
    values = np.array(list(accuracy.values()))
    threshold = float(np.median(values))
    below = {n for n, a in accuracy.items() if a < threshold}
    at = {n for n, a in accuracy.items() if a == threshold}
    hard = below | (at if not below else set())
    easy = set(accuracy) - hard
    return TierSplit(
        threshold=threshold,
        accuracy=dict(accuracy),
        easy=tuple(sorted(easy)),
        hard=tuple(sorted(hard)),
        excluded=excluded,
        degenerate=not easy,
    )


def _check_size(size: int | None) -> None:
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise InvalidInputError(f"size must be a positive integer or None, got {size!r}")


def _even_allocation(
    capacity: npt.NDArray[np.int64], total: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Spread ``total`` units over bins of ``capacity`` ``(b,)`` as evenly as they allow.

    Water-filling: every bin with room gets an equal share; a full bin's leftover share
    goes round again; the last remainder units go to randomly chosen bins with room.
    """
    alloc = np.zeros_like(capacity)
    remaining = int(total)
    while remaining > 0:
        room = np.flatnonzero(alloc < capacity)
        share = remaining // room.size
        if share == 0:
            chosen = rng.choice(room, size=remaining, replace=False)
            alloc[chosen] += 1
            break
        give = np.minimum(capacity[room] - alloc[room], share)
        alloc[room] += give
        remaining -= int(give.sum())
    return alloc


def difficulty_mixed(
    slice_keys: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    size: int | None = None,
    min_labels: int = DEFAULT_MIN_LABELS,
    seed: int = 0,
) -> Supervision:
    """Sample labelled rows so easy and hard slices contribute equally.

    Args:
        slice_keys: slice key per row, shape ``(n,)``.
        labels: 0/1 per row, NaN where unlabelled, shape ``(n,)``.
        size: rows wanted; each of the ``t`` tiers gives ``size // t`` (so ``size`` is
            rounded down to a multiple of ``t``). Default: the largest balanced set.
        min_labels: labels a slice needs to take part (see :func:`difficulty_tiers`).
        seed: seed of every draw.

    Raises:
        InvalidInputError: ``size`` asks for more rows per tier than the smaller tier
            holds, or no slice is eligible.
    """
    _check_size(size)
    split = difficulty_tiers(slice_keys, labels, min_labels=min_labels)
    keys, _, rows = _labelled(slice_keys, labels)
    rng = np.random.default_rng(seed)
    tiers: dict[str, tuple[str, ...]] = {"hard": split.hard}
    if split.easy:
        tiers["easy"] = split.easy
    members = {name: rows[keys[rows] == name] for group in tiers.values() for name in group}
    capacity = {tier: sum(members[n].size for n in group) for tier, group in tiers.items()}
    per_tier = min(capacity.values()) if size is None else size // len(tiers)
    if per_tier > min(capacity.values()):
        raise InvalidInputError(
            f"size {size} needs {per_tier} labelled rows per tier, but the tiers hold "
            f"{capacity}; ask for at most {len(tiers) * min(capacity.values())}"
        )
    chosen: list[IntArray] = []
    per_slice: dict[str, int] = {}
    for group in tiers.values():
        counts = _even_allocation(
            np.array([members[n].size for n in group], dtype=np.int64), per_tier, rng
        )
        for name, count in zip(group, counts, strict=True):
            per_slice[name] = int(count)
            chosen.append(rng.choice(members[name], size=int(count), replace=False))
    return Supervision(
        indices=np.sort(np.concatenate(chosen)).astype(np.intp),
        per_slice=per_slice,
        per_tier=dict.fromkeys(tiers, per_tier),
        tiers=split,
        strategy="difficulty_mixed",
    )


def pooled(
    slice_keys: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    size: int | None = None,
    min_labels: int = 1,
    seed: int = 0,
) -> Supervision:
    """Plain pooling: ``size`` labelled rows drawn uniformly (all of them by default).

    Slices with fewer than ``min_labels`` labels are left out, as in
    :func:`difficulty_mixed`, so the two can be compared on the same eligible rows.
    """
    _check_size(size)
    _check_min_labels(min_labels)
    keys, _, rows = _labelled(slice_keys, labels)
    names, counts = np.unique(keys[rows], return_counts=True)
    eligible_names = names[counts >= min_labels]
    eligible = rows[np.isin(keys[rows], eligible_names)]
    if size is not None and size > eligible.size:
        raise InvalidInputError(
            f"size {size} is more than the {eligible.size} labelled rows of eligible slices"
        )
    rng = np.random.default_rng(seed)
    picked = eligible if size is None else rng.choice(eligible, size=size, replace=False)
    picked = np.sort(picked).astype(np.intp)
    chosen_names, chosen_counts = np.unique(keys[picked], return_counts=True)
    return Supervision(
        indices=picked,
        per_slice={str(n): int(c) for n, c in zip(chosen_names, chosen_counts, strict=True)},
        per_tier={"pooled": int(picked.size)},
        tiers=None,
        strategy="pooled",
    )


def supervision_set(
    slice_keys: npt.ArrayLike, labels: npt.ArrayLike, *, min_labels: int, seed: int = 0
) -> Supervision:
    """The training rows of a challenger: :func:`difficulty_mixed`, or every label
    (:func:`pooled`, ``strategy`` says why) while no slice has ``min_labels`` labels yet.

    A first night with a handful of labels per slice has no slice whose accuracy can be
    trusted to place it in a tier; refusing to train would leave no model at all, so
    the labels are pooled until some slice is large enough.
    """
    _check_min_labels(min_labels)
    keys, _, rows = _labelled(slice_keys, labels)
    _, counts = np.unique(keys[rows], return_counts=True)
    if counts.size and counts.max() >= min_labels:
        return difficulty_mixed(keys, labels, min_labels=min_labels, seed=seed)
    chosen = pooled(keys, labels, seed=seed)
    most = int(counts.max(initial=0))
    strategy = f"pooled (no slice has {min_labels} labels yet; the largest has {most})"
    return Supervision(chosen.indices, chosen.per_slice, chosen.per_tier, None, strategy)
