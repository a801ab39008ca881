"""Prefect tasks of a labeling campaign: plan it, run it (one core call each).

Idempotency, not caching: the campaign id is the key. ``plan_labeling`` returns
the stored plan when a campaign with that id exists (a rerun never replans, so
it never picks other responses or creates a second budget), and
``run_labeling`` resumes the campaign through the ledger, which pays for
nothing twice. Neither is cached (``NO_CACHE``) nor retried by Prefect: a run
that stopped on a transient labeler error has released its reservation and says
so in its report; the next flow run resumes it.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from labeling.campaign import default_cost_per_label, make_labeler, plan_campaign, run_campaign
from sentinel_core import ledger
from sentinel_core.drift import estimates_from_dicts
from sentinel_core.errors import StoreError
from sentinel_core.estimator import predict_in_slices
from sentinel_core.features import ALL_SCORE_NAMES, FEATURE_SET_VERSION
from sentinel_core.runs import load_rows
from sentinel_core.settings import Settings
from sentinel_core.store import load_scores, slice_values
from tasks.registry import load_version
from tasks.store import engine_for


@task(cache_policy=NO_CACHE)
def plan_labeling(
    settings: Settings,
    *,
    campaign_id: str,
    budget_name: str,
    model_version: str,
    slices: list[dict[str, Any]],
    by: str,
    labeler: str,
    budget: float,
    unit: str,
    max_slices: int | None,
    min_per_slice: int | None,
    trace_ids: list[str] | None = None,
) -> dict[str, Any]:
    """Plan a campaign on the weakest of ``slices`` (a monitor run's estimates), once per id.

    The candidates are ``trace_ids`` (e.g. the traffic the monitor run covered), or
    every stored trace when None.
    """
    engine = engine_for(settings.store_url)
    with contextlib.suppress(StoreError):
        state = ledger.load_campaign(engine, campaign_id)
        return {"campaign_id": campaign_id, "replanned": False, **state.plan.to_dict()}
    served = load_version(settings, model_version)
    if served.feature_set != FEATURE_SET_VERSION:
        raise StoreError(
            f"expected the champion to use the store's feature set {FEATURE_SET_VERSION!r}, "
            f"got {served.feature_set!r}"
        )
    if trace_ids is None:
        frame = load_scores(engine, feature_set=FEATURE_SET_VERSION, names=ALL_SCORE_NAMES)
        frame["slice"] = slice_values(frame["metadata"], by)
    else:
        frame = load_rows(
            engine,
            trace_ids,
            feature_set=FEATURE_SET_VERSION,
            names=served.feature_names,
            slice_key=by,
        )
    probs = predict_in_slices(
        served.estimator,
        frame[list(served.feature_names)],
        frame["slice"].to_numpy(dtype=str),
        frame["cut"].to_numpy(),
    )
    _, plan = plan_campaign(
        engine,
        estimates=estimates_from_dicts(slices),
        trace_ids=frame["trace_id"].to_numpy(),
        slices=frame["slice"].to_numpy(dtype=str),
        p_correct=np.asarray(probs, dtype=np.float64),
        by=by,
        labeler=labeler,
        budget=budget,
        unit=unit,  # type: ignore[arg-type]
        cost_per_label=default_cost_per_label(settings, labeler),
        budget_name=budget_name,
        campaign_id=campaign_id,
        max_slices=settings.campaign.max_slices if max_slices is None else max_slices,
        min_per_slice=(settings.campaign.min_per_slice if min_per_slice is None else min_per_slice),
        seed=settings.seed,
        design=settings.campaign.design,
        audit_share=settings.campaign.audit_share,
    )
    return {"campaign_id": campaign_id, "replanned": True, **plan.to_dict()}


@task(cache_policy=NO_CACHE)
def run_labeling(
    settings: Settings, *, campaign_id: str, labeler: str, wait_s: float = 0.0
) -> dict[str, Any]:
    """Run (or resume) the campaign with the labeler; its report and per-slice status."""
    engine = engine_for(settings.store_url)
    the_labeler = make_labeler(settings, labeler)
    with contextlib.closing(the_labeler):  # type: ignore[type-var]
        report = run_campaign(
            engine, campaign_id, the_labeler, wait_s=wait_s, poll_s=settings.label_studio.poll_s
        )
    state = ledger.load_campaign(engine, campaign_id)
    return {
        **report.to_dict(),
        "budget": {
            "name": state.budget.name,
            "unit": state.budget.unit,
            "total": state.budget.total,
            "spent": state.budget.committed,
            "reserved": state.budget.reserved,
        },
        "per_slice": json.loads(json.dumps(state.per_slice)),
    }
