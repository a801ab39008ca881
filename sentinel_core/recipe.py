"""A challenger's recipe: which servable method, with which options, seeded.

One value names how every estimator of a retrain is made: the challenger fitted on the
supervision set, the refits of its held-out evaluation, and the idempotency key that
keeps a rerun from registering the same model twice. ``sentinel train`` and the
nightly ``retrain`` flow both build one (``flows.retrain``), so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

from sentinel_core.errors import InvalidInputError
from sentinel_core.estimator import (
    SERVABLE_METHODS,
    Calibration,
    ServableEstimator,
    estimate_held_out_calibration_error,
    fit_estimator,
    make_estimator,
)

__all__ = ["CALIBRATIONS", "Recipe"]

CALIBRATIONS: tuple[Calibration, ...] = get_args(Calibration)


@dataclass(frozen=True, slots=True)
class Recipe:
    """``method`` (a name of ``SERVABLE_METHODS`` or ``default``), its calibration and
    class weighting (lr/rf/mlp only; ATC has neither), and the seed of every draw."""

    method: str = "default"
    calibration: Calibration = "auto"
    balanced: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method != "default" and self.method not in SERVABLE_METHODS:
            raise InvalidInputError(
                f"method must be 'default' or one of {list(SERVABLE_METHODS)}, got {self.method!r}"
            )
        if self.calibration not in CALIBRATIONS:
            raise InvalidInputError(
                f"calibration must be one of {list(CALIBRATIONS)}, got {self.calibration!r}"
            )

    def make(self, *, search: bool = True) -> ServableEstimator:
        """A fresh unfitted estimator (``search=False``: fixed defaults, for the refits of
        an evaluation, where a grid search in each refit multiplies the time)."""
        return make_estimator(
            self.method,
            calibration=self.calibration,
            class_weight="balanced" if self.balanced else None,
            search=search,
            random_state=self.seed,
        )

    def fit(self, X: Any, y: Any, groups: Any, cut: Any = None) -> tuple[ServableEstimator, float]:
        """Fit and calibrate on ``X`` (the 11 features), ``y`` (0/1), ``groups`` (each
        row's slice), ``cut`` (each row cut at ``max_tokens``, optional); the estimator
        and its held-out slice error (leave-one-slice-out median, NaN with one slice).
        The challenger of a retrain and a notebook's ``SliceMonitor.fit`` are both made
        here."""
        estimator = fit_estimator(self.make(), X, y, groups=groups, cut=cut)
        held_out = estimate_held_out_calibration_error(
            X, y, groups, estimator_factory=lambda: self.make(search=False)
        )
        return estimator, held_out

    @property
    def name(self) -> str:
        """``method``, with the options that differ from the defaults:
        ``lr_11d[calibration=sigmoid,balanced]``. Part of the idempotency key."""
        options = []
        if self.calibration != "auto":
            options.append(f"calibration={self.calibration}")
        if self.balanced:
            options.append("balanced")
        return self.method + (f"[{','.join(options)}]" if options else "")
