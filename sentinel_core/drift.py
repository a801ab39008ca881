"""Alerts for slices whose estimated accuracy dropped since the previous monitor run.

The rule, and why: a slice alerts when its CURRENT interval lies wholly below the
PREVIOUS point estimate, ``current.high < previous.accuracy``, and the point estimate
fell by at least ``min_drop``. The previous run's estimate is the reference level the
operator last saw; asking that the whole current interval (which already carries the
sampling noise of the new traffic and, label-free, the estimator's held-out error) sit
below it is a one-sided test at the interval's confidence. Requiring the two intervals
to be disjoint (``current.high < previous.low``) would double-count the noise and miss
real drops on small slices; comparing point estimates alone would alert on noise.

Slices flagged ``too_few`` in either run are skipped unless ``include_too_few``: their
intervals are honest but a few responses should not page anyone. Slices present in
only one run cannot drop and are not alerts (:func:`compare_runs` lists them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sentinel_core.errors import InvalidInputError
from sentinel_core.slices import SliceEstimate

__all__ = ["DriftAlert", "DriftReport", "compare_runs", "estimates_from_dicts"]


@dataclass(frozen=True)
class DriftAlert:
    """One slice whose accuracy dropped beyond its interval.

    Attributes:
        slice: the slice key.
        previous, current: the point estimates of the two runs.
        current_low, current_high: the current interval.
        drop: ``previous - current`` (> 0).
        n_previous, n_current: responses behind each estimate.
        method: how the current estimate was made (bootstrap, ppi, wilson).
    """

    slice: str
    previous: float
    current: float
    current_low: float
    current_high: float
    drop: float
    n_previous: int
    n_current: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        """A flat, JSON-ready dict of the fields."""
        return asdict(self)

    def message(self) -> str:
        """One report line."""
        return (
            f"{self.slice}: estimated accuracy fell from {self.previous:.3f} to "
            f"{self.current:.3f} (interval {self.current_low:.3f}-{self.current_high:.3f}, "
            f"n={self.n_current}, {self.method})"
        )


@dataclass(frozen=True)
class DriftReport:
    """Alerts (largest drop first) and the slices that appeared or disappeared."""

    alerts: tuple[DriftAlert, ...]
    new_slices: tuple[str, ...]
    gone_slices: tuple[str, ...]


def _index(estimates: Sequence[SliceEstimate], which: str) -> dict[str, SliceEstimate]:
    index: dict[str, SliceEstimate] = {}
    for estimate in estimates:
        if estimate.slice in index:
            raise InvalidInputError(
                f"{which} estimates must hold each slice once, got {estimate.slice!r} twice"
            )
        index[estimate.slice] = estimate
    return index


def compare_runs(
    previous: Sequence[SliceEstimate],
    current: Sequence[SliceEstimate],
    *,
    min_drop: float = 0.0,
    include_too_few: bool = False,
) -> DriftReport:
    """Compare two runs' slice estimates; see the module docstring for the rule.

    Args:
        previous: the last successful run's estimates (empty on the first run).
        current: this run's estimates.
        min_drop: smallest fall of the point estimate that may alert, in [0, 1).
        include_too_few: also judge slices flagged ``too_few`` in either run.
    """
    if not 0.0 <= min_drop < 1.0:
        raise InvalidInputError(f"min_drop must lie in [0, 1), got {min_drop!r}")
    before, now = _index(previous, "previous"), _index(current, "current")
    alerts = []
    for name in sorted(before.keys() & now.keys()):
        old, new = before[name], now[name]
        if (old.too_few or new.too_few) and not include_too_few:
            continue
        drop = old.accuracy - new.accuracy
        if new.high < old.accuracy and drop >= min_drop:
            alerts.append(
                DriftAlert(
                    slice=name,
                    previous=old.accuracy,
                    current=new.accuracy,
                    current_low=new.low,
                    current_high=new.high,
                    drop=drop,
                    n_previous=old.n,
                    n_current=new.n,
                    method=new.method,
                )
            )
    return DriftReport(
        alerts=tuple(sorted(alerts, key=lambda a: (-a.drop, a.slice))),
        new_slices=tuple(sorted(now.keys() - before.keys())),
        gone_slices=tuple(sorted(before.keys() - now.keys())),
    )


def estimates_from_dicts(rows: Sequence[dict[str, Any]]) -> list[SliceEstimate]:
    """Rebuild estimates stored with :meth:`SliceEstimate.to_dict` (e.g. a run's JSON)."""
    try:
        return [SliceEstimate(**row) for row in rows]
    except TypeError as exc:
        raise InvalidInputError(
            f"expected SliceEstimate fields in every stored row, got {exc}"
        ) from exc
