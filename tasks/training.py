"""Prefect tasks of the retrain step: sample supervision, fit, evaluate, decide.

Each task loads the labelled rows it needs from the store by URL (the supervision
set travels as trace ids) and makes one call into ``sentinel_core``. No retries:
these are deterministic computations (seeded), a failure would repeat. No cache:
the labelled set grows between runs, and a cached fit would serve stale labels;
the registry's idempotency key (``tasks.registry.idempotency_key``) is what keeps a
rerun from registering the same model twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlmodel import Session, select

from sentinel_core.errors import SentinelError
from sentinel_core.estimator import ServableEstimator, predict_in_slices
from sentinel_core.features import FEATURE_NAMES, FEATURE_SET_VERSION
from sentinel_core.promotion import (
    Decision,
    HeldOutScores,
    cross_fit,
    decide,
    score_held_out,
)
from sentinel_core.recipe import Recipe
from sentinel_core.runs import load_rows
from sentinel_core.schema import LabelRow
from sentinel_core.settings import Settings
from sentinel_core.supervision import supervision_set
from tasks.registry import idempotency_key, load_version
from tasks.store import engine_for


def labelled_frame(settings: Settings, by: str) -> pd.DataFrame:
    """Every labelled trace with its 11-d profile, slice and best label, by trace id."""
    engine = engine_for(settings.store_url)
    with Session(engine) as session:
        ids = sorted(set(session.exec(select(LabelRow.trace_id)).all()))
    frame = load_rows(
        engine, ids, feature_set=FEATURE_SET_VERSION, names=FEATURE_NAMES, slice_key=by
    )
    if frame.empty:
        raise SentinelError(
            "expected labelled traces to train on, got none: label them with "
            "`sentinel verify` or `sentinel labels import` first"
        )
    return frame


def _sampler(settings: Settings) -> Any:
    def sample(keys: np.ndarray[Any, Any], labels: np.ndarray[Any, Any]) -> Any:
        return supervision_set(
            keys, labels, min_labels=settings.training.supervision_min_labels, seed=settings.seed
        ).indices

    return sample


def _n_slices(frame: pd.DataFrame) -> int:
    return int(frame["slice"].nunique())


@task(cache_policy=NO_CACHE)
def sample_supervision(
    settings: Settings, by: str, recipe: Recipe, force: bool = False
) -> dict[str, Any]:
    """The supervision set (difficulty-mixed; pooled while no slice has enough labels):
    trace ids, how it splits, its idempotency key.

    Raises:
        SentinelError: the labels lie in one slice, so the challenger's held-out error
            cannot be measured, and ``force`` is not set.
    """
    frame = labelled_frame(settings, by)
    if _n_slices(frame) < 2 and not force:
        only = str(frame["slice"].iloc[0])
        raise SentinelError(
            f"expected labelled traces in at least 2 slices of {by!r} to measure the model's "
            f"held-out error (leave-one-slice-out), got 1 ({only!r}): without it the "
            "estimates' intervals cannot be widened for new slices; label traces of another "
            "slice, train --by a key with several values, or pass --force to register it anyway"
        )
    chosen = supervision_set(
        frame["slice"].to_numpy(),
        frame["label"].to_numpy(),
        min_labels=settings.training.supervision_min_labels,
        seed=settings.seed,
    )
    ids = frame["trace_id"].to_numpy()[chosen.indices].tolist()
    tiers = chosen.tiers
    return {
        "trace_ids": ids,
        "strategy": chosen.strategy,
        "per_slice": dict(chosen.per_slice),
        "per_tier": dict(chosen.per_tier),
        "threshold": float("nan") if tiers is None else tiers.threshold,
        "easy": [] if tiers is None else list(tiers.easy),
        "hard": [] if tiers is None else list(tiers.hard),
        "excluded": [] if tiers is None else list(tiers.excluded),
        "n_labelled": len(frame),
        "n_slices": _n_slices(frame),
        "key": idempotency_key(
            ids, method=recipe.name, feature_set=FEATURE_SET_VERSION, seed=settings.seed
        ),
    }


@task(cache_policy=NO_CACHE)
def evaluate_challenger(settings: Settings, by: str, recipe: Recipe) -> HeldOutScores | None:
    """The challenger recipe's out-of-slice scores on every labelled trace; None when
    the labels lie in one slice (nothing to hold out)."""
    frame = labelled_frame(settings, by)
    if _n_slices(frame) < 2:
        return None
    probs = cross_fit(
        frame[list(FEATURE_NAMES)].to_numpy(),
        frame["label"].to_numpy(),
        frame["slice"].to_numpy(),
        make=lambda: recipe.make(search=False),
        sample=_sampler(settings),
        n_folds=settings.training.retrain_folds,
        seed=settings.seed,
    )
    return score_held_out(probs, frame["label"].to_numpy(), frame["slice"].to_numpy())


@task(cache_policy=NO_CACHE)
def evaluate_version(settings: Settings, by: str, version: str) -> HeldOutScores:
    """A registered version's scores, as it is, on every labelled trace."""
    served = load_version(settings, version)
    frame = labelled_frame(settings, by)
    probs = predict_in_slices(
        served.estimator, frame[list(served.feature_names)], frame["slice"].to_numpy(dtype=str)
    )
    return score_held_out(probs, frame["label"].to_numpy(), frame["slice"].to_numpy())


@task(cache_policy=NO_CACHE)
def decide_promotion(
    challenger: HeldOutScores | None,
    champion: HeldOutScores | None,
    margin: float,
    force: bool = False,
) -> Decision:
    """The promotion rule of ``sentinel_core.promotion`` (``force`` overrides it, saying so)."""
    return decide(challenger, champion, margin=margin, force=force)


@task(cache_policy=NO_CACHE)
def fit_challenger(
    settings: Settings, by: str, recipe: Recipe, trace_ids: list[str]
) -> tuple[ServableEstimator, float]:
    """Fit and calibrate the challenger on the supervision set; its held-out slice error
    (NaN when the supervision set holds one slice: the served error is then 1.0)."""
    frame = labelled_frame(settings, by).set_index("trace_id").loc[trace_ids]
    X, y = frame[list(FEATURE_NAMES)], frame["label"].to_numpy().astype(int)
    return recipe.fit(X, y, frame["slice"].to_numpy(), frame["cut"].to_numpy())
