"""From scored traces to slice estimates, under one run's settings.

The one recipe for "how accurate is each slice": the nightly monitor flow
(``tasks.estimate``, over chunks it scored in parallel) and ``sentinel estimate`` /
``sentinel nightly`` on the command line both come here, so they apply the same
interval options, the same guard for an unmeasured held-out error and the same
correction by recent labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sentinel_core.anchoring import anchor_to_slices
from sentinel_core.errors import InvalidInputError
from sentinel_core.settings import Settings
from sentinel_core.slices import (
    SliceEstimate,
    estimate_slices_with_labels,
    rectify_with_recent_labels,
)

__all__ = ["Scored", "estimate_scored"]


@dataclass(frozen=True)
class Scored:
    """Per trace: ``P(correct)``, slice value, best label (NaN when unlabelled), as arrays
    (Prefect does not walk inside an array looking for futures, as it does in a list)."""

    p: np.ndarray[Any, np.dtype[np.float64]]
    slice: np.ndarray[Any, np.dtype[np.str_]]
    label: np.ndarray[Any, np.dtype[np.float64]]
    #: The inclusion probability and population of a label bought by an active
    #: campaign (``ledger.inclusion_of``), NaN elsewhere; None: no such label.
    inclusion: np.ndarray[Any, np.dtype[np.float64]] | None = None
    population: np.ndarray[Any, np.dtype[np.float64]] | None = None
    #: ATC's 0/1 votes when ``p`` is the default's pooled ``P(correct)``, still to be
    #: anchored per slice (:meth:`anchored`) once every chunk of a slice is in; None:
    #: ``p`` is final.
    votes: np.ndarray[Any, np.dtype[np.float64]] | None = None
    #: The default's pinned ``P(correct)`` of responses cut at ``max_tokens`` (NaN for
    #: the others; ``estimator.pinned_for``), kept through :meth:`anchored`; None: none.
    pinned: np.ndarray[Any, np.dtype[np.float64]] | None = None

    @classmethod
    def concat(cls, chunks: Sequence[Scored]) -> Scored:
        """The chunks end to end (an empty ``Scored`` for no chunks)."""
        if not chunks:
            return cls(np.empty(0), np.empty(0, dtype=str), np.empty(0))
        designed = any(c.inclusion is not None for c in chunks)
        voted = [c.votes is not None for c in chunks]
        if any(voted) and not all(voted):
            raise InvalidInputError(
                "expected every chunk scored by the same estimator, got chunks with and "
                "without ATC votes"
            )
        pinned = any(c.pinned is not None for c in chunks)
        return cls(
            np.concatenate([c.p for c in chunks]),
            np.concatenate([c.slice for c in chunks]),
            np.concatenate([c.label for c in chunks]),
            np.concatenate([c.design()[0] for c in chunks]) if designed else None,
            np.concatenate([c.design()[1] for c in chunks]) if designed else None,
            np.concatenate([c.votes for c in chunks if c.votes is not None])
            if all(voted)
            else None,
            np.concatenate([c.pins() for c in chunks]) if pinned else None,
        )

    def anchored(self) -> Scored:
        """``p`` anchored per slice on ATC's votes (:mod:`sentinel_core.anchoring`), the
        votes kept (they give the label-free interval's sampling term); itself when there
        are no votes. Call it on whole slices only; anchoring twice changes nothing."""
        if self.votes is None:
            return self
        return replace(self, p=anchor_to_slices(self.p, self.votes, self.slice, self.pinned))

    def pins(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """``pinned``, all NaN where none was given."""
        return np.full(self.p.shape, np.nan) if self.pinned is None else self.pinned

    def design(self) -> tuple[np.ndarray[Any, np.dtype[np.float64]], ...]:
        """``(inclusion, population)``, all NaN where none was given."""
        missing = np.full(self.p.shape, np.nan)
        return (
            missing if self.inclusion is None else self.inclusion,
            missing if self.population is None else self.population,
        )

    def without_labels(self) -> Scored:
        """The same traces as if none were labelled (a label-free estimate)."""
        return Scored(
            self.p,
            self.slice,
            np.full(self.p.shape, np.nan),
            votes=self.votes,
            pinned=self.pinned,
        )


def estimate_scored(
    scored: Scored,
    *,
    calibration_error: float,
    settings: Settings,
    recent: Scored | None = None,
) -> list[SliceEstimate]:
    """Every slice's estimate with its interval, lowest first.

    PPI where the traces have labels; otherwise the label-free bootstrap widened by the
    estimator's held-out ``calibration_error`` (NaN, unmeasured: 1.0, so the interval is
    [0, 1] rather than a bare bootstrap that ignores the estimator's error), corrected by
    the slice's recent labelled residual (``recent``, most recent first) where the
    settings' ``rectify_window`` holds at least ``rectify_min_labels`` of them and the
    residual differs from zero at ``rectify_gate``.
    The default estimator's scores are anchored per slice first (``Scored.anchored``).
    """
    scored = scored.anchored()
    recent = None if recent is None else recent.anchored()
    estimates = estimate_slices_with_labels(
        scored.p,
        scored.slice,
        scored.label,
        calibration_error=1.0 if np.isnan(calibration_error) else calibration_error,
        confidence=settings.monitor.confidence,
        n_boot=settings.monitor.n_bootstrap,
        min_n=settings.monitor.min_slice_n,
        seed=settings.seed,
        inclusion=scored.inclusion,
        population=scored.population,
        resample=scored.votes,
    )
    if recent is None or not recent.p.size or settings.monitor.rectify_window < 2:
        return estimates
    # The default's slice estimate is ATC's, so ATC's 0/1 votes are what its recent
    # residual corrects: anchored P of a few recent labelled traces, anchored among
    # themselves, vary too little to measure that residual's noise (a simulated month
    # gave r3 intervals of [0, 0]).
    current, past = scored.p, recent.p
    if scored.votes is not None and recent.votes is not None:
        current, past = scored.votes, recent.votes
    return rectify_with_recent_labels(
        estimates,
        current,
        scored.slice,
        past,
        recent.slice,
        recent.label,
        window=settings.monitor.rectify_window,
        min_labels=min(settings.monitor.rectify_min_labels, settings.monitor.rectify_window),
        confidence=settings.monitor.confidence,
        gate=settings.monitor.rectify_gate or None,
    )
