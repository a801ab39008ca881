"""The trace store: the engine (SQLite or any SQLAlchemy URL) and the few queries the project runs.

Over 400 lines: every query the project runs against the trace store, so the SQL lives
in one place.

A SQLite file by default (created on first use), any SQLAlchemy URL for scale
(``postgresql+psycopg://...``). Raw top-k logprobs are kept as one float array
blob per trace, so features can be recomputed for another k or with
renormalisation; features are stored per trace with the version of the
feature set that made them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sqlalchemy import (
    Engine,
    Table,
    event,
    func,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlmodel import Session, SQLModel, create_engine, select

from sentinel_core.errors import MissingStoreError, StoreError
from sentinel_core.schema import FeatureRow, LabelRow, QuarantineRow, TraceRow, utc_now
from sentinel_core.traces import Trace, cut_flags

#: Labelers in the order their word counts when one trace has several labels.
LABELER_PRIORITY: tuple[str, ...] = ("exact", "label-studio", "import", "judge")


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A record that failed to parse: where it came from, what it was, why."""

    source: str
    line_no: int
    raw: str
    reason: str


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """What one write did: new traces, already-known traces, new quarantine rows."""

    stored: int
    duplicates: int
    quarantined: int
    quarantine_duplicates: int


def open_store(url: str, *, create: bool = True) -> Engine:
    """Connect to the store at ``url``.

    With ``create`` (the commands that bring traces in: ingest, collect, demo,
    nightly), the SQLite file, its folder and the tables are made on first use.
    Without it (every command that reads or labels what is stored), a store that
    does not exist is a :class:`StoreError` saying so, and nothing is created: no
    SQLite file or folder, and no table on a server whose ``traces`` table is
    missing. An existing store gets any table a newer version added either way.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"expected a SQLAlchemy URL such as sqlite:///path/to.db or "
            f"postgresql+psycopg://user@host/db, got {url!r}"
        ) from exc
    sqlite_file = _sqlite_file(parsed)
    if sqlite_file is not None:
        if create:
            sqlite_file.parent.mkdir(parents=True, exist_ok=True)
        elif not sqlite_file.is_file():
            raise MissingStoreError(_no_store(parsed))
    try:
        engine = create_engine(parsed)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise StoreError(f"cannot use store URL {parsed!r}: {exc}") from exc
    except ImportError as exc:
        raise StoreError(
            f"cannot use store URL {parsed!r}: its driver {parsed.drivername!r} needs the "
            f"Python module {exc.name!r}, which is not installed"
        ) from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        if not create and not sa_inspect(engine).has_table(str(TraceRow.__tablename__)):
            engine.dispose()
            raise MissingStoreError(_no_store(parsed))
        _create_tables(engine)
    except DBAPIError as exc:
        # OperationalError (cannot connect, locked) and DatabaseError (not a database).
        raise StoreError(f"cannot open the store at {parsed!r}: {exc.orig}") from exc
    return engine


def _create_tables(engine: Engine, attempts: int = 5) -> None:
    """``create_all``, safe when another process creates the same tables at once.

    ``create_all`` checks which tables exist, then creates the rest: two commands starting
    on a new store (two ``sentinel ingest`` at once) can both see a table missing, and the
    second then fails with "already exists". Checking again finds it, so retry.
    """
    for attempt in range(attempts):
        try:
            SQLModel.metadata.create_all(engine)
            return
        except DBAPIError as exc:
            message = str(exc.orig)
            raced = "already exists" in message or "pg_type_typname_nsp_index" in message
            if not raced or attempt == attempts - 1:
                raise


def _sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL; None for an in-memory database or another backend."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser()


def _no_store(url: URL) -> str:
    return f"no store at {url!r}: run `sentinel ingest` first (or give --db an existing store)"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers work during an ingest; NORMAL is durable across app crashes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def table_of(model: type[SQLModel]) -> Table:
    """The SQLAlchemy ``Table`` behind a table model (for Core queries on bulk paths)."""
    return SQLModel.metadata.tables[str(model.__tablename__)]


def insert_or_skip(engine: Engine, table: Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for ``table`` on SQLite or PostgreSQL: the
    idempotent write of every table keyed by content or id."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def write_batch(
    engine: Engine,
    traces: Sequence[Trace],
    scores: NDArray[np.float64],
    *,
    feature_set: str,
    sources: Sequence[str],
    quarantined: Sequence[Quarantined] = (),
    dtype: str = "float32",
    on_conflict: Callable[[int, str], Quarantined] | None = None,
) -> BatchCounts:
    """Store parsed traces with their scores, and quarantined lines, in one transaction.

    ``scores`` has shape ``(len(traces), n_scores)``. A trace whose id is already stored
    (or repeated inside the batch) with the same content hash is a duplicate; with another
    content hash it is a conflict: ``on_conflict(index, reason)`` makes its quarantine
    record (the reason names both hashes), so a second response under a known id is never
    dropped silently. Without ``on_conflict`` a conflict is an error.
    """
    conflicts: list[Quarantined] = []
    with Session(engine) as session:
        ids = [t.id for t in traces]
        known: dict[str, str] = (
            dict(
                session.exec(
                    select(TraceRow.id, TraceRow.content_hash).where(TraceRow.id.in_(ids))  # type: ignore[attr-defined]
                ).all()
            )
            if ids
            else {}
        )
        trace_rows: list[dict[str, Any]] = []
        feature_rows: list[dict[str, Any]] = []
        now = utc_now()
        for index, (trace, row_scores, source) in enumerate(
            zip(traces, scores, sources, strict=True)
        ):
            if trace.id in known:
                if known[trace.id] != trace.content_hash:
                    reason = _conflict_reason(trace, known[trace.id])
                    if on_conflict is None:
                        raise StoreError(reason)
                    conflicts.append(on_conflict(index, reason))
                continue
            known[trace.id] = trace.content_hash
            trace_rows.append(_trace_row(trace, source, dtype, now))
            feature_rows.append(
                {
                    "trace_id": trace.id,
                    "feature_set": feature_set,
                    "values": np.asarray(row_scores, dtype=np.float64).tobytes(),
                    "computed_at": now,
                }
            )
        if trace_rows:
            traces_table = table_of(TraceRow)
            # RETURNING says which rows this transaction wrote: another writer (a second
            # ingest of the same file) may have stored an id between the check above and
            # this insert, and that row is then a duplicate or a conflict, not a new trace.
            written = set(
                session.execute(
                    insert_or_skip(engine, traces_table).returning(traces_table.c.id),
                    trace_rows,
                ).scalars()
            )
            if len(written) < len(trace_rows):
                raced = {row["id"]: row for row in trace_rows if row["id"] not in written}
                stored_hashes = dict(
                    session.exec(
                        select(TraceRow.id, TraceRow.content_hash).where(
                            TraceRow.id.in_(list(raced))  # type: ignore[attr-defined]
                        )
                    ).all()
                )
                for index, trace in enumerate(traces):
                    row = raced.pop(trace.id, None)
                    if row is None or stored_hashes.get(trace.id) == trace.content_hash:
                        continue
                    reason = _conflict_reason(trace, stored_hashes.get(trace.id))
                    if on_conflict is None:
                        raise StoreError(reason)
                    conflicts.append(on_conflict(index, reason))
                trace_rows = [row for row in trace_rows if row["id"] in written]
                feature_rows = [row for row in feature_rows if row["trace_id"] in written]
            if feature_rows:
                session.execute(insert_or_skip(engine, table_of(FeatureRow)), feature_rows)
        every_bad = [*quarantined, *conflicts]
        new_quarantine = _new_quarantine_rows(session, every_bad, now)
        if new_quarantine:
            table = table_of(QuarantineRow)
            # Count what this transaction wrote (a concurrent ingest may have written some).
            new_quarantine = list(
                session.execute(
                    insert_or_skip(engine, table).returning(table.c.id), new_quarantine
                ).scalars()
            )
        session.commit()
    return BatchCounts(
        stored=len(trace_rows),
        duplicates=len(traces) - len(trace_rows) - len(conflicts),
        quarantined=len(new_quarantine),
        quarantine_duplicates=len(every_bad) - len(new_quarantine),
    )


def _conflict_reason(trace: Trace, stored_hash: str | None) -> str:
    """The quarantine reason of a response under an id stored with other content."""
    return (
        f"expected a new id or the stored response under id {trace.id!r} (content sha256 "
        f"{stored_hash}), got another response under that id (content sha256 "
        f"{trace.content_hash}): re-id it to keep both"
    )


def _trace_row(trace: Trace, source: str, dtype: str, now: datetime) -> dict[str, Any]:
    return {
        "id": trace.id,
        "model": trace.model,
        "created": trace.created,
        "ingested_at": now,
        "metadata": trace.metadata,
        "prompt_hash": trace.prompt_hash,
        "prompt": trace.prompt,
        "response_text": trace.response_text,
        "finish_reason": trace.finish_reason,
        "n_steps": trace.n_steps,
        "k": trace.k,
        "dtype": dtype,
        "logprobs": trace.top_logprobs.astype(dtype).tobytes(),
        "chosen": trace.chosen_logprobs.astype(dtype).tobytes(),
        "resorted": trace.resorted,
        "content_hash": trace.content_hash,
        "source": source,
    }


def _new_quarantine_rows(
    session: Session, quarantined: Sequence[Quarantined], now: datetime
) -> list[dict[str, Any]]:
    rows: dict[tuple[str, int, str], dict[str, Any]] = {}
    for item in quarantined:
        digest = hashlib.sha256(item.raw.encode()).hexdigest()
        rows[(item.source, item.line_no, digest)] = {
            "source": item.source,
            "line_no": item.line_no,
            "raw": item.raw,
            "raw_sha256": digest,
            "reason": item.reason,
            "quarantined_at": now,
        }
    if not rows:
        return []
    sources = {key[0] for key in rows}
    existing = session.exec(
        select(QuarantineRow.source, QuarantineRow.line_no, QuarantineRow.raw_sha256).where(
            QuarantineRow.source.in_(sources)  # type: ignore[attr-defined]
        )
    ).all()
    for key in existing:
        rows.pop(tuple(key), None)  # type: ignore[arg-type]
    return list(rows.values())


def add_labels(
    engine: Engine, labels: Iterable[tuple[str, bool, str | None]], *, labeler: str
) -> tuple[int, int, list[str]]:
    """Store labels ``(trace_id, correct, detail)`` from one kind of labeler.

    Returns ``(stored, already_labelled, unknown_trace_ids)``; a trace already
    labelled by this kind of labeler keeps its first label.
    """
    labels = list(labels)
    with Session(engine) as session:
        ids = [trace_id for trace_id, _, _ in labels]
        present = set(session.exec(select(TraceRow.id).where(TraceRow.id.in_(ids))).all())  # type: ignore[attr-defined]
        done = set(
            session.exec(
                select(LabelRow.trace_id).where(
                    LabelRow.labeler == labeler,
                    LabelRow.trace_id.in_(ids),  # type: ignore[attr-defined]
                )
            ).all()
        )
        unknown = [trace_id for trace_id in ids if trace_id not in present]
        rows = []
        for trace_id, correct, detail in labels:
            if trace_id not in present or trace_id in done:
                continue
            done.add(trace_id)
            rows.append(
                {
                    "trace_id": trace_id,
                    "labeler": labeler,
                    "correct": bool(correct),
                    "detail": detail,
                    "labelled_at": utc_now(),
                }
            )
        if rows:
            session.execute(insert_or_skip(engine, table_of(LabelRow)), rows)
        session.commit()
    return len(rows), len(labels) - len(rows) - len(unknown), unknown


def load_scores(engine: Engine, *, feature_set: str, names: Sequence[str]) -> pd.DataFrame:
    """Every trace with its scores, metadata and best label, one row per trace.

    Columns: ``trace_id``, ``model``, ``created``, ``metadata`` (dict), one
    column per name in ``names``, ``label`` (1.0, 0.0 or NaN when no
    labeler has spoken; ``LABELER_PRIORITY`` decides between labelers) and ``cut``
    (bool: cut at ``max_tokens``, ``finish_reason == "length"``).
    """
    with Session(engine) as session:
        traces, features = table_of(TraceRow), table_of(FeatureRow)
        rows = session.execute(
            sa_select(
                traces.c.id,
                traces.c.model,
                traces.c.created,
                traces.c.metadata,
                features.c["values"],
                traces.c.finish_reason,
            )
            .join(features, features.c.trace_id == traces.c.id)
            .where(features.c.feature_set == feature_set)
            .order_by(traces.c.created, traces.c.id)
        ).all()
        label_rows = session.exec(
            select(LabelRow.trace_id, LabelRow.labeler, LabelRow.correct)
        ).all()
    values = (
        np.frombuffer(b"".join(r[4] for r in rows), dtype=np.float64).reshape(len(rows), -1)
        if rows
        else np.empty((0, len(names)))
    )
    if values.shape[1] != len(names):
        raise StoreError(
            f"expected {len(names)} scores per trace for feature set {feature_set!r}, "
            f"got {values.shape[1]}"
        )
    frame = pd.DataFrame(values, columns=list(names))
    frame.insert(0, "trace_id", [r[0] for r in rows])
    frame.insert(1, "model", [r[1] for r in rows])
    frame.insert(2, "created", [r[2] for r in rows])
    frame.insert(3, "metadata", [r[3] or {} for r in rows])
    frame["label"] = best_labels(frame["trace_id"], label_rows)
    frame["cut"] = cut_flags([r[5] for r in rows])
    return frame


def best_labels(trace_ids: Iterable[str], label_rows: Sequence[Any]) -> NDArray[np.float64]:
    """Each trace's label from its most trusted labeler (``LABELER_PRIORITY``), NaN if none.

    ``label_rows`` are ``(trace_id, labeler, correct)``; the result has one entry per id.
    """
    rank = {name: i for i, name in enumerate(LABELER_PRIORITY)}
    best: dict[str, tuple[int, bool]] = {}
    for trace_id, labeler, correct in label_rows:
        order = rank.get(labeler, len(rank))
        if trace_id not in best or order < best[trace_id][0]:
            best[trace_id] = (order, correct)
    return np.array(
        [float(best[t][1]) if t in best else np.nan for t in trace_ids], dtype=np.float64
    )


def count_rows(engine: Engine) -> dict[str, int]:
    """Row counts of every table, for status lines and tests."""
    with Session(engine) as session:
        return {
            name: int(session.exec(select(func.count()).select_from(model)).one())
            for name, model in (
                ("traces", TraceRow),
                ("features", FeatureRow),
                ("quarantine", QuarantineRow),
                ("labels", LabelRow),
            )
        }


def slice_values(metadata: pd.Series, key: str) -> NDArray[np.str_]:
    """The value of metadata ``key`` per trace as text; ``(missing)`` where absent."""
    return np.array(
        [
            str(m[key]) if isinstance(m, dict) and m.get(key) is not None else "(missing)"
            for m in metadata
        ],
        dtype=str,
    )


def load_metadata(engine: Engine) -> list[dict[str, Any]]:
    """The metadata of every stored trace (for checking a slice key against)."""
    traces = table_of(TraceRow)
    with Session(engine) as session:
        rows = session.execute(sa_select(traces.c.metadata)).all()
    return [r[0] or {} for r in rows]


def iter_unlabelled(
    engine: Engine, *, labeler: str, batch_size: int = 1000
) -> Iterator[list[tuple[str, dict[str, Any], str, str | None]]]:
    """Batches of ``(trace_id, metadata, response_text, finish_reason)`` that ``labeler`` lacks."""
    traces, labels = table_of(TraceRow), table_of(LabelRow)
    done = (
        sa_select(labels.c.trace_id)
        .where(labels.c.labeler == labeler, labels.c.trace_id == traces.c.id)
        .exists()
    )
    query = (
        sa_select(traces.c.id, traces.c.metadata, traces.c.response_text, traces.c.finish_reason)
        .where(~done)
        .order_by(traces.c.id)
    )
    with Session(engine) as session:
        result = session.execute(query.execution_options(yield_per=batch_size))
        for partition in result.partitions():
            yield [(r[0], r[1] or {}, r[2], r[3]) for r in partition]


def label_counts(engine: Engine, *, labeler: str, key: str) -> dict[str, dict[str, int]]:
    """Per value of metadata ``key``: how many traces ``labeler`` labelled, how many correct."""
    traces, labels = table_of(TraceRow), table_of(LabelRow)
    with Session(engine) as session:
        rows = session.execute(
            sa_select(traces.c.metadata, labels.c.correct)
            .join(labels, labels.c.trace_id == traces.c.id)
            .where(labels.c.labeler == labeler)
        ).all()
    counts: dict[str, dict[str, int]] = {}
    for metadata, correct in rows:
        value = (metadata or {}).get(key)
        slot = counts.setdefault(
            "(missing)" if value is None else str(value), {"n": 0, "correct": 0}
        )
        slot["n"] += 1
        slot["correct"] += int(bool(correct))
    return dict(sorted(counts.items()))
