"""Prefect tasks that score traces with a registered estimator and estimate slices.

``score_chunk`` is the unit a monitor run maps over chunks of trace ids (threads, or
Dask workers with ``task_runner="dask"``): it takes ids, not frames, loads its rows
from the store and the model version from the registry (once per process), and
returns one small record per trace. No retries: a failure here is a bug or a missing
model, not a transient fault, and a retry would only repeat it. No cache: results
depend on the store and the registry, which change between runs.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from sentinel_core.runs import load_rows
from sentinel_core.settings import Settings
from sentinel_core.slices import estimate_slices_with_labels
from tasks.registry import ServedModel, load_version
from tasks.store import engine_for


@functools.lru_cache(maxsize=4)
def _served(settings: Settings, version: str) -> ServedModel:
    # A registered version never changes, so one load per process and version is enough.
    return load_version(settings, version)


@task(cache_policy=NO_CACHE)
def score_chunk(
    settings: Settings, version: str, trace_ids: list[str], by: str
) -> dict[str, list[Any]]:
    """``P(correct)`` of every trace of a chunk: ``{trace_id, slice, p, label}`` lists."""
    served = _served(settings, version)
    frame = load_rows(
        engine_for(settings.store_url),
        trace_ids,
        feature_set=served.feature_set,
        names=served.feature_names,
        slice_key=by,
    )
    probs = served.estimator.predict_proba(frame[list(served.feature_names)])[:, 1]
    return {
        "trace_id": frame["trace_id"].tolist(),
        "slice": frame["slice"].tolist(),
        "p": [float(p) for p in probs],
        "label": [float(v) for v in frame["label"]],
    }


@task(cache_policy=NO_CACHE)
def estimate_slices(
    settings: Settings, scored: list[dict[str, list[Any]]], calibration_error: float
) -> list[dict[str, Any]]:
    """Every slice's estimate with its interval (PPI where labelled), lowest first."""
    probs = np.concatenate([np.asarray(c["p"], dtype=np.float64) for c in scored])
    keys = np.concatenate([np.asarray(c["slice"], dtype=str) for c in scored])
    labels = np.concatenate([np.asarray(c["label"], dtype=np.float64) for c in scored])
    estimates = estimate_slices_with_labels(
        probs,
        keys,
        labels,
        calibration_error=0.0 if np.isnan(calibration_error) else calibration_error,
        confidence=settings.confidence,
        n_boot=settings.n_bootstrap,
        min_n=settings.min_slice_n,
        seed=settings.seed,
    )
    return [e.to_dict() for e in estimates]
