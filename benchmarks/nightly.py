"""Wall time and peak memory of the `monitor` flow on a large pull (run by hand).

    .venv/bin/python benchmarks/nightly.py [--n 100000] [--runners thread,dask]
        [--pg-url postgresql+psycopg://sentinel@127.0.0.1:54329/sentinel_test]

The shipped real traces (corpus-dev + corpus-collected) are resampled with
replacement to N new traces (new ids, same logprobs and metadata) and ingested into
a fresh store that already holds the labelled corpus and a champion (one bootstrap
monitor run). None of that is timed. Then, per store (SQLite; PostgreSQL with
--pg-url) and task runner (Prefect's thread pool; prefect-dask on a local cluster),
one `monitor` run covers the N new traces in each of two cases:

- features stored: ingest featurised the traces (the normal path); the run reads the
  features, scores, estimates every slice, logs to MLflow, stores the watermark;
- featurised in the run: the traces' features were deleted first (as after a
  feature-set change), so the run also reads every top-k blob, featurises and
  stores the features.

Each run happens in a child process (a fresh interpreter, as a deployment's run
would be) against a running `prefect server` started here (as the nightly
deployment runs), plus one run in Prefect's ephemeral mode (the single-command
default, which starts a temporary server inside the run). Printed: wall time of the
flow call (Dask cluster start-up included), peak RSS of the child and all of its
children (Dask workers; the temporary server in ephemeral mode) sampled every 50 ms,
and the share of the wall time spent outside the core's work. The core's work is
timed on the same traces in this process, one core: featurising the blobs 500
traces at a time as the flow does (``scores_from_flat``, second case only),
``predict_proba`` with the champion, and estimating every slice. Everything else
(store reads and writes, Prefect, MLflow) is overhead.
Goals (issue 7): under 60 s and 1 GB on 2 cores; overhead under 30%.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from sqlalchemy import delete, select
from sqlmodel import SQLModel

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # the figures, not the task log
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sentinel_core.corpus import iter_sample_records  # noqa: E402
from sentinel_core.estimator import predict_in_slices  # noqa: E402
from sentinel_core.features import ALL_SCORE_NAMES, scores_from_flat  # noqa: E402
from sentinel_core.ingest import ingest_records  # noqa: E402
from sentinel_core.settings import Settings  # noqa: E402
from sentinel_core.slices import estimate_slices_with_labels  # noqa: E402
from sentinel_core.store import add_labels, open_store, slice_values  # noqa: E402

CORPORA = ("corpus-dev", "corpus-collected")
TRAFFIC = "benchmark-traffic"
TABLES = SQLModel.metadata.tables  # filled by sentinel_core.store's table declarations


class PeakRss:
    """Samples a process's and its children's RSS every 50 ms; ``peak`` in bytes."""

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self._process = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                total = self._process.memory_info().rss
                for child in self._process.children(recursive=True):
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


def flow_settings(url: str, home: Path) -> Settings:
    return Settings(home=home, db_url=url, mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}")


def prepare(url: str, home: Path, n: int, seed_: int = 0) -> None:
    """Labelled corpus + champion + first watermark, then ``n`` unfeaturised new traces."""
    from flows.monitor import monitor

    pairs = [pair for name in CORPORA for pair in iter_sample_records(name)]
    engine = open_store(url)
    ingest_records(engine, (r for r, _ in pairs), source="corpus")
    add_labels(engine, ((r["id"], bool(y), None) for r, y in pairs), labeler="import")
    monitor(by="benchmark", settings=flow_settings(url, home))  # bootstrap: champion + watermark
    picks = np.random.default_rng(seed_).integers(0, len(pairs), size=n)

    def records() -> Any:
        for i, j in enumerate(picks):
            record = dict(pairs[j][0])
            record["id"] = f"{record['id']}#{i}"
            yield record

    ingest_records(engine, records(), source=TRAFFIC, batch_size=2000)
    traces, features = TABLES["traces"], TABLES["features"]
    traffic = select(traces.c.id).where(traces.c.source.like(f"{TRAFFIC}:%"))
    with engine.begin() as conn:
        conn.execute(delete(features).where(features.c.trace_id.in_(traffic)))
    engine.dispose()


def measure_child(url: str, home: Path, runner: str) -> None:
    """(In the child process) one timed monitor run; prints its figures as JSON."""
    from flows.monitor import monitor
    from flows.settings import task_runner

    settings = flow_settings(url, home).override(task_runner=runner)
    flow = monitor.with_options(task_runner=task_runner(settings))
    started = time.perf_counter()
    report = flow(by="benchmark", settings=settings)
    wall = time.perf_counter() - started
    print(json.dumps({"n": report["n_traces"], "wall_s": wall}))


def core_seconds(url: str, home: Path) -> tuple[float, float]:
    """(featurise, score + estimate) seconds on the new traces, in-process, one core."""
    import pandas as pd

    from tasks.registry import load_champion

    settings = flow_settings(url, home)
    engine = open_store(url)
    t = TABLES["traces"]
    with engine.connect() as conn:
        rows = conn.execute(
            select(t.c.n_steps, t.c.k, t.c.dtype, t.c.logprobs, t.c.chosen, t.c.metadata).where(
                t.c.source.like(f"{TRAFFIC}:%")
            )
        ).all()
    engine.dispose()
    served = load_champion(settings)
    started = time.perf_counter()
    parts: list[Any] = []
    for start in range(0, len(rows), 500):  # as featurise_missing batches them
        batch = rows[start : start + 500]
        groups: dict[int, list[Any]] = {}
        for row in batch:
            groups.setdefault(int(row[1]), []).append(row)
        for k, group in groups.items():
            top = np.concatenate(
                [np.frombuffer(r[3], dtype=r[2]).reshape(int(r[0]), k) for r in group]
            )
            chosen = np.concatenate([np.frombuffer(r[4], dtype=r[2]) for r in group])
            lengths = np.array([int(r[0]) for r in group], dtype=np.int64)
            parts.append(scores_from_flat(top, chosen, lengths))
    featurise = time.perf_counter() - started
    scores = np.concatenate(parts)
    keys = slice_values(pd.Series([r[5] or {} for r in rows]), "benchmark")
    columns = [ALL_SCORE_NAMES.index(name) for name in served.feature_names]
    started = time.perf_counter()
    frame = pd.DataFrame(scores[:, columns], columns=list(served.feature_names))
    probs = predict_in_slices(served.estimator, frame, keys)
    estimate_slices_with_labels(
        probs,
        keys,
        np.full(len(probs), np.nan),
        n_boot=settings.monitor.n_bootstrap,
        min_n=settings.monitor.min_slice_n,
        seed=settings.seed,
    )
    return featurise, time.perf_counter() - started


def reset(url: str, *, keep_runs: int, drop_features: bool) -> None:
    """Undo a measured run: its monitor-run row (the watermark); optionally the features."""
    engine = open_store(url)
    runs, traces, features = (TABLES[n] for n in ("monitor_runs", "traces", "features"))
    with engine.begin() as conn:
        kept = select(runs.c.id).order_by(runs.c.id).limit(keep_runs).scalar_subquery()
        conn.execute(delete(runs).where(runs.c.id.not_in(select(kept))))
        if drop_features:
            traffic = select(traces.c.id).where(traces.c.source.like(f"{TRAFFIC}:%"))
            conn.execute(delete(features).where(features.c.trace_id.in_(traffic)))
    engine.dispose()


def measure(url: str, home: Path, runner: str, env: dict[str, str]) -> tuple[int, float, float]:
    """(traces, wall s, peak RSS MB) of one monitor run in a child process."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", url, str(home), runner],
        stdout=subprocess.PIPE,
        stderr=(home / f"child-{runner}.log").open("a"),
        text=True,
        env=env,
    )
    with PeakRss(child.pid) as rss:
        out, _ = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"the monitor run failed; see {home / f'child-{runner}.log'}")
    figures = json.loads(out.strip().splitlines()[-1])
    return int(figures["n"]), float(figures["wall_s"]), rss.peak / 2**20


@contextlib.contextmanager
def prefect_server(home: Path) -> Any:
    """A running `prefect server` (scripts/prefect-server), its API URL; stopped on exit."""
    env = {
        **os.environ,
        "SENTINEL_PREFECT_HOME": str(home / "prefect"),
        "SENTINEL_PREFECT_PORT": "4297",
    }
    script = str(ROOT / "scripts" / "prefect-server")
    subprocess.run([script, "start"], env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        yield subprocess.run(
            [script, "url"], env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
    finally:
        subprocess.run([script, "stop"], env=env, check=False, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--runners", default="thread,dask")
    parser.add_argument("--pg-url", default=None)
    parser.add_argument(
        "--child", nargs=3, metavar=("URL", "HOME", "RUNNER"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        measure_child(args.child[0], Path(args.child[1]), args.child[2])
        return

    stores = [("sqlite", None)] + ([("postgresql", args.pg_url)] if args.pg_url else [])
    print(f"monitor on {args.n} new traces (real traces resampled), {psutil.cpu_count()} cores")
    print(
        "store       prefect    runner  case                   traces  wall s  peak RSS MB"
        "  core s  outside core",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="sentinel-nightly-bench-"))
    with prefect_server(work) as api_url:
        served = {**os.environ, "PREFECT_API_URL": api_url}
        ephemeral = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        for store, pg in stores:
            home = work / store
            home.mkdir()
            url = pg or f"sqlite:///{home / 'sentinel.db'}"
            if pg:
                engine = open_store(pg)
                SQLModel.metadata.drop_all(engine)
                engine.dispose()
            prepare(url, home, args.n)
            featurise_s, estimate_s = core_seconds(url, home)
            plan = [
                ("server", r, featurised)
                for r in args.runners.split(",")
                for featurised in (True, False)
            ]
            if store == "sqlite":
                plan.append(("ephemeral", "thread", False))
            for mode, runner, featurised in plan:
                reset(url, keep_runs=1, drop_features=featurised)
                env = served if mode == "server" else ephemeral
                n, wall, peak = measure(url, home, runner, env)
                core = estimate_s + (featurise_s if featurised else 0.0)
                case = "featurised in the run" if featurised else "features stored"
                print(
                    f"{store:<11} {mode:<10} {runner:<7} {case:<22} {n:>6}  {wall:6.1f}  "
                    f"{peak:11.0f}  {core:6.1f}  {1.0 - core / wall:11.0%}",
                    flush=True,
                )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
