"""One small interface for the three labelers: exact verifier, LLM judge, Label Studio.

A campaign hands a labeler ``LabelRequest``s and gets ``LabelOutcome``s back.
Two shapes exist because humans are not a function call:

- a ``SyncLabeler`` (exact verifier, LLM judge) labels one request when asked;
- an ``AsyncLabeler`` (Label Studio) is sent requests once (``submit``, which
  is idempotent by trace id, so a rerun never duplicates a task) and is asked
  later which of them are labelled (``collect``).

Money is in USD. Before any action that may cost money, the campaign reserves
``max_cost(request)`` in the budget ledger; a labeler's ``max_cost`` must be an
upper bound of what the action can cost, and ``LabelOutcome.cost`` is what it
did cost. A labeler raises ``LabelingError`` when it cannot label a request,
saying what it spent anyway (a paid but unparseable judge verdict costs its
tokens) and whether trying again may help.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sentinel_core.errors import SentinelError


@dataclass(frozen=True, slots=True)
class LabelRequest:
    """What a labeler sees of one response.

    ``question`` is the prompt text where the store kept it (or metadata
    ``question``), ``reference`` and ``kind`` the gold answer and its kind where
    known, ``p_correct`` the estimator's probability that the response is right
    (shown to annotators), ``slice`` the slice it was chosen for.
    """

    trace_id: str
    response_text: str
    question: str | None = None
    reference: str | None = None
    kind: str | None = None
    finish_reason: str | None = None
    p_correct: float | None = None
    slice: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LabelOutcome:
    """One label: whether the response was correct, what it cost (USD), and how it was decided.

    ``detail`` is JSON-serialisable and is stored with the label.
    """

    trace_id: str
    correct: bool
    cost: float = 0.0
    detail: Mapping[str, Any] = field(default_factory=dict)


class LabelingError(SentinelError):
    """A labeler could not label a request.

    ``cost`` is what was spent anyway (USD); ``retryable`` says whether the same
    request may succeed later (a rate limit, a 5xx, a timeout).
    """

    def __init__(self, message: str, *, cost: float = 0.0, retryable: bool = False) -> None:
        super().__init__(message)
        self.cost = cost
        self.retryable = retryable


@runtime_checkable
class SyncLabeler(Protocol):
    """A labeler that answers when asked (exact verifier, LLM judge)."""

    @property
    def name(self) -> str:
        """The labeler kind stored with each label (``exact``, ``judge``)."""
        ...

    def max_cost(self, request: LabelRequest) -> float:
        """An upper bound (USD) of what labelling ``request`` can cost."""
        ...

    def label(self, request: LabelRequest) -> LabelOutcome:
        """Label one request, or raise ``LabelingError``."""
        ...


@runtime_checkable
class AsyncLabeler(Protocol):
    """A labeler whose labels arrive later (Label Studio's human annotators)."""

    @property
    def name(self) -> str:
        """The labeler kind stored with each label (``label-studio``)."""
        ...

    def max_cost(self, request: LabelRequest) -> float:
        """An upper bound (USD) of what labelling ``request`` can cost."""
        ...

    def submit(self, requests: Sequence[LabelRequest]) -> int:
        """Send requests for labelling; idempotent by trace id. Returns how many were new."""
        ...

    def collect(self, trace_ids: Collection[str]) -> list[LabelOutcome]:
        """The finished labels among ``trace_ids`` (each parsed once into an outcome)."""
        ...


Labeler = SyncLabeler | AsyncLabeler
