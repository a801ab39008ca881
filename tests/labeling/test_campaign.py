"""Campaigns end to end on the real corpus with the exact verifier, through the library and CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from labeling.base import LabelingError, LabelOutcome, LabelRequest
from labeling.campaign import plan_campaign, run_campaign
from labeling.exact import ExactLabeler
from sentinel_core import ledger
from sentinel_core.corpus import iter_sample_records
from sentinel_core.features import ALL_SCORE_NAMES, FEATURE_SET_VERSION
from sentinel_core.ingest import ingest_records
from sentinel_core.schema import LabelRow
from sentinel_core.slices import estimate_slices
from sentinel_core.store import load_scores, slice_values
from tests.labeling.planning import plan_stored

SENTINEL = str(Path(sys.executable).with_name("sentinel"))


@pytest.fixture
def corpus(engine: Engine) -> dict[str, int]:
    """The shipped real responses, stored; returns the datasheet's label per trace id."""
    pairs = list(iter_sample_records("corpus-dev"))
    ingest_records(engine, (record for record, _ in pairs), source="corpus-dev")
    return {str(record["id"]): label for record, label in pairs}


def plan_exact(engine: Engine, *, budget: float, cid: str = "c", max_slices: int = 3) -> str:
    return plan_stored(
        engine,
        cid,
        labeler="exact",
        budget=budget,
        unit="labels",
        cost_per_label=0.0,
        max_slices=max_slices,
        min_per_slice=5,
        p_correct="entropy",
    )[0]


def test_an_exact_campaign_labels_its_plan_with_the_verifiers_verdicts(
    engine: Engine, corpus: dict[str, int]
) -> None:
    cid = plan_exact(engine, budget=15)
    report = run_campaign(engine, cid, ExactLabeler())
    assert (report.labelled, report.failed, report.stopped) == (15, 0, None)
    state = ledger.load_campaign(engine, cid)
    assert state.done
    assert state.budget.committed == 15
    with Session(engine) as session:
        labels = session.exec(select(LabelRow).where(LabelRow.labeler == "exact")).all()
    assert len(labels) == 15
    for label in labels:
        assert label.correct == bool(corpus[label.trace_id])


def test_a_campaign_stops_at_its_budget_and_a_second_run_finds_nothing_left(
    engine: Engine, corpus: dict[str, int]
) -> None:
    cid = plan_exact(engine, budget=12)
    first = run_campaign(engine, cid, ExactLabeler(), limit=7)
    second = run_campaign(engine, cid, ExactLabeler())
    third = run_campaign(engine, cid, ExactLabeler())
    assert (first.labelled, second.labelled, third.labelled) == (7, 5, 0)
    assert ledger.budget_state(engine, cid).committed == 12


def test_a_second_plan_never_picks_what_the_exact_verifier_already_labelled(
    engine: Engine, corpus: dict[str, int]
) -> None:
    first = plan_exact(engine, budget=15, cid="one")
    run_campaign(engine, first, ExactLabeler())
    plan_exact(engine, budget=15, cid="two")
    ids_one = {r.trace_id for r in ledger.items(engine, "one")}
    ids_two = {r.trace_id for r in ledger.items(engine, "two")}
    assert ids_two
    assert ids_one.isdisjoint(ids_two)


def test_campaigns_sharing_a_budget_stop_when_it_is_spent(
    engine: Engine, corpus: dict[str, int]
) -> None:
    frame = load_scores(engine, feature_set=FEATURE_SET_VERSION, names=ALL_SCORE_NAMES)
    keys = slice_values(frame["metadata"], "benchmark")
    p = np.full(len(frame), 0.5)
    estimates = estimate_slices(p, keys, n_boot=200)
    common = {
        "estimates": estimates,
        "trace_ids": frame["trace_id"].to_numpy(),
        "slices": keys,
        "p_correct": p,
        "by": "benchmark",
        "labeler": "exact",
        "budget": 10,
        "unit": "labels",
        "cost_per_label": 0.0,
        "budget_name": "team",
        "min_per_slice": 4,
    }
    a, _ = plan_campaign(engine, campaign_id="a", max_slices=2, **common)  # type: ignore[arg-type]
    b, _ = plan_campaign(engine, campaign_id="b", max_slices=14, **common)  # type: ignore[arg-type]
    ra = run_campaign(engine, a, ExactLabeler(), limit=8)
    rb = run_campaign(engine, b, ExactLabeler())
    ra_again = run_campaign(engine, a, ExactLabeler())
    assert (ra.labelled, rb.labelled, ra_again.labelled) == (8, 2, 0)
    assert rb.stopped is not None
    assert "budget 'team' exhausted" in rb.stopped
    assert ra_again.stopped is not None
    assert ledger.budget_state(engine, "team").committed == 10


class PricedLabeler:
    """A labeler double with a price, scripted faults, and the exact verifier underneath."""

    def __init__(self, faults: dict[int, LabelingError]) -> None:
        self.faults = faults
        self.calls = 0

    @property
    def name(self) -> str:
        return "judge"

    def max_cost(self, request: LabelRequest) -> float:
        return 0.01

    def label(self, request: LabelRequest) -> LabelOutcome:
        self.calls += 1
        if self.calls in self.faults:
            raise self.faults[self.calls]
        inner = ExactLabeler().label(request)
        return LabelOutcome(request.trace_id, inner.correct, 0.004, {"by": "double"})


def plan_usd(engine: Engine, cid: str, budget: float) -> None:
    plan_stored(
        engine,
        cid,
        labeler="judge",
        budget=budget,
        unit="usd",
        cost_per_label=0.01,
        max_slices=2,
        min_per_slice=5,
    )


def test_a_paid_failure_is_committed_and_a_transient_one_released_with_the_reason(
    engine: Engine, corpus: dict[str, int]
) -> None:
    plan_usd(engine, "usd", 0.1)
    labeler = PricedLabeler(
        {
            2: LabelingError("verdict is not JSON", cost=0.003),
            4: LabelingError("HTTP 429 after 4 tries", retryable=True),
        }
    )
    report = run_campaign(engine, "usd", labeler)
    assert (report.labelled, report.failed, report.released) == (2, 1, 1)
    assert report.stopped is not None
    assert "HTTP 429" in report.stopped
    budget = ledger.budget_state(engine, "usd")
    assert budget.committed == pytest.approx(2 * 0.004 + 0.003)
    assert budget.reserved == 0.0
    resumed = run_campaign(engine, "usd", labeler)
    assert resumed.labelled == 7  # the released item and the six never tried
    budget = ledger.budget_state(engine, "usd")
    states = [r.state for r in ledger.items(engine, "usd")]
    assert states.count("labelled") == 9
    assert budget.committed == pytest.approx(9 * 0.004 + 0.003)
    assert budget.committed == pytest.approx(sum(r.cost for r in ledger.items(engine, "usd")))


def test_a_campaign_run_with_another_labeler_than_planned_is_refused(
    engine: Engine, corpus: dict[str, int]
) -> None:
    plan_usd(engine, "usd", 0.1)
    with pytest.raises(Exception, match="labeler 'judge'"):
        run_campaign(engine, "usd", ExactLabeler())


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"SENTINEL_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(home)}
    return subprocess.run(
        [SENTINEL, *args], capture_output=True, text=True, env=env, cwd=home, timeout=600
    )


def test_the_cli_plans_runs_and_reports_a_campaign(tmp_path: Path) -> None:
    demo = run_cli(tmp_path, "demo")
    assert demo.returncode == 0, demo.stderr[-2000:]
    # The demo labelled every trace with the exact verifier: new traffic comes in unlabelled.
    records = [r for r, _ in iter_sample_records("corpus-collected")]
    path = tmp_path / "new.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    done = run_cli(tmp_path, "ingest", str(path))
    assert done.returncode == 0, done.stderr[-2000:]
    plan = run_cli(
        tmp_path, "campaign", "plan", "--budget", "6", "--by", "benchmark", "--id", "cli",
        "--min-per-slice", "2", "--json",
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr[-2000:]
    planned = json.loads(plan.stdout.strip().splitlines()[-1])
    assert planned["id"] == "cli"
    assert planned["n_labels"] == 6
    run = run_cli(tmp_path, "campaign", "run", "cli", "--labeler", "exact", "--json")
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1])["labelled"] == 6
    status = run_cli(tmp_path, "campaign", "status", "cli", "--json")
    payload = json.loads(status.stdout.strip().splitlines()[-1])
    assert payload["budget"]["spent"] == 6
    assert sum(s["labelled"] for s in payload["slices"].values()) == 6
    wrong = run_cli(tmp_path, "campaign", "run", "cli", "--labeler", "human")
    assert wrong.returncode == 2
    assert wrong.stderr.splitlines() == [
        "error: Invalid value for '--labeler': 'human' is not one of 'exact', 'judge', "
        "'label-studio'. (see `sentinel campaign run --help`)"
    ]


@pytest.mark.parametrize(
    ("labeler", "reason"),
    [
        ("exact", "the exact verifier is free"),
        ("judge", "SENTINEL_JUDGE_PRICE_INPUT_PER_MTOK"),
        ("label-studio", "SENTINEL_LABEL_STUDIO_PRICE_PER_LABEL"),
    ],
)
def test_a_usd_budget_with_a_price_of_zero_names_the_labeler_and_what_sets_its_price(
    engine: Engine, corpus: dict[str, int], labeler: str, reason: str
) -> None:
    with pytest.raises(LabelingError, match="plan a budget in usd") as caught:
        plan_stored(
            engine, "usd", labeler=labeler, budget=5.0, unit="usd", cost_per_label=0.0,
            max_slices=3, min_per_slice=2,
        )  # fmt: skip
    assert reason in str(caught.value)
    assert f"for the {labeler} labeler" in str(caught.value)
    assert "--unit labels" in str(caught.value)
