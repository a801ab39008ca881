"""One way for the labeling tests to plan a campaign over every stored trace."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from sqlalchemy import Engine

from labeling.campaign import plan_campaign
from sentinel_core.features import ALL_SCORE_NAMES, FEATURE_SET_VERSION
from sentinel_core.slices import estimate_slices
from sentinel_core.store import load_scores, slice_values


def plan_stored(
    engine: Engine,
    cid: str,
    *,
    labeler: str,
    budget: float,
    unit: str,
    cost_per_label: float,
    max_slices: int,
    min_per_slice: int,
    p_correct: Literal["half", "entropy", "spread"] = "half",
) -> tuple[str, Any]:
    """Plan campaign ``cid`` over the stored traces by benchmark; ``plan_campaign``'s answer.

    The P(correct) the plan sees (the CLI uses the champion's): ``"half"``, 0.5
    everywhere; ``"entropy"``, a stand-in from one entropy statistic,
    ``1 / (1 + H_mean)``; ``"spread"``, evenly spaced from 0.05 to 0.95 in stored order.
    """
    frame = load_scores(engine, feature_set=FEATURE_SET_VERSION, names=ALL_SCORE_NAMES)
    keys = slice_values(frame["metadata"], "benchmark")
    if p_correct == "entropy":
        p = 1.0 / (1.0 + frame["H_mean"].to_numpy())
    elif p_correct == "spread":
        p = np.linspace(0.05, 0.95, len(frame))
    else:
        p = np.full(len(frame), 0.5)
    return plan_campaign(
        engine,
        estimates=estimate_slices(p, keys, n_boot=200),
        trace_ids=frame["trace_id"].to_numpy(),
        slices=keys,
        p_correct=p,
        by="benchmark",
        labeler=labeler,
        budget=budget,
        unit=unit,
        cost_per_label=cost_per_label,
        campaign_id=cid,
        max_slices=max_slices,
        min_per_slice=min_per_slice,
    )
