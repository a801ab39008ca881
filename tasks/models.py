"""Prefect tasks around the MLflow model registry (``tasks.registry`` holds the functions).

Reads retry twice (a remote registry can blip) and are never cached: the champion
alias moves between runs. ``register_challenger`` looks its idempotency key up first,
inside the task, so a retry after a lost response finds the version it created instead
of registering a second one; ``apply_decision`` only sets tags and an alias, which is
idempotent.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from sentinel_core.features import FEATURE_NAMES, FEATURE_SET_VERSION
from sentinel_core.promotion import Decision
from sentinel_core.settings import Settings
from tasks.registry import (
    IDEMPOTENCY_TAG,
    champion_version,
    describe_version,
    find_version_by_key,
    register_logged_model,
    set_champion,
)

REGISTRY_RETRIES = {"retries": 2, "retry_delay_seconds": 5.0, "cache_policy": NO_CACHE}


@task(**REGISTRY_RETRIES)
def describe_champion(settings: Settings) -> dict[str, Any] | None:
    """Version, feature set, feature names and calibration error of the champion, or None."""
    version = champion_version(settings)
    if version is None:
        return None
    # The tags only: the tasks that score load the model, once per process.
    described = describe_version(settings, version)
    keys = ("version", "feature_set", "feature_names", "calibration_error")
    return {k: described[k] for k in keys}


@task(**REGISTRY_RETRIES)
def find_registered(settings: Settings, key: str) -> str | None:
    """The version already registered for this idempotency key, if any."""
    return find_version_by_key(settings, key)


@task(**REGISTRY_RETRIES)
def register_challenger(
    settings: Settings,
    *,
    key: str,
    model_uri: str,
    run_id: str,
    calibration_error: float,
    method: str,
) -> str:
    """Register the logged challenger with its key and serving tags; its version."""
    existing = find_version_by_key(settings, key)
    if existing is not None:
        return existing
    tags = {
        IDEMPOTENCY_TAG: key,
        "feature_set": FEATURE_SET_VERSION,
        "feature_names": json.dumps(list(FEATURE_NAMES)),
        "calibration_error": repr(float(calibration_error)),
        "method": method,
    }
    return register_logged_model(settings, model_uri=model_uri, run_id=run_id, tags=tags)


@task(**REGISTRY_RETRIES)
def apply_decision(settings: Settings, version: str, decision: Decision) -> str:
    """Tag the version with the decision and its reason; move ``champion`` if promoted."""
    verdict = "promoted" if decision.promote else "kept-challenger"
    set_champion(settings, version, decision=verdict, reason=decision.reason)
    return verdict
