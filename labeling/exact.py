"""The exact verifier as a labeler of the store: free, deterministic, needs a gold answer.

Every stored trace whose metadata carries ``gold`` and ``kind`` and that the
exact verifier has not labelled yet is verified; the verdict (extracted
answer and the rule that decided) is stored with the label. Reruns label only
what is new.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from labeling.base import LabelingError, LabelOutcome, LabelRequest
from labeling.verifier import verify_record
from sentinel_core.store import add_labels, iter_unlabelled

LABELER = "exact"


class ExactLabeler:
    """The exact verifier behind the labeler interface: free, needs a gold answer and kind."""

    @property
    def name(self) -> str:
        """Stored with each label: ``exact``."""
        return LABELER

    def max_cost(self, request: LabelRequest) -> float:
        """Nothing: the verifier runs locally."""
        return 0.0

    def close(self) -> None:
        """Nothing to close (the other labelers hold connections)."""

    def label(self, request: LabelRequest) -> LabelOutcome:
        """Verify the response against its gold answer; no gold or kind is a LabelingError."""
        if request.reference is None or request.kind is None:
            raise LabelingError(
                f"expected a gold answer and an answer kind in the metadata of "
                f"{request.trace_id!r} for the exact verifier, got gold={request.reference!r}, "
                f"kind={request.kind!r}"
            )
        verdict = verify_record(
            {
                "metadata": {**request.metadata, "gold": request.reference, "kind": request.kind},
                "response_text": request.response_text,
                "finish_reason": request.finish_reason,
            }
        )
        return LabelOutcome(request.trace_id, verdict.correct, 0.0, verdict.to_dict())


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What one verifier pass did: labelled now, skipped for lack of gold or kind."""

    labelled: int
    correct: int
    without_gold: int


def label_store(
    engine: Engine, *, on_progress: Callable[[int], None] | None = None
) -> VerifyReport:
    """Verify and label every unlabelled trace that carries ``gold`` and ``kind``."""
    labelled = correct = without_gold = 0
    for batch in iter_unlabelled(engine, labeler=LABELER):
        rows = []
        for trace_id, metadata, text, finish_reason in batch:
            if metadata.get("gold") is None or metadata.get("kind") is None:
                without_gold += 1
                continue
            verdict = verify_record(
                {"metadata": metadata, "response_text": text, "finish_reason": finish_reason}
            )
            rows.append((trace_id, verdict.correct, json.dumps(verdict.to_dict())))
        stored, _, _ = add_labels(engine, rows, labeler=LABELER)
        labelled += stored
        correct += sum(1 for _, ok, _ in rows if ok)
        if on_progress is not None:
            on_progress(len(batch))
    return VerifyReport(labelled=labelled, correct=correct, without_gold=without_gold)
