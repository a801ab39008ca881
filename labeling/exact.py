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

from labeling.verifier import verify_record
from sentinel_core.store import add_labels, iter_unlabelled

LABELER = "exact"


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
