"""Running a labeling campaign: the plan's items, a labeler, and the budget ledger.

Over 400 lines: the campaign runner's sync and async paths share the reserve/commit
protocol with the ledger.

Every item goes through the ledger (``sentinel_core.ledger``): its cost is
reserved before the labeler acts, and the label is stored in the same
transaction that commits the spend. A rerun of a stopped or crashed campaign
first closes what the crash left in flight (``ledger.recover``), then carries on
with the items still reserved or planned; Label Studio tasks are imported with
the trace id as their key, so a rerun never duplicates one.

For a budget in labels, every label costs 1; a failed attempt costs nothing (a
crash in the middle of a call is charged its reservation, 1). For a budget in
USD, the labeler's ``max_cost`` is reserved and what the labeler reports is
committed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from secrets import token_hex
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from labeling.base import AsyncLabeler, LabelingError, LabelOutcome, LabelRequest, SyncLabeler
from sentinel_core import ledger
from sentinel_core.acquisition import Design, Plan, Unit, plan
from sentinel_core.active import DEFAULT_AUDIT_SHARE
from sentinel_core.errors import InvalidInputError, require_extra
from sentinel_core.schema import CampaignItemRow, LabelRow, TraceRow
from sentinel_core.settings import Settings
from sentinel_core.slices import SliceEstimate

__all__ = [
    "LABELERS",
    "LabelerKind",
    "RunReport",
    "default_cost_per_label",
    "make_labeler",
    "new_campaign_id",
    "plan_campaign",
    "requests_for",
    "run_campaign",
]

#: A campaign stops after this many paid failures in a row (a judge that answers garbage).
MAX_FAILURES_IN_A_ROW = 5

#: The kinds of labeler a campaign can run with (the CLI's choices for ``--labeler``).
LabelerKind = Literal["exact", "judge", "label-studio"]
LABELERS: tuple[str, ...] = get_args(LabelerKind)


def default_cost_per_label(settings: Settings, kind: str) -> float:
    """A planning estimate of one label's cost in USD (a run reserves each call's exact bound)."""
    if kind == "label-studio":
        return settings.label_studio.price_per_label
    if kind == "judge":
        # ~2,000 prompt tokens (instructions, question, response, reference) + the verdict.
        return (
            2000 * settings.judge.price_input_per_mtok
            + settings.judge.max_tokens * settings.judge.price_output_per_mtok
        ) / 1e6
    return 0.0


#: Why a labeler's planning price is 0, and what sets it.
_FREE = {
    "exact": "the exact verifier is free",
    "judge": (
        "the judge's prices are 0 (set SENTINEL_JUDGE_PRICE_INPUT_PER_MTOK and "
        "SENTINEL_JUDGE_PRICE_OUTPUT_PER_MTOK, USD per million tokens)"
    ),
    "label-studio": (
        "the annotators' price is 0 (set SENTINEL_LABEL_STUDIO_PRICE_PER_LABEL, USD per label)"
    ),
}


def make_labeler(settings: Settings, kind: str) -> SyncLabeler | AsyncLabeler:
    """The labeler of kind ``kind`` (one of ``LABELERS``), configured from settings."""
    if kind == "exact":
        from labeling.exact import ExactLabeler

        return ExactLabeler()
    if kind == "judge":
        require_extra("llm")
        from labeling.judge import JudgeLabeler

        return JudgeLabeler.from_settings(settings)
    if kind == "label-studio":
        require_extra("label-studio")
        from labeling.label_studio import LabelStudioLabeler

        return LabelStudioLabeler.from_settings(settings)
    raise InvalidInputError(f"expected a labeler kind in {', '.join(LABELERS)}, got {kind!r}")


@dataclass(slots=True)
class RunReport:
    """What one run of a campaign did, and why it stopped.

    ``taken`` counts the items another run of the campaign reserved first (a
    concurrent worker): this run skipped them and carried on with the rest.
    """

    campaign_id: str
    labeler: str
    labelled: int = 0
    failed: int = 0
    released: int = 0
    submitted: int = 0
    recovered: int = 0
    taken: int = 0
    spent: float = 0.0
    pending: int = 0
    stopped: str | None = None
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return asdict(self)


def new_campaign_id() -> str:
    """A sortable, unique campaign id: ``c-YYYYmmdd-HHMMSS-xxxx``."""
    return f"c-{datetime.now(UTC):%Y%m%d-%H%M%S}-{token_hex(2)}"


def labelled_by(engine: Engine, trace_ids: Sequence[str], *, labeler: str) -> set[str]:
    """Which of ``trace_ids`` already carry a label from ``labeler``."""
    with Session(engine) as session:
        rows = session.exec(select(LabelRow.trace_id).where(LabelRow.labeler == labeler)).all()
    wanted = set(trace_ids)
    return {t for t in rows if t in wanted}


def plan_campaign(
    engine: Engine,
    *,
    estimates: Sequence[SliceEstimate],
    trace_ids: npt.ArrayLike,
    slices: npt.ArrayLike,
    p_correct: npt.ArrayLike,
    by: str,
    labeler: str,
    budget: float,
    unit: Unit,
    cost_per_label: float,
    budget_name: str | None = None,
    campaign_id: str | None = None,
    max_slices: int = 3,
    min_per_slice: int = 10,
    seed: int = 0,
    design: Design = "priority",
    audit_share: float = DEFAULT_AUDIT_SHARE,
) -> tuple[str, Plan]:
    """Plan a campaign (``sentinel_core.acquisition.plan``) and store it with its budget.

    The budget ``budget_name`` (default: the campaign id) is created with ``budget``
    as its total, or reused when it exists with the same total and unit, so
    several campaigns can draw on one budget.
    """
    if unit == "usd" and cost_per_label == 0.0:
        raise LabelingError(
            f"expected a cost per label > 0 to plan a budget in usd, got 0 for the "
            f"{labeler} labeler: {_FREE.get(labeler, 'it costs nothing')}; "
            "give the budget in labels (--unit labels) or a price (--cost-per-label)"
        )
    ids = np.asarray(trace_ids, dtype=str)
    done = labelled_by(engine, list(ids), labeler=labeler)
    the_plan = plan(
        estimates,
        ids,
        slices,
        p_correct,
        np.array([t in done for t in ids], dtype=bool),
        by=by,
        budget=budget,
        unit=unit,
        cost_per_label=cost_per_label,
        max_slices=max_slices,
        min_per_slice=min_per_slice,
        seed=seed,
        design=design,
        audit_share=audit_share,
    )
    cid = campaign_id or new_campaign_id()
    name = budget_name or cid
    ledger.create_budget(engine, name, total=budget, unit=unit)
    ledger.create_campaign(engine, cid, the_plan, budget=name, labeler=labeler)
    return cid, the_plan


def requests_for(engine: Engine, rows: Sequence[CampaignItemRow]) -> dict[int, LabelRequest]:
    """The labeler's view of each item: question, response, reference, P(correct)."""
    wanted = {r.trace_id for r in rows}
    with Session(engine) as session:
        traces = {
            t.id: t
            for t in session.exec(select(TraceRow).where(col(TraceRow.id).in_(wanted))).all()
        }
    out: dict[int, LabelRequest] = {}
    for r in rows:
        trace = traces[r.trace_id]
        meta = dict(trace.meta or {})
        assert r.id is not None
        out[r.id] = LabelRequest(
            trace_id=trace.id,
            response_text=trace.response_text,
            question=trace.prompt or _text(meta.get("question")),
            reference=_text(meta.get("gold")),
            kind=_text(meta.get("kind")),
            finish_reason=trace.finish_reason,
            p_correct=r.p_correct,
            slice=r.slice,
            metadata=meta,
        )
    return out


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def run_campaign(
    engine: Engine,
    campaign_id: str,
    labeler: SyncLabeler | AsyncLabeler,
    *,
    limit: int | None = None,
    wait_s: float = 0.0,
    poll_s: float = 5.0,
    on_progress: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RunReport:
    """Run (or resume) a campaign with ``labeler`` until done, out of budget, or stopped.

    Args:
        limit: act on at most this many items in this run.
        wait_s: asynchronous labelers only: keep polling for annotations this long.
        on_progress: called with the number of items just finished.
    """
    ledger.set_labeler(engine, campaign_id, labeler.name)
    unit = ledger.load_campaign(engine, campaign_id).budget.unit
    report = RunReport(campaign_id=campaign_id, labeler=labeler.name)
    report.recovered = ledger.recover(engine, campaign_id)
    if isinstance(labeler, SyncLabeler):
        _run_sync(engine, campaign_id, labeler, unit, report, limit, on_progress)
    elif isinstance(labeler, AsyncLabeler):
        _run_async(engine, campaign_id, labeler, unit, report, limit, on_progress)
        deadline = time.monotonic() + wait_s
        while report.pending and time.monotonic() < deadline:
            sleep(poll_s)
            _collect(engine, campaign_id, labeler, unit, report, on_progress)
    else:
        raise InvalidInputError(
            f"expected a SyncLabeler or an AsyncLabeler, got {type(labeler).__name__}"
        )
    return report


def settle_pushed(engine: Engine, outcome: LabelOutcome, *, labeler: str) -> int:
    """Store a label that arrived by push (a Label Studio webhook) and commit its cost on
    every campaign item waiting for it; how many items it settled.

    The same ledger transaction as a polled label (``ledger.settle``): stored before the
    sender is answered, and a label already settled (by a poll, or a repeated delivery)
    settles nothing again.
    """
    settled = 0
    for row in ledger.waiting_items(engine, outcome.trace_id, labeler=labeler):
        assert row.id is not None
        unit = ledger.load_campaign(engine, row.campaign_id).budget.unit
        report = RunReport(campaign_id=row.campaign_id, labeler=labeler)
        settled += _settle(engine, row.id, outcome, unit, labeler, report)
    return settled


def _amount(unit: str, usd: float) -> float:
    return 1.0 if unit == "labels" else usd


def _reserve(
    engine: Engine, row: CampaignItemRow, amount: float, labeler: str, report: RunReport
) -> Literal["reserved", "taken", "exhausted"]:
    """Reserve ``row``'s cost; ``"taken"`` when another run reserved the item first (this
    run skips it), ``"exhausted"`` (``report.stopped`` says so) when the budget is spent."""
    assert row.id is not None
    if row.state == "reserved" or ledger.reserve(engine, row.id, amount, labeler=labeler):
        return "reserved"
    with Session(engine) as session:
        now = session.get(CampaignItemRow, row.id)
    if now is not None and now.state != "planned":
        report.taken += 1
        return "taken"
    budget = ledger.load_campaign(engine, report.campaign_id).budget
    report.stopped = (
        f"budget {budget.name!r} exhausted: {budget.committed:g} {budget.unit} spent and "
        f"{budget.reserved:g} reserved of {budget.total:g}; the next label needs {amount:g}"
    )
    return "exhausted"


def _pending_rows(engine: Engine, campaign_id: str, limit: int | None) -> list[CampaignItemRow]:
    """Items still to act on: those a stopped run left reserved first, then planned ones."""
    rows = ledger.items(engine, campaign_id, states=("reserved", "planned"))
    rows.sort(key=lambda r: (r.state != "reserved", r.id))
    return rows if limit is None else rows[:limit]


def _settle(
    engine: Engine, item_id: int, outcome: LabelOutcome, unit: str, labeler: str, report: RunReport
) -> bool:
    """Store the label and commit its cost (in the budget's unit); count it in the report."""
    cost = _amount(unit, outcome.cost)
    settled = ledger.settle(
        engine,
        item_id,
        correct=outcome.correct,
        cost=cost,
        labeler=labeler,
        detail=json.dumps(dict(outcome.detail), default=str),
    )
    if settled:
        report.labelled += 1
        report.spent += cost
    return settled


def _run_sync(
    engine: Engine,
    campaign_id: str,
    labeler: SyncLabeler,
    unit: str,
    report: RunReport,
    limit: int | None,
    on_progress: Callable[[int], None] | None,
) -> None:
    rows = _pending_rows(engine, campaign_id, limit)
    requests = requests_for(engine, rows)
    failures_in_a_row = 0
    for row in rows:
        assert row.id is not None
        request = requests[row.id]
        status = _reserve(
            engine, row, _amount(unit, labeler.max_cost(request)), labeler.name, report
        )
        if status == "taken":
            continue
        if status == "exhausted":
            break
        ledger.mark_calling(engine, row.id)
        try:
            outcome = labeler.label(request)
        except LabelingError as exc:
            message = f"{row.trace_id}: {exc}"
            report.errors.append(message)
            if exc.retryable:
                ledger.release(engine, row.id, reason=str(exc))
                report.released += 1
                report.stopped = (
                    f"stopped on a transient labeler error (rerun to resume): {message}"
                )
                break
            cost = 0.0 if unit == "labels" else exc.cost
            ledger.settle_failed(engine, row.id, cost=cost, reason=str(exc))
            report.failed += 1
            report.spent += cost
            failures_in_a_row += 1
            if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                report.stopped = (
                    f"stopped after {failures_in_a_row} failed labels in a row; last: {message}"
                )
                break
            continue
        failures_in_a_row = 0
        _settle(engine, row.id, outcome, unit, labeler.name, report)
        if on_progress is not None:
            on_progress(1)


def _run_async(
    engine: Engine,
    campaign_id: str,
    labeler: AsyncLabeler,
    unit: str,
    report: RunReport,
    limit: int | None,
    on_progress: Callable[[int], None] | None,
) -> None:
    rows = _pending_rows(engine, campaign_id, limit)
    requests = requests_for(engine, rows)
    reserved = []
    for row in rows:
        assert row.id is not None
        status = _reserve(
            engine, row, _amount(unit, labeler.max_cost(requests[row.id])), labeler.name, report
        )
        if status == "taken":
            continue
        if status == "exhausted":
            break
        reserved.append(row.id)
    if reserved:
        # Import first, then record: a crash in between leaves items reserved, and the
        # rerun's import finds their tasks by trace id instead of creating them again.
        report.submitted = labeler.submit([requests[i] for i in reserved])
        ledger.mark_submitted(engine, reserved)
    _collect(engine, campaign_id, labeler, unit, report, on_progress)


def _collect(
    engine: Engine,
    campaign_id: str,
    labeler: AsyncLabeler,
    unit: str,
    report: RunReport,
    on_progress: Callable[[int], None] | None,
) -> None:
    waiting = ledger.items(engine, campaign_id, states=("submitted",))
    by_trace = {r.trace_id: r for r in waiting}
    for outcome in labeler.collect(list(by_trace)):
        row = by_trace.get(outcome.trace_id)
        if row is None or row.id is None:
            continue
        if _settle(engine, row.id, outcome, unit, labeler.name, report) and on_progress:
            on_progress(1)
    report.pending = len(ledger.items(engine, campaign_id, states=("submitted",)))
