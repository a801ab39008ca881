"""What to label next, and how much (METHOD §8, steps 2-3).

Over 400 lines: the plan's two designs (active, priority) with their typed plan objects;
each design's maths is a few functions.

Three pure steps, each a function of arrays:

1. :func:`rank_slices` scores every slice by how much a label there is worth and
   sorts them, most urgent first. The rule (documented, tested)::

       score = share ** traffic_power * (1 - accuracy + width_weight * (high - low))

   ``share`` is the slice's share of traffic, ``accuracy``, ``low`` and ``high``
   its estimate and interval. With the defaults (``traffic_power = 0.5``,
   ``width_weight = 0.5``) the second factor is ``1 - midpoint + half-width``, the
   worst error rate the interval still allows (``1 - low`` for a symmetric
   interval): a weak slice comes first, a wide interval (few responses, an
   estimator unsure there) moves a slice up, and traffic counts with a square
   root, so a big slice is preferred without taking every label.
2. :func:`allocate` spreads a number of labels across the chosen slices in
   proportion to their score (largest-remainder rounding), gives each chosen
   slice at least ``min_per_slice`` labels where the budget allows (fewer than
   ~10 labels barely move a PPI interval), never more than a slice has
   unlabelled responses, and passes what a slice cannot take to the others.
3. :func:`stratified_pick` chooses the responses inside a slice across the range
   of P(correct): the candidates, sorted by P(correct), are cut into ``n``
   equal-count strata and one response is drawn at random from each, so confident
   and doubtful answers are both labelled (a PPI correction needs both).

:func:`plan` runs the three and returns a :class:`Plan`, a typed object that
prints, serialises to JSON and is stored with its campaign.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from sentinel_core.active import (
    DEFAULT_AUDIT_SHARE,
    DEFAULT_FLOOR,
    allocate_labels,
    campaign_probabilities,
    draw_sample,
    predicted_residual_sd,
)
from sentinel_core.errors import InvalidInputError
from sentinel_core.slices import SliceEstimate

__all__ = [
    "DESIGNS",
    "Design",
    "Plan",
    "PlanItem",
    "SliceAllocation",
    "SlicePriority",
    "allocate",
    "labels_affordable",
    "plan",
    "rank_slices",
    "stratified_pick",
]

Unit = Literal["labels", "usd"]
Design = Literal["active", "priority"]
DESIGNS: tuple[Design, ...] = ("active", "priority")


@dataclass(frozen=True, slots=True)
class SlicePriority:
    """One slice's place in the labeling queue."""

    slice: str
    n: int
    accuracy: float
    low: float
    high: float
    share: float
    score: float
    rank: int


@dataclass(frozen=True, slots=True)
class SliceAllocation:
    """Labels given to one slice, out of how many it could take."""

    slice: str
    rank: int
    score: float
    accuracy: float
    low: float
    high: float
    available: int
    labels: int

    @classmethod
    def of(cls, priority: SlicePriority, *, available: int, labels: int) -> SliceAllocation:
        """The allocation of ``labels`` to a ranked slice with ``available`` candidates."""
        return cls(
            slice=priority.slice,
            rank=priority.rank,
            score=priority.score,
            accuracy=priority.accuracy,
            low=priority.low,
            high=priority.high,
            available=int(available),
            labels=int(labels),
        )


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One response to label: its slice, the estimator's P(correct) and its stratum.

    Under the ``active`` design, ``pi`` is the probability the response had of being
    picked and ``population`` the number of responses of its slice it was drawn from
    (unlabelled at planning time): the estimate needs both to weight its label.
    """

    trace_id: str
    slice: str
    p_correct: float
    stratum: int
    pi: float | None = None
    population: int | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """A labeling plan: the budget, the slices chosen and the responses picked in each."""

    by: str
    budget: float
    unit: Unit
    cost_per_label: float
    n_labels: int
    slices: tuple[SliceAllocation, ...]
    items: tuple[PlanItem, ...]
    design: Design = "priority"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``from_dict`` inverts it)."""
        return {
            "design": self.design,
            "by": self.by,
            "budget": self.budget,
            "unit": self.unit,
            "cost_per_label": self.cost_per_label,
            "n_labels": self.n_labels,
            "slices": [asdict(s) for s in self.slices],
            "items": [asdict(i) for i in self.items],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """Rebuild a plan stored with ``to_dict``."""
        unit = data["unit"]
        if unit not in ("labels", "usd"):
            raise InvalidInputError(f"expected unit 'labels' or 'usd', got {unit!r}")
        design = data.get("design", "priority")  # plans stored before the active design
        if design not in DESIGNS:
            raise InvalidInputError(f"expected design in {list(DESIGNS)}, got {design!r}")
        return cls(
            design=design,
            by=str(data["by"]),
            budget=float(data["budget"]),
            unit=unit,
            cost_per_label=float(data["cost_per_label"]),
            n_labels=int(data["n_labels"]),
            slices=tuple(SliceAllocation(**s) for s in data["slices"]),
            items=tuple(PlanItem(**i) for i in data["items"]),
        )

    def summary_lines(self) -> list[str]:
        """Human-readable lines: the budget, one line per chosen slice, then why any of
        the budget stays unplanned and what the score means."""
        price = f" at {self.cost_per_label:g} usd per label" if self.unit == "usd" else ""
        lines = [
            f"plan by {self.by} ({self.design} design): {self.n_labels} labels for a budget "
            f"of {self.budget:g} {self.unit}{price}"
        ]
        for s in self.slices:
            lines.append(
                f"  #{s.rank} {s.slice}: estimate {s.accuracy:.3f} [{s.low:.3f}, {s.high:.3f}], "
                f"score {s.score:.3f}, {s.labels} of {s.available} unlabelled"
            )
        affordable = labels_affordable(
            self.budget, unit=self.unit, cost_per_label=self.cost_per_label
        )
        if self.n_labels < affordable:
            where = (
                "every slice's unlabelled responses are planned"
                if self.design == "active"
                else f"the {len(self.slices)} most urgent slices (max_slices) have no more "
                "unlabelled responses"
            )
            lines.append(
                f"  unplanned: {affordable - self.n_labels} of the {affordable} labels the "
                f"budget buys, because {where}; the rest of the budget stays unspent"
            )
        lines.append(
            "  score: the ranking rule, share^0.5 x (1 - estimate + 0.5 x interval width): "
            "weak, uncertain and busy slices first (docs/labeling.md)"
        )
        return lines


def rank_slices(
    estimates: Sequence[SliceEstimate],
    *,
    traffic_power: float = 0.5,
    width_weight: float = 0.5,
) -> list[SlicePriority]:
    """Score and sort slices, most urgent first (see the module docstring for the rule).

    Ties are broken by lower accuracy, then by the slice name, so the order is stable.
    """
    if not estimates:
        raise InvalidInputError("expected at least one slice estimate to rank, got none")
    if not 0.0 <= traffic_power <= 1.0:
        raise InvalidInputError(f"expected traffic_power in [0, 1], got {traffic_power}")
    if width_weight < 0.0:
        raise InvalidInputError(f"expected width_weight >= 0, got {width_weight}")
    total = sum(e.n for e in estimates)
    if total <= 0:
        raise InvalidInputError("expected slices with responses, got a total of 0")
    scored = []
    for e in estimates:
        share = e.n / total
        score = share**traffic_power * (1.0 - e.accuracy + width_weight * (e.high - e.low))
        scored.append((e, share, score))
    scored.sort(key=lambda t: (-t[2], t[0].accuracy, t[0].slice))
    return [
        SlicePriority(
            slice=e.slice,
            n=e.n,
            accuracy=e.accuracy,
            low=e.low,
            high=e.high,
            share=share,
            score=score,
            rank=rank,
        )
        for rank, (e, share, score) in enumerate(scored, start=1)
    ]


def labels_affordable(budget: float, *, unit: Unit, cost_per_label: float) -> int:
    """How many labels a budget buys: the budget itself in ``labels``, else budget / cost."""
    if not math.isfinite(budget) or budget < 0:
        raise InvalidInputError(f"expected a finite budget >= 0, got {budget}")
    if unit == "labels":
        return math.floor(budget + 1e-9)
    if cost_per_label < 0 or not math.isfinite(cost_per_label):
        raise InvalidInputError(f"expected a finite cost per label >= 0, got {cost_per_label}")
    if cost_per_label == 0:
        raise InvalidInputError(
            "expected a cost per label > 0 for a budget in usd, got 0: a free labeler "
            "(the exact verifier) needs a budget in labels"
        )
    return math.floor(budget / cost_per_label + 1e-9)


def allocate(
    scores: npt.ArrayLike, available: npt.ArrayLike, n_labels: int, *, min_per_slice: int = 10
) -> npt.NDArray[np.int64]:
    """Split ``n_labels`` across slices by score, each within what it has unlabelled.

    Args:
        scores: ``(S,)`` non-negative priority scores, most urgent first.
        available: ``(S,)`` unlabelled responses per slice.
        n_labels: labels to hand out.
        min_per_slice: floor per slice where the budget allows; when it does not,
            the most urgent slices get their floor first.

    Returns:
        ``(S,)`` labels per slice; the sum is ``min(n_labels, sum(available))``.
    """
    s = np.asarray(scores, dtype=np.float64)
    cap = np.asarray(available, dtype=np.int64)
    if s.ndim != 1 or cap.shape != s.shape:
        raise InvalidInputError(
            f"expected scores and available of the same length, got shapes {s.shape} "
            f"and {cap.shape}"
        )
    if np.any(~np.isfinite(s)) or np.any(s < 0):
        raise InvalidInputError("expected finite, non-negative scores")
    if np.any(cap < 0):
        raise InvalidInputError("expected non-negative counts of available responses")
    if n_labels < 0 or min_per_slice < 0:
        raise InvalidInputError(
            f"expected n_labels >= 0 and min_per_slice >= 0, got {n_labels} and {min_per_slice}"
        )
    out = np.zeros(s.shape, dtype=np.int64)
    left = int(min(n_labels, int(cap.sum())))
    # Floors first, in rank order, while the budget lasts.
    for i in range(len(s)):
        give = int(min(min_per_slice, cap[i], left))
        out[i] += give
        left -= give
    # The rest by score, water-filling: a slice at its cap passes its share on.
    while left > 0:
        room = cap - out
        open_ = room > 0
        weights = np.where(open_, s, 0.0)
        if weights.sum() <= 0:
            weights = open_.astype(np.float64)
        ideal = left * weights / weights.sum()
        give = np.minimum(np.floor(ideal).astype(np.int64), room)
        remainder = left - int(give.sum())
        if remainder > 0:
            # Largest remainders first (ties by rank), one each, within the room left.
            order = np.lexsort((np.arange(len(s)), -(ideal - np.floor(ideal))))
            for i in order:
                if remainder == 0:
                    break
                if open_[i] and give[i] < room[i]:
                    give[i] += 1
                    remainder -= 1
        out += give
        left -= int(give.sum())
    return out


def stratified_pick(
    p_correct: npt.ArrayLike, n: int, *, rng: np.random.Generator
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Pick ``n`` of the candidates across the range of P(correct).

    Args:
        p_correct: ``(m,)`` the estimator's P(correct) of each candidate.
        n: how many to pick (at most ``m``).
        rng: the random generator (seeded by the caller).

    Returns:
        ``(indices, strata)``: ``(n,)`` candidate indices and the stratum (0 = least
        likely correct) each came from.
    """
    p = np.asarray(p_correct, dtype=np.float64)
    if p.ndim != 1:
        raise InvalidInputError(f"expected p_correct of shape (m,), got {p.shape}")
    if not 0 <= n <= len(p):
        raise InvalidInputError(f"expected 0 <= n <= {len(p)} candidates, got n = {n}")
    if n == 0:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
    order = np.argsort(p, kind="stable")
    edges = np.linspace(0, len(p), n + 1)
    starts = np.floor(edges[:-1]).astype(np.intp)
    stops = np.maximum(np.floor(edges[1:]).astype(np.intp), starts + 1)
    offsets = np.floor(rng.random(n) * (stops - starts)).astype(np.intp)
    return order[starts + offsets], np.arange(n, dtype=np.intp)


def plan(
    estimates: Sequence[SliceEstimate],
    trace_ids: npt.ArrayLike,
    slices: npt.ArrayLike,
    p_correct: npt.ArrayLike,
    labelled: npt.ArrayLike,
    *,
    by: str,
    budget: float,
    unit: Unit,
    cost_per_label: float,
    max_slices: int = 3,
    min_per_slice: int = 10,
    traffic_power: float = 0.5,
    width_weight: float = 0.5,
    seed: int = 0,
    design: Design = "priority",
    audit_share: float = DEFAULT_AUDIT_SHARE,
    floor: float = DEFAULT_FLOOR,
) -> Plan:
    """Rank slices, allocate the labels the budget buys, and pick the responses.

    ``design="priority"``: the most urgent ``max_slices`` slices by :func:`rank_slices`,
    labels by score (:func:`allocate`, ``min_per_slice``), responses by
    :func:`stratified_pick`. ``design="active"`` (Zrnic and Candès 2024; METHOD §9,
    ``sentinel_core.active``): every slice with unlabelled responses takes part;
    ``audit_share`` of the labels is spread uniformly at random over all of them,
    the rest goes where it shrinks the slices' intervals most (the predicted widths of
    ``active.allocate_labels``, on the residual sd the estimator's P(correct)
    predicts), and inside a slice responses
    are drawn with probabilities that grow with ``sqrt(p (1 - p))`` (``floor`` of
    them uniform), each item keeping its ``pi`` and its slice's population so the
    estimate can weight it (``slices.estimate_slices_with_labels``). ``max_slices``
    and ``min_per_slice`` apply to the priority design only.

    Args:
        estimates: the current estimate of every slice.
        trace_ids, slices, p_correct: ``(n,)`` every candidate response, its slice
            and the estimator's P(correct).
        labelled: ``(n,)`` bool, already labelled by the campaign's kind of
            labeler (never picked again).
        max_slices: label at most this many of the most urgent slices.
    """
    ids = np.asarray(trace_ids, dtype=str)
    keys = np.asarray(slices, dtype=str)
    p = np.asarray(p_correct, dtype=np.float64)
    done = np.asarray(labelled, dtype=bool)
    if not (ids.shape == keys.shape == p.shape == done.shape) or ids.ndim != 1:
        raise InvalidInputError(
            f"expected trace_ids, slices, p_correct and labelled of one shape (n,), got "
            f"{ids.shape}, {keys.shape}, {p.shape} and {done.shape}"
        )
    if max_slices < 1:
        raise InvalidInputError(f"expected max_slices >= 1, got {max_slices}")
    if design not in DESIGNS:
        raise InvalidInputError(f"expected design in {list(DESIGNS)}, got {design!r}")
    n_labels = labels_affordable(budget, unit=unit, cost_per_label=cost_per_label)
    chosen = rank_slices(estimates, traffic_power=traffic_power, width_weight=width_weight)
    if design == "active":
        return _plan_active(
            chosen,
            ids,
            keys,
            p,
            done,
            header=(by, float(budget), unit, float(cost_per_label)),
            n_labels=n_labels,
            audit_share=audit_share,
            floor=floor,
            seed=seed,
        )
    chosen = chosen[:max_slices]
    candidates = [np.flatnonzero((keys == c.slice) & ~done) for c in chosen]
    counts = allocate(
        [c.score for c in chosen],
        [len(idx) for idx in candidates],
        n_labels,
        min_per_slice=min_per_slice,
    )
    rng = np.random.default_rng(seed)
    allocations, items = [], []
    for c, idx, k in zip(chosen, candidates, counts, strict=True):
        picked, strata = stratified_pick(p[idx], int(k), rng=rng)
        for j, stratum in zip(picked, strata, strict=True):
            row = idx[j]
            items.append(PlanItem(str(ids[row]), c.slice, float(p[row]), int(stratum)))
        allocations.append(SliceAllocation.of(c, available=len(idx), labels=int(k)))
    return Plan(
        by=by,
        budget=float(budget),
        unit=unit,
        cost_per_label=float(cost_per_label),
        n_labels=len(items),
        slices=tuple(allocations),
        items=tuple(items),
    )


def _plan_active(
    ranked: Sequence[SlicePriority],
    ids: npt.NDArray[np.str_],
    keys: npt.NDArray[np.str_],
    p: npt.NDArray[np.float64],
    done: npt.NDArray[np.bool_],
    *,
    header: tuple[str, float, Unit, float],
    n_labels: int,
    audit_share: float,
    floor: float,
    seed: int,
) -> Plan:
    """The active design of :func:`plan`: audit + widths across slices, pi-sampling within."""
    taking = [c for c in ranked if np.any((keys == c.slice) & ~done)]
    candidates = [np.flatnonzero((keys == c.slice) & ~done) for c in taking]
    by, budget, unit, cost_per_label = header
    if not taking or n_labels == 0:
        return Plan(by, budget, unit, cost_per_label, 0, (), (), design="active")
    allocation = allocate_labels(
        [idx.size for idx in candidates],
        [predicted_residual_sd(p[idx]) for idx in candidates],
        n_labels,
        audit_share=audit_share,
    )
    rng = np.random.default_rng(seed)
    allocations, items = [], []
    for c, idx, audit, neyman in zip(
        taking, candidates, allocation.audit, allocation.neyman, strict=True
    ):
        k = int(audit + neyman)
        if k == 0:
            continue
        pi = campaign_probabilities(p[idx], int(audit), int(neyman), floor=floor)
        picked = draw_sample(pi, rng)
        for stratum, j in enumerate(picked[np.argsort(p[idx][picked], kind="stable")]):
            row = idx[j]
            items.append(
                PlanItem(
                    str(ids[row]),
                    c.slice,
                    float(p[row]),
                    stratum,
                    pi=float(pi[j]),
                    population=int(idx.size),
                )
            )
        allocations.append(SliceAllocation.of(c, available=idx.size, labels=k))
    return Plan(
        by,
        budget,
        unit,
        cost_per_label,
        len(items),
        tuple(allocations),
        tuple(items),
        design="active",
    )
