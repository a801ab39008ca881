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
from sentinel_core.estimator import (
    ATCClassifier,
    EntropyEstimator,
    estimate_held_out_calibration_error,
    fit_estimator,
    make_estimator,
)
from sentinel_core.features import FEATURE_NAMES, FEATURE_SET_VERSION
from sentinel_core.promotion import (
    Decision,
    HeldOutScores,
    cross_fit,
    decide,
    score_held_out,
)
from sentinel_core.runs import load_rows
from sentinel_core.settings import Settings
from sentinel_core.store import LabelRow
from sentinel_core.supervision import difficulty_mixed
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
        return difficulty_mixed(
            keys, labels, min_labels=settings.supervision_min_labels, seed=settings.seed
        ).indices

    return sample


@task(cache_policy=NO_CACHE)
def sample_supervision(settings: Settings, by: str, method: str) -> dict[str, Any]:
    """The difficulty-mixed supervision set: trace ids, how it splits, its idempotency key."""
    frame = labelled_frame(settings, by)
    chosen = difficulty_mixed(
        frame["slice"].to_numpy(),
        frame["label"].to_numpy(),
        min_labels=settings.supervision_min_labels,
        seed=settings.seed,
    )
    ids = frame["trace_id"].to_numpy()[chosen.indices].tolist()
    tiers = chosen.tiers
    if tiers is None:  # difficulty_mixed always records its split; pooled would not
        raise SentinelError("expected the tier split of a difficulty-mixed supervision set")
    return {
        "trace_ids": ids,
        "per_slice": dict(chosen.per_slice),
        "per_tier": dict(chosen.per_tier),
        "threshold": tiers.threshold,
        "easy": list(tiers.easy),
        "hard": list(tiers.hard),
        "excluded": list(tiers.excluded),
        "n_labelled": len(frame),
        "key": idempotency_key(
            ids, method=method, feature_set=FEATURE_SET_VERSION, seed=settings.seed
        ),
    }


@task(cache_policy=NO_CACHE)
def evaluate_challenger(settings: Settings, by: str, method: str) -> HeldOutScores:
    """The challenger recipe's out-of-slice scores on every labelled trace."""
    frame = labelled_frame(settings, by)
    probs = cross_fit(
        frame[list(FEATURE_NAMES)].to_numpy(),
        frame["label"].to_numpy(),
        frame["slice"].to_numpy(),
        make=lambda: make_estimator(method, search=False, random_state=settings.seed),
        sample=_sampler(settings),
        n_folds=settings.retrain_folds,
        seed=settings.seed,
    )
    return score_held_out(probs, frame["label"].to_numpy(), frame["slice"].to_numpy())


@task(cache_policy=NO_CACHE)
def evaluate_version(settings: Settings, by: str, version: str) -> HeldOutScores:
    """A registered version's scores, as it is, on every labelled trace."""
    served = load_version(settings, version)
    frame = labelled_frame(settings, by)
    probs = served.estimator.predict_proba(frame[list(served.feature_names)])[:, 1]
    return score_held_out(probs, frame["label"].to_numpy(), frame["slice"].to_numpy())


@task(cache_policy=NO_CACHE)
def decide_promotion(
    challenger: HeldOutScores, champion: HeldOutScores | None, margin: float
) -> Decision:
    """The promotion rule of ``sentinel_core.promotion``."""
    return decide(challenger, champion, margin=margin)


@task(cache_policy=NO_CACHE)
def fit_challenger(
    settings: Settings, by: str, method: str, trace_ids: list[str]
) -> tuple[EntropyEstimator | ATCClassifier, float]:
    """Fit and calibrate the challenger on the supervision set; its held-out slice error."""
    frame = labelled_frame(settings, by).set_index("trace_id").loc[trace_ids]
    X, y = frame[list(FEATURE_NAMES)], frame["label"].to_numpy().astype(int)
    estimator = fit_estimator(
        make_estimator(method, random_state=settings.seed), X, y, groups=frame["slice"].to_numpy()
    )
    held_out = estimate_held_out_calibration_error(
        X,
        y,
        frame["slice"].to_numpy(),
        estimator_factory=lambda: make_estimator(method, search=False, random_state=settings.seed),
    )
    return estimator, held_out
