"""`sentinel nightly` killed with SIGKILL at three points of the loop, then rerun.

The victim is the real CLI in its own process (Prefect ephemeral, SQLite store and
MLflow store under a temporary home, judge labeler against the test's
OpenAI-compatible server, each verdict slowed so calls are in flight). It is killed:

1. while the monitor's bootstrap retrain is logging its MLflow run (before any
   registry version, before the monitor stored its watermark);
2. in the middle of the judge campaign (after the monitor stored its watermark);
3. right after the post-campaign retrain registered its version;

and each time rerun with the same night key. After the last rerun the loop must have:
no response sent to the judge twice and a spend equal to what the items cost (no
double spend), one registry version per supervision set (no duplicate version), and
one monitor run covering every trace once (the watermark right).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select

from sentinel_core import ledger
from sentinel_core.runs import new_trace_ids
from sentinel_core.schema import LabelRow, MonitorRun
from sentinel_core.store import open_store
from tests.labeling.judge_server import JudgeServer, Step, running_judge_server

SENTINEL = str(Path(sys.executable).with_name("sentinel"))
MODEL = "entropy-sentinel-estimator"
KEY = "night-1"
CAMPAIGN = f"acquire-{KEY}-benchmark-judge"
N_TRACES = 134 + 108  # corpus-dev (seeded labelled) + corpus-collected (new traffic)


def _count(db: Path, query: str) -> int:
    """One count from the victim's MLflow SQLite store, 0 while it does not exist yet."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0) as conn:
            return int(conn.execute(query).fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def retrain_runs(db: Path) -> int:
    return _count(db, "select count(*) from tags where key='sentinel_kind' and value='retrain'")


def versions(db: Path) -> int:
    return _count(db, f"select count(*) from model_versions where name='{MODEL}'")


@pytest.fixture
def judge() -> Iterator[JudgeServer]:
    with running_judge_server() as fake:
        fake.script = [Step.slow(0.5)] * 200
        yield fake


def kill_when(victim: subprocess.Popen[bytes], ready: Callable[[], bool], *, delay: float) -> None:
    """SIGKILL the victim ``delay`` seconds after ``ready()``; fail if it ended before."""
    deadline = time.monotonic() + 300
    while not ready():
        assert victim.poll() is None, "the nightly run ended before it could be killed"
        assert time.monotonic() < deadline, "the kill point was never reached"
        time.sleep(0.02)
    time.sleep(delay)
    assert victim.poll() is None, "the nightly run ended before it could be killed"
    # The whole process group, as a machine or container going down would: the CLI and
    # the ephemeral Prefect server it started (killing the CLI alone orphans that server).
    os.killpg(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL


def test_nightly_killed_three_times_then_rerun_spends_once_registers_once(
    judge: JudgeServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    mlflow_db = home / "mlflow.db"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),  # Prefect's ephemeral database lives under ~/.prefect
        "SENTINEL_HOME": str(home),
        "SENTINEL_N_BOOTSTRAP": "200",
        "SENTINEL_JUDGE_BASE_URL": judge.base_url,
        "SENTINEL_JUDGE_MODEL": "judge-model",
        "SENTINEL_JUDGE_MAX_TOKENS": "64",
        "SENTINEL_JUDGE_PRICE_INPUT_PER_MTOK": "150",
        "SENTINEL_JUDGE_PRICE_OUTPUT_PER_MTOK": "600",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    command = [SENTINEL, "nightly", "--sample", "--labeler", "judge", "--unit", "usd"]
    command += ["--budget", "4", "--key", KEY]

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command,
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    # 1. During the bootstrap retrain's MLflow logging: nothing registered, no watermark.
    kill_when(start(), lambda: retrain_runs(mlflow_db) >= 1, delay=0.3)
    assert versions(mlflow_db) == 0
    store = open_store(f"sqlite:///{home / 'sentinel.db'}")
    with Session(store) as session:
        assert session.exec(select(MonitorRun)).all() == []

    # 2. Mid-campaign: some verdicts bought, calls in flight.
    kill_when(start(), lambda: len(judge.requests) >= 3, delay=0.2)
    labelled_before = {r.trace_id for r in ledger.items(store, CAMPAIGN) if r.state == "labelled"}

    # 3. Right after the post-campaign retrain registered its challenger.
    kill_when(start(), lambda: versions(mlflow_db) >= 2, delay=0.0)

    finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-3000:]

    # No double spend: each response went to the judge at most once; the ledger is exact.
    asked = Counter(r["messages"][-1]["content"] for r in judge.requests)
    assert max(asked.values()) == 1
    rows = ledger.items(store, CAMPAIGN)
    assert all(r.state in ("labelled", "failed") for r in rows)
    budget = ledger.load_campaign(store, CAMPAIGN).budget
    assert budget.committed == pytest.approx(sum(r.cost for r in rows), abs=1e-9)
    assert budget.reserved == 0.0
    assert 0.0 < budget.committed <= budget.total + ledger.EPS
    labelled = {r.trace_id for r in rows if r.state == "labelled"}
    assert labelled_before <= labelled
    with Session(store) as session:
        stored = session.exec(select(LabelRow.trace_id).where(LabelRow.labeler == "judge")).all()
    assert sorted(stored) == sorted(labelled)

    # No duplicate registry version: the bootstrap champion and one challenger, one key each.
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{mlflow_db}")
    found = client.search_model_versions(f"name='{MODEL}'")
    assert sorted(int(v.version) for v in found) == [1, 2]
    keys = [v.tags["idempotency_key"] for v in found]
    assert len(set(keys)) == 2
    assert int(client.get_model_version_by_alias(MODEL, "champion").version) in {1, 2}

    # The watermark: one recorded monitor run, every trace once, nothing left behind it.
    with Session(store) as session:
        runs = session.exec(select(MonitorRun)).all()
    assert [r.n_traces for r in runs] == [N_TRACES]
    assert new_trace_ids(store, after=runs[0].watermark(), limit=None)[0] == []
    assert len(new_trace_ids(store, after=None, limit=None)[0]) == N_TRACES
    store.dispose()
