"""Stream JSON lines (plain or gzip) or Python objects into the store.

Memory stays bounded by the batch size whatever the file size: lines are read
one at a time, parsed, featurised and committed in batches. Every response
read ends up in exactly one bucket, so ``read == stored + quarantined +
duplicates`` always holds:

* ``read`` counts responses: one per choice of a valid line, one per line
  that cannot be parsed (blank lines are skipped and not counted);
* ``duplicates`` counts responses already in the store (by trace id, or by
  content hash when the response has no id) and bad lines already in
  quarantine from the same source and line.
"""

from __future__ import annotations

import gc
import gzip
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import numpy as np
import orjson
from numpy.typing import NDArray
from sqlalchemy import Engine

from sentinel_core.errors import InvalidInputError, InvalidTraceError
from sentinel_core.features import ALL_SCORE_NAMES, FEATURE_SET_VERSION, scores_from_flat
from sentinel_core.store import Quarantined, write_batch
from sentinel_core.traces import Trace, parse_json_line, parse_record, stack_traces

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class IngestReport:
    """Counts of one ingest; ``read == stored + quarantined + duplicates``."""

    read: int
    stored: int
    quarantined: int
    duplicates: int

    def __add__(self, other: IngestReport) -> IngestReport:
        return IngestReport(
            self.read + other.read,
            self.stored + other.stored,
            self.quarantined + other.quarantined,
            self.duplicates + other.duplicates,
        )

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain mapping (the CLI's JSON line)."""
        return {
            "read": self.read,
            "stored": self.stored,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
        }


EMPTY_REPORT = IngestReport(0, 0, 0, 0)


def score_traces(traces: Sequence[Trace]) -> NDArray[np.float64]:
    """The 20 scores (profile, then baselines) of every trace, shape ``(n, 20)``.

    Traces are grouped by k so each group is featurised in one flat call.
    """
    scores = np.empty((len(traces), len(ALL_SCORE_NAMES)), dtype=np.float64)
    by_k: dict[int, list[int]] = {}
    for i, trace in enumerate(traces):
        by_k.setdefault(trace.k, []).append(i)
    for positions in by_k.values():
        flat_top, flat_chosen, lengths = stack_traces([traces[i] for i in positions])
        scores[positions] = scores_from_flat(flat_top, flat_chosen, lengths)
    return scores


def open_lines(path: Path) -> IO[bytes]:
    """Open a JSONL file for binary line reading, gzip detected by its magic bytes."""
    if not path.is_file():
        raise InvalidInputError(f"expected a readable JSONL file, got {str(path)!r} (not a file)")
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == _GZIP_MAGIC:
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def iter_file(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_no, line)`` for every non-blank line, 1-based."""
    with open_lines(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip():
                yield line_no, line


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while parsing.

    Why: ``orjson.loads`` of one response allocates hundreds of thousands of
    containers, which keeps triggering collections that walk every object the
    process holds (pandas, scikit-learn, SQLAlchemy...); measured, that made
    parsing 3x slower than in a bare process. Parsed JSON holds no reference
    cycles, so nothing is leaked; the collector resumes (and runs) afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Batcher:
    """Collects parsed traces and bad lines until a batch is full, then writes it."""

    def __init__(self, engine: Engine, *, batch_size: int, dtype: str) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.dtype = dtype
        self.traces: list[Trace] = []
        self.sources: list[str] = []
        self.bad: list[Quarantined] = []
        self.report = EMPTY_REPORT

    def add(self, items: Iterable[Trace], source: str) -> None:
        for trace in items:
            self.traces.append(trace)
            self.sources.append(source)
        if len(self.traces) + len(self.bad) >= self.batch_size:
            self.flush()

    def quarantine(self, item: Quarantined) -> None:
        self.bad.append(item)
        if len(self.traces) + len(self.bad) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.traces and not self.bad:
            return
        counts = write_batch(
            self.engine,
            self.traces,
            score_traces(self.traces) if self.traces else np.empty((0, len(ALL_SCORE_NAMES))),
            feature_set=FEATURE_SET_VERSION,
            sources=self.sources,
            quarantined=self.bad,
            dtype=self.dtype,
        )
        read = len(self.traces) + len(self.bad)
        self.report += IngestReport(
            read=read,
            stored=counts.stored,
            quarantined=counts.quarantined,
            duplicates=counts.duplicates + counts.quarantine_duplicates,
        )
        self.traces, self.sources, self.bad = [], [], []


def ingest_file(
    engine: Engine,
    path: Path,
    *,
    batch_size: int = 500,
    keep_prompt: bool = False,
    dtype: str = "float32",
    on_progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Ingest one JSONL file (plain or gzip); ``on_progress`` gets bytes-ish line counts."""
    source = str(path.resolve())
    batcher = _Batcher(engine, batch_size=batch_size, dtype=dtype)
    with _cyclic_gc_paused():
        _ingest_lines(batcher, path, source, keep_prompt=keep_prompt, on_progress=on_progress)
    return batcher.report


def _ingest_lines(
    batcher: _Batcher,
    path: Path,
    source: str,
    *,
    keep_prompt: bool,
    on_progress: Callable[[int], None] | None,
) -> None:
    for line_no, line in iter_file(path):
        try:
            traces = parse_json_line(line, keep_prompt=keep_prompt)
        except InvalidTraceError as exc:
            raw = line.decode("utf-8", errors="replace").rstrip("\r\n")
            batcher.quarantine(Quarantined(source, line_no, raw, str(exc)))
        else:
            batcher.add(traces, f"{source}:{line_no}")
        if on_progress is not None:
            on_progress(len(line))
    batcher.flush()


def ingest_records(
    engine: Engine,
    records: Iterable[Mapping[str, object]],
    *,
    source: str = "python",
    batch_size: int = 500,
    keep_prompt: bool = False,
    dtype: str = "float32",
) -> IngestReport:
    """Ingest Python objects (wrapper, chat.completion or legacy completion dicts)."""
    batcher = _Batcher(engine, batch_size=batch_size, dtype=dtype)
    for position, record in enumerate(records, start=1):
        try:
            traces = parse_record(record, keep_prompt=keep_prompt)
        except InvalidTraceError as exc:
            try:
                raw = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY).decode()
            except TypeError:
                raw = repr(record)
            batcher.quarantine(Quarantined(source, position, raw, str(exc)))
        else:
            batcher.add(traces, f"{source}:{position}")
    batcher.flush()
    return batcher.report
