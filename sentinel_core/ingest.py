"""Stream JSON lines (plain or gzip) or Python objects into the store.

Over 400 lines: the bounded streaming reader, quarantine and batching of ingest, one
path for files, the proxy and collect.

Memory stays bounded by the batch size whatever the file size: lines are read
one at a time, parsed, featurised and committed in batches. Every response
read ends up in exactly one bucket, so ``read == stored + quarantined +
duplicates`` always holds:

* ``read`` counts responses: one per choice of a valid line, one per line
  that cannot be parsed (blank lines are skipped and not counted);
* ``duplicates`` counts responses already in the store (the same id with the
  same content hash; the id is the content hash when the response has none)
  and bad lines already in quarantine from the same source and line;
* a response under a stored id with another content hash is a conflict: it is
  quarantined with both hashes in the reason, never dropped.

Quarantine keeps the raw line with every prompt replaced by its SHA-256
(:func:`sentinel_core.traces.redact_prompts`) unless prompts are kept. A file
that breaks part way (a truncated or corrupt gzip, a last line cut short)
keeps every complete line read before the damage, then raises
:class:`DamagedFileError`.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import numpy as np
import orjson
from numpy.typing import NDArray
from sqlalchemy import Engine

from sentinel_core.errors import InvalidInputError, InvalidTraceError, SentinelError
from sentinel_core.features import ALL_SCORE_NAMES, FEATURE_SET_VERSION, scores_from_flat
from sentinel_core.store import Quarantined, write_batch
from sentinel_core.traces import (
    Trace,
    parse_json_line,
    parse_record,
    redact_prompts,
    stack_traces,
)

_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"


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


class DamagedFileError(SentinelError):
    """A file broke part way (truncated or corrupt gzip, a last line cut short).

    Every complete line read before the damage was ingested; ``report`` counts them.
    """

    def __init__(self, message: str, report: IngestReport = EMPTY_REPORT) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True, slots=True)
class _Line:
    number: int  # 1-based line number in the (decompressed) file
    data: bytes
    terminated: bool  # ended with a newline; only the file's last line may not


def iter_lines(path: Path) -> Iterator[_Line]:
    """Every non-blank line of ``path``; a UTF-8 BOM on the first line is dropped.

    Raises:
        DamagedFileError: the compressed stream breaks (truncated, corrupt byte, bad CRC);
            the lines yielded before are complete.
    """
    number = 0
    with open_lines(path) as handle:
        try:
            for number, data in enumerate(handle, start=1):
                if number == 1 and data.startswith(_BOM):
                    data = data[len(_BOM) :]
                if data.strip():
                    yield _Line(number, data, data.endswith(b"\n"))
        except (EOFError, OSError, zlib.error) as exc:
            where = _compressed_offset(handle)
            raise DamagedFileError(
                f"{path}: the file breaks at line {number + 1}{where}, nothing after it can "
                f"be read: {type(exc).__name__}: {exc}"
            ) from exc


def _compressed_offset(handle: IO[bytes]) -> str:
    fileobj = getattr(handle, "fileobj", None)
    try:
        return f" (byte {fileobj.tell():,} of the compressed file)" if fileobj else ""
    except (OSError, ValueError):
        return ""


class _LineFetcher:
    """Reads lines of a file back by number, for the rare quarantine that needs its raw text.

    A forward-only second handle: fetching the lines of successive batches costs at most one
    more pass over the file; going back reopens it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lines: Iterator[_Line] | None = None
        self._last: _Line | None = None

    def get(self, number: int) -> bytes:
        if self._lines is None or self._last is None or self._last.number > number:
            self._lines, self._last = iter_lines(self.path), None
        while self._last is None or self._last.number < number:
            self._last = next(self._lines)
        return self._last.data


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
    """Collects parsed traces and bad lines until a batch is full, then writes it.

    ``raw_of(source, line_no)`` gives back the raw bytes of a trace's record, needed only
    when a trace must be quarantined after parsing (an id conflict, a featuriser refusal).
    Everything quarantined keeps its prompt as a SHA-256 unless ``keep_prompt``.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        batch_size: int,
        dtype: str,
        keep_prompt: bool,
        raw_of: Callable[[int], bytes],
    ) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.dtype = dtype
        self.keep_prompt = keep_prompt
        self.raw_of = raw_of
        self.damaged_stream = False
        self.traces: list[Trace] = []
        self.origins: list[tuple[str, int]] = []
        self.bad: list[Quarantined] = []
        self._kept: list[int] = []  # positions in ``traces`` that reached write_batch
        self.report = EMPTY_REPORT

    def add(self, items: Iterable[Trace], source: str, line_no: int) -> None:
        for trace in items:
            self.traces.append(trace)
            self.origins.append((source, line_no))
        if len(self.traces) + len(self.bad) >= self.batch_size:
            self.flush()

    def quarantine(self, source: str, line_no: int, raw: bytes, reason: str) -> None:
        self.bad.append(self._quarantined(source, line_no, raw, reason))
        if len(self.traces) + len(self.bad) >= self.batch_size:
            self.flush()

    def _quarantined(self, source: str, line_no: int, raw: bytes, reason: str) -> Quarantined:
        if self.damaged_stream and not self.keep_prompt and not _is_json(raw):
            # Decoded from a corrupt gzip stream: bytes after the damage are fragments of
            # other lines (prompts included) that no key marks, so none is kept.
            kept = (
                f"<not kept: {len(raw):,} bytes decoded from a corrupt gzip stream, sha256 "
                f"{hashlib.sha256(raw).hexdigest()}>"
            ).encode()
        else:
            kept = raw if self.keep_prompt else redact_prompts(raw)
        # NUL cannot be stored in a PostgreSQL text column: shown as U+FFFD, like bad UTF-8.
        text = kept.decode("utf-8", errors="replace").rstrip("\r\n").replace("\x00", "\ufffd")
        return Quarantined(source, line_no, text, reason)

    def _conflict(self, index: int, reason: str) -> Quarantined:
        source, line_no = self.origins[index]
        return self._quarantined(source, line_no, self.raw_of(line_no), reason)

    def flush(self) -> None:
        if not self.traces and not self.bad:
            return
        read = len(self.traces) + len(self.bad)
        traces, sources, scores = self._scored()
        counts = write_batch(
            self.engine,
            traces,
            scores,
            feature_set=FEATURE_SET_VERSION,
            sources=sources,
            quarantined=self.bad,
            dtype=self.dtype,
            on_conflict=lambda i, reason: self._conflict(self._kept[i], reason),
        )
        self.report += IngestReport(
            read=read,
            stored=counts.stored,
            quarantined=counts.quarantined,
            duplicates=counts.duplicates + counts.quarantine_duplicates,
        )
        self.traces, self.origins, self.bad = [], [], []

    def _scored(self) -> tuple[list[Trace], list[str], NDArray[np.float64]]:
        """The batch's traces with their scores; a trace the featuriser refuses is quarantined.

        Parsing validates what the featuriser needs, so the fallback (one trace at a time,
        to name the one) should never run; if it does, one trace does not cost the batch.
        """
        self._kept = list(range(len(self.traces)))
        try:
            scores = score_traces(self.traces)
        except InvalidInputError:
            rows: list[NDArray[np.float64]] = []
            self._kept = []
            for i, trace in enumerate(self.traces):
                try:
                    rows.append(score_traces([trace])[0])
                except InvalidInputError as exc:
                    source, line_no = self.origins[i]
                    self.bad.append(
                        self._quarantined(
                            source,
                            line_no,
                            self.raw_of(line_no),
                            f"expected a trace the featuriser accepts, got: {exc}",
                        )
                    )
                else:
                    self._kept.append(i)
            scores = np.array(rows).reshape(len(rows), len(ALL_SCORE_NAMES))
        traces = [self.traces[i] for i in self._kept]
        sources = [f"{self.origins[i][0]}:{self.origins[i][1]}" for i in self._kept]
        return traces, sources, scores


def ingest_file(
    engine: Engine,
    path: Path,
    *,
    batch_size: int = 500,
    keep_prompt: bool = False,
    dtype: str = "float32",
    on_progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Ingest one JSONL file (plain or gzip); ``on_progress`` gets the bytes of each line.

    Each batch of ``batch_size`` responses is one transaction: a process killed mid-file
    keeps the batches committed before, and a rerun stores the rest (what is stored counts
    as duplicates).

    Raises:
        DamagedFileError: the file breaks part way; every complete line before the damage
            is stored first, and the error's ``report`` counts them.
    """
    source = str(path.resolve())
    fetcher = _LineFetcher(path)
    batcher = _Batcher(
        engine, batch_size=batch_size, dtype=dtype, keep_prompt=keep_prompt, raw_of=fetcher.get
    )
    batcher.damaged_stream = _corrupt_gzip(path)
    try:
        with _cyclic_gc_paused():
            _ingest_lines(batcher, path, source, on_progress=on_progress)
    except DamagedFileError as exc:
        batcher.flush()
        exc.report = batcher.report
        raise
    return batcher.report


def _ingest_lines(
    batcher: _Batcher,
    path: Path,
    source: str,
    *,
    on_progress: Callable[[int], None] | None,
) -> None:
    for line in iter_lines(path):
        if not line.terminated and _cut_short(line.data):
            raise DamagedFileError(
                f"{path}: the file ends inside line {line.number} ({len(line.data):,} bytes, no "
                "newline, not a whole JSON object): is it still being written or truncated?"
            )
        try:
            traces = parse_json_line(
                line.data, keep_prompt=batcher.keep_prompt, dtype=batcher.dtype
            )
        except InvalidTraceError as exc:
            batcher.quarantine(source, line.number, line.data, str(exc))
        except Exception as exc:  # one line must never block a file: a reason, not a crash
            batcher.quarantine(source, line.number, line.data, _unexpected(exc))
        else:
            batcher.add(traces, source, line.number)
        if on_progress is not None:
            on_progress(len(line.data))
    batcher.flush()


def _corrupt_gzip(path: Path) -> bool:
    """Whether ``path`` is a gzip stream that decodes to garbage (a bad byte, a bad CRC).

    One decompression pass (fast beside parsing); a stream merely cut short is not corrupt:
    what it yields before the cut is exact.
    """
    if not path.is_file():
        return False  # reading it reports that
    with path.open("rb") as probe:
        if probe.read(2) != _GZIP_MAGIC:
            return False
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 20):
                pass
    except EOFError:
        return False
    except (OSError, zlib.error):
        return True
    return False


def _is_json(raw: bytes) -> bool:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True


def _cut_short(data: bytes) -> bool:
    """Whether an unterminated last line is a JSON text cut off (not merely invalid)."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # A text cut off runs out of data (inside a string orjson reports where the string
        # began, so the message tells, not the position); other errors are a bad line.
        return "unexpected end of data" in exc.msg or exc.pos >= len(data.rstrip()) - 1
    return False


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
    held: dict[int, Mapping[str, object]] = {}
    batcher = _Batcher(
        engine,
        batch_size=batch_size,
        dtype=dtype,
        keep_prompt=keep_prompt,
        raw_of=lambda position: _record_bytes(held[position]),
    )
    for position, record in enumerate(records, start=1):
        try:
            traces = parse_record(record, keep_prompt=keep_prompt, dtype=dtype)
        except InvalidTraceError as exc:
            batcher.quarantine(source, position, _record_bytes(record), str(exc))
        except Exception as exc:  # one record must never block the rest
            batcher.quarantine(source, position, _record_bytes(record), _unexpected(exc))
        else:
            if not batcher.traces:
                held.clear()  # the batch was written: its records are no longer needed
            held[position] = record
            batcher.add(traces, source, position)
    batcher.flush()
    return batcher.report


def _unexpected(exc: Exception) -> str:
    """The quarantine reason of a parser failure no check foresaw (a bug to report)."""
    return (
        f"expected a response the parser handles, got one it failed on: "
        f"{type(exc).__name__}: {exc} (please report this line)"
    )


def _record_bytes(record: object) -> bytes:
    try:
        return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        return repr(record).encode()
