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

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from sentinel_core.estimator import pinned_for, score_parts
from sentinel_core.ledger import inclusion_of
from sentinel_core.monitoring import Scored, estimate_scored
from sentinel_core.runs import load_rows
from sentinel_core.settings import Settings
from sentinel_core.slices import SliceEstimate
from tasks.registry import ServedModel, load_version
from tasks.store import engine_for


@functools.lru_cache(maxsize=4)
def _served(settings: Settings, version: str) -> ServedModel:
    # A registered version never changes, so one load per process and version is enough.
    return load_version(settings, version)


@task(cache_policy=NO_CACHE)
def score_chunk(settings: Settings, version: str, trace_ids: list[str], by: str) -> Scored:
    """``P(correct)``, slice and best label of every trace of a chunk, in the chunk's order."""
    served = _served(settings, version)
    engine = engine_for(settings.store_url)
    frame = load_rows(
        engine,
        trace_ids,
        feature_set=served.feature_set,
        names=served.feature_names,
        slice_key=by,
    )
    # The default's votes ride along: a slice spans chunks, so it is anchored once the
    # chunks are joined (estimate_scored).
    probs, votes = score_parts(served.estimator, frame[list(served.feature_names)])
    inclusion, population = inclusion_of(engine, frame["trace_id"].tolist())
    return Scored(
        probs,
        frame["slice"].to_numpy(dtype=str),
        frame["label"].to_numpy(dtype=np.float64),
        inclusion,
        population,
        votes,
        pinned_for(served.estimator, frame["cut"].to_numpy()),
    )


@task(cache_policy=NO_CACHE)
def estimate_slices(
    settings: Settings,
    scored: list[Scored],
    calibration_error: float,
    recent: Scored | None = None,
) -> list[SliceEstimate]:
    """Every slice's estimate with its interval, lowest first (``estimate_scored``)."""
    every = Scored.concat(scored)
    return estimate_scored(
        every, calibration_error=calibration_error, settings=settings, recent=recent
    )
