"""The MLflow adapter: one ``MlflowClient`` per tracking store; log, register, serve.

Every MLflow call of the project goes through the client :func:`tracking_for` returns
(bound to ``Settings.tracking_uri`` for tracking and registry alike, made once per
store per process, the experiment created on first use); nothing sets MLflow's global
tracking URI, so two stores in one process (tests, a benchmark) cannot cross.

The estimator is saved with MLflow's scikit-learn flavour in the ``skops`` format (safe
to load: only types from ``sentinel_core.serving.TRUSTED_PREFIXES`` modules are
trusted), logged as an MLflow logged model of its run, registered under
``Settings.tracking.registered_model`` and served by the ``champion`` alias. Its
``python_function`` flavour is ``sentinel_core.serving`` (``predict`` gives P(correct)),
shipped in the model with the modules it needs. These are plain functions; the Prefect
tasks of the nightly loop wrap them.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentinel_core.errors import NotFittedError, SentinelError
from sentinel_core.estimator import ServableEstimator
from sentinel_core.serving import vetted_types
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
#: The modules of ``sentinel_core`` a served estimator needs, shipped inside each model
#: (MLflow ``code_paths``) so that ``mlflow.pyfunc.load_model`` works in an environment
#: with only the model's declared requirements (tests/tasks/test_pyfunc_venv.py).
SERVING_MODULES = (
    "__init__",
    "anchoring",
    "arrays",
    "errors",
    "estimator",
    "features",
    "serving",
    "soft_atc",
)
#: What the model declares it needs (pinned to the versions it was saved with).
SERVING_PACKAGES = ("mlflow", "scikit-learn", "numpy", "scipy", "pandas", "skops")


def trusted_types(estimator: object) -> list[str]:
    """The types the skops file of ``estimator`` needs, vetted against ``TRUSTED_PREFIXES``."""
    import skops.io

    return vetted_types(skops.io.get_untrusted_types(data=skops.io.dumps(estimator)))


@dataclass(frozen=True, slots=True)
class ServedModel:
    """The estimator in service and what is known about it."""

    estimator: ServableEstimator
    version: str
    run_id: str | None
    feature_set: str
    feature_names: tuple[str, ...]
    calibration_error: float


@dataclass(frozen=True, slots=True)
class Tracking:
    """The MLflow client of one tracking store, its experiment and the registered name."""

    client: Any
    uri: str
    experiment_id: str
    model_name: str


def tracking_for(settings: Settings) -> Tracking:
    """The MLflow client of the settings' tracking store (one per store per process)."""
    artifacts = (settings.home / "mlartifacts").resolve().as_uri()
    return _tracking(settings.tracking_uri, artifacts, settings.tracking.registered_model)


@functools.lru_cache(maxsize=8)
def _tracking(uri: str, artifacts: str, model_name: str) -> Tracking:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    # MLflow announces its database migrations at INFO on every fresh store.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        try:
            # A local store keeps its artifacts beside the home folder; a server its own.
            local = uri.startswith("sqlite:")
            experiment_id = client.create_experiment(
                EXPERIMENT, artifact_location=artifacts if local else None
            )
        except MlflowException:  # another process created it first
            experiment = client.get_experiment_by_name(EXPERIMENT)
            if experiment is None:
                raise
            experiment_id = experiment.experiment_id
    else:
        experiment_id = experiment.experiment_id
    return Tracking(client, uri, str(experiment_id), model_name)


def _serving_code(folder: Path) -> Path:
    """A copy of the ``sentinel_core`` modules the estimator needs, in ``folder``."""
    import shutil

    import sentinel_core

    source = Path(sentinel_core.__file__).parent
    package = folder / "sentinel_core"
    package.mkdir()
    for name in SERVING_MODULES:
        shutil.copy2(source / f"{name}.py", package / f"{name}.py")
    return package


def _serve_p_correct(path: Path) -> None:
    """Point the saved model's pyfunc flavour at ``sentinel_core.serving`` (P(correct))."""
    from mlflow.models import Model

    model = Model.load(str(path / "MLmodel"))
    pyfunc = model.flavors["python_function"]
    pyfunc["loader_module"] = "sentinel_core.serving"
    pyfunc["data"] = pyfunc.pop("model_path")
    pyfunc.pop("predict_fn", None)
    model.save(str(path / "MLmodel"))


def _serving_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in SERVING_PACKAGES]


def log_estimator(
    tracking: Tracking, run_id: str, estimator: ServableEstimator, held_out: float
) -> str:
    """Log ``estimator`` as a logged model of run ``run_id``; its ``models:/<id>`` URI.

    Saved with the scikit-learn flavour in the skops format, with a signature and an
    input example; its pyfunc ``predict`` returns P(correct) per row
    (``predict_correct_proba``); it carries the ``sentinel_core`` modules it needs and
    declares pinned requirements, so it loads outside this project's environment.

    The one way a model enters MLflow: the retrain flow logs the challenger here, and
    :func:`register_logged_model` then registers it.
    """
    import mlflow.sklearn
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import infer_signature

    from sentinel_core.features import FEATURE_NAMES

    client = tracking.client
    example = pd.DataFrame(np.zeros((2, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES))
    signature = infer_signature(example, estimator.predict_correct_proba(example))
    model = client.create_logged_model(
        tracking.experiment_id, name="estimator", source_run_id=run_id
    )
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            # MLflow reads the `X: Any` hint of predict() as "no validation"; the
            # signature above is what validates inputs, so its reminder is noise here.
            warnings.filterwarnings("ignore", message=".*Any type hint is inferred as AnyType")
            # MLflow's input-example writer trips a pandas 3 deprecation of its own.
            warnings.filterwarnings("ignore", message="Operation with range is deprecated")
            path = Path(tmp) / "estimator"
            mlflow.sklearn.save_model(
                estimator,
                str(path),
                serialization_format="skops",
                skops_trusted_types=trusted_types(estimator),
                signature=signature,
                input_example=example,
                code_paths=[str(_serving_code(Path(tmp)))],
                pip_requirements=_serving_requirements(),
            )
            _serve_p_correct(path)
            client.log_model_artifacts(model.model_id, str(path))
    except BaseException:
        client.finalize_logged_model(model.model_id, "FAILED")
        raise
    client.finalize_logged_model(model.model_id, "READY")
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    if np.isfinite(held_out):
        client.log_metric(run_id, "held_out_slice_error", held_out)
    return f"models:/{model.model_id}"


def _load_estimator(tracking: Tracking, version: str) -> ServableEstimator:
    """The estimator of a registered version, read through the store's own client."""
    import mlflow.artifacts
    import mlflow.sklearn

    # The version's storage location, not a models:/ URI: MLflow resolves those through
    # its process-global registry URI.
    location = tracking.client.get_model_version_download_uri(tracking.model_name, version)
    # MLflow prepends the model's code/ folder (a partial copy of sentinel_core, for
    # loading elsewhere) to sys.path; here the project is installed, so put sys.path
    # back: processes spawned later (Dask workers) would import that partial copy.
    path = list(sys.path)
    try:
        if location.startswith("file:"):
            # The MLmodel file lists the skops types that trusted_types() vetted at logging.
            estimator = mlflow.sklearn.load_model(location)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=location, dst_path=tmp, tracking_uri=tracking.uri
                )
                estimator = mlflow.sklearn.load_model(local)
    finally:
        sys.path[:] = path
    if not isinstance(estimator, ServableEstimator):
        raise SentinelError(
            f"expected a servable estimator in version {version} of {tracking.model_name!r}, "
            f"got {type(estimator).__name__}"
        )
    return estimator


def load_champion(settings: Settings) -> ServedModel:
    """The estimator behind the ``champion`` alias, with its feature set and calibration error."""
    version = champion_version(settings)
    if version is None:
        raise NotFittedError(
            f"expected a model {settings.tracking.registered_model!r} with alias "
            f"{CHAMPION!r} in the MLflow registry at {settings.tracking_uri}, got none: "
            "run `sentinel train` first"
        )
    return load_version(settings, version)


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
    tracking = tracking_for(settings)
    found = tracking.client.search_model_versions(
        f"name='{tracking.model_name}' and tags.{IDEMPOTENCY_TAG}='{key}'"
    )
    return min((str(v.version) for v in found), key=int, default=None)


def champion_version(settings: Settings) -> str | None:
    """The version behind the ``champion`` alias, or None when there is none."""
    from mlflow.exceptions import MlflowException

    tracking = tracking_for(settings)
    try:
        found = tracking.client.get_model_version_by_alias(tracking.model_name, CHAMPION)
    except MlflowException:
        return None
    return str(found.version)


def describe_version(settings: Settings, version: str) -> dict[str, Any]:
    """A registered version's feature set, feature names and calibration error (its tags),
    without loading the model."""
    tracking = tracking_for(settings)
    info = tracking.client.get_model_version(tracking.model_name, version)
    return {
        "version": str(info.version),
        "run_id": info.run_id,
        "feature_set": info.tags.get("feature_set", ""),
        "feature_names": json.loads(info.tags.get("feature_names", "[]")),
        "calibration_error": float(info.tags.get("calibration_error", "nan")),
    }


def load_version(settings: Settings, version: str) -> ServedModel:
    """A registered version of the estimator, with its feature set and calibration error."""
    described = describe_version(settings, version)
    return ServedModel(
        estimator=_load_estimator(tracking_for(settings), version),
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
    from mlflow.exceptions import MlflowException

    tracking = tracking_for(settings)
    client = tracking.client
    try:
        client.create_registered_model(tracking.model_name, description=MODEL_DESCRIPTION)
    except MlflowException:  # registered already (by an earlier run or another process)
        client.update_registered_model(tracking.model_name, description=MODEL_DESCRIPTION)
    # The logged model's own location as the source: MLflow's registry store would
    # resolve a models:/ source through the process-global tracking URI (its TODO).
    model_id = model_uri.removeprefix("models:/")
    version = client.create_model_version(
        tracking.model_name,
        source=client.get_logged_model(model_id).artifact_location,
        run_id=run_id,
        tags=tags,
        model_id=model_id,
    )
    client.set_registered_model_alias(tracking.model_name, CHALLENGER, version.version)
    return str(version.version)


def set_champion(settings: Settings, version: str, *, decision: str, reason: str) -> None:
    """Record a promotion decision on ``version``; move the alias when it is promoted."""
    tracking = tracking_for(settings)
    client, name = tracking.client, tracking.model_name
    client.set_model_version_tag(name, version, "promotion", decision)
    client.set_model_version_tag(name, version, "promotion_reason", reason)
    client.update_model_version(name, version, description=f"{decision}: {reason}")
    if decision == "promoted":
        client.set_registered_model_alias(name, CHAMPION, version)
