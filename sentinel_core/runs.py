"""Monitor runs and their watermark, kept in the trace store.

A monitor run estimates every slice on the traces that arrived since the previous
successful run. Traces are ordered by ``(ingested_at, id)`` (``ingested_at`` is the same
for a whole ingest batch, so the id breaks ties); the watermark is that pair for the
last trace a run covered. A run is written by :func:`record_run` only once everything
else in it succeeded, so a run that crashes leaves the watermark where it was and the
next run covers the same traces again.

This module also pulls the traces of a run (:func:`new_trace_ids`, :func:`load_rows`)
and recomputes features that a trace lacks under the wanted feature set
(:func:`featurise_missing`): ingest featurises every trace with the current
``FEATURE_SET_VERSION``, so this only runs when a served model asks for another one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, SQLModel, col, select

from sentinel_core.errors import InvalidInputError, StoreError
from sentinel_core.features import ALL_SCORE_NAMES, FEATURE_SET_VERSION, scores_from_flat
from sentinel_core.schema import FeatureRow, LabelRow, MonitorRun, TraceRow, Watermark, utc_now
from sentinel_core.slices import SliceEstimate
from sentinel_core.store import best_labels, insert_or_skip, slice_values, table_of
from sentinel_core.traces import cut_flags

__all__ = [
    "ensure_tables",
    "featurise_missing",
    "last_run",
    "load_rows",
    "new_trace_ids",
    "recent_labelled_ids",
    "record_run",
]

#: Traces featurised per query and insert by :func:`featurise_missing` (as ingest's batches).
FEATURISE_BATCH = 500


def ensure_tables(engine: Engine) -> None:
    """Create the ``monitor_runs`` table if the store lacks it (idempotent)."""
    try:
        SQLModel.metadata.create_all(engine, tables=[table_of(MonitorRun)])
    except Exception as exc:  # the driver's own error type varies by dialect
        raise StoreError(f"cannot create the monitor_runs table: {exc}") from exc


def _latest_runs(engine: Engine, slice_key: str, n: int) -> list[MonitorRun]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(MonitorRun)
                .where(MonitorRun.slice_key == slice_key)
                .order_by(col(MonitorRun.id).desc())
                .limit(n)
            ).all()
        )


@dataclass(frozen=True)
class PreviousRun:
    """What the next monitor run needs of the last one: where it stopped, what it found."""

    flow_run_id: str
    watermark: Watermark | None
    slices: tuple[SliceEstimate, ...]


def previous_run(engine: Engine, *, slice_key: str) -> PreviousRun | None:
    """The latest recorded run for ``slice_key`` as a :class:`PreviousRun`, or None."""
    run = last_run(engine, slice_key=slice_key)
    if run is None:
        return None
    return PreviousRun(run.flow_run_id, run.watermark(), tuple(run.estimates()))


def run_history(
    engine: Engine, *, slice_key: str, n: int = 14
) -> list[tuple[datetime, tuple[SliceEstimate, ...]]]:
    """The last ``n`` recorded runs for ``slice_key``, oldest first: when, and what each found."""
    return [
        (run.created, tuple(run.estimates()))
        for run in reversed(_latest_runs(engine, slice_key, n))
    ]


def last_run(engine: Engine, *, slice_key: str) -> MonitorRun | None:
    """The latest recorded run for ``slice_key``, or None before the first."""
    runs = _latest_runs(engine, slice_key, 1)
    return runs[0] if runs else None


def last_run_trace_ids(engine: Engine, *, slice_key: str) -> list[str] | None:
    """Ids of the traces the latest run for ``slice_key`` covered, oldest first.

    That is the traces after the previous run's watermark up to the latest run's own;
    None before the first run.
    """
    runs = _latest_runs(engine, slice_key, 2)
    if not runs:
        return None
    until = runs[0].watermark()
    if until is None:
        return []
    after = runs[1].watermark() if len(runs) > 1 else None
    ids, _ = new_trace_ids(engine, after=after, until=until)
    return ids


def record_run(
    engine: Engine,
    *,
    flow_run_id: str,
    slice_key: str,
    watermark: Watermark | None,
    n_traces: int,
    model_version: str,
    estimates: Sequence[SliceEstimate],
    alerts: Sequence[dict[str, Any]] = (),
) -> MonitorRun:
    """Store a successful run (or return the one already stored under ``flow_run_id``)."""
    with Session(engine) as session:
        existing = session.exec(
            select(MonitorRun).where(MonitorRun.flow_run_id == flow_run_id)
        ).first()
        if existing is not None:
            return existing
        run = MonitorRun(
            flow_run_id=flow_run_id,
            slice_key=slice_key,
            watermark_at=None if watermark is None else watermark.ingested_at,
            watermark_id=None if watermark is None else watermark.trace_id,
            n_traces=n_traces,
            model_version=model_version,
            slices=[e.to_dict() for e in estimates],
            alerts=list(alerts),
        )
        session.add(run)
        session.commit()
        session.refresh(run)
        return run


def _at_or_before(traces: Any, mark: Watermark) -> Any:
    """SQL condition: a trace at or before ``mark`` in ``(ingested_at, id)`` order."""
    return or_(
        traces.c.ingested_at < mark.ingested_at,
        and_(traces.c.ingested_at == mark.ingested_at, traces.c.id <= mark.trace_id),
    )


def new_trace_ids(
    engine: Engine,
    *,
    after: Watermark | None,
    limit: int | None = None,
    until: Watermark | None = None,
) -> tuple[list[str], Watermark | None]:
    """Ids of the traces after ``after`` in ``(ingested_at, id)`` order, and the new watermark.

    With ``until``, only traces up to it (inclusive). The watermark returned is the last
    trace's pair (``after`` itself when none is new).
    """
    if limit is not None and limit < 1:
        raise InvalidInputError(f"limit must be a positive integer or None, got {limit!r}")
    traces = table_of(TraceRow)
    # Ids only: converting 100,000 timestamps to datetimes costs seconds; the watermark
    # needs the last one alone.
    query = sa_select(traces.c.id).order_by(traces.c.ingested_at, traces.c.id)
    if after is not None:
        query = query.where(~_at_or_before(traces, after))
    if until is not None:
        query = query.where(_at_or_before(traces, until))
    if limit is not None:
        query = query.limit(limit)
    with Session(engine) as session:
        ids = list(session.execute(query).scalars())
        if not ids:
            return [], after
        last = session.execute(
            sa_select(traces.c.ingested_at).where(traces.c.id == ids[-1])
        ).scalar_one()
    return ids, Watermark(last, ids[-1])


def recent_labelled_ids(engine: Engine, *, before: Watermark, limit: int) -> list[str]:
    """Ids of labelled traces at or before ``before`` in ``(ingested_at, id)`` order, the
    most recent first, at most ``limit``."""
    traces, labels = table_of(TraceRow), table_of(LabelRow)
    labelled = sa_select(labels.c.trace_id).where(labels.c.trace_id == traces.c.id).exists()
    query = (
        sa_select(traces.c.id)
        .where(labelled, _at_or_before(traces, before))
        .order_by(traces.c.ingested_at.desc(), traces.c.id.desc())
        .limit(limit)
    )
    with Session(engine) as session:
        return list(session.execute(query).scalars())


def load_rows(
    engine: Engine,
    trace_ids: Sequence[str],
    *,
    feature_set: str,
    names: Sequence[str],
    slice_key: str,
) -> pd.DataFrame:
    """The traces ``trace_ids`` with their scores, slice and best label, in the given order.

    Columns: ``trace_id``, ``slice`` (the value of metadata ``slice_key``), one column
    per score in ``names`` (a subset of ``ALL_SCORE_NAMES``), ``label`` (NaN if none),
    ``cut`` (bool: the response was cut at ``max_tokens``, ``finish_reason == "length"``).

    Raises:
        StoreError: a trace lacks features under ``feature_set`` (run
            :func:`featurise_missing` first) or is not stored.
    """
    unknown = [n for n in names if n not in ALL_SCORE_NAMES]
    if unknown:
        raise InvalidInputError(f"names must be among {list(ALL_SCORE_NAMES)}, got {unknown}")
    traces, features = table_of(TraceRow), table_of(FeatureRow)
    ids = list(trace_ids)
    with Session(engine) as session:
        rows = session.execute(
            sa_select(traces.c.id, traces.c.metadata, features.c["values"], traces.c.finish_reason)
            .join(features, features.c.trace_id == traces.c.id)
            .where(features.c.feature_set == feature_set, traces.c.id.in_(ids))
        ).all()
        labels = session.exec(
            select(LabelRow.trace_id, LabelRow.labeler, LabelRow.correct).where(
                col(LabelRow.trace_id).in_(ids)
            )
        ).all()
    found = {r[0]: r for r in rows}
    missing = [i for i in ids if i not in found]
    if missing:
        raise StoreError(
            f"expected features {feature_set!r} for every trace, got none for "
            f"{len(missing)} (first: {missing[:3]})"
        )
    ordered = [found[i] for i in ids]
    width = len(ALL_SCORE_NAMES)
    values = (
        np.frombuffer(b"".join(r[2] for r in ordered), dtype=np.float64).reshape(-1, width)
        if ordered
        else np.empty((0, width))
    )
    picked = values[:, [ALL_SCORE_NAMES.index(n) for n in names]]
    frame = pd.DataFrame({name: picked[:, j] for j, name in enumerate(names)})
    frame.insert(0, "trace_id", ids)
    frame.insert(1, "slice", slice_values(pd.Series([r[1] or {} for r in ordered]), slice_key))
    frame["label"] = best_labels(ids, labels)
    frame["cut"] = cut_flags([r[3] for r in ordered])
    return frame


def featurise_missing(engine: Engine, trace_ids: Sequence[str], *, feature_set: str) -> int:
    """Compute and store the scores of the traces in ``trace_ids`` that lack ``feature_set``.

    Scores come from the stored top-k blobs, grouped by k, through the same kernel as
    ingest. Returns how many traces were featurised (0 in the usual case: ingest
    already did it). Only the current ``FEATURE_SET_VERSION`` can be computed here;
    another feature set is refused rather than mislabelled.
    """
    if feature_set != FEATURE_SET_VERSION:
        raise InvalidInputError(
            f"can only compute feature set {FEATURE_SET_VERSION!r}, got {feature_set!r}"
        )
    traces, features = table_of(TraceRow), table_of(FeatureRow)
    have = (
        sa_select(features.c.trace_id)
        .where(features.c.trace_id == traces.c.id, features.c.feature_set == feature_set)
        .exists()
    )
    with Session(engine) as session:
        todo = session.execute(
            sa_select(traces.c.id).where(traces.c.id.in_(list(trace_ids)), ~have)
        ).all()
    done = 0
    # A batch at a time: the float64 working copies of a trace's top-k matrix are about
    # ten times its blob, so a whole chunk at once would need gigabytes.
    for start in range(0, len(todo), FEATURISE_BATCH):
        batch = [r[0] for r in todo[start : start + FEATURISE_BATCH]]
        done += _featurise_batch(engine, batch, feature_set=feature_set)
    return done


def _featurise_batch(engine: Engine, ids: list[str], *, feature_set: str) -> int:
    traces, features = table_of(TraceRow), table_of(FeatureRow)
    with Session(engine) as session:
        rows = session.execute(
            sa_select(
                traces.c.id,
                traces.c.n_steps,
                traces.c.k,
                traces.c.dtype,
                traces.c.logprobs,
                traces.c.chosen,
            ).where(traces.c.id.in_(ids))
        ).all()
        by_k: dict[int, list[Any]] = {}
        for row in rows:
            by_k.setdefault(int(row[2]), []).append(row)
        now = utc_now()
        out: list[dict[str, Any]] = []
        for k, group in by_k.items():
            top = np.concatenate(
                [np.frombuffer(r[4], dtype=r[3]).reshape(int(r[1]), k) for r in group]
            )
            chosen = np.concatenate([np.frombuffer(r[5], dtype=r[3]) for r in group])
            lengths = np.array([int(r[1]) for r in group], dtype=np.int64)
            scores = scores_from_flat(top, chosen, lengths)
            out.extend(
                {
                    "trace_id": r[0],
                    "feature_set": feature_set,
                    "values": s.astype(np.float64).tobytes(),
                    "computed_at": now,
                }
                for r, s in zip(group, scores, strict=True)
            )
        if out:
            session.execute(insert_or_skip(engine, features), out)
            session.commit()
    return len(out)
