"""The MLflow adapter: one client per tracking store, nothing process-global."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sentinel_core.estimator import ATCClassifier
from sentinel_core.features import FEATURE_NAMES
from sentinel_core.settings import Settings
from tasks.registry import champion_version, load_champion, tracking_for
from tests.factories import plant_champion


def _estimator(seed: int) -> ATCClassifier:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.random((60, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES))
    return ATCClassifier().fit(X, rng.random(60) > 0.5)


def test_two_stores_in_one_process_keep_their_own_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.chdir(tmp_path)  # a stray default store would appear here
    default_uri = mlflow.get_tracking_uri()
    one = Settings(home=tmp_path / "one")
    two = Settings(home=tmp_path / "two")
    first = plant_champion(one, _estimator(0), calibration_error=0.1)
    plant_champion(two, _estimator(1), calibration_error=0.2)
    plant_champion(two, _estimator(2), calibration_error=0.3)
    assert (first, champion_version(two)) == ("1", "2")
    import sys

    path = list(sys.path)
    assert load_champion(one).calibration_error == 0.1
    assert load_champion(two).calibration_error == 0.3
    # Loading leaves sys.path alone: the model's code/ folder (a partial sentinel_core)
    # must not shadow the project in processes spawned later (Dask workers).
    assert sys.path == path
    assert tracking_for(one).client is tracking_for(one).client
    assert tracking_for(one).client is not tracking_for(two).client
    assert mlflow.get_tracking_uri() == default_uri
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]


def test_the_logged_model_keeps_its_signature_and_input_example(tmp_path: Path) -> None:
    from mlflow.models import Model

    settings = Settings(home=tmp_path)
    version = plant_champion(settings, _estimator(0), calibration_error=0.1)
    tracking = tracking_for(settings)
    location = tracking.client.get_model_version_download_uri(tracking.model_name, version)
    model = Model.load(location.removeprefix("file://") + "/MLmodel")
    assert model.signature is not None
    assert [c.name for c in model.signature.inputs] == list(FEATURE_NAMES)
    assert model.saved_input_example_info is not None
    run_id = tracking.client.get_model_version(tracking.model_name, version).run_id
    assert run_id is not None
    outputs = tracking.client.get_run(run_id).outputs
    assert outputs is not None
    assert len(outputs.model_outputs) == 1
