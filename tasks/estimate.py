"""Prefect tasks that score traces with a registered estimator and estimate slices.

``score_chunk`` is the unit a monitor run maps over chunks of trace ids (threads, or
Dask workers with ``task_runner="dask"``): it takes ids, not frames, loads its rows
from the store and the model version from the registry (once per process), and
returns the chunk's scores as arrays (a ``Scored``: arrays, not lists, because Prefect
walks every list element of a task's inputs to find futures, which cost seconds per
100,000 traces; it does not look inside an array). No retries: a failure here is a bug or a missing
model, not a transient fault, and a retry would only repeat it. No cache: results
depend on the store and the registry, which change between runs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from sentinel_core.runs import load_rows
from sentinel_core.settings import Settings
from sentinel_core.slices import estimate_slices_with_labels, rectify_with_recent_labels
from tasks.registry import ServedModel, load_version
from tasks.store import engine_for


@functools.lru_cache(maxsize=4)
def _served(settings: Settings, version: str) -> ServedModel:
    # A registered version never changes, so one load per process and version is enough.
    return load_version(settings, version)


@dataclass(frozen=True)
class Scored:
    """Per trace of a chunk: ``P(correct)``, slice value, best label (NaN when unlabelled)."""

    p: np.ndarray[Any, np.dtype[np.float64]]
    slice: np.ndarray[Any, np.dtype[np.str_]]
    label: np.ndarray[Any, np.dtype[np.float64]]

    @classmethod
    def concat(cls, chunks: Sequence[Scored]) -> Scored:
        """The chunks end to end (an empty ``Scored`` for no chunks)."""
        if not chunks:
            return cls(np.empty(0), np.empty(0, dtype=str), np.empty(0))
        return cls(
            np.concatenate([c.p for c in chunks]),
            np.concatenate([c.slice for c in chunks]),
            np.concatenate([c.label for c in chunks]),
        )


@task(cache_policy=NO_CACHE)
def score_chunk(settings: Settings, version: str, trace_ids: list[str], by: str) -> Scored:
    """``P(correct)``, slice and best label of every trace of a chunk, in the chunk's order."""
    served = _served(settings, version)
    frame = load_rows(
        engine_for(settings.store_url),
        trace_ids,
        feature_set=served.feature_set,
        names=served.feature_names,
        slice_key=by,
    )
    probs = served.estimator.predict_proba(frame[list(served.feature_names)])[:, 1]
    return Scored(
        np.asarray(probs, dtype=np.float64),
        frame["slice"].to_numpy(dtype=str),
        frame["label"].to_numpy(dtype=np.float64),
    )


@task(cache_policy=NO_CACHE)
def estimate_slices(
    settings: Settings,
    scored: list[Scored],
    calibration_error: float,
    recent: Scored | None = None,
) -> list[dict[str, Any]]:
    """Every slice's estimate with its interval, lowest first.

    PPI where the new traffic has labels; otherwise the label-free bootstrap, corrected
    by the slice's recent labelled residual (``recent``, most recent first) where the
    settings' ``rectify_window`` holds at least ``rectify_min_labels`` of them and the
    residual differs from zero at ``rectify_gate``.
    """
    every = Scored.concat(scored)
    estimates = estimate_slices_with_labels(
        every.p,
        every.slice,
        every.label,
        # Unmeasured held-out error (one training slice): an interval of [0, 1], not a
        # bare bootstrap that ignores the estimator's error.
        calibration_error=1.0 if np.isnan(calibration_error) else calibration_error,
        confidence=settings.confidence,
        n_boot=settings.n_bootstrap,
        min_n=settings.min_slice_n,
        seed=settings.seed,
    )
    if recent is not None and recent.p.size and settings.rectify_window >= 2:
        estimates = rectify_with_recent_labels(
            estimates,
            every.p,
            every.slice,
            recent.p,
            recent.slice,
            recent.label,
            window=settings.rectify_window,
            min_labels=min(settings.rectify_min_labels, settings.rectify_window),
            confidence=settings.confidence,
            gate=settings.rectify_gate or None,
        )
    return [e.to_dict() for e in estimates]
