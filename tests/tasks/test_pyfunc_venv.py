"""A served model loads anywhere: a fresh virtual environment with only what its MLmodel
declares (no project installed) loads ``models:/...@champion`` through ``mlflow.pyfunc``
and its ``predict`` returns P(correct) per row, equal to the project's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sentinel_core.estimator import ATCClassifier, make_estimator
from sentinel_core.features import FEATURE_NAMES
from sentinel_core.settings import Settings
from tasks.registry import tracking_for
from tests.factories import plant_champion

UV = Path(sys.executable).parent / "uv"

LOAD = """
import json, sys
import mlflow, pandas as pd
try:
    import sentinel_core  # noqa: F401
    sys.exit("sentinel_core is importable before the model is loaded")
except ModuleNotFoundError:
    pass
model = mlflow.pyfunc.load_model(sys.argv[1])
rows = pd.DataFrame(json.loads(sys.argv[2]))
print(json.dumps(model.predict(rows).tolist()))
"""


@pytest.mark.services
def test_the_champion_loads_in_a_fresh_environment_and_predicts_p_correct(
    tmp_path: Path,
) -> None:
    if not UV.exists():
        pytest.skip(f"uv is not installed at {UV} (scripts/bootstrap installs it)")
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.random((80, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES))
    y = rng.random(80) < X["H_max"].to_numpy()
    estimator = make_estimator("lr_11d", search=False).fit(X, y)
    assert not isinstance(estimator, ATCClassifier)
    settings = Settings(home=tmp_path / "home")
    plant_champion(settings, estimator, calibration_error=0.1)
    tracking = tracking_for(settings)
    location = tracking.client.get_model_version_download_uri(tracking.model_name, "1")
    requirements = Path(location.removeprefix("file://")) / "requirements.txt"

    venv = tmp_path / "venv"
    subprocess.run([str(UV), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(UV), "pip", "install", "-q", "--python", str(python), "-r", str(requirements)],
        check=True,
        timeout=600,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave the model's code/ folder as logged
    rows = X.head(5)
    done = subprocess.run(
        [str(python), "-c", LOAD, f"models:/{tracking.model_name}@champion", rows.to_json()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    predicted = np.asarray(json.loads(done.stdout.strip().splitlines()[-1]))
    assert predicted.shape == (5,)
    np.testing.assert_allclose(predicted, estimator.predict_correct_proba(rows), rtol=1e-9)
    assert not np.all(np.isin(predicted, (0.0, 1.0)))  # probabilities, not classes
