"""The served default (lr_11d anchored per slice on ATC) and ATC behind the scikit-learn contract.

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
    MIN_CUT_LABELS,
    SERVABLE_METHODS,
    AnchoredEstimator,
    ATCClassifier,
    ATCEstimator,
    EntropyEstimator,
    make_estimator,
    pinned_for,
    predict_in_slices,
    score_in_slices,
    score_parts,
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
    assert isinstance(built["anchored_H_max"], AnchoredEstimator)
    assert built["default"].get_params() == make_estimator(DEFAULT_METHOD).get_params()


def test_the_default_is_lr_11d_anchored_on_atc_h_max_per_slice() -> None:
    X, y = _generated()
    target, _target_y = _generated(n=300, seed=2)
    # Two target slices of different difficulty: shift H_max so ATC sees it.
    target.loc[:149, "H_max"] += 0.8
    keys = np.array(["hard"] * 150 + ["easy"] * 150)
    served = make_estimator("default").fit(X, y)
    assert DEFAULT_METHOD == "anchored_H_max"
    assert isinstance(served, AnchoredEstimator)
    p = served.predict_correct_proba(target, slices=keys)
    atc = ATCEstimator.for_score("H_max").fit(X["H_max"].to_numpy(), y)
    lr = make_estimator("lr_11d").fit(X, y)
    pooled = lr.predict_correct_proba(target)
    for key in ("hard", "easy"):
        rows = keys == key
        share = atc.estimate(target.loc[rows, "H_max"].to_numpy())
        # The slice estimate is ATC's (inside the 1/(2n) margin) ...
        margin = 0.5 / rows.sum()
        assert p[rows].mean() == pytest.approx(min(max(share, margin), 1 - margin), abs=1e-9)
        # ... and within the slice the classifier's order and spread are kept.
        order = np.argsort(pooled[rows], kind="stable")
        assert np.all(np.diff(p[rows][order]) >= -1e-12)
        assert len(np.unique(np.round(p[rows], 6))) > 20
    # Without slices: the classifier's pooled P(correct), same fit as lr_11d's.
    np.testing.assert_allclose(served.predict_correct_proba(target), pooled, atol=1e-12)
    hard = make_estimator("atc_H_max").fit(X, y)
    assert set(np.unique(hard.predict_correct_proba(X))) <= {0.0, 1.0}


def test_the_anchored_parts_anchor_like_the_estimator() -> None:
    X, y = _generated()
    served = make_estimator("default", search=False).fit(X, y)
    keys = np.array(list("abcd") * 100)
    _p, votes = score_parts(served, X)
    assert votes is not None
    assert set(np.unique(votes)) <= {0.0, 1.0}
    np.testing.assert_allclose(
        predict_in_slices(served, X, keys), served.predict_correct_proba(X, slices=keys)
    )
    # Any other estimator's P(correct) is final: no votes, nothing anchored.
    lr = make_estimator("lr_11d", search=False).fit(X, y)
    assert score_parts(lr, X)[1] is None
    np.testing.assert_allclose(predict_in_slices(lr, X, keys), lr.predict_correct_proba(X))


def test_make_estimator_refuses_an_unknown_method() -> None:
    with pytest.raises(InvalidInputError, match="method must be one of"):
        make_estimator("lr_H_max")


def test_the_default_pins_responses_cut_at_max_tokens_at_their_training_share() -> None:
    X, y = _generated(n=600)
    rng = np.random.default_rng(3)
    cut = rng.uniform(size=y.size) < 0.2
    y = np.where(cut, 0, y)  # cut responses are wrong, as without a final answer
    y[np.flatnonzero(cut)[0]] = 1  # but one of them boxed its answer in time
    model = AnchoredEstimator(search=False).fit(X, y, cut=cut)
    assert model.cut_p_ == pytest.approx((1 + 0.5) / (cut.sum() + 1))
    target, _ = _generated(n=300, seed=4)
    keys = np.array(["a", "b", "c"] * 100)
    target_cut = np.arange(300) % 7 == 0
    plain, votes = score_in_slices(model, target, keys)
    pinned, same_votes = score_in_slices(model, target, keys, target_cut)
    assert votes is not None
    assert same_votes is not None
    assert np.array_equal(votes, same_votes)
    assert np.all(pinned[target_cut] == model.cut_p_)
    for key in ("a", "b", "c"):  # the slice estimates (ATC's share) do not move
        assert pinned[keys == key].mean() == pytest.approx(plain[keys == key].mean(), abs=1e-9)
    assert np.array_equal(predict_in_slices(model, target, keys, target_cut), pinned)


def test_nothing_is_pinned_without_enough_cut_labels_or_for_other_estimators() -> None:
    X, y = _generated(n=400)
    few = np.zeros(y.size, dtype=bool)
    few[: MIN_CUT_LABELS - 1] = True
    model = AnchoredEstimator(search=False).fit(X, y, cut=few)
    assert np.isnan(model.cut_p_)
    assert pinned_for(model, few) is None
    assert np.isnan(AnchoredEstimator(search=False).fit(X, y).cut_p_)
    enough = np.zeros(y.size, dtype=bool)
    enough[:MIN_CUT_LABELS] = True
    fitted = AnchoredEstimator(search=False).fit(X, y, cut=enough)
    assert pinned_for(fitted, np.zeros(5, dtype=bool)) is None  # nothing cut
    pins = pinned_for(fitted, np.array([True, False]))
    assert pins is not None
    assert pins[0] == fitted.cut_p_
    assert np.isnan(pins[1])
    lr = make_estimator("lr_11d", search=False).fit(X, y)
    assert pinned_for(lr, enough) is None
    del fitted.cut_p_  # a model registered before cut_p_ existed
    assert pinned_for(fitted, enough) is None
    with pytest.raises(InvalidInputError, match="cut"):
        AnchoredEstimator(search=False).fit(X, y, cut=enough[:-1])
