"""The notebook API on the shipped real traces: fit on the labelled ones, estimate and
plot on the rest, the same figures as the project's own path."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from sentinel_core.corpus import iter_sample_records
from sentinel_core.errors import InvalidInputError, NotFittedError
from sentinel_core.estimator import predict_in_slices, score_parts
from sentinel_core.notebook import SliceMonitor, features
from sentinel_core.recipe import Recipe
from sentinel_core.slices import estimate_slices_with_labels
from sentinel_core.supervision import supervision_set


def _frame(name: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"response": r["response"], "benchmark": r["metadata"]["benchmark"], "correct": y}
        for r, y in iter_sample_records(name)
    )


def _cut(frame: pd.DataFrame) -> np.ndarray:
    """Whether each response was cut at max_tokens, read from the wire format."""
    return np.array(
        [r["choices"][0]["finish_reason"] == "length" for r in frame["response"]], dtype=bool
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return _frame("corpus-dev")


@pytest.fixture(scope="module")
def traffic() -> pd.DataFrame:
    return _frame("corpus-collected")


@pytest.fixture(scope="module")
def monitor(reference: pd.DataFrame) -> SliceMonitor:
    return SliceMonitor(by="benchmark", n_bootstrap=300).fit(reference)


def test_estimate_gives_every_slice_an_interval_lowest_first(
    monitor: SliceMonitor, traffic: pd.DataFrame
) -> None:
    table = monitor.estimate(traffic)
    assert set(table["slice"]) == set(traffic["benchmark"])
    assert list(table.columns) == [
        "slice", "n", "accuracy", "low", "high", "method", "too_few", "n_labelled",
    ]  # fmt: skip
    assert table["accuracy"].is_monotonic_increasing
    assert (table["low"] <= table["accuracy"]).all()
    assert (table["accuracy"] <= table["high"]).all()
    assert set(table["method"]) == {"bootstrap"}
    assert 0.0 < monitor.calibration_error_ < 0.5


def test_it_is_the_projects_recipe_and_statistics(
    monitor: SliceMonitor, reference: pd.DataFrame, traffic: pd.DataFrame
) -> None:
    """The same numbers as the retrain (supervision_set + Recipe.fit) and estimate path."""
    slices = reference["benchmark"].to_numpy().astype(str)
    y = reference["correct"].to_numpy()
    chosen = supervision_set(slices, y, min_labels=5, seed=0).indices
    X = features(reference)
    cut = _cut(reference)
    estimator, error = Recipe().fit(X.iloc[chosen], y[chosen], slices[chosen], cut[chosen])
    assert error == pytest.approx(monitor.calibration_error_)
    # responses cut at max_tokens are pinned, as in the retrain and the monitor
    assert 0.0 < monitor.estimator_.cut_p_ == estimator.cut_p_ < 0.1  # type: ignore[union-attr]
    traffic_cut = _cut(traffic)
    assert traffic_cut.any()
    p = predict_in_slices(
        estimator, features(traffic), traffic["benchmark"].to_numpy(), traffic_cut
    )
    np.testing.assert_allclose(p, monitor.predict_correct_proba(traffic).to_numpy())
    np.testing.assert_array_equal(p[traffic_cut], estimator.cut_p_)  # type: ignore[union-attr]
    _, votes = score_parts(estimator, features(traffic))
    expected = estimate_slices_with_labels(
        p, traffic["benchmark"].to_numpy(), np.full(p.shape, np.nan),
        calibration_error=error, n_boot=300, resample=votes,
    )  # fmt: skip
    assert monitor.estimate(traffic).to_dict("records") == [e.to_dict() for e in expected]


def test_labels_in_the_frame_make_the_estimate_prediction_powered(
    monitor: SliceMonitor, traffic: pd.DataFrame
) -> None:
    half = np.random.default_rng(0).random(len(traffic)) < 0.5
    some = traffic.assign(correct=traffic["correct"].where(half))
    table = monitor.estimate(some, label="correct")
    assert set(table["method"]) <= {"ppi", "bootstrap"}  # some labels, never all
    assert (table["method"] == "ppi").sum() >= 8
    assert table["n_labelled"].sum() == int(half.sum())


def test_plot_is_a_figure_with_one_row_per_slice(
    monitor: SliceMonitor, traffic: pd.DataFrame
) -> None:
    table = monitor.estimate(traffic)
    figure = monitor.plot(table)
    assert isinstance(figure, Figure)
    assert len(figure.axes[0].get_yticklabels()) == len(table)


def test_a_response_as_json_text_works_and_a_broken_one_names_its_row(
    traffic: pd.DataFrame,
) -> None:
    as_text = traffic.head(3).assign(response=traffic["response"].head(3).map(json.dumps))
    np.testing.assert_allclose(features(as_text), features(traffic.head(3)))
    broken = as_text.copy()
    broken.loc[1, "response"] = '{"choices": []}'
    with pytest.raises(InvalidInputError, match="expected row 1 to hold an OpenAI completion"):
        features(broken)


def test_missing_columns_and_bad_labels_are_clear_errors(
    reference: pd.DataFrame, traffic: pd.DataFrame
) -> None:
    with pytest.raises(NotFittedError, match="call fit"):
        SliceMonitor(by="benchmark").estimate(traffic)
    with pytest.raises(InvalidInputError, match="expected a slice column 'route'"):
        SliceMonitor(by="route").fit(reference)
    with pytest.raises(InvalidInputError, match="expected 0/1 in 'correct'"):
        SliceMonitor(by="benchmark").fit(reference.assign(correct=2))
    with pytest.raises(InvalidInputError, match="rows without one"):
        SliceMonitor(by="benchmark").fit(reference.assign(correct=np.nan))
    with pytest.raises(InvalidInputError, match="expected a 'response' column"):
        features(reference.drop(columns="response"))
