"""Wall time and peak memory of the `monitor` flow on a large pull (run by hand).

    .venv/bin/python benchmarks/nightly.py [--n 100000] [--runners thread,dask]
        [--pg-url postgresql+psycopg://sentinel@127.0.0.1:54329/sentinel_test]

The shipped real traces (corpus-dev + corpus-collected) are resampled with
replacement to N new traces (new ids, same logprobs and metadata) and ingested
into a fresh store that already holds the labelled corpus and a champion (one
bootstrap monitor run, not timed). Then one `monitor` run covers the N new
traces, on Prefect's thread runner and on the Dask task runner, on SQLite and
(with --pg-url) on PostgreSQL. Printed per configuration: wall time, peak RSS
of this process plus its children (Dask workers, Prefect's ephemeral server),
and the share of the wall time spent outside the core's work, where the core's
work is measured separately in-process on the same traces: scoring with the
champion (predict_proba on the stored features) and estimating every slice.
Goals (issue 7): under 60 s and 1 GB on 2 cores; overhead under 30%.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from sqlmodel import SQLModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sentinel_core.corpus import iter_sample_records  # noqa: E402
from sentinel_core.features import ALL_SCORE_NAMES, FEATURE_SET_VERSION  # noqa: E402
from sentinel_core.ingest import ingest_records  # noqa: E402
from sentinel_core.slices import estimate_slices_with_labels  # noqa: E402
from sentinel_core.store import add_labels, load_scores, open_store, slice_values  # noqa: E402

CORPORA = ("corpus-dev", "corpus-collected")


class PeakRss:
    """Samples this process's and its children's RSS every 50 ms; ``peak`` in bytes."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = me.memory_info().rss
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def seed(url: str) -> None:
    """The labelled corpus (labels as ``import``)."""
    pairs = [pair for name in CORPORA for pair in iter_sample_records(name)]
    engine = open_store(url)
    ingest_records(engine, (r for r, _ in pairs), source="corpus")
    add_labels(engine, ((r["id"], bool(y), None) for r, y in pairs), labeler="import")
    engine.dispose()


def add_traffic(url: str, n: int, seed_: int = 0) -> None:
    """``n`` unlabelled copies of real traces, resampled with replacement, new ids."""
    pairs = [pair for name in CORPORA for pair in iter_sample_records(name)]
    rng = np.random.default_rng(seed_)
    picks = rng.integers(0, len(pairs), size=n)
    engine = open_store(url)

    def records() -> Any:
        for i, j in enumerate(picks):
            record = dict(pairs[j][0])
            record["id"] = f"{record['id']}#{i}"
            yield record

    ingest_records(engine, records(), source="benchmark-traffic", batch_size=2000)
    engine.dispose()


def core_seconds(url: str, settings: Any) -> float:
    """Scoring + slice estimation on every stored trace, in-process: the core's share."""
    from tasks.registry import load_champion

    engine = open_store(url)
    frame = load_scores(engine, feature_set=FEATURE_SET_VERSION, names=ALL_SCORE_NAMES)
    served = load_champion(settings)
    started = time.perf_counter()
    probs = served.estimator.predict_proba(frame[list(served.feature_names)])[:, 1]
    estimate_slices_with_labels(
        probs,
        slice_values(frame["metadata"], "benchmark"),
        frame["label"].to_numpy(),
        n_boot=settings.n_bootstrap,
        min_n=settings.min_slice_n,
    )
    engine.dispose()
    return time.perf_counter() - started


def run(url: str, home: Path, runner: str) -> dict[str, float]:
    from flows.monitor import monitor
    from flows.nightly import _task_runner
    from flows.settings import flow_settings

    os.environ["SENTINEL_TASK_RUNNER"] = runner
    kwargs = {"db_url": url, "tracking_uri": f"sqlite:///{home / 'mlflow.db'}", "home": str(home)}
    settings = flow_settings(**kwargs)
    flow = monitor.with_options(task_runner=_task_runner(settings))
    with PeakRss() as rss:
        started = time.perf_counter()
        report = flow(by="benchmark", **kwargs)
        wall = time.perf_counter() - started
    return {
        "n": float(report["n_traces"]),
        "wall_s": wall,
        "peak_rss_mb": rss.peak / 2**20,
        "core_s": core_seconds(url, settings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--runners", default="thread,dask")
    parser.add_argument("--pg-url", default=None)
    args = parser.parse_args()
    from flows.monitor import monitor
    from flows.settings import flow_settings

    stores = [("sqlite", None)] + ([("postgresql", args.pg_url)] if args.pg_url else [])
    print(f"monitor on {args.n} new traces (real traces resampled), 2 cores")
    print("store       runner  traces  wall s  peak RSS MB  core s  outside core")
    for store, pg in stores:
        for runner in args.runners.split(","):
            home = Path(tempfile.mkdtemp(prefix="sentinel-nightly-bench-"))
            url = pg or f"sqlite:///{home / 'sentinel.db'}"
            if pg:
                engine = open_store(pg)
                SQLModel.metadata.drop_all(engine)
                engine.dispose()
            seed(url)
            kwargs = {
                "db_url": url,
                "tracking_uri": f"sqlite:///{home / 'mlflow.db'}",
                "home": str(home),
            }
            flow_settings(**kwargs)
            monitor(by="benchmark", **kwargs)  # bootstrap: champion + first watermark
            add_traffic(url, args.n)
            figures = run(url, home, runner)
            share = 1.0 - figures["core_s"] / figures["wall_s"]
            print(
                f"{store:<11} {runner:<7} {int(figures['n']):>6}  {figures['wall_s']:6.1f}  "
                f"{figures['peak_rss_mb']:11.0f}  {figures['core_s']:6.1f}  {share:11.0%}"
            )
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
