"""The served default: ATC on one profile column behind the scikit-learn contract.

Data here is GENERATED with fixed seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from sentinel_core.errors import InvalidInputError
from sentinel_core.estimator import (
    DEFAULT_METHOD,
    SERVABLE_METHODS,
    ATCClassifier,
    ATCEstimator,
    EntropyEstimator,
    make_estimator,
)
from sentinel_core.features import FEATURE_NAMES


def _generated(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES))
    y = (X["H_max"] + rng.normal(scale=0.7, size=n) < 0).astype(int).to_numpy()
    return X, y


def test_atc_classifier_gives_the_same_slice_estimate_as_atc_on_its_column() -> None:
    X, y = _generated()
    target, _ = _generated(seed=1)
    served = ATCClassifier(score="H_max").fit(X, y)
    plain = ATCEstimator.for_score("H_max").fit(X["H_max"].to_numpy(), y)
    assert served.predict_correct_proba(target).mean() == pytest.approx(
        plain.estimate(target["H_max"].to_numpy())
    )


def test_atc_classifier_on_the_source_reproduces_the_source_accuracy() -> None:
    X, y = _generated()
    served = ATCClassifier().fit(X, y)
    assert served.predict_correct_proba(X).mean() == pytest.approx(y.mean(), abs=1 / len(y))
    assert set(np.unique(served.predict_proba(X)[:, 1])) <= {0.0, 1.0}


def test_atc_classifier_clones_with_its_parameters() -> None:
    original = ATCClassifier(score="H_sea", soft=True)
    assert clone(original).get_params() == {"score": "H_sea", "feature_names": None, "soft": True}


def test_an_unknown_score_column_is_refused_naming_the_choices() -> None:
    X, y = _generated()
    with pytest.raises(InvalidInputError, match="score must be one of"):
        ATCClassifier(score="nope").fit(X, y)


def test_make_estimator_maps_every_servable_method() -> None:
    built = {name: make_estimator(name) for name in SERVABLE_METHODS}
    assert isinstance(built["lr_11d"], EntropyEstimator)
    assert built["rf_11d"].get_params()["family"] == "forest"
    assert isinstance(built["atc_H_max"], ATCClassifier)
    assert built["soft_atc_H_max"].get_params()["soft"] is True
    assert built["default"].get_params() == make_estimator(DEFAULT_METHOD).get_params()


def test_the_default_is_soft_atc_on_h_max_with_a_spread_and_atcs_slice_estimate() -> None:
    X, y = _generated()
    groups = np.repeat(np.array(list("abcdefgh")), len(y) // 8)
    served = make_estimator("default").fit(X, y, groups=groups)
    p = served.predict_correct_proba(X)
    assert DEFAULT_METHOD == "soft_atc_H_max"
    # ATC's equation holds for the soft ramp: on the training data, mean P = accuracy.
    assert p.mean() == pytest.approx(y.mean(), abs=1e-6)
    if served.soft_atc_.tau_ > 0:
        assert len(np.unique(np.round(p, 6))) > 2  # a spread, not two dots
    hard = make_estimator("atc_H_max").fit(X, y)
    assert set(np.unique(hard.predict_correct_proba(X))) <= {0.0, 1.0}


def test_make_estimator_refuses_an_unknown_method() -> None:
    with pytest.raises(InvalidInputError, match="method must be one of"):
        make_estimator("lr_H_max")
