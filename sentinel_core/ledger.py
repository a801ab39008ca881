"""The budget ledger: campaigns, their items, and money that is reserved before it is spent.

Over 400 lines: the budget state machine (reserve, commit, release, recover) and its
queries must be read together to see that nothing is paid twice.

Tables (in the trace store, so labels and spend commit together):

- ``budgets``: a named budget with its ``total`` and running ``reserved`` and
  ``committed`` amounts, in ``usd`` or in ``labels``. Several campaigns may
  draw on one budget at once.
- ``campaigns``: a plan (JSON) with the budget it draws on and its labeler kind.
- ``campaign_items``: one row per response to label, unique per campaign, with
  a state machine::

      planned -> reserved -> calling   -> labelled | failed | planned (released)
                          -> submitted -> labelled

Every amount is in the budget's unit; for a budget in labels one label costs 1.

Why it cannot overspend: :func:`reserve` is one transaction whose budget update
is conditional, ``UPDATE budgets SET reserved = reserved + a WHERE reserved +
committed + a <= total``. The database serialises concurrent writers on that
row (SQLite: one writer at a time; PostgreSQL: the row lock, after which the
condition is re-checked on the new row), so two campaigns or two workers can
never both take the last unit. :func:`settle` stores the label and moves the
reservation to committed in one transaction, so a label is stored before (in
fact, atomically with) the spend it justifies, and a crash leaves either both
or neither.

What a crash leaves and how :func:`recover` treats it:

- ``reserved`` (no outside action started): kept; the rerun carries on with it;
- ``calling`` (a paid call was in flight): the call may have been billed, so
  the reservation is charged in full and the item closed as ``failed``; it is
  never called again, so nothing is paid twice, and the spend is an upper
  bound of the real one;
- ``submitted`` (a Label Studio task exists): kept; annotations are collected.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from sentinel_core.acquisition import Plan
from sentinel_core.errors import InvalidInputError, StoreError
from sentinel_core.schema import (
    BudgetRow,
    CampaignItemRow,
    CampaignRow,
    LabelRow,
    utc_now,
)
from sentinel_core.store import insert_or_skip, table_of

__all__ = [
    "BudgetState",
    "CampaignState",
    "create_budget",
    "create_campaign",
    "inclusion_of",
    "load_campaign",
    "mark_calling",
    "mark_submitted",
    "recover",
    "release",
    "reserve",
    "settle",
    "settle_failed",
]

#: Slack on the budget check, for float sums of many small USD amounts.
EPS: Final[float] = 1e-9
ITEM_STATES: Final[tuple[str, ...]] = (
    "planned",
    "reserved",
    "calling",
    "submitted",
    "labelled",
    "failed",
)
OPEN_STATES: Final[tuple[str, ...]] = ("reserved", "calling", "submitted")

#: Trace ids per IN (...) query (SQLite allows 32,766 parameters).
_ID_CHUNK: Final[int] = 10_000


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A budget's figures: total, reserved, committed (spent) and what is left."""

    name: str
    unit: str
    total: float
    reserved: float
    committed: float

    @property
    def available(self) -> float:
        """What can still be reserved."""
        return max(0.0, self.total - self.reserved - self.committed)


@dataclass(frozen=True, slots=True)
class Agreement:
    """How often two verdicts on one response agreed (a campaign's overlap share).

    ``n_tasks``: labelled responses with two verdicts or more; ``n_agree``: those
    whose first two verdicts are the same; ``kappa``: Cohen's kappa of first against
    second verdict (NaN when it is undefined: fewer than two tasks, or one class).
    """

    n_tasks: int
    n_agree: int
    kappa: float

    @property
    def share(self) -> float:
        """Observed agreement, ``n_agree / n_tasks`` (NaN without overlapping tasks)."""
        return self.n_agree / self.n_tasks if self.n_tasks else float("nan")

    @classmethod
    def of(cls, verdicts: Sequence[Sequence[str]]) -> Agreement:
        """From each response's verdicts, oldest first (responses with one are skipped)."""
        pairs = [(v[0], v[1]) for v in verdicts if len(v) >= 2]
        kappa = float("nan")
        first, second = [a for a, _ in pairs], [b for _, b in pairs]
        if len(pairs) >= 2 and len(set(first) | set(second)) > 1:
            from sklearn.metrics import cohen_kappa_score

            with np.errstate(divide="ignore", invalid="ignore"):
                kappa = float(cohen_kappa_score(first, second))
        return cls(len(pairs), sum(a == b for a, b in pairs), kappa)


@dataclass(frozen=True, slots=True)
class CampaignState:
    """A campaign, its budget, the counts of its items per state and slice, and the
    agreement of its responses labelled twice."""

    id: str
    by: str
    labeler: str | None
    budget: BudgetState
    plan: Plan
    per_slice: dict[str, dict[str, float]]
    agreement: Agreement

    @property
    def done(self) -> bool:
        """No item is waiting for an action or a label."""
        return all(
            s["planned"] + s["reserved"] + s["calling"] + s["submitted"] == 0
            for s in self.per_slice.values()
        )


def create_budget(engine: Engine, name: str, *, total: float, unit: str) -> BudgetState:
    """Create the budget ``name``, or return it if it exists with the same total and unit."""
    if unit not in ("usd", "labels"):
        raise InvalidInputError(f"expected a budget unit of 'usd' or 'labels', got {unit!r}")
    if not total >= 0:
        raise InvalidInputError(f"expected a budget total >= 0, got {total}")
    with Session(engine) as session:
        session.execute(
            insert_or_skip(engine, table_of(BudgetRow)),
            [{"name": name, "unit": unit, "total": float(total), "created": utc_now()}],
        )
        session.commit()
    state = budget_state(engine, name)
    if state.unit != unit or abs(state.total - total) > EPS:
        raise InvalidInputError(
            f"expected budget {name!r} to be new or to match ({total:g} {unit}), got an existing "
            f"budget of {state.total:g} {state.unit}"
        )
    return state


def budget_state(engine: Engine, name: str) -> BudgetState:
    """The current figures of budget ``name``."""
    with Session(engine) as session:
        row = session.get(BudgetRow, name)
        if row is None:
            raise StoreError(f"expected a budget named {name!r}, got none in the store")
        return BudgetState(row.name, row.unit, row.total, row.reserved, row.committed)


def create_campaign(
    engine: Engine, campaign_id: str, plan: Plan, *, budget: str, labeler: str | None = None
) -> None:
    """Store a campaign and its items; creating the same id again changes nothing."""
    with Session(engine) as session:
        existing = session.get(CampaignRow, campaign_id)
        if existing is not None:
            return
        if session.get(BudgetRow, budget) is None:
            raise StoreError(f"expected a budget named {budget!r}, got none in the store")
        session.add(
            CampaignRow(
                id=campaign_id,
                budget=budget,
                by=plan.by,
                labeler=labeler,
                plan=json.dumps(plan.to_dict()),
            )
        )
        session.flush()
        if plan.items:
            session.execute(
                insert_or_skip(engine, table_of(CampaignItemRow)),
                [
                    {
                        "campaign_id": campaign_id,
                        "trace_id": item.trace_id,
                        "slice": item.slice,
                        "p_correct": item.p_correct,
                        "stratum": item.stratum,
                        "state": "planned",
                        "reserved": 0.0,
                        "cost": 0.0,
                        "updated": utc_now(),
                    }
                    for item in plan.items
                ],
            )
        session.commit()


def set_labeler(engine: Engine, campaign_id: str, labeler: str) -> None:
    """Bind a campaign to a labeler kind on its first run; a different kind later is an error."""
    with Session(engine) as session:
        row = session.get(CampaignRow, campaign_id)
        if row is None:
            raise StoreError(f"expected a campaign {campaign_id!r}, got none in the store")
        if row.labeler is None:
            row.labeler = labeler
            session.add(row)
            session.commit()
        elif row.labeler != labeler:
            raise InvalidInputError(
                f"expected campaign {campaign_id!r} to run with its labeler {row.labeler!r}, "
                f"got {labeler!r}"
            )


def items(
    engine: Engine, campaign_id: str, *, states: Sequence[str] | None = None
) -> list[CampaignItemRow]:
    """The items of a campaign (in a given state), in plan order."""
    with Session(engine) as session:
        query = select(CampaignItemRow).where(CampaignItemRow.campaign_id == campaign_id)
        if states is not None:
            query = query.where(col(CampaignItemRow.state).in_(states))
        return list(session.exec(query.order_by(col(CampaignItemRow.id))).all())


def waiting_items(engine: Engine, trace_id: str, *, labeler: str) -> list[CampaignItemRow]:
    """The items of any campaign waiting for ``labeler``'s label on ``trace_id``."""
    with Session(engine) as session:
        query = select(CampaignItemRow).where(
            CampaignItemRow.trace_id == trace_id,
            CampaignItemRow.state == "submitted",
            CampaignItemRow.labeler == labeler,
        )
        return list(session.exec(query.order_by(col(CampaignItemRow.id))).all())


def reserve(engine: Engine, item_id: int, amount: float, *, labeler: str) -> bool:
    """Claim a planned item and reserve ``amount`` on its campaign's budget, atomically.

    Returns False, changing nothing, when the budget cannot cover it or the item is
    no longer planned (another worker took it).
    """
    if not amount >= 0:
        raise InvalidInputError(f"expected an amount >= 0 to reserve, got {amount}")
    items_t, budgets_t, campaigns_t = (
        table_of(CampaignItemRow),
        table_of(BudgetRow),
        table_of(CampaignRow),
    )
    with Session(engine) as session:
        claimed = session.execute(
            update(items_t)
            .where(items_t.c.id == item_id, items_t.c.state == "planned")
            .values(state="reserved", reserved=amount, labeler=labeler, updated=utc_now())
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            return False
        budget_name = sa_select(campaigns_t.c.budget).where(
            campaigns_t.c.id == items_t.c.campaign_id, items_t.c.id == item_id
        )
        booked = session.execute(
            update(budgets_t)
            .where(
                budgets_t.c.name == budget_name.scalar_subquery(),
                budgets_t.c.reserved + budgets_t.c.committed + amount <= budgets_t.c.total + EPS,
            )
            .values(reserved=budgets_t.c.reserved + amount)
        )
        if booked.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            return False
        session.commit()
    return True


def _move(session: Session, item_id: int, *, frm: Iterable[str], to: str, **values: Any) -> bool:
    items_t = table_of(CampaignItemRow)
    done = session.execute(
        update(items_t)
        .where(items_t.c.id == item_id, items_t.c.state.in_(tuple(frm)))
        .values(state=to, updated=utc_now(), **values)
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def mark_calling(engine: Engine, item_id: int) -> bool:
    """Record that a (possibly paid) call for a reserved item is about to start."""
    with Session(engine) as session:
        moved = _move(session, item_id, frm=("reserved",), to="calling")
        session.commit()
    return moved


def mark_submitted(engine: Engine, item_ids: Sequence[int]) -> int:
    """Record that reserved items were sent to an asynchronous labeler (Label Studio)."""
    with Session(engine) as session:
        moved = sum(_move(session, i, frm=("reserved",), to="submitted") for i in item_ids)
        session.commit()
    return moved


def _book(session: Session, item_id: int, *, release: float, commit: float) -> None:
    items_t, budgets_t, campaigns_t = (
        table_of(CampaignItemRow),
        table_of(BudgetRow),
        table_of(CampaignRow),
    )
    budget_name = sa_select(campaigns_t.c.budget).where(
        campaigns_t.c.id == items_t.c.campaign_id, items_t.c.id == item_id
    )
    session.execute(
        update(budgets_t)
        .where(budgets_t.c.name == budget_name.scalar_subquery())
        .values(
            reserved=budgets_t.c.reserved - release,
            committed=budgets_t.c.committed + commit,
        )
    )


def _open_item(session: Session, item_id: int) -> CampaignItemRow | None:
    row = session.get(CampaignItemRow, item_id)
    return row if row is not None and row.state in OPEN_STATES else None


def settle(
    engine: Engine,
    item_id: int,
    *,
    correct: bool,
    cost: float,
    labeler: str,
    detail: str | None = None,
) -> bool:
    """Store the label and commit the item's cost, in one transaction.

    The reservation is released and ``cost`` committed (for a budget in labels the
    caller passes 1). Returns False when the item was already settled (a rerun).
    A trace that already has a label from this labeler keeps it; the item is then
    settled with that label's verdict.
    """
    with Session(engine) as session:
        row = _open_item(session, item_id)
        if row is None:
            return False
        labels_t = table_of(LabelRow)
        session.execute(
            insert_or_skip(engine, labels_t),
            [
                {
                    "trace_id": row.trace_id,
                    "labeler": labeler,
                    "correct": bool(correct),
                    "detail": detail,
                    "labelled_at": utc_now(),
                }
            ],
        )
        reserved = row.reserved
        if not _move(
            session, item_id, frm=OPEN_STATES, to="labelled", cost=cost, correct=bool(correct)
        ):
            session.rollback()
            return False
        _book(session, item_id, release=reserved, commit=cost)
        session.commit()
    return True


def settle_failed(engine: Engine, item_id: int, *, cost: float, reason: str) -> bool:
    """Close an item without a label, committing what the attempt cost (0 releases it all)."""
    with Session(engine) as session:
        row = _open_item(session, item_id)
        if row is None:
            return False
        reserved = row.reserved
        if not _move(session, item_id, frm=OPEN_STATES, to="failed", cost=cost, reason=reason):
            session.rollback()
            return False
        _book(session, item_id, release=reserved, commit=cost)
        session.commit()
    return True


def release(engine: Engine, item_id: int, *, reason: str) -> bool:
    """Give an item's reservation back and plan it again (nothing was spent; retry later)."""
    with Session(engine) as session:
        row = _open_item(session, item_id)
        if row is None or row.state == "submitted":
            return False
        reserved = row.reserved
        if not _move(
            session, item_id, frm=("reserved", "calling"), to="planned", reserved=0.0, reason=reason
        ):
            session.rollback()
            return False
        _book(session, item_id, release=reserved, commit=0.0)
        session.commit()
    return True


def recover(engine: Engine, campaign_id: str) -> int:
    """Close items a crashed run left ``calling``: charged in full, never called again.

    Returns how many were closed. ``reserved`` and ``submitted`` items are left for
    the rerun to carry on with.
    """
    closed = 0
    for row in items(engine, campaign_id, states=("calling",)):
        assert row.id is not None
        closed += settle_failed(
            engine,
            row.id,
            cost=row.reserved,
            reason="the run stopped while the labeler call was in flight; "
            "charged at its reservation and not called again",
        )
    return closed


def load_campaign(engine: Engine, campaign_id: str) -> CampaignState:
    """A campaign with its budget figures and its item counts and spend per slice."""
    with Session(engine) as session:
        row = session.get(CampaignRow, campaign_id)
        if row is None:
            raise StoreError(f"expected a campaign {campaign_id!r}, got none in the store")
        plan = Plan.from_dict(json.loads(row.plan))
        by, labeler, budget = row.by, row.labeler, row.budget
    per_slice: dict[str, dict[str, float]] = {}
    for s in plan.slices:
        per_slice[s.slice] = _empty_counts()
    campaign_items = items(engine, campaign_id)
    for item in campaign_items:
        slot = per_slice.setdefault(item.slice, _empty_counts())
        slot[item.state] += 1
        slot["spent"] += item.cost if item.state in ("labelled", "failed") else 0.0
        slot["reserved_amount"] += item.reserved if item.state in OPEN_STATES else 0.0
        slot["correct"] += 1 if item.state == "labelled" and item.correct else 0
    return CampaignState(
        id=campaign_id,
        by=by,
        labeler=labeler,
        budget=budget_state(engine, budget),
        plan=plan,
        per_slice=per_slice,
        agreement=Agreement.of(_verdicts(engine, campaign_items)),
    )


def _verdicts(engine: Engine, campaign_items: Sequence[Any]) -> list[list[str]]:
    """Every labelled item's verdicts, from its label's ``choices`` (oldest first)."""
    labelled = {(i.trace_id, i.labeler) for i in campaign_items if i.state == "labelled"}
    if not labelled:
        return []
    found: list[list[str]] = []
    with Session(engine) as session:
        wanted = sorted({t for t, _ in labelled})
        for start in range(0, len(wanted), _ID_CHUNK):
            chunk = wanted[start : start + _ID_CHUNK]
            rows = session.exec(select(LabelRow).where(col(LabelRow.trace_id).in_(chunk))).all()
            for row in rows:
                if (row.trace_id, row.labeler) not in labelled or not row.detail:
                    continue
                try:
                    choices = json.loads(row.detail).get("choices")
                except (ValueError, AttributeError):
                    continue
                if isinstance(choices, list) and all(isinstance(c, str) for c in choices):
                    found.append(choices)
    return found


def _empty_counts() -> dict[str, float]:
    return dict.fromkeys(ITEM_STATES, 0.0) | {
        "spent": 0.0,
        "reserved_amount": 0.0,
        "correct": 0,
    }


def inclusion_of(
    engine: Engine, trace_ids: Sequence[str]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per trace, the inclusion probability and population of its active-campaign label.

    For each of ``trace_ids`` labelled by an item of a campaign planned with the
    active design, the ``pi`` and ``population`` its plan stored (the latest such
    campaign when several labelled it); NaN for every other trace. Shapes ``(n,)``.
    """
    wanted = list(trace_ids)
    pi = np.full(len(wanted), np.nan)
    population = np.full(len(wanted), np.nan)
    if not wanted:
        return pi, population
    found: dict[str, tuple[datetime, str]] = {}
    with Session(engine) as session:
        for start in range(0, len(wanted), _ID_CHUNK):
            rows = session.exec(
                select(CampaignItemRow.trace_id, CampaignRow.created, CampaignRow.id)
                .join(CampaignRow, col(CampaignRow.id) == col(CampaignItemRow.campaign_id))
                .where(col(CampaignItemRow.trace_id).in_(wanted[start : start + _ID_CHUNK]))
                .where(col(CampaignItemRow.state) == "labelled")
            ).all()
            for trace_id, created, campaign_id in rows:
                if trace_id not in found or created > found[trace_id][0]:
                    found[trace_id] = (created, campaign_id)
        chosen = {campaign for _, campaign in found.values()}
        plans = {
            row.id: Plan.from_dict(json.loads(row.plan))
            for row in session.exec(select(CampaignRow).where(col(CampaignRow.id).in_(chosen)))
        }
    design = {
        cid: {item.trace_id: item for item in the_plan.items}
        for cid, the_plan in plans.items()
        if the_plan.design == "active"
    }
    for i, trace_id in enumerate(wanted):
        if trace_id in found and found[trace_id][1] in design:
            item = design[found[trace_id][1]].get(trace_id)
            if item is not None and item.pi is not None and item.population is not None:
                pi[i], population[i] = item.pi, item.population
    return pi, population
