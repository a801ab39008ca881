"""Traces leave the request path here: a bounded queue and one writer thread.

The request handler only calls :meth:`TraceWriter.submit` (never blocks: a full queue
drops the record and counts it). The queue is a deque the thread drains every
``FLUSH_S`` (at once when asked by :meth:`~TraceWriter.wait_idle` or
:meth:`~TraceWriter.close`): a submit takes no lock and wakes no thread, which
``queue.Queue`` did on every request (its condition's notify, then the woken thread
taking the GIL back while the response was still to be sent). The thread takes what is
queued in batches into
:func:`sentinel_core.ingest.ingest_records` (the same parsing, quarantine and privacy
rules as ``sentinel ingest``). When the store cannot be opened or a write fails, the
batch is appended to the spill JSONL file, which ``sentinel ingest`` stores later;
what was committed before the failure comes back as duplicates then. Only a spill
file that cannot be written either loses records, and those are counted as dropped.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine

from sentinel_core.ingest import ingest_records
from sentinel_core.store import open_store

log = logging.getLogger("sentinel.proxy")

#: Longest wait for more records before a partial batch is written.
FLUSH_S = 0.2
#: After a store failure, the store is tried again after this many seconds (spilling meanwhile).
RETRY_S = 5.0


class _StoreDownError(Exception):
    """The store failed less than RETRY_S ago: spill without trying it."""


@dataclass(slots=True)
class WriterCounts:
    """What the writer did with the records it was given (the /metrics counters)."""

    submitted: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    spilled: int = 0
    dropped_queue_full: int = 0
    dropped_spill_failed: int = 0
    store_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int) -> None:
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {
                name: getattr(self, name) for name in self.__dataclass_fields__ if name != "lock"
            }


class TraceWriter:
    """A bounded queue of records and the thread that stores (or spills) them."""

    def __init__(
        self,
        store_url: str,
        spill_path: Path,
        *,
        queue_size: int,
        batch_size: int = 500,
        keep_prompt: bool = False,
        dtype: str = "float32",
        engine_factory: Callable[[str], Engine] = open_store,
    ) -> None:
        self.store_url = store_url
        self.spill_path = spill_path
        self.batch_size = batch_size
        self.keep_prompt = keep_prompt
        self.dtype = dtype
        self.counts = WriterCounts()
        self.queue_size = queue_size
        # appended by the event loop, popped by the thread: both atomic under the GIL
        self._queue: collections.deque[Any] = collections.deque()
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._store_down_until = 0.0
        self._thread = threading.Thread(target=self._run, name="sentinel-proxy-writer", daemon=True)
        self._wake = threading.Event()  # write now (wait_idle, close) instead of at FLUSH_S
        self._stopping = False
        self._idle = threading.Condition()
        self._busy = False

    def start(self) -> None:
        self._thread.start()

    @property
    def depth(self) -> int:
        """Records waiting in the queue."""
        return len(self._queue)

    def submit(self, record: Mapping[str, Any]) -> bool:
        """Queue one record; ``False`` (and counted as dropped) when the queue is full."""
        if len(self._queue) >= self.queue_size:
            self.counts.add(dropped_queue_full=1)
            log.warning("trace queue full: a trace was dropped (counted in /metrics)")
            return False
        self._queue.append(record)
        self.counts.add(submitted=1)
        return True

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, then stop the thread (waits at most ``timeout_s``)."""
        if not self._thread.is_alive():
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        if self._engine is not None:
            self._engine.dispose()

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued record is written or spilled (for tests and shutdown)."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.set()
                self._idle.wait(min(left, 0.05))
        return True

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            if not self._queue and not self._stopping:
                self._wake.wait(FLUSH_S)  # a partial batch waits at most this long
            self._wake.clear()
            stopping = self._stopping  # read before draining: nothing queued is left behind
            while self._queue:
                with self._idle:
                    self._busy = True  # before taking: wait_idle never sees neither
                batch = [
                    self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))
                ]
                self._write(batch)
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()
            if stopping:
                break

    def _write(self, batch: list[Any]) -> None:
        try:
            engine = self._store()
            report = ingest_records(
                engine,
                batch,
                source="proxy",
                batch_size=self.batch_size,
                keep_prompt=self.keep_prompt,
                dtype=self.dtype,
            )
        except _StoreDownError:
            self._spill(batch)
            return
        except Exception as exc:  # any store failure: the records go to the spill file
            self.counts.add(store_errors=1)
            self._store_failed(exc)
            self._spill(batch)
            return
        self.counts.add(
            stored=report.stored, duplicates=report.duplicates, quarantined=report.quarantined
        )

    def _store(self) -> Engine:
        if self._engine is None:
            if time.monotonic() < self._store_down_until:
                raise _StoreDownError
            self._engine = self._engine_factory(self.store_url)
        return self._engine

    def _store_failed(self, exc: Exception) -> None:
        log.error(
            "store write failed, spilling to %s: %s: %s",
            self.spill_path,
            type(exc).__name__,
            " ".join(str(exc).split())[:300],
        )
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        self._store_down_until = time.monotonic() + RETRY_S

    def _spill(self, batch: list[Any]) -> None:
        data = b"".join(
            orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)
            for record in batch
        )
        try:
            self.spill_path.parent.mkdir(parents=True, exist_ok=True)
            with self.spill_path.open("ab") as handle:
                handle.write(data)
                handle.flush()
        except OSError as exc:
            self.counts.add(dropped_spill_failed=len(batch))
            log.error(
                "spill file %s cannot be written either: %d traces dropped (counted): %s",
                self.spill_path,
                len(batch),
                exc,
            )
            return
        self.counts.add(spilled=len(batch))
