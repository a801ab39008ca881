"""Every table of the store, in one module: traces, features, quarantine, labels (the
store's own), budgets, campaigns and their items (the ledger's), monitor runs (the runs'
watermarks).

Kept apart so that :func:`sentinel_core.store.open_store` creates every table by
importing this module, and ``ledger`` and ``runs`` import ``store`` without a loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from sentinel_core.slices import SliceEstimate

__all__ = [
    "BudgetRow",
    "CampaignItemRow",
    "CampaignRow",
    "FeatureRow",
    "LabelRow",
    "MonitorRun",
    "QuarantineRow",
    "TraceRow",
    "Watermark",
    "utc_now",
]


def utc_now() -> datetime:
    """The current time, timezone-aware (UTC): every timestamp column's default."""
    return datetime.now(UTC)


class TraceRow(SQLModel, table=True):
    """One stored response; ``logprobs`` is a ``(n_steps, k)`` array blob."""

    __tablename__ = "traces"

    id: str = Field(primary_key=True, max_length=512)
    model: str = Field(max_length=255, index=True)
    created: datetime = Field(index=True)
    ingested_at: datetime = Field(default_factory=utc_now, index=True)
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSON))
    prompt_hash: str | None = Field(default=None, max_length=64, index=True)
    prompt: str | None = Field(default=None, sa_column=Column(Text))
    response_text: str = Field(sa_column=Column(Text, nullable=False))
    finish_reason: str | None = Field(default=None, max_length=32)
    n_steps: int
    k: int
    dtype: str = Field(max_length=16)
    logprobs: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    chosen: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    resorted: bool = False
    content_hash: str = Field(max_length=64, index=True)
    source: str = Field(max_length=1024)


class FeatureRow(SQLModel, table=True):
    """The scores of one trace under one feature set (``values``: float64 blob)."""

    __tablename__ = "features"

    trace_id: str = Field(primary_key=True, foreign_key="traces.id", max_length=512)
    feature_set: str = Field(primary_key=True, max_length=64)
    values: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    computed_at: datetime = Field(default_factory=utc_now)


class QuarantineRow(SQLModel, table=True):
    """A line that is not a valid trace, kept whole with the reason."""

    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("source", "line_no", "raw_sha256"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=1024)
    line_no: int
    raw: str = Field(sa_column=Column(Text, nullable=False))
    raw_sha256: str = Field(max_length=64)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    quarantined_at: datetime = Field(default_factory=utc_now)


class LabelRow(SQLModel, table=True):
    """Whether a response was correct, according to one kind of labeler."""

    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("trace_id", "labeler"),)

    id: int | None = Field(default=None, primary_key=True)
    trace_id: str = Field(foreign_key="traces.id", max_length=512, index=True)
    labeler: str = Field(max_length=32)
    correct: bool
    detail: str | None = Field(default=None, sa_column=Column(Text))
    labelled_at: datetime = Field(default_factory=utc_now)


class BudgetRow(SQLModel, table=True):
    """A named budget: total, and the amounts reserved and committed against it."""

    __tablename__ = "budgets"

    name: str = Field(primary_key=True, max_length=255)
    unit: str = Field(max_length=16)
    total: float
    reserved: float = 0.0
    committed: float = 0.0
    created: datetime = Field(default_factory=utc_now)


class CampaignRow(SQLModel, table=True):
    """A labeling campaign: its plan, the budget it draws on, its labeler kind."""

    __tablename__ = "campaigns"

    id: str = Field(primary_key=True, max_length=255)
    budget: str = Field(foreign_key="budgets.name", max_length=255, index=True)
    by: str = Field(max_length=255)
    labeler: str | None = Field(default=None, max_length=32)
    plan: str = Field(sa_column=Column(Text, nullable=False))
    created: datetime = Field(default_factory=utc_now)


class CampaignItemRow(SQLModel, table=True):
    """One response a campaign will label, with its reservation and spend."""

    __tablename__ = "campaign_items"
    __table_args__ = (UniqueConstraint("campaign_id", "trace_id"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(foreign_key="campaigns.id", max_length=255, index=True)
    trace_id: str = Field(foreign_key="traces.id", max_length=512)
    slice: str = Field(max_length=512)
    p_correct: float
    stratum: int
    state: str = Field(default="planned", max_length=16, index=True)
    labeler: str | None = Field(default=None, max_length=32)
    reserved: float = 0.0
    cost: float = 0.0
    correct: bool | None = None
    reason: str | None = Field(default=None, sa_column=Column(Text))
    updated: datetime = Field(default_factory=utc_now)


class MonitorRun(SQLModel, table=True):
    """One successful monitor run: where it stopped and what it estimated.

    ``slices`` holds the run's :class:`SliceEstimate` dicts; ``alerts`` its drift
    alerts. ``flow_run_id`` is unique, so recording the same run twice is a no-op.
    """

    __tablename__ = "monitor_runs"

    id: int | None = Field(default=None, primary_key=True)
    flow_run_id: str = Field(max_length=64, unique=True)
    slice_key: str = Field(max_length=255, index=True)
    watermark_at: datetime | None = None
    watermark_id: str | None = Field(default=None, max_length=512)
    n_traces: int = 0
    model_version: str = Field(default="", max_length=64)
    created: datetime = Field(default_factory=utc_now, index=True)
    slices: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    alerts: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))

    def estimates(self) -> list[SliceEstimate]:
        """The stored slice estimates."""
        return [SliceEstimate(**row) for row in self.slices]

    def watermark(self) -> Watermark | None:
        """Where this run stopped, or None if it covered no trace."""
        if self.watermark_at is None or self.watermark_id is None:
            return None
        return Watermark(self.watermark_at, self.watermark_id)


@dataclass(frozen=True, slots=True)
class Watermark:
    """The ``(ingested_at, id)`` of the last trace a run covered."""

    ingested_at: datetime
    trace_id: str
