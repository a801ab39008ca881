"""Judge campaigns against a faulty judge server, and a campaign killed with SIGKILL.

The judge server is the test's own OpenAI-compatible HTTP server on 127.0.0.1
(``tests/labeling/judge_server.py``): real wire format, GENERATED verdicts,
scripted faults. Every test ends by checking that the ledger is exact: the spend
equals the sum of what the items cost, nothing stays reserved, nothing is over.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from labeling.campaign import run_campaign
from labeling.judge import JudgeLabeler
from sentinel_core import ledger
from sentinel_core.corpus import iter_sample_records
from sentinel_core.ingest import ingest_records
from sentinel_core.schema import LabelRow
from tests.labeling.judge_server import JudgeServer, Step, running_judge_server
from tests.labeling.planning import plan_stored

SENTINEL = str(Path(sys.executable).with_name("sentinel"))
PRICE_IN, PRICE_OUT = 150.0, 600.0  # USD per M tokens: big enough for visible figures


@pytest.fixture
def server() -> Iterator[JudgeServer]:
    with running_judge_server() as fake:
        yield fake


@pytest.fixture
def stored(engine: Engine) -> Engine:
    ingest_records(
        engine,
        (r for r, _ in iter_sample_records("corpus-dev")),
        source="corpus-dev",
        keep_prompt=True,
    )
    return engine


def judge(url: str, *, timeout_s: float = 2.0) -> JudgeLabeler:
    return JudgeLabeler(
        base_url=url,
        model="judge-model",
        max_tokens=64,
        timeout_s=timeout_s,
        price_input_per_mtok=PRICE_IN,
        price_output_per_mtok=PRICE_OUT,
    )


def plan(engine: Engine, cid: str, *, budget: float, n_items: int = 12, n_slices: int = 2) -> None:
    plan_stored(
        engine,
        cid,
        labeler="judge",
        budget=budget,
        unit="usd",
        cost_per_label=budget / n_items,
        max_slices=n_slices,
        min_per_slice=n_items // n_slices,
    )


def assert_ledger_exact(engine: Engine, cid: str) -> ledger.BudgetState:
    budget = ledger.load_campaign(engine, cid).budget
    rows = ledger.items(engine, cid)
    spent = sum(r.cost for r in rows if r.state in ("labelled", "failed"))
    held = sum(r.reserved for r in rows if r.state in ledger.OPEN_STATES)
    assert budget.committed == pytest.approx(spent, abs=1e-9)
    assert budget.reserved == pytest.approx(held, abs=1e-9)
    assert budget.committed + budget.reserved <= budget.total + ledger.EPS
    with Session(engine) as session:
        labels = {
            lab.trace_id
            for lab in session.exec(select(LabelRow).where(LabelRow.labeler == "judge")).all()
        }
    assert labels == {r.trace_id for r in rows if r.state == "labelled"}
    return budget


def test_rate_limits_and_garbage_are_handled_and_the_ledger_stays_exact(
    stored: Engine, server: JudgeServer
) -> None:
    plan(stored, "faults", budget=10.0)
    server.script = [
        Step.error(429, "slow down", headers={"Retry-After": "0"}),  # retried, then fine
        Step(),
        Step.text("I think it is right."),  # paid, unparseable: failed with its cost
        Step.text('{"reason": "no verdict field"}'),  # paid, invalid: failed
        Step(),
    ]
    with judge(server.base_url) as labeler:
        report = run_campaign(stored, "faults", labeler)
    assert report.stopped is None
    assert (report.labelled, report.failed) == (10, 2)
    failed = [r for r in ledger.items(stored, "faults") if r.state == "failed"]
    assert all(r.cost > 0 for r in failed)
    assert all("expected" in (r.reason or "") for r in failed)
    assert_ledger_exact(stored, "faults")


def test_a_judge_that_keeps_failing_stops_the_campaign_and_a_rerun_finishes_it(
    stored: Engine, server: JudgeServer
) -> None:
    plan(stored, "down", budget=10.0)
    server.script = [Step(), Step(), *[Step.error(500, "boom")] * 4]
    with judge(server.base_url) as labeler:
        first = run_campaign(stored, "down", labeler)
    assert first.labelled == 2
    assert first.stopped is not None
    assert "500" in first.stopped
    assert "rerun to resume" in first.stopped
    assert_ledger_exact(stored, "down")
    with judge(server.base_url) as labeler:
        second = run_campaign(stored, "down", labeler)
    assert (second.stopped, first.labelled + second.labelled) == (None, 12)
    budget = assert_ledger_exact(stored, "down")
    assert budget.reserved == 0.0


def test_timeouts_release_the_reservation_and_stop_with_the_reason(
    stored: Engine, server: JudgeServer
) -> None:
    plan(stored, "slow", budget=10.0)
    server.script = [Step(), *[Step.slow(3.0)] * 4]
    with judge(server.base_url, timeout_s=0.5) as labeler:
        report = run_campaign(stored, "slow", labeler)
    assert report.labelled == 1
    assert report.stopped is not None
    assert "0.5" in report.stopped
    budget = assert_ledger_exact(stored, "slow")
    assert budget.reserved == 0.0


def test_a_budget_too_small_for_the_next_reservation_stops_the_campaign(
    stored: Engine, server: JudgeServer
) -> None:
    with judge(server.base_url) as labeler:
        plan(stored, "tight", budget=0.5, n_items=6)
        report = run_campaign(stored, "tight", labeler)
    assert report.stopped is not None
    assert "exhausted" in report.stopped
    budget = assert_ledger_exact(stored, "tight")
    assert budget.committed <= 0.5


def labelled_ids(engine: Engine, cid: str) -> set[str]:
    return {r.trace_id for r in ledger.items(engine, cid) if r.state == "labelled"}


def test_a_campaign_killed_mid_run_resumes_without_paying_twice(
    stored: Engine, store_url: str, server: JudgeServer, tmp_path: Path
) -> None:
    plan(stored, "killed", budget=10.0, n_items=24, n_slices=3)
    server.script = [Step.slow(0.4)] * 60  # each verdict takes a while: calls are in flight
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "SENTINEL_HOME": str(tmp_path / ".sentinel"),
        "SENTINEL_JUDGE_BASE_URL": server.base_url,
        "SENTINEL_JUDGE_MODEL": "judge-model",
        "SENTINEL_JUDGE_MAX_TOKENS": "64",
        "SENTINEL_JUDGE_PRICE_INPUT_PER_MTOK": str(PRICE_IN),
        "SENTINEL_JUDGE_PRICE_OUTPUT_PER_MTOK": str(PRICE_OUT),
    }
    command = [SENTINEL, "campaign", "run", "killed", "--labeler", "judge", "--db", store_url]
    victim = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(labelled_ids(stored, "killed")) < 4 and time.monotonic() < deadline:
        assert victim.poll() is None, "the campaign ended before it could be killed"
        time.sleep(0.05)
    time.sleep(0.2)  # mid-call
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    before = labelled_ids(stored, "killed")
    assert len(before) >= 4
    assert_ledger_exact(stored, "killed")
    rerun = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = labelled_ids(stored, "killed")
    assert before <= after
    budget = assert_ledger_exact(stored, "killed")
    assert budget.reserved == 0.0
    rows = ledger.items(stored, "killed")
    assert all(r.state in ("labelled", "failed") for r in rows)
    # No response was sent to the judge twice: a call cut off by the kill was charged and closed.
    asked = Counter(r["messages"][-1]["content"] for r in server.requests)
    assert max(asked.values()) == 1
    assert len(asked) >= len(after)
    assert len(after) + sum(r.state == "failed" for r in rows) == len(rows)
