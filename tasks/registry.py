"""The estimator in the MLflow model registry: log, register, serve by alias.

The estimator is logged with MLflow's scikit-learn flavour in the ``skops``
format (safe to load: only types from ``TRUSTED_PREFIXES`` modules are
trusted), registered under ``Settings.registered_model`` and served by the
``champion`` alias. These are plain functions; the Prefect tasks of the
nightly loop wrap them.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentinel_core.errors import NotFittedError, SentinelError
from sentinel_core.estimator import ATCClassifier, EntropyEstimator
from sentinel_core.settings import Settings

CHAMPION = "champion"
#: The alias of the latest challenger the retrain flow registered (promoted or not).
CHALLENGER = "challenger"
#: What the registered model is, shown on its page in the MLflow UI.
MODEL_DESCRIPTION = (
    "Entropy Sentinel's estimator of P(correct) for an LLM response, from the 11-number "
    "entropy profile of its top-20 token log-probabilities (feature names in each "
    "version's tags). Alias 'champion': the version in service (moved only by the "
    "promotion rule or an operator's --force, the reason on the version); alias "
    "'challenger': the latest version the nightly retrain registered."
)
EXPERIMENT = "entropy-sentinel"
#: Modules whose types skops may rebuild when loading the estimator; anything
#: else found in a model file is refused.
TRUSTED_PREFIXES = ("sentinel_core.", "sklearn.", "numpy.", "scipy.", "builtins.", "collections.")


def trusted_types(estimator: object) -> list[str]:
    """The types the skops file of ``estimator`` needs, vetted against ``TRUSTED_PREFIXES``."""
    import skops.io

    needed = skops.io.get_untrusted_types(data=skops.io.dumps(estimator))
    refused = [name for name in needed if not name.startswith(TRUSTED_PREFIXES)]
    if refused:
        raise SentinelError(
            f"expected only scikit-learn and numpy types in the model, got {refused}"
        )
    return needed


@dataclass(frozen=True, slots=True)
class ServedModel:
    """The estimator in service and what is known about it."""

    estimator: EntropyEstimator | ATCClassifier
    version: str
    run_id: str | None
    feature_set: str
    feature_names: tuple[str, ...]
    calibration_error: float


def configure(settings: Settings) -> None:
    """Point MLflow at the tracking store in force (called at the edge, never at import)."""
    import logging

    import mlflow

    # MLflow announces its database migrations at INFO on every fresh store.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        artifacts = (settings.home / "mlartifacts").resolve()
        remote = not uri.startswith("sqlite:")
        mlflow.create_experiment(
            EXPERIMENT, artifact_location=None if remote else artifacts.as_uri()
        )
    mlflow.set_experiment(EXPERIMENT)


def log_estimator(run_id: str, estimator: EntropyEstimator | ATCClassifier, held_out: float) -> str:
    """Log ``estimator`` into the open run ``run_id`` (skops, with a signature); its URI.

    The one way a model enters MLflow: the retrain flow logs the challenger here, and
    :func:`register_logged_model` then registers it.
    """
    import mlflow
    from mlflow.models import infer_signature

    from sentinel_core.features import FEATURE_NAMES

    example = pd.DataFrame(np.zeros((2, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES))
    signature = infer_signature(example, estimator.predict_proba(example))
    with mlflow.start_run(run_id=run_id), warnings.catch_warnings():
        # MLflow reads the `X: Any` hint of predict() as "no validation"; the signature
        # above is what validates inputs, so its reminder is noise here.
        warnings.filterwarnings("ignore", message=".*Any type hint is inferred as AnyType")
        info = mlflow.sklearn.log_model(
            estimator,
            name="estimator",
            serialization_format="skops",
            skops_trusted_types=trusted_types(estimator),
            signature=signature,
        )
        if np.isfinite(held_out):
            mlflow.log_metric("held_out_slice_error", held_out)
    return str(info.model_uri)


def load_champion(settings: Settings) -> ServedModel:
    """The estimator behind the ``champion`` alias, with its feature set and calibration error."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure(settings)
    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(settings.registered_model, CHAMPION)
    except MlflowException as exc:
        raise NotFittedError(
            f"expected a model {settings.registered_model!r} with alias {CHAMPION!r} in the "
            f"MLflow registry at {settings.tracking_uri}, got none: run `sentinel train` first"
        ) from exc
    # The MLmodel file lists the skops types that trusted_types() vetted at logging time.
    estimator = mlflow.sklearn.load_model(f"models:/{settings.registered_model}@{CHAMPION}")
    tags = version.tags
    if not isinstance(estimator, EntropyEstimator | ATCClassifier):
        raise SentinelError(
            f"expected an EntropyEstimator behind {CHAMPION!r}, got {type(estimator).__name__}"
        )
    return ServedModel(
        estimator=estimator,
        version=str(version.version),
        run_id=version.run_id,
        feature_set=tags.get("feature_set", ""),
        feature_names=tuple(json.loads(tags.get("feature_names", "[]"))),
        calibration_error=float(tags.get("calibration_error", "nan")),
    )


# --- The nightly loop's registry operations: idempotent registration, promotion by rule. ---

#: Model-version tag holding the hash of what the version was trained on (see
#: :func:`idempotency_key`); a rerun that finds it registers nothing new.
IDEMPOTENCY_TAG = "idempotency_key"


def idempotency_key(trace_ids: list[str], *, method: str, feature_set: str, seed: int) -> str:
    """SHA-256 of the sorted training trace ids, the method, the feature set and the seed."""
    import hashlib

    digest = hashlib.sha256()
    for part in (method, feature_set, str(seed), *sorted(trace_ids)):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def find_version_by_key(settings: Settings, key: str) -> str | None:
    """The registered version carrying ``key`` in its idempotency tag, if any."""
    from mlflow import MlflowClient

    configure(settings)
    found = MlflowClient().search_model_versions(
        f"name='{settings.registered_model}' and tags.{IDEMPOTENCY_TAG}='{key}'"
    )
    return min((str(v.version) for v in found), key=int, default=None)


def champion_version(settings: Settings) -> str | None:
    """The version behind the ``champion`` alias, or None when there is none."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure(settings)
    try:
        return str(
            MlflowClient().get_model_version_by_alias(settings.registered_model, CHAMPION).version
        )
    except MlflowException:
        return None


def describe_version(settings: Settings, version: str) -> dict[str, Any]:
    """A registered version's feature set, feature names and calibration error (its tags),
    without loading the model."""
    from mlflow import MlflowClient

    configure(settings)
    info = MlflowClient().get_model_version(settings.registered_model, version)
    return {
        "version": str(info.version),
        "run_id": info.run_id,
        "feature_set": info.tags.get("feature_set", ""),
        "feature_names": json.loads(info.tags.get("feature_names", "[]")),
        "calibration_error": float(info.tags.get("calibration_error", "nan")),
    }


def load_version(settings: Settings, version: str) -> ServedModel:
    """A registered version of the estimator, with its feature set and calibration error."""
    import mlflow

    described = describe_version(settings, version)
    estimator = mlflow.sklearn.load_model(f"models:/{settings.registered_model}/{version}")
    if not isinstance(estimator, EntropyEstimator | ATCClassifier):
        raise SentinelError(
            f"expected an EntropyEstimator in version {version}, got {type(estimator).__name__}"
        )
    return ServedModel(
        estimator=estimator,
        version=described["version"],
        run_id=described["run_id"],
        feature_set=described["feature_set"],
        feature_names=tuple(described["feature_names"]),
        calibration_error=described["calibration_error"],
    )


def register_logged_model(
    settings: Settings, *, model_uri: str, run_id: str, tags: dict[str, str]
) -> str:
    """Create a registry version from a logged model, its tags set in the same call.

    The tags (the idempotency key among them) are written with the version, so no crash
    can leave a version without its key.
    """
    import mlflow
    from mlflow import MlflowClient

    configure(settings)
    version = mlflow.register_model(model_uri, settings.registered_model, tags=tags)
    client = MlflowClient()
    client.update_registered_model(settings.registered_model, description=MODEL_DESCRIPTION)
    client.set_registered_model_alias(settings.registered_model, CHALLENGER, version.version)
    return str(version.version)


def set_champion(settings: Settings, version: str, *, decision: str, reason: str) -> None:
    """Record a promotion decision on ``version``; move the alias when it is promoted."""
    from mlflow import MlflowClient

    configure(settings)
    client = MlflowClient()
    client.set_model_version_tag(settings.registered_model, version, "promotion", decision)
    client.set_model_version_tag(settings.registered_model, version, "promotion_reason", reason)
    client.update_model_version(
        settings.registered_model, version, description=f"{decision}: {reason}"
    )
    if decision == "promoted":
        client.set_registered_model_alias(settings.registered_model, CHAMPION, version)
