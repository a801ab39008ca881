"""The budget ledger on SQLite and on the real PostgreSQL server: never over, nothing twice."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from sentinel_core import ledger
from sentinel_core.acquisition import Plan, PlanItem, SliceAllocation
from sentinel_core.corpus import iter_sample_records
from sentinel_core.errors import InvalidInputError, StoreError
from sentinel_core.ingest import ingest_records
from sentinel_core.schema import CampaignItemRow, LabelRow


@pytest.fixture
def trace_ids(engine: Engine) -> list[str]:
    records = [record for record, _ in iter_sample_records("corpus-dev")]
    ingest_records(engine, iter(records), source="test")
    return [str(r["id"]) for r in records]


def make_plan(ids: list[str], *, unit: str = "usd") -> Plan:
    items = tuple(PlanItem(t, "s", 0.5, i) for i, t in enumerate(ids))
    alloc = SliceAllocation("s", 1, 1.0, 0.5, 0.4, 0.6, len(ids), len(ids))
    return Plan("benchmark", 10.0, unit, 0.1, len(ids), (alloc,), items)  # type: ignore[arg-type]


def open_items(engine: Engine, cid: str) -> list[CampaignItemRow]:
    return ledger.items(engine, cid)


def test_reservations_stop_at_the_budget_and_settling_commits_with_the_label(
    engine: Engine, trace_ids: list[str]
) -> None:
    ledger.create_budget(engine, "b", total=1.0, unit="usd")
    ledger.create_campaign(engine, "c", make_plan(trace_ids[:5]), budget="b", labeler="judge")
    rows = open_items(engine, "c")
    assert [ledger.reserve(engine, r.id, 0.3, labeler="judge") for r in rows] == [  # type: ignore[arg-type]
        True,
        True,
        True,
        False,
        False,
    ]
    budget = ledger.budget_state(engine, "b")
    assert budget.reserved == pytest.approx(0.9)
    assert budget.committed == 0.0
    assert ledger.settle(engine, rows[0].id, correct=True, cost=0.2, labeler="judge")  # type: ignore[arg-type]
    budget = ledger.budget_state(engine, "b")
    assert budget.reserved == pytest.approx(0.6)
    assert budget.committed == pytest.approx(0.2)
    with Session(engine) as session:
        label = session.exec(select(LabelRow).where(LabelRow.trace_id == rows[0].trace_id)).one()
    assert (label.labeler, label.correct) == ("judge", True)
    # The 0.1 the label did not use is free again: 0.6 + 0.2 + 0.2 fills the budget.
    assert ledger.reserve(engine, rows[3].id, 0.2, labeler="judge")  # type: ignore[arg-type]


def test_settling_twice_commits_once(engine: Engine, trace_ids: list[str]) -> None:
    ledger.create_budget(engine, "b", total=5, unit="labels")
    ledger.create_campaign(engine, "c", make_plan(trace_ids[:1], unit="labels"), budget="b")
    (row,) = open_items(engine, "c")
    assert ledger.reserve(engine, row.id, 1, labeler="exact")  # type: ignore[arg-type]
    assert ledger.settle(engine, row.id, correct=False, cost=1, labeler="exact")  # type: ignore[arg-type]
    assert not ledger.settle(engine, row.id, correct=False, cost=1, labeler="exact")  # type: ignore[arg-type]
    assert ledger.budget_state(engine, "b").committed == 1


def test_an_item_cannot_be_reserved_twice(engine: Engine, trace_ids: list[str]) -> None:
    ledger.create_budget(engine, "b", total=5, unit="labels")
    ledger.create_campaign(engine, "c", make_plan(trace_ids[:1], unit="labels"), budget="b")
    (row,) = open_items(engine, "c")
    assert ledger.reserve(engine, row.id, 1, labeler="exact")  # type: ignore[arg-type]
    assert not ledger.reserve(engine, row.id, 1, labeler="exact")  # type: ignore[arg-type]
    assert ledger.budget_state(engine, "b").reserved == 1


def test_release_gives_the_money_back_and_plans_the_item_again(
    engine: Engine, trace_ids: list[str]
) -> None:
    ledger.create_budget(engine, "b", total=1.0, unit="usd")
    ledger.create_campaign(engine, "c", make_plan(trace_ids[:1]), budget="b")
    (row,) = open_items(engine, "c")
    ledger.reserve(engine, row.id, 0.7, labeler="judge")  # type: ignore[arg-type]
    ledger.mark_calling(engine, row.id)  # type: ignore[arg-type]
    assert ledger.release(engine, row.id, reason="HTTP 429")  # type: ignore[arg-type]
    assert ledger.budget_state(engine, "b").reserved == 0.0
    (row,) = open_items(engine, "c")
    assert (row.state, row.reason) == ("planned", "HTTP 429")


def test_recover_charges_a_call_left_in_flight_and_never_calls_it_again(
    engine: Engine, trace_ids: list[str]
) -> None:
    ledger.create_budget(engine, "b", total=1.0, unit="usd")
    ledger.create_campaign(engine, "c", make_plan(trace_ids[:2]), budget="b")
    first, second = open_items(engine, "c")
    ledger.reserve(engine, first.id, 0.4, labeler="judge")  # type: ignore[arg-type]
    ledger.mark_calling(engine, first.id)  # type: ignore[arg-type]
    ledger.reserve(engine, second.id, 0.4, labeler="judge")  # type: ignore[arg-type]
    assert ledger.recover(engine, "c") == 1
    budget = ledger.budget_state(engine, "b")
    assert (budget.committed, budget.reserved) == (pytest.approx(0.4), pytest.approx(0.4))
    first, second = open_items(engine, "c")
    assert (first.state, second.state) == ("failed", "reserved")
    assert "in flight" in (first.reason or "")


def test_a_budget_created_again_with_another_total_is_refused(engine: Engine) -> None:
    ledger.create_budget(engine, "b", total=3, unit="labels")
    assert ledger.create_budget(engine, "b", total=3, unit="labels").total == 3
    with pytest.raises(InvalidInputError, match=r"existing budget of 3 labels"):
        ledger.create_budget(engine, "b", total=4, unit="labels")


def test_an_unknown_campaign_is_a_clear_store_error(engine: Engine) -> None:
    with pytest.raises(StoreError, match="expected a campaign 'nope'"):
        ledger.load_campaign(engine, "nope")


def test_the_campaign_status_counts_states_and_spend_per_slice(
    engine: Engine, trace_ids: list[str]
) -> None:
    ledger.create_budget(engine, "b", total=10.0, unit="usd")
    ledger.create_campaign(engine, "c", make_plan(trace_ids[:3]), budget="b", labeler="judge")
    a, b, _ = open_items(engine, "c")
    ledger.reserve(engine, a.id, 1.0, labeler="judge")  # type: ignore[arg-type]
    ledger.settle(engine, a.id, correct=True, cost=0.5, labeler="judge")  # type: ignore[arg-type]
    ledger.reserve(engine, b.id, 1.0, labeler="judge")  # type: ignore[arg-type]
    state = ledger.load_campaign(engine, "c")
    counts = state.per_slice["s"]
    assert (counts["labelled"], counts["reserved"], counts["planned"]) == (1, 1, 1)
    assert counts["spent"] == pytest.approx(0.5)
    assert counts["correct"] == 1
    assert not state.done
    assert state.agreement.n_tasks == 0  # no label with two verdicts


def test_the_campaign_status_reports_the_agreement_of_responses_labelled_twice(
    engine: Engine, trace_ids: list[str]
) -> None:
    ledger.create_budget(engine, "b", total=10.0, unit="usd")
    ledger.create_campaign(engine, "c", make_plan(trace_ids[:3]), budget="b", labeler="human")
    verdicts = (["correct", "correct"], ["correct", "incorrect"], ["incorrect"])
    for row, choices in zip(open_items(engine, "c"), verdicts, strict=True):
        ledger.reserve(engine, row.id, 1.0, labeler="human")  # type: ignore[arg-type]
        ledger.settle(
            engine,
            row.id,  # type: ignore[arg-type]
            correct=choices[-1] == "correct",
            cost=0.5 * len(choices),
            labeler="human",
            detail=json.dumps({"choices": choices}),
        )
    agreement = ledger.load_campaign(engine, "c").agreement
    assert (agreement.n_tasks, agreement.n_agree) == (2, 1)


WORKER = textwrap.dedent(
    """
    import sys
    import time
    from sentinel_core import ledger
    from sentinel_core.store import open_store

    from pathlib import Path

    url, cid, barrier = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    engine = open_store(url)
    rows = ledger.items(engine, cid)
    # Both workers start spending together, however long each took to start (a loaded
    # machine can take many seconds to import): each says it is ready, then waits for both.
    (barrier / f"ready-{cid}").touch()
    deadline = time.time() + 240
    while len(list(barrier.glob("ready-*"))) < 2 and time.time() < deadline:
        time.sleep(0.01)
    for i, row in enumerate(rows):
        amount = 0.05 + 0.01 * (i % 7)
        if not ledger.reserve(engine, row.id, amount, labeler="judge"):
            continue
        ledger.settle(engine, row.id, correct=i % 2 == 0, cost=amount * 0.9, labeler="judge")
    """
)


def test_two_campaigns_spending_one_budget_at_once_never_go_over(
    engine: Engine, store_url: str, trace_ids: list[str], tmp_path: Path
) -> None:
    total = 2.0
    ledger.create_budget(engine, "shared", total=total, unit="usd")
    half = len(trace_ids) // 2
    ledger.create_campaign(engine, "c1", make_plan(trace_ids[:half]), budget="shared")
    ledger.create_campaign(engine, "c2", make_plan(trace_ids[half:]), budget="shared")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, store_url, cid, str(barrier)], stderr=subprocess.PIPE
        )
        for cid in ("c1", "c2")
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err.decode()[-2000:]
    budget = ledger.budget_state(engine, "shared")
    rows = open_items(engine, "c1") + open_items(engine, "c2")
    labelled = [r for r in rows if r.state == "labelled"]
    assert budget.committed <= total + ledger.EPS
    assert budget.reserved == pytest.approx(0.0, abs=1e-9)
    assert budget.committed == pytest.approx(sum(r.cost for r in labelled))
    # Both campaigns got labels, and the budget was used up to the last affordable item.
    assert {r.campaign_id for r in labelled} == {"c1", "c2"}
    assert total - budget.committed / 0.9 < 0.12
    with Session(engine) as session:
        stored = session.exec(select(LabelRow).where(LabelRow.labeler == "judge")).all()
    assert len(stored) == len(labelled)


def test_agreement_counts_the_first_two_verdicts_of_responses_labelled_twice() -> None:
    from sklearn.metrics import cohen_kappa_score

    from sentinel_core.ledger import Agreement

    verdicts = [
        ["correct", "correct"],
        ["correct", "incorrect"],
        ["incorrect", "incorrect", "correct"],
        ["incorrect", "incorrect"],
        ["correct"],
    ]
    agreement = Agreement.of(verdicts)
    assert (agreement.n_tasks, agreement.n_agree) == (4, 3)
    assert agreement.share == 0.75
    first = ["correct", "correct", "incorrect", "incorrect"]
    second = ["correct", "incorrect", "incorrect", "incorrect"]
    assert agreement.kappa == pytest.approx(cohen_kappa_score(first, second))
    none = Agreement.of([["correct"], ["incorrect"]])
    assert none.n_tasks == 0
    assert math.isnan(none.share)
    assert math.isnan(none.kappa)
    assert math.isnan(Agreement.of([["correct", "correct"], ["correct", "correct"]]).kappa)
