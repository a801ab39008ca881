"""Prefect tasks that read and write the trace store: one query or one write each.

Retries: two, a second apart, on every task here. The store is a database (SQLite
under a concurrent ingest can answer "database is locked"; PostgreSQL can drop a
connection); every task is safe to repeat: reads have no effect, and the writes are
idempotent by key (features by ``(trace_id, feature_set)``, monitor runs by flow run id).

Caching: none (``NO_CACHE``). Each answer depends on the store's state at the time of
the call (new traces, a new watermark), not only on the inputs, so a cached answer
would be a wrong one.
"""

from __future__ import annotations

import functools

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from sentinel_core.drift import DriftAlert
from sentinel_core.runs import (
    PreviousRun,
    ensure_tables,
    featurise_missing,
    last_run_trace_ids,
    new_trace_ids,
    previous_run,
    recent_labelled_ids,
    record_run,
)
from sentinel_core.schema import Watermark
from sentinel_core.slices import SliceEstimate
from sentinel_core.store import open_store

STORE_RETRIES = {"retries": 2, "retry_delay_seconds": 1.0, "cache_policy": NO_CACHE}


@functools.lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine (and connection pool) per store URL per process, Dask workers included."""
    engine = open_store(url)
    ensure_tables(engine)
    return engine


@task(**STORE_RETRIES)
def read_previous_run(store_url: str, by: str) -> PreviousRun | None:
    """The last successful monitor run for slice key ``by``: its watermark and estimates."""
    return previous_run(engine_for(store_url), slice_key=by)


@task(**STORE_RETRIES)
def pull_trace_ids(
    store_url: str, after: Watermark | None, limit: int | None
) -> tuple[list[str], Watermark | None]:
    """Ids of traces ingested after the watermark, oldest first, and the next watermark."""
    return new_trace_ids(engine_for(store_url), after=after, limit=limit)


@task(**STORE_RETRIES)
def pull_last_run_trace_ids(store_url: str, by: str) -> list[str] | None:
    """Ids of the traces the last monitor run for ``by`` covered (None before any run)."""
    return last_run_trace_ids(engine_for(store_url), slice_key=by)


@task(**STORE_RETRIES)
def pull_recent_labelled(store_url: str, before: Watermark, limit: int) -> list[str]:
    """Ids of the labelled traces up to the previous watermark, most recent first."""
    return recent_labelled_ids(engine_for(store_url), before=before, limit=limit)


@task(**STORE_RETRIES)
def featurise_chunk(store_url: str, trace_ids: list[str], feature_set: str) -> int:
    """Featurise the traces of one chunk that lack ``feature_set``; how many were."""
    return featurise_missing(engine_for(store_url), trace_ids, feature_set=feature_set)


@task(**STORE_RETRIES)
def record_monitor_run(
    store_url: str,
    *,
    flow_run_id: str,
    by: str,
    watermark: Watermark | None,
    n_traces: int,
    model_version: str,
    slices: list[SliceEstimate],
    alerts: list[DriftAlert],
) -> int:
    """Store the finished run and its watermark (last step of a run); the row id."""
    run = record_run(
        engine_for(store_url),
        flow_run_id=flow_run_id,
        slice_key=by,
        watermark=watermark,
        n_traces=n_traces,
        model_version=model_version,
        estimates=slices,
        alerts=[alert.to_dict() for alert in alerts],
    )
    return int(run.id or 0)
